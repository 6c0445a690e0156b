"""Learning curves eps(p) ~ p^-beta, feature vs lazy regime, with kernel baselines on the same splits (seed 002).

For every curve (a data set and its dimension, "stripe:10"), training-set size p and seed: one network trained in
the feature regime (small alpha) and one in the lazy regime (large alpha) from the same initialisation, each to
zero hinge loss (every margin >= 1) or to its cap, an SVC with the initial NTK, an SVC with the feature network's
end-of-training NTK, and kNN (k = 5) on the inputs. beta is fitted per method over p >= ``fit_p_min`` with a
bootstrap that resamples the seeds independently at each p and redraws the binomial noise of the test set; it is
compared with the lazy d/(3d-2) and the stripe's feature (2d-1)/(3d-2). A mean-field check reruns one size at
``h_check_factor`` times the width. Each run's record is kept under ``runs/`` (an interrupted run resumes there).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _seed002 as common
from ._store import RunStore
from .. import plotting

DESCRIPTION = "seed 002: test error vs p, feature vs lazy, NTK-SVC and kNN baselines, fitted exponents beta"

METHODS = ("feature", "lazy", "svc_ntk_init", "svc_ntk_end", "knn5")
REGIMES = ("feature", "lazy")
LABELS = {"feature": "network, feature", "lazy": "network, lazy", "svc_ntk_init": "SVC, initial NTK",
          "svc_ntk_end": "SVC, end NTK (feature)", "knn5": "kNN, k=5"}
# config keys that change no run (RunStore): which runs happen, and the fit range
FREE_KEYS = ("curves", "ps", "seeds", "h_check_curve", "h_check_p", "h_check_seeds", "fit_p_min",
             "device")  # (CPU and GPU runs agree to rounding)


def config(quick: bool) -> dict:
    sizes = ({"curves": ["stripe:5", "sphere:5"], "ps": [64, 128], "seeds": 3, "h": 100, "p_test": 500,
              "fit_p_min": 0, "h_check_curve": "stripe:5", "h_check_p": 64, "h_check_seeds": 3} if quick else
             {"curves": ["stripe:10", "sphere:10", "stripe:5", "digits:10"], "ps": [16, 32, 64, 128, 256, 512],
              "seeds": 5, "h": 100, "p_test": 2000, "fit_p_min": 64, "h_check_curve": "stripe:10",
              "h_check_p": 128, "h_check_seeds": 5})
    shared = common.shared_config(quick, max_steps=2_000_000, converged=True)
    return {**sizes, "h_check_factor": 2, "svc_C": 1000.0, "device": "cpu", **shared}


def parse_curve(curve: str) -> tuple[str, int]:
    """"stripe:10" -> ("stripe", 10)."""
    name, _, d = str(curve).partition(":")
    if name not in common.DATASETS or not d.isdigit() or int(d) < 2:
        raise ValueError(f"curves: expected 'dataset:d' with dataset in {common.DATASETS} and d >= 2, got {curve!r}")
    return name, int(d)


def curve_label(curve: str) -> str:
    """The file-name form of a curve: "stripe:10" -> "stripe-d10"."""
    name, d = parse_curve(curve)
    return f"{name}-d{d}"


def one_point(name: str, d: int, h: int, p: int, seed: int, config: dict, *, baselines: bool = True) -> dict:
    """Train both regimes at one (data set, d, h, p, seed) and, with ``baselines``, fit the kernel baselines; the
    record holds every method's test error, the runs' records and (stripe) both compression ratios."""
    split = common.dataset(name, p, d, seed=seed, p_test=int(config["p_test"]), device=config["device"])
    model = common.network(d, h, seed, config["device"])
    record = {"n_test": int(split.x_test.shape[0])}
    for regime in REGIMES:
        result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False)
        record[regime] = common.run_record(result)
        if name == "stripe":
            record[regime]["lambda_norm"] = common.compression_norm(result.model.omega)
            record[regime]["lambda_coordinate"] = common.compression_coordinate(result.model.omega)
        if regime == "feature":
            feature_model = result.model
    if baselines:
        record["svc_ntk_init"] = common.ntk_svc_error(model, split, C=config["svc_C"])
        record["svc_ntk_end"] = common.ntk_svc_error(feature_model, split, C=config["svc_C"])
        record["knn5"] = common.knn5_error(split)
    return record


def test_error(record: dict, method: str) -> float:
    return float(record[method]["test_err"] if method in REGIMES else record[method])


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    curves = [str(curve) for curve in config["curves"]]
    for curve in curves + [config["h_check_curve"]]:
        parse_curve(curve)
    ps, seeds, h = [int(p) for p in config["ps"]], int(config["seeds"]), int(config["h"])
    store = RunStore(out, config, FREE_KEYS)
    errors = {c: {m: np.full((seeds, len(ps)), np.nan) for m in METHODS} for c in curves}
    n_test = {c: np.zeros(len(ps), dtype=int) for c in curves}
    rows = []
    for curve in curves:
        name, d = parse_curve(curve)
        for j, p in enumerate(ps):
            for seed in range(seeds):
                key = {"curve": curve_label(curve), "h": h, "p": p, "seed": seed}
                record = store.get(key, lambda: one_point(name, d, h, p, seed, config))
                for m in METHODS:
                    errors[curve][m][seed, j] = test_error(record, m)
                n_test[curve][j] = record["n_test"]
                rows.append({**key, **record})
                if progress:
                    print(f"[learning-curves] {curve} p={p} seed={seed}: " + ", ".join(
                        f"{m}={errors[curve][m][seed, j]:.3f}" for m in METHODS) + " (converged: " + ", ".join(
                        f"{r}={record[r]['converged']}" for r in REGIMES) + ")", flush=True)

    check = _mean_field_check(config, store, h, progress)
    np.savez(out / "errors.npz", ps=np.asarray(ps),
             **{f"{curve_label(c)}_{m}": errors[c][m] for c in curves for m in METHODS})
    (out / "runs.json").write_text(json.dumps(rows + check["rows"], indent=1, default=float))
    p_min = float(config["fit_p_min"])
    fits = {c: {m: common.power_law(ps, errors[c][m], n_test=n_test[c], p_min=p_min) for m in METHODS}
            for c in curves}
    _plot(out, ps, errors, fits, config)

    summary: dict = {"fit_p_min": p_min, "p_max_over_p_min": max(ps) / min(ps), "seeds": seeds,
                     "runs_reused_from_records": store.reused}
    all_runs = [row[r] for row in rows + check["rows"] for r in REGIMES]
    summary.update(common.convergence(all_runs))
    for curve in curves:
        name, d = parse_curve(curve)
        label, theory = curve_label(curve), common.beta_theory(d)
        summary[f"{label}_beta_theory_lazy"] = theory["lazy"]
        if name == "stripe":
            summary[f"{label}_beta_theory_feature"] = theory["feature"]
        for m in METHODS:
            summary[f"{label}_beta_{m}"] = fits[curve][m]["beta"]
            summary[f"{label}_beta_err_{m}"] = fits[curve][m]["beta_err"]
            summary[f"{label}_local_slopes_{m}"] = fits[curve][m]["local_slopes"]
            summary[f"{label}_err_{m}_largest_p"] = float(np.nanmean(errors[curve][m][:, -1]))
        runs = [row[r] for row in rows if row["curve"] == label for r in REGIMES]
        summary[f"{label}_converged_fraction"] = common.convergence(runs)["converged_fraction"]
    summary.update(check["summary"])
    summary["figures"] = ["learning_curves.png"]
    return summary


def _mean_field_check(config: dict, store: RunStore, h: int, progress: bool) -> dict:
    """Both regimes at ``h_check_factor`` x h against h at one (curve, p), over ``h_check_seeds`` seeds: the
    difference of the seed-mean test errors against its standard error (seed spread and binomial noise)."""
    p, seeds = int(config["h_check_p"]), int(config["h_check_seeds"])
    if p <= 0 or seeds <= 0:
        return {"rows": [], "summary": {}}
    name, d = parse_curve(config["h_check_curve"])
    wide = int(round(float(config["h_check_factor"]) * h))
    errors = {(width, r): [] for width in (h, wide) for r in REGIMES}
    rows, n_test = [], 0
    for width in (h, wide):
        for seed in range(seeds):
            key = {"curve": curve_label(config["h_check_curve"]), "h": width, "p": p, "seed": seed}
            # the width-h points are the learning curve's own runs when that curve and p are on the grid
            record = store.get(key, lambda: one_point(name, d, width, p, seed, config, baselines=width == h))
            if width == wide:
                rows.append({**key, **record})
            n_test = record["n_test"]  # the same split at both widths
            for r in REGIMES:
                errors[width, r].append(record[r]["test_err"])
    summary = {"h_check": {"curve": config["h_check_curve"], "p": p, "h": h, "h_wide": wide, "seeds": seeds}}
    for r in REGIMES:
        narrow, broad = np.asarray(errors[h, r]), np.asarray(errors[wide, r])
        variance = common.variance_of_mean(narrow, n_test) + common.variance_of_mean(broad, n_test)
        summary["h_check"][f"{r}_err_h"] = float(narrow.mean())
        summary["h_check"][f"{r}_err_wide"] = float(broad.mean())
        summary["h_check"][f"{r}_difference_in_standard_errors"] = float(
            (broad.mean() - narrow.mean()) / np.sqrt(variance))
        if progress:
            print(f"[learning-curves] mean-field check {r}: h={h} {narrow.mean():.4f}, h={wide} {broad.mean():.4f}",
                  flush=True)
    return {"rows": rows, "summary": summary}


def _plot(out: Path, ps, errors, fits, config) -> None:
    curves = list(errors)
    columns = min(len(curves), 2)
    fig, axes = plotting.new_figure(columns, -(-len(curves) // columns), width=5.0, height=4.0)
    p_line = np.asarray(ps, dtype=float)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax, curve in zip(axes.flat, curves):
        name, d = parse_curve(curve)
        theory = common.beta_theory(d)
        for m, marker in zip(METHODS, "osD^v"):
            mean = np.nanmean(errors[curve][m], axis=0)
            spread = np.nanstd(errors[curve][m], axis=0)
            fit = fits[curve][m]
            ax.errorbar(ps, mean, yerr=spread, marker=marker, ms=4, capsize=2,
                        label=f"{LABELS[m]}: beta={fit['beta']:.2f}+-{fit['beta_err']:.2f}")
        lines = (("lazy", ":"), ("feature", "--")) if name == "stripe" else (("lazy", ":"),)
        anchor_p = float(config["fit_p_min"]) or p_line[0]
        j = int(np.searchsorted(p_line, anchor_p))
        for regime, style in lines:
            anchor = np.nanmean(errors[curve][regime][:, j])
            if anchor > 0:
                ax.plot(p_line, anchor * (p_line / p_line[j]) ** -theory[regime], "k" + style, lw=1,
                        label=f"theory {regime}: p^-{theory[regime]:.2f}")
        if config["fit_p_min"]:
            ax.axvspan(p_line[0] / 1.2, float(config["fit_p_min"]) / 1.1, color="0.9", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plotting.log_ticks(ax, ps)
        ax.set_xlabel("training set size p")
        ax.set_ylabel("test error")
        ax.set_title(f"{name}, d={d}, h={config['h']}")
        ax.legend(fontsize=6)
    plotting.save_figure(fig, out, "learning_curves.png")
