"""Learning curves eps(p) ~ p^-beta, feature vs lazy regime, with kernel baselines on the same splits (seed 002).

For every data set, training-set size p and seed: one network trained in the feature regime (small alpha) and
one in the lazy regime (large alpha) from the same initialisation, an SVC with the initial NTK, an SVC with the
feature network's end-of-training NTK, and kNN (k = 5) on the inputs. beta is fitted per method with a bootstrap
over seeds; on the stripe model it is compared with beta_lazy = d/(3d-2) and beta_feature = (2d-1)/(3d-2).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _seed002 as common
from .. import plotting
from .._src.threads import limit_threads

DESCRIPTION = "seed 002: test error vs p, feature vs lazy, NTK-SVC and kNN baselines, fitted exponents beta"

METHODS = ("feature", "lazy", "svc_ntk_init", "svc_ntk_end", "knn5")
LABELS = {"feature": "network, feature", "lazy": "network, lazy", "svc_ntk_init": "SVC, initial NTK",
          "svc_ntk_end": "SVC, end NTK (feature)", "knn5": "kNN, k=5"}


def config(quick: bool) -> dict:
    sizes = ({"datasets": ["stripe", "sphere"], "d": 5, "d_digits": 10, "ps": [64, 128], "seeds": 2, "h": 100,
              "p_test": 500, "svc_C": 1000.0} if quick else
             {"datasets": ["stripe", "sphere", "digits"], "d": 5, "d_digits": 10, "ps": [64, 128, 256, 512],
              "seeds": 3, "h": 500, "p_test": 1000, "svc_C": 1000.0})
    return {**sizes, **common.shared_config(quick, max_steps=8000)}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    with limit_threads(config["threads"]):
        return _run(config, out, progress)


def _run(config: dict, out: Path, progress: bool) -> dict:
    ps, seeds = [int(p) for p in config["ps"]], int(config["seeds"])
    errors = {name: {m: np.full((seeds, len(ps)), np.nan) for m in METHODS} for name in config["datasets"]}
    runs = []
    for name in config["datasets"]:
        d = int(config["d_digits"] if name == "digits" else config["d"])
        for j, p in enumerate(ps):
            for seed in range(seeds):
                split = common.dataset(name, p, d, seed=seed, p_test=int(config["p_test"]))
                model = common.network(d, int(config["h"]), seed)
                row = {"dataset": name, "p": p, "seed": seed}
                for regime in ("feature", "lazy"):
                    result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False)
                    row[regime] = common.run_record(result)
                    errors[name][regime][seed, j] = result.final.test_err
                    if regime == "feature":
                        feature_model = result.model
                errors[name]["svc_ntk_init"][seed, j] = common.ntk_svc_error(model, split, C=config["svc_C"])
                errors[name]["svc_ntk_end"][seed, j] = common.ntk_svc_error(feature_model, split, C=config["svc_C"])
                errors[name]["knn5"][seed, j] = common.knn5_error(split)
                row.update({m: float(errors[name][m][seed, j]) for m in METHODS[2:]})
                runs.append(row)
                if progress:
                    print(f"[learning-curves] {name} p={p} seed={seed}: " + ", ".join(
                        f"{m}={errors[name][m][seed, j]:.3f}" for m in METHODS), flush=True)

    np.savez(out / "errors.npz", ps=np.asarray(ps),
             **{f"{name}_{m}": errors[name][m] for name in errors for m in METHODS})
    (out / "runs.json").write_text(json.dumps(runs, indent=1, default=float))
    fits = {name: {m: common.power_law(ps, errors[name][m]) for m in METHODS} for name in errors}
    theory = common.beta_theory(int(config["d"]))
    _plot(out, ps, errors, fits, theory, config)

    summary: dict = {"beta_theory_stripe_lazy": theory["lazy"], "beta_theory_stripe_feature": theory["feature"]}
    for name in errors:
        for m in METHODS:
            summary[f"{name}_beta_{m}"] = fits[name][m]["beta"]
            summary[f"{name}_beta_err_{m}"] = fits[name][m]["beta_err"]
            summary[f"{name}_err_{m}_largest_p"] = float(np.nanmean(errors[name][m][:, -1]))
        unmet = [r for r in runs if r["dataset"] == name for regime in ("feature", "lazy")
                 if r[regime]["unsatisfied"] > 0]
        summary[f"{name}_runs_stopped_before_zero_hinge_loss"] = len(unmet)
        summary[f"{name}_runs_stopped_by_wall"] = sum(r[regime]["stop_reason"] == "wall" for r in runs
                                                      if r["dataset"] == name for regime in ("feature", "lazy"))
    summary["figures"] = ["learning_curves.png"]
    return summary


def _plot(out: Path, ps, errors, fits, theory, config) -> None:
    names = list(errors)
    fig, axes = plotting.new_figure(len(names))
    p_line = np.asarray(ps, dtype=float)
    for ax, name in zip(axes[0], names):
        for m, marker in zip(METHODS, "osD^v"):
            mean = np.nanmean(errors[name][m], axis=0)
            spread = np.nanstd(errors[name][m], axis=0)
            fit = fits[name][m]
            ax.errorbar(ps, mean, yerr=spread, marker=marker, ms=4, capsize=2,
                        label=f"{LABELS[m]}: beta={fit['beta']:.2f}+-{fit['beta_err']:.2f}")
        if name == "stripe":
            for regime, style in (("lazy", ":"), ("feature", "--")):
                anchor = np.nanmean(errors[name][regime][:, 0])
                if anchor > 0:
                    ax.plot(p_line, anchor * (p_line / p_line[0]) ** -theory[regime], "k" + style, lw=1,
                            label=f"theory {regime}: p^-{theory[regime]:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training set size p")
        ax.set_ylabel("test error")
        d = config["d_digits"] if name == "digits" else config["d"]
        ax.set_title(f"{name}, d={d}, h={config['h']}")
        ax.legend(fontsize=6)
    plotting.save_figure(fig, out, "learning_curves.png")
