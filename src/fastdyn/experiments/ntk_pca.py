"""Kernel PCA of the NTK at initialisation and at the end of training, feature vs lazy (seed 002, science.md 3).

At one training-set size: the NTK on the training points at every snapshot, its spectrum, the label power
omega_lambda^2 = (phi_lambda . y)^2 / p per eigenvector and cumulated over the top r, the mutual information of
the top 10 eigenvectors with the label, and the kernel-target alignment over training. Over several sizes: the
test error of an SVC with the initial / end-of-training NTK beside the network's own ("the kernel at the end of
learning performs as well as the network itself").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _seed002 as common
from .. import plotting
from .. import kpca, ntk
from ..observables import cka, mutual_information

DESCRIPTION = "seed 002: kernel PCA of the NTK (spectrum, label power, MI, alignment) and SVC with the NTK"

TOP = 10  # eigenvectors whose mutual information with the label is measured (the seed's figure)


def config(quick: bool) -> dict:
    sizes = ({"dataset": "stripe", "d": 5, "p": 128, "ps_svc": [64, 128], "h": 100, "p_test": 300, "seed": 0,
              "svc_C": 1000.0} if quick else
             {"dataset": "stripe", "d": 5, "p": 256, "ps_svc": [64, 128, 256, 512], "h": 100, "p_test": 2000,
              "seed": 0, "svc_C": 1000.0})
    return {**sizes, **common.shared_config(quick, max_steps=2_000_000, converged=True)}


def _ntk_observable(model, context):
    return ntk(model, context.x)


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    name, d, seed = config["dataset"], int(config["d"]), int(config["seed"])
    split = common.dataset(name, int(config["p"]), d, seed=seed, p_test=int(config["p_test"]))
    y = split.y.numpy()
    model = common.network(d, int(config["h"]), seed)
    spectra, over_time, summary, fits = {}, {}, {}, []
    for regime in ("feature", "lazy"):
        result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False,
                            observables={"ntk": _ntk_observable})
        fits.append(result)
        history = result.history()
        kernels = history["obs_ntk"]                                   # (snapshots, p, p)
        decomposition = kpca(kernels, y)
        over_time[regime] = {"t": history["t"], "alignment": np.asarray(decomposition.alignment),
                             "cka_to_end": np.asarray(cka(kernels, kernels[-1])), "test_err": history["test_err"]}
        for stage, index in (("init", 0), ("end", -1)):
            key = "init" if stage == "init" else f"{regime}_end"
            if key in spectra:
                continue
            values = np.asarray(decomposition.eigenvalues[index])
            vectors = np.asarray(decomposition.eigenvectors[index])
            spectra[key] = {"eigenvalues": values / values.sum(), "projections": decomposition.projections[index],
                            "cumulative": decomposition.cumulative[index],
                            "alignment": float(decomposition.alignment[index]),
                            "mutual_information": mutual_information(vectors[:, :TOP], y, k=5)}
        summary[f"{regime}_test_err"] = result.final.test_err
        summary[f"{regime}_stop_reason"] = result.stop_reason
        if progress:
            print(f"[ntk-pca] {regime}: alignment {over_time[regime]['alignment'][0]:.3f} -> "
                  f"{over_time[regime]['alignment'][-1]:.3f}, test_err={result.final.test_err:.3f}", flush=True)
    for key, spectrum in spectra.items():
        summary[f"{key}_alignment"] = spectrum["alignment"]
        summary[f"{key}_label_power_top{TOP}"] = float(spectrum["cumulative"][TOP - 1])
        summary[f"{key}_mutual_information_top{TOP}_sum"] = float(np.sum(spectrum["mutual_information"]))
        summary[f"{key}_effective_dimension"] = float(1.0 / np.sum(spectrum["eigenvalues"] ** 2))
    np.savez(out / "ntk_pca.npz", **{f"{k}_{q}": np.asarray(v) for k, s in spectra.items() for q, v in s.items()},
             **{f"{r}_{q}": np.asarray(v) for r, s in over_time.items() for q, v in s.items()})

    svc_rows = _svc_against_network(config, progress, fits)
    summary.update(common.convergence([common.run_record(result) for result in fits]))
    (out / "svc_vs_network.json").write_text(json.dumps(svc_rows, indent=1, default=float))
    _plot(out, spectra, over_time, svc_rows, config)
    last = svc_rows[-1]
    summary.update({f"svc_p{last['p']}_{k}": last[k] for k in last if k != "p"})
    summary["figures"] = ["ntk_pca_spectrum.png", "ntk_pca_dynamics.png", "ntk_svc_vs_network.png"]
    return summary


def _svc_against_network(config: dict, progress: bool, fits: list) -> list[dict]:
    """Test errors of the networks and of SVCs with their NTKs, one seed per size (runs appended to ``fits``)."""
    rows = []
    d, seed = int(config["d"]), int(config["seed"])
    for p in config["ps_svc"]:
        split = common.dataset(config["dataset"], int(p), d, seed=seed, p_test=int(config["p_test"]))
        model = common.network(d, int(config["h"]), seed)
        row = {"p": int(p), "svc_ntk_init": common.ntk_svc_error(model, split, C=config["svc_C"])}
        for regime in ("feature", "lazy"):
            result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False)
            fits.append(result)
            row[f"network_{regime}"] = result.final.test_err
            row[f"svc_ntk_end_{regime}"] = common.ntk_svc_error(result.model, split, C=config["svc_C"])
        rows.append(row)
        if progress:
            print(f"[ntk-pca] p={p}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if k != "p"), flush=True)
    return rows


def _plot(out: Path, spectra, over_time, svc_rows, config) -> None:
    titles = {"init": "initial NTK", "feature_end": "end NTK, feature", "lazy_end": "end NTK, lazy"}
    fig, axes = plotting.new_figure(3)
    for key, spectrum in spectra.items():
        rank = np.arange(1, len(spectrum["eigenvalues"]) + 1)
        axes[0, 0].loglog(rank, spectrum["eigenvalues"], label=titles[key])
        axes[0, 1].loglog(rank, np.maximum(spectrum["projections"], 1e-12), ".", ms=3, label=titles[key])
        axes[0, 2].semilogx(rank, spectrum["cumulative"], label=titles[key])
    for ax, ylabel in zip(axes[0], ("lambda / tr", "omega_lambda^2 = (phi.y)^2/p", "cumulative label power")):
        ax.set_xlabel("rank r")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    axes[0, 1].set_ylim(1e-6, 1.5)
    axes[0, 0].set_title(f"{config['dataset']}, p={config['p']}, d={config['d']}, h={config['h']}")
    plotting.save_figure(fig, out, "ntk_pca_spectrum.png")

    fig, axes = plotting.new_figure(3)
    for regime, style in (("feature", "-"), ("lazy", ":")):
        t = over_time[regime]["t"]
        keep = t > 0
        axes[0, 0].semilogx(t[keep], over_time[regime]["alignment"][keep], style, label=regime)
        axes[0, 1].semilogx(t[keep], over_time[regime]["cka_to_end"][keep], style, label=regime)
    axes[0, 0].set_ylabel("kernel-target alignment")
    axes[0, 1].set_ylabel("CKA(NTK(t), NTK(end))")
    for ax in axes[0, :2]:
        ax.set_xlabel("time t")
        ax.legend(fontsize=7)
    width = 0.27
    for i, (key, spectrum) in enumerate(spectra.items()):
        axes[0, 2].bar(np.arange(1, TOP + 1) + (i - 1) * width, spectrum["mutual_information"], width,
                       label=titles[key])
    axes[0, 2].set_xlabel("eigenvector rank r")
    axes[0, 2].set_ylabel("I(phi_r; y) (nats, kNN k=5)")
    axes[0, 2].legend(fontsize=7)
    plotting.save_figure(fig, out, "ntk_pca_dynamics.png")

    fig, axes = plotting.new_figure(1)
    ax = axes[0, 0]
    ps = [row["p"] for row in svc_rows]
    for key, style in (("network_feature", "o-"), ("svc_ntk_end_feature", "o--"), ("network_lazy", "s-"),
                       ("svc_ntk_end_lazy", "s--"), ("svc_ntk_init", "x:")):
        ax.plot(ps, [max(row[key], 1e-4) for row in svc_rows], style, label=key.replace("_", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training set size p")
    ax.set_ylabel("test error")
    ax.set_title("network vs SVC with its NTK")
    ax.legend(fontsize=7)
    plotting.save_figure(fig, out, "ntk_svc_vs_network.png")
