"""Two hidden layers on hierarchical data (seed 001): each mode's learning against the closed-form balanced depth-3
trajectory :func:`fastdyn.deep_linear.depth3_time` (tau da/dt = 3 a^{4/3} (s - a)), and the stages.

The net 8 -> 30 -> 30 -> n_features of ``deep-linear`` (Gaussian init gamma, flow by RK4) is trained; for every mode
a = u^T W v the times t10, t50, t90 at which it first reaches 10, 50, 90 % of s are measured and set beside the closed
form anchored at the measured 10 % point: t50 - t10 = depth3_time(s/2; a0 = s/10) and t90 - t10 likewise (the
shape of the sigmoid, not its start, which the non-balanced random init sets). The stages of the loss
(:func:`fastdyn.deep_linear.stages`) are counted against the number of modes.

Start times from a balanced small init: the nets with one and two hidden layers are also trained from
:func:`fastdyn.deep_linear.aligned_balanced_weights` (product U diag(a0) V^T, every mode at a0), where each mode
follows tau da/dt = D a^{2-2/D} (s - a) exactly, and the times at which every mode reaches 10 and 50 % of s are set
beside the closed form :func:`fastdyn.deep_linear.balanced_time` and its small-a0 limits: tau/(2s) ln(s/a0) for t50
at D = 2 (t_f adds tau/(2s) ln(f/(1 - f))), tau/(s a0^{1/3}) for any level at D = 3 (plus O(tau/s^{4/3})).
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
        "balanced_a0": 1e-6, "epochs_balanced": [100, 700],
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
    balanced, curves = _balanced(config, data, u, v, s, tau, log)
    np.savez_compressed(out / "balanced.npz", **curves)
    plotting.save_figure(plotting.deep_linear_balanced(curves, balanced, s), out, "balanced.png")
    summary = {"tau_epochs": tau, "stages": int(len(stage_times)),
               "stage_times": ", ".join(f"{t:.1f}" for t in stage_times),
               "t50_order": ", ".join(str(int(i) + 1) for i in np.argsort([r["t50"] for r in rows])),
               "rise_max_abs_rel_error": float(np.nanmax(np.abs(rel)))}
    for k, row in enumerate(rows):
        summary[f"mode {k + 1}"] = row
    summary.update(balanced)
    return summary


def _balanced(config: dict, data, u, v, s, tau, log) -> tuple[dict, dict]:
    """One and two hidden layers from the aligned balanced init at a0: per mode t10, t50 measured and closed form."""
    a0 = config["balanced_a0"]
    if not 0 < a0 < 0.1 * s.min():
        raise ValueError(f"balanced_a0 must be in (0, s_min / 10 = {0.1 * s.min():.3g}), got {a0!r}")
    summary, curves = {}, {}
    for n_layers, epochs in zip((2, 3), config["epochs_balanced"]):
        widths = [data.n_items] + [config["hidden"]] * (n_layers - 1) + [data.n_features]
        weights = dl.aligned_balanced_weights(widths, a0, u, v, np.random.default_rng(config["seed"]))
        run = dl.train(weights, data, lr=config["lr"], epochs=epochs, dt=1.0 / config["steps_per_epoch"],
                       method="rk4", u=u, v=v, feature=0)
        name = f"balanced, {n_layers - 1} hidden"
        rows = []
        for k, s_k in enumerate(s):
            row = {f"t{int(100 * f)}{kind}": value for f in (0.1, 0.5) for kind, value in (
                ("", dl.crossing_time(run.times, run.modes[:, k], f * s_k)),
                ("_closed_form", float(dl.balanced_time(f * s_k, s_k, a0, tau, n_layers))))}
            row["t_leading_order"] = float(tau / (2 * s_k) * np.log(s_k / a0) if n_layers == 2
                                                 else tau / (s_k * np.cbrt(a0)))
            rows.append(row)
            summary[f"{name}: mode {k + 1}"] = row
        stage_times = dl.stages(run.times, run.loss)
        errors = [abs(r[f"t{p}"] / r[f"t{p}_closed_form"] - 1) for r in rows for p in (10, 50)]
        summary[f"{name}: max rel error t10, t50"] = float(max(errors))
        summary[f"{name}: stages"] = int(len(stage_times))
        summary[f"{name}: stage times"] = ", ".join(f"{t:.1f}" for t in stage_times)
        curves.update({f"{n_layers}/times": run.times, f"{n_layers}/modes": run.modes, f"{n_layers}/loss": run.loss,
                       f"{n_layers}/stage_times": stage_times})
        log(f"  {name}: t10 {[round(r['t10'], 2) for r in rows]} (closed form "
            f"{[round(r['t10_closed_form'], 2) for r in rows]}), max rel error {max(errors):.2g}; "
            f"{len(stage_times)} stages")
    return summary, curves
