"""Geometric compression on the stripe model, by both definitions of the compression ratio, over training and at
the end of converged runs against p, feature vs lazy, with the paper's estimate sqrt(0.135 p) (seed 002, science.md 1).

* Lambda_norm = RMS(omega_1) / RMS(||omega_perp||) (:func:`_seed002.compression_norm`), 1/sqrt(d-1) at init;
* Lambda_coord = RMS(omega_1) / mean_j RMS(omega_j) (:func:`_seed002.compression_coordinate`, feature_lazy's
  ratio), 1 at init. The paper's sqrt(0.135 p) is a compression factor (1 = none), so it is Lambda_coord's line.

Each run's record is kept under ``runs/`` (an interrupted experiment resumes there).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _seed002 as common
from ._store import RunStore
from .. import plotting

DESCRIPTION = "seed 002: compression Lambda (both definitions) over training and vs p (stripe), against sqrt(0.135 p)"

DEFINITIONS = {"lambda_norm": common.compression_norm, "lambda_coordinate": common.compression_coordinate}
LABELS = {"lambda_norm": "Lambda_norm = RMS(w_1) / RMS(|w_perp|)",
          "lambda_coordinate": "Lambda_coord = RMS(w_1) / mean_j RMS(w_j)"}
REGIMES = ("feature", "lazy")


def config(quick: bool) -> dict:
    sizes = ({"d": 5, "ps": [64, 128], "seeds": 1, "h": 100, "p_test": 200} if quick else
             {"d": 5, "ps": [32, 64, 128, 256, 512], "seeds": 3, "h": 100, "p_test": 2000})
    return {**sizes, "device": "cpu", **common.shared_config(quick, max_steps=2_000_000, converged=True)}


def _observable(definition):
    return lambda model, context: DEFINITIONS[definition](model.omega)


def _one_run(config: dict, p: int, seed: int, regime: str) -> dict:
    split = common.dataset("stripe", p, int(config["d"]), seed=seed, p_test=int(config["p_test"]),
                           device=config["device"])
    model = common.network(int(config["d"]), int(config["h"]), seed, config["device"])
    result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False,
                        observables={name: _observable(name) for name in DEFINITIONS})
    history = result.history()
    return {**common.run_record(result),
            **{name: fn(result.model.omega) for name, fn in DEFINITIONS.items()},
            "curve": {"t": history["t"].tolist(), "test_err": history["test_err"].tolist(),
                      **{name: history[f"obs_{name}"].tolist() for name in DEFINITIONS}}}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    ps, seeds = [int(p) for p in config["ps"]], int(config["seeds"])
    store = RunStore(out, config, ("ps", "seeds", "device"))
    final = {(name, regime): np.full((seeds, len(ps)), np.nan) for name in DEFINITIONS for regime in REGIMES}
    curves, runs = [], []
    for j, p in enumerate(ps):
        for seed in range(seeds):
            for regime in REGIMES:
                key = {"regime": regime, "p": p, "seed": seed}
                record = store.get(key, lambda: _one_run(config, p, seed, regime))
                for name in DEFINITIONS:
                    final[name, regime][seed, j] = record[name]
                curves.append({**key, **record["curve"]})
                runs.append({**key, **{k: v for k, v in record.items() if k != "curve"}})
                if progress:
                    print(f"[compression] p={p} seed={seed} {regime}: Lambda_coord={record['lambda_coordinate']:.2f} "
                          f"(sqrt(0.135 p)={common.lambda_theory(p):.2f}), Lambda_norm={record['lambda_norm']:.2f}, "
                          f"test_err={record['test_err']:.3f}, {record['stop_reason']}", flush=True)
    np.savez(out / "lambda.npz", ps=np.asarray(ps),
             **{f"{name}_{regime}": values for (name, regime), values in final.items()})
    (out / "curves.json").write_text(json.dumps(curves, default=float))
    (out / "runs.json").write_text(json.dumps(runs, indent=1, default=float))
    # Lambda ~ p^gamma  <=>  1/Lambda ~ p^-gamma (seeds resampled at each p; no test-set noise in a weight ratio)
    growth = {name: common.power_law(ps, 1.0 / final[name, "feature"]) for name in DEFINITIONS}
    _plot(out, ps, final, curves, growth, config)
    summary = {"lambda_norm_init": float(1.0 / np.sqrt(config["d"] - 1)), "lambda_coordinate_init": 1.0,
               "lambda_exponent_theory": 0.5, "theory_line_belongs_to": "lambda_coordinate",
               **common.convergence(runs),
               "runs_reused_from_records": store.reused}
    for name in DEFINITIONS:
        mean = {regime: np.nanmean(final[name, regime], axis=0) for regime in REGIMES}
        summary[f"{name}_exponent_feature"] = growth[name]["beta"]
        summary[f"{name}_exponent_feature_err"] = growth[name]["beta_err"]
        summary[f"{name}_feature_beats_lazy_every_p"] = bool(np.all(mean["feature"] > mean["lazy"]))
        for j, p in enumerate(ps):
            for regime in REGIMES:
                summary[f"p{p}_{name}_{regime}"] = float(mean[regime][j])
    # Lambda(t) is not monotone: its largest value over the run, against the end value
    peak = np.full((seeds, len(ps)), np.nan)
    for curve in curves:
        if curve["regime"] == "feature":
            peak[curve["seed"], ps.index(curve["p"])] = max(curve["lambda_coordinate"])
    peak_growth = common.power_law(ps, 1.0 / peak)
    summary["lambda_coordinate_peak_exponent_feature"] = peak_growth["beta"]
    summary["lambda_coordinate_peak_exponent_feature_err"] = peak_growth["beta_err"]
    for j, p in enumerate(ps):
        summary[f"p{p}_lambda_coordinate_feature_peak"] = float(np.nanmean(peak[:, j]))
    for p in ps:
        summary[f"p{p}_lambda_theory"] = float(common.lambda_theory(p))
    summary["figures"] = ["compression.png"]
    return summary


def _plot(out: Path, ps, final, curves, growth, config) -> None:
    fig, axes = plotting.new_figure(2, width=4.6)
    ax = axes[0, 0]
    colours = plotting.viridis_colours(len(ps))
    for curve in curves:
        if curve["seed"]:
            continue
        colour = colours[ps.index(curve["p"])]
        t = np.asarray(curve["t"])
        keep = t > 0
        ax.plot(t[keep], np.asarray(curve["lambda_coordinate"])[keep],
                "-" if curve["regime"] == "feature" else ":", color=colour,
                label=f"p={curve['p']}" if curve["regime"] == "feature" else None)
    if any(t > 0 for curve in curves for t in curve["t"]):  # (runs stopped before their first step have none)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel("Lambda_coord")
    ax.set_title("Lambda_coord(t), seed 0: feature (solid), lazy (dotted)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    p_line = np.geomspace(min(ps), max(ps), 50)
    for name, colour in (("lambda_coordinate", "C0"), ("lambda_norm", "C1")):
        for regime, marker in (("feature", "o"), ("lazy", "s")):
            values = final[name, regime]
            fit = growth[name]
            label = f"{LABELS[name].split(' =')[0]}, {regime}" + (
                f": p^({fit['beta']:.2f}+-{fit['beta_err']:.2f})" if regime == "feature" else "")
            ax.errorbar(ps, np.nanmean(values, 0), yerr=np.nanstd(values, 0), marker=marker, capsize=2,
                        color=colour, ls="-" if regime == "feature" else ":", label=label)
    ax.plot(p_line, common.lambda_theory(p_line), "k--", label="sqrt(0.135 p) (paper; Lambda_coord's line)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plotting.log_ticks(ax, ps)
    ax.set_xlabel("training set size p")
    ax.set_ylabel("Lambda at the end of training")
    ax.set_title(f"stripe, d={config['d']}, h={config['h']}, mean +- sd over {config['seeds']} seeds")
    ax.legend(fontsize=6)
    plotting.save_figure(fig, out, "compression.png")
