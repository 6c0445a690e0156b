"""Geometric compression on the stripe model: Lambda = RMS(omega_par) / RMS(||omega_perp||) over training and at
the end against p, feature vs lazy, with the paper's estimate Lambda ~ sqrt(0.135 p) (seed 002, science.md 1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _seed002 as common
from .. import plotting
from .._src.threads import limit_threads

DESCRIPTION = "seed 002: compression ratio Lambda over training and vs p (stripe), against sqrt(0.135 p)"


def config(quick: bool) -> dict:
    sizes = ({"d": 5, "ps": [64, 128], "seeds": 1, "h": 100, "p_test": 200} if quick else
             {"d": 5, "ps": [64, 128, 256, 512, 1024], "seeds": 2, "h": 500, "p_test": 500})
    return {**sizes, **common.shared_config(quick, max_steps=8000)}


def _lambda_observable(model, context) -> float:
    return common.compression(model.omega)


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    with limit_threads(config["threads"]):
        return _run(config, out, progress)


def _run(config: dict, out: Path, progress: bool) -> dict:
    ps, seeds = [int(p) for p in config["ps"]], int(config["seeds"])
    final = {regime: np.full((seeds, len(ps)), np.nan) for regime in ("feature", "lazy")}
    curves, runs = [], []
    for j, p in enumerate(ps):
        for seed in range(seeds):
            split = common.dataset("stripe", p, int(config["d"]), seed=seed, p_test=int(config["p_test"]))
            model = common.network(int(config["d"]), int(config["h"]), seed)
            for regime in ("feature", "lazy"):
                result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False,
                                    observables={"lambda": _lambda_observable})
                history = result.history()
                final[regime][seed, j] = common.compression(result.model.omega)
                curves.append({"regime": regime, "p": p, "seed": seed, "t": history["t"].tolist(),
                               "lambda": history["obs_lambda"].tolist(), "test_err": history["test_err"].tolist()})
                runs.append({"regime": regime, "p": p, "seed": seed, "lambda_end": float(final[regime][seed, j]),
                             **common.run_record(result)})
                if progress:
                    print(f"[compression] p={p} seed={seed} {regime}: Lambda={final[regime][seed, j]:.2f} "
                          f"(sqrt(0.135 p)={common.lambda_theory(p):.2f}), test_err={result.final.test_err:.3f}, "
                          f"{result.stop_reason}", flush=True)
    np.savez(out / "lambda.npz", ps=np.asarray(ps), feature=final["feature"], lazy=final["lazy"])
    (out / "curves.json").write_text(json.dumps(curves, default=float))
    (out / "runs.json").write_text(json.dumps(runs, indent=1, default=float))
    growth = common.power_law(ps, 1.0 / final["feature"])  # Lambda ~ p^gamma  <=>  1/Lambda ~ p^-gamma
    _plot(out, ps, final, curves, growth, config)
    mean = {regime: np.nanmean(values, axis=0) for regime, values in final.items()}
    summary = {"lambda_init": float(1.0 / np.sqrt(config["d"] - 1)), "lambda_exponent_feature": growth["beta"],
               "lambda_exponent_feature_err": growth["beta_err"], "lambda_exponent_theory": 0.5,
               "feature_beats_lazy_every_p": bool(np.all(mean["feature"] > mean["lazy"])),
               "runs_stopped_before_zero_hinge_loss": sum(r["unsatisfied"] > 0 for r in runs),
               "runs_stopped_by_wall": sum(r["stop_reason"] == "wall" for r in runs)}
    for j, p in enumerate(ps):
        summary[f"p{p}_lambda_feature"] = float(mean["feature"][j])
        summary[f"p{p}_lambda_lazy"] = float(mean["lazy"][j])
        summary[f"p{p}_lambda_theory"] = float(common.lambda_theory(p))
    summary["figures"] = ["compression.png"]
    return summary


def _plot(out: Path, ps, final, curves, growth, config) -> None:
    fig, axes = plotting.new_figure(2)
    ax = axes[0, 0]
    colours = plotting.viridis_colours(len(ps))
    for curve in curves:
        if curve["seed"]:
            continue
        colour = colours[ps.index(curve["p"])]
        t = np.asarray(curve["t"])
        keep = t > 0
        ax.plot(t[keep], np.asarray(curve["lambda"])[keep], "-" if curve["regime"] == "feature" else ":",
                color=colour, label=f"p={curve['p']}" if curve["regime"] == "feature" else None)
    if any(t > 0 for curve in curves for t in curve["t"]):  # (runs stopped before their first step have none)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("time t")
    ax.set_ylabel("Lambda")
    ax.set_title("Lambda(t): feature (solid), lazy (dotted)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    p_line = np.geomspace(min(ps), max(ps), 50)
    for regime, marker in (("feature", "o"), ("lazy", "s")):
        ax.errorbar(ps, np.nanmean(final[regime], 0), yerr=np.nanstd(final[regime], 0), marker=marker, capsize=2,
                    label=regime + (f": Lambda ~ p^{growth['beta']:.2f}+-{growth['beta_err']:.2f}"
                                    if regime == "feature" else ""))
    ax.plot(p_line, common.lambda_theory(p_line), "k--", label="sqrt(0.135 p) (paper)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training set size p")
    ax.set_ylabel("Lambda at the end of training")
    ax.set_title(f"stripe, d={config['d']}, h={config['h']}")
    ax.legend(fontsize=7)
    plotting.save_figure(fig, out, "compression.png")
