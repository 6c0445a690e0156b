"""Learning dynamics of deep linear networks on hierarchical data (seed 001; Saxe, McClelland & Ganguli 2019).

Set-up (science.md section 5): 8 items of a 3-level binary tree, features diffused down the tree with flip
probability 0.15, one-hot inputs; networks without bias 8 -> 30 -> n_features (one hidden layer), 8 -> 30 -> 30 ->
n_features (two) and 8 -> n_features (shallow), trained full batch on the mean squared error from Gaussian weights
of std gamma / sqrt(n_in + n_out). The flow, its exact reduced integration and the theory it is compared with
(mode strengths, half-learning and rise times, stages) are :mod:`fastdyn.deep_linear`; the published protocol
(plain gradient descent, lr 100, 250 epochs) is run beside the flow for comparison.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting
from ..data.hierarchical import correlation_svd, hierarchical

DESCRIPTION = "deep linear networks on hierarchical data: stage-like, sigmoidal mode learning (seed 001, Saxe et al.)"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in seconds (fewer features, coarser steps, no 2-hidden-layer net)."""
    return {
        "depth": 3, "branching": 2, "n_features": 2000 if quick else 10_000, "flip": 0.15, "seed": 0,
        "hidden": 30,
        # lr on the mean over all P * n_f squared errors. GD is stable for 2 s_1/tau < 2, i.e. lr < P n_f / (2 s_1)
        # (~256 for n_f = 10^4, s_1 ~ 156). Quick (n_f = 2000): lr 45 keeps s_1/tau, so the same learning times.
        "lr": 45.0 if quick else 100.0,
        "gammas": [1e-12, 1.0, 10.0],
        "epochs": 250,
        "steps_per_epoch": 2 if quick else 4,
        "gamma_two_hidden": 0.05,
        "epochs_two_hidden": 0 if quick else 400,
        "epochs_shallow": 1000 if quick else 2000,
        "gradient_descent": True,
    }


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    data = hierarchical(config["depth"], config["branching"], config["n_features"], config["flip"], config["seed"])
    u, s_yx, v = correlation_svd(data.inputs, data.targets)
    # One-hot inputs: Sigma_x = I/P, so the least-squares map M = Sigma_yx Sigma_x^-1 has singular values P s_yx.
    s = s_yx * data.n_items
    lr = float(config["lr"])
    tau = data.n_items * data.n_features / (2.0 * lr)
    dt = 1.0 / config["steps_per_epoch"]
    feature, exception = data.illusory_feature(level=1)
    rng = np.random.default_rng(config["seed"])
    widths = [data.n_items, config["hidden"], data.n_features]
    log(f"deep-linear: {data.n_items} items, {data.n_features} features, tau = {tau:g} epochs, s = {np.round(s, 1)}")

    runs: dict[str, dl.Trajectory] = {}
    for gamma in config["gammas"]:
        runs[f"gamma={gamma:g}"] = dl.train(dl.init_weights(widths, gamma, rng), data, lr=lr, epochs=config["epochs"],
                                            dt=dt, method="rk4", u=u, v=v, feature=feature)
        log(f"  one hidden layer, gamma={gamma:g}: final loss {runs[f'gamma={gamma:g}'].loss[-1]:.3g}")
    small = f"gamma={config['gammas'][0]:g}"
    if config["gradient_descent"]:
        runs["gd"] = dl.train(runs[small].initial, data, lr=lr, epochs=config["epochs"], dt=1.0, method="gd", u=u, v=v,
                              feature=feature)
    if config["epochs_two_hidden"] > 0:
        runs["two hidden"] = dl.train(dl.init_weights([widths[0], widths[1], widths[1], widths[2]],
                                                      config["gamma_two_hidden"], rng), data, lr=lr,
                                      epochs=config["epochs_two_hidden"], dt=dt, method="rk4", u=u, v=v,
                                      feature=feature)
    runs["shallow"] = dl.train(dl.init_weights([widths[0], widths[2]], config["gammas"][0], rng), data, lr=lr,
                               epochs=config["epochs_shallow"], dt=4 * dt, method="rk4", u=u, v=v, feature=feature)

    tables = {"one hidden": dl.mode_table(runs[small], s, u, v, tau, 2),
              "shallow": dl.mode_table(runs["shallow"], s, u, v, tau, 1)}
    if "two hidden" in runs:
        tables["two hidden"] = dl.mode_table(runs["two hidden"], s, u, v, tau, 3)
    stage_times = {name: dl.stages(r.times, r.loss) for name, r in runs.items()}

    _save_arrays(out, runs, s, u, v, tau)
    plotting.save_figure(plotting.deep_linear_modes(runs, s, tau, tables["one hidden"], small), out, "modes.png")
    plotting.save_figure(plotting.deep_linear_loss(runs, stage_times), out, "loss.png")
    plotting.save_figure(plotting.deep_linear_depth(runs, s, small), out, "depth.png")
    plotting.save_figure(plotting.deep_linear_rsm(runs, config["gammas"], data.item_names, stage_times[small],
                                                  config["epochs"]), out, "rsm.png")
    plotting.save_figure(plotting.deep_linear_illusory(runs, small, data, feature, exception, s, u, v, tau,
                                                       [row["a0"] for row in tables["one hidden"]]),
                         out, "illusory.png")
    plotting.save_figure(plotting.deep_linear_data(data, s, v), out, "data.png")

    summary = {
        "tau_epochs": tau, "lr": lr, "n_items": data.n_items, "n_features": data.n_features,
        "illusory_feature": feature, "illusory_item": data.item_names[exception],
        "illusory_peak": float(runs[small].feature[:, exception].max()),
        "illusory_final": float(runs[small].feature[-1, exception]),
        "illusory_shallow_max": float(runs["shallow"].feature[:, exception].max()),
        "stages": {name: len(times) for name, times in stage_times.items()},
        "stage_times": {name: ", ".join(f"{t:.1f}" for t in times) for name, times in stage_times.items()},
        "final_loss": {name: float(r.loss[-1]) for name, r in runs.items()},
    }
    for depth_name, rows in tables.items():
        for k, row in enumerate(rows):
            summary[f"{depth_name} mode {k + 1}"] = row
    if "gd" in runs:
        summary["gd_t_half"] = {f"mode {k + 1}": dl.crossing_time(runs["gd"].times, runs["gd"].modes[:, k], s_k / 2)
                                for k, s_k in enumerate(s)}
        summary["gd_t_half_predicted"] = {f"mode {k + 1}": float(dl.half_time_gd(s_k, row["a0"], tau))
                                          for k, (s_k, row) in enumerate(zip(s, tables["one hidden"]))}
    return summary


def _save_arrays(out: Path, runs: dict, s, u, v, tau) -> None:
    arrays = {"s": s, "v": v, "tau": np.array(tau)}
    for name, r in runs.items():
        key = name.replace(" ", "_").replace("=", "")
        keep = slice(None, None, max(1, len(r.times) // 500))   # at most ~500 samples per curve
        arrays.update({f"{key}/times": r.times[keep], f"{key}/loss": r.loss[keep], f"{key}/modes": r.modes[keep],
                       f"{key}/feature": r.feature[keep]})
    np.savez_compressed(out / "trajectories.npz", **arrays)
