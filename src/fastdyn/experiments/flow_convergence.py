"""Does the flow reach zero hinge loss, faithfully? The stripe (seed 002) trained to every margin >= 1 by the exact
method (fastdyn/_src/train/exact.py) in both regimes, against feature_lazy's step rule and a 10x tighter tolerance.

* For each alpha (feature 1e-2, lazy 1e2) and seed: the run at ``tol``, and for ``tight_seeds`` at ``tol / 10``
  (max_dout scaled alike), their steps, rejections, hinge events, flow time and wall time, and the end state (test
  error, smallest margin, Lambda, attractor count). Faithful: where both converged, the two tolerances' end states
  differ by less than the seed-to-seed spread.
* The same flow driven from Python step by step for ``python_steps`` steps beside the C++ loop (relative
  difference of the weights), and the share of the wall time spent outside the C++ loop.
* feature_lazy's own rule (method "euler", max_dgrad = 1e-4, max_dout = 0.1, no waiver) for ``max_steps_euler``
  steps: where it gets to.

Every run stops by its step cap (``max_steps``, ``max_steps_tight``, ``max_steps_euler``) unless it converges; the
full configuration also has wall-clock safety nets (``max_wall*``, seconds; None in the quick one, so that its
results do not depend on the machine's load), and a run stopped by one is reported unconverged ("wall").
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import _seed002 as common, wall_limit
from .. import kinks, plotting, train

DESCRIPTION = "training engine: the stripe trained to zero hinge loss (exact flow), tol vs tol/10, vs feature_lazy"


def config(quick: bool) -> dict:
    if quick:
        return {"d": 5, "h": 60, "p": 24, "p_test": 200, "alphas": [0.01, 100.0], "seeds": [0, 1], "tight_seeds": [0],
                "tol": 1e-2, "max_dout": 0.1, "max_steps": 50_000, "max_steps_tight": 50_000, "max_steps_euler": 300,
                "max_wall": None, "max_wall_tight": None, "max_wall_euler": None, "python_steps": 20, "threads": 1}
    return {"d": 5, "h": 1000, "p": 256, "p_test": 2000, "alphas": [0.01, 100.0], "seeds": [0, 1, 2],
            "tight_seeds": [0, 1, 2], "tol": 1e-2, "max_dout": 0.1, "max_steps": 10 ** 9, "max_steps_tight": 10 ** 9,
            "max_steps_euler": 10 ** 9, "max_wall": 600.0, "max_wall_tight": 6000.0, "max_wall_euler": 600.0,
            "python_steps": 200, "threads": 1}


def _caps(config: dict, suffix: str = "") -> dict:
    """max_steps / max_wall of ``train`` from config keys "max_steps{suffix}" and "max_wall{suffix}" (None: no cap)."""
    return {"max_steps": int(config[f"max_steps{suffix}"]), "max_wall": wall_limit(config[f"max_wall{suffix}"])}


def _fit(config, split, seed, alpha, tol):
    """The stripe run at ``tol`` (max_dout scaled alike; the "_tight" caps hold the tighter runs)."""
    model = common.network(config["d"], config["h"], seed)
    tight = tol != config["tol"]
    return train(model, split.x, split.y, x_test=split.x_test, y_test=split.y_test, alpha=alpha, tol=tol,
                 max_dout=config["max_dout"] * tol / config["tol"], **_caps(config, "_tight" if tight else ""),
                 snapshots_per_decade=10, record_weights=False)


def _end_state(result, split) -> dict:
    model = result.model
    final = result.final
    return {"converged": result.converged, "stop_reason": result.stop_reason, "steps": result.step,
            "rejected": result.counts.get("rejected", 0), "hinge_events": result.counts.get("hinge_events", 0),
            "t": result.t, "wall": result.timings["total"],
            "outside_loop_share": 1 - result.timings.get("loop", np.nan) / result.timings["total"],
            "test_err": final.test_err, "min_margin": float((final.train_out * split.y).min()),
            "lambda": common.compression_norm(model.omega), "attractors": kinks.attractors(model, split.x).n_attractors}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    runs, curves = [], {}
    for alpha in config["alphas"]:
        for seed in config["seeds"]:
            split = common.dataset("stripe", config["p"], config["d"], seed=seed, p_test=config["p_test"])
            for tol in (config["tol"], config["tol"] / 10)[:2 if seed in config["tight_seeds"] else 1]:
                result = _fit(config, split, seed, alpha, tol)
                record = {"alpha": alpha, "seed": seed, "tol": tol, **_end_state(result, split)}
                runs.append(record)
                history = result.history()
                curves[(alpha, seed, tol)] = (history["t"], history["unsatisfied"])
                if progress:
                    print(f"[flow-convergence] alpha={alpha:g} seed={seed} tol={tol:g}: {record['stop_reason']} "
                          f"after {record['steps']} steps ({record['rejected']} rejected, {record['hinge_events']} "
                          f"hinge events), t={record['t']:.4g}, {record['wall']:.1f} s, test_err="
                          f"{record['test_err']:.3f}, Lambda={record['lambda']:.3f}", flush=True)

    summary = {}
    for alpha in config["alphas"]:
        key = f"alpha{alpha:g}"
        loose = [r for r in runs if r["alpha"] == alpha and r["tol"] == config["tol"]]
        tight = [r for r in runs if r["alpha"] == alpha and r["tol"] != config["tol"]]
        summary[f"{key}_converged"] = f"{sum(r['converged'] for r in loose + tight)}/{len(loose + tight)}"
        summary[f"{key}_wall_max"] = max(r["wall"] for r in loose)
        summary[f"{key}_outside_loop_share_max"] = max(r["outside_loop_share"] for r in loose)
        pairs = [(a, b) for a in loose for b in tight if a["seed"] == b["seed"] and a["converged"] and b["converged"]]
        summary[f"{key}_tol_pairs_converged"] = len(pairs)
        for name in ("test_err", "lambda", "min_margin", "attractors"):
            values = np.array([r[name] for r in loose], dtype=float)
            summary[f"{key}_{name}_mean"] = float(values.mean())
            summary[f"{key}_{name}_seed_spread"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            summary[f"{key}_{name}_tol_shift_max"] = max((abs(a[name] - b[name]) for a, b in pairs),
                                                         default=float("nan"))

    summary.update(_python_vs_native(config))
    summary.update(_feature_lazy_rule(config))
    np.savez(out / "curves.npz", **{f"a{a:g}_s{s}_tol{t:g}_{n}": v for (a, s, t), c in curves.items()
                                    for n, v in zip(("t", "unsatisfied"), c)})
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    _plot(out, config, curves)
    return summary


def _python_vs_native(config) -> dict:
    """The first ``python_steps`` steps of seed 0 at the feature alpha, driven from Python and in the C++ loop."""
    alpha, seed = config["alphas"][0], config["seeds"][0]
    split = common.dataset("stripe", config["p"], config["d"], seed=seed, p_test=config["p_test"])
    results = [train(common.network(config["d"], config["h"], seed), split.x, split.y, alpha=alpha,
                     tol=config["tol"], max_dout=config["max_dout"], max_steps=config["python_steps"], loop=loop,
                     record_weights=False) for loop in ("native", "python")]
    native, python = ({k: v.detach() for k, v in r.model.named_parameters()} for r in results)
    difference = max(float((native[k] - python[k]).abs().max() / python[k].abs().max()) for k in native)
    return {"python_vs_native_steps": config["python_steps"], "python_vs_native_rel_diff": difference,
            "python_vs_native_same_counts": results[0].counts == results[1].counts,
            "python_seconds": results[1].timings["total"], "native_seconds": results[0].timings["total"]}


def _feature_lazy_rule(config) -> dict:
    """feature_lazy's step rule (x1.1 / 10, max_dout 0.1, max_dgrad 1e-4, no waiver), at each alpha, seed 0."""
    summary = {}
    for alpha in config["alphas"]:
        seed = config["seeds"][0]
        split = common.dataset("stripe", config["p"], config["d"], seed=seed, p_test=config["p_test"])
        start = time.perf_counter()
        result = train(common.network(config["d"], config["h"], seed), split.x, split.y, alpha=alpha,
                       method="euler", max_dout=0.1, max_dgrad=1e-4, waive_below=0.0, **_caps(config, "_euler"),
                       record_weights=False)
        key = f"alpha{alpha:g}_feature_lazy_rule"
        summary.update({f"{key}_stop": result.stop_reason, f"{key}_unsatisfied": result.final.unsatisfied,
                        f"{key}_t": result.t, f"{key}_dt": result.dt, f"{key}_steps": result.step,
                        f"{key}_seconds": time.perf_counter() - start})
    return summary


def _plot(out: Path, config, curves) -> None:
    fig, axes = plotting.new_figure(len(config["alphas"]), 1, width=5.5, height=4.0)
    for ax, alpha in zip(axes[0], config["alphas"]):
        for (a, seed, tol), (t, unsatisfied) in curves.items():
            if a != alpha:
                continue
            style = "-" if tol == config["tol"] else ":"
            ax.step(np.maximum(t, t[1] if len(t) > 1 else 1), unsatisfied, style, where="post",
                    color=f"C{config['seeds'].index(seed)}", label=f"seed {seed}, tol {tol:g}")
        ax.set_xscale("log")
        ax.set_xlabel("flow time t")
        ax.set_ylabel("training points with margin < 1")
        ax.set_title(f"alpha = {alpha:g}: exact flow to zero hinge loss")
        ax.legend(fontsize=7)
    plotting.save_figure(fig, out, "unsatisfied.png")
