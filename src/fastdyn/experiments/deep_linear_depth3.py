"""Two hidden layers on hierarchical data (seed 001): each mode's learning against the closed-form balanced depth-3
trajectory :func:`fastdyn.deep_linear.depth3_time` (tau da/dt = 3 a^{4/3} (s - a)), and the stages.

The net 8 -> 30 -> 30 -> n_features of ``deep-linear`` (Gaussian init gamma, flow by RK4) is trained; for every mode
a = u^T W v the times t10, t50, t90 at which it first reaches 10, 50, 90 % of s are measured and set beside the closed
form anchored at the measured 10 % point: t50 - t10 = depth3_time(s/2; a0 = s/10) and t90 - t10 likewise (the
shape of the sigmoid, not its start, which the non-balanced random init sets). The stages of the loss
(:func:`fastdyn.deep_linear.stages`) are counted against the number of modes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting
from ..data.hierarchical import correlation_svd, hierarchical

DESCRIPTION = "two hidden layers: each mode's sigmoid against the closed-form balanced depth-3 trajectory, stages"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in seconds (2000 features, 2 steps per epoch)."""
    return {
        "depth": 3, "branching": 2, "n_features": 2000 if quick else 10_000, "flip": 0.15, "seed": 0,
        "hidden": 30, "lr": 45.0 if quick else 100.0, "gamma": 0.05, "epochs": 400,
        "steps_per_epoch": 2 if quick else 8,
    }


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    if not config["gamma"] > 0 or not config["epochs"] > 0 or config["steps_per_epoch"] < 1:
        raise ValueError("gamma, epochs and steps_per_epoch must be positive")
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    data = hierarchical(config["depth"], config["branching"], config["n_features"], config["flip"], config["seed"])
    u, s_yx, v = correlation_svd(data.inputs, data.targets)
    s = s_yx * data.n_items
    tau = data.n_items * data.n_features / (2.0 * config["lr"])
    widths = [data.n_items, config["hidden"], config["hidden"], data.n_features]
    run_ = dl.train(dl.init_weights(widths, config["gamma"], np.random.default_rng(config["seed"])), data,
                    lr=config["lr"], epochs=config["epochs"], dt=1.0 / config["steps_per_epoch"], method="rk4",
                    u=u, v=v, feature=0)
    rows = []
    for k, s_k in enumerate(s):
        t10, t50, t90 = (dl.crossing_time(run_.times, run_.modes[:, k], f * s_k) for f in (0.1, 0.5, 0.9))
        rows.append({"s": float(s_k), "t10": t10, "t50": t50, "t90": t90,
                     "rise_50_measured": t50 - t10, "rise_90_measured": t90 - t10,
                     "rise_50_predicted": float(dl.depth3_time(0.5 * s_k, s_k, 0.1 * s_k, tau)),
                     "rise_90_predicted": float(dl.depth3_time(0.9 * s_k, s_k, 0.1 * s_k, tau))})
    stage_times = dl.stages(run_.times, run_.loss)
    rel = np.array([[r["rise_50_measured"] / r["rise_50_predicted"] - 1, r["rise_90_measured"] / r["rise_90_predicted"]
                     - 1] for r in rows])
    log(f"deep-linear-depth3: {len(stage_times)} stages at {np.round(stage_times, 1)}; rise relative errors "
        f"{np.round(rel, 3).tolist()}")
    np.savez_compressed(out / "depth3.npz", times=run_.times, modes=run_.modes, loss=run_.loss, s=s,
                        tau=np.array(tau), stage_times=stage_times)
    plotting.save_figure(plotting.deep_linear_depth3(run_.times, run_.modes, run_.loss, s, tau, rows, stage_times),
                         out, "depth3.png")
    summary = {"tau_epochs": tau, "stages": int(len(stage_times)),
               "stage_times": ", ".join(f"{t:.1f}" for t in stage_times),
               "t50_order": ", ".join(str(int(i) + 1) for i in np.argsort([r["t50"] for r in rows])),
               "rise_max_abs_rel_error": float(np.nanmax(np.abs(rel)))}
    for k, row in enumerate(rows):
        summary[f"mode {k + 1}"] = row
    return summary
