"""Near-degenerate modes of a deep linear network: how far the learned modes are rotated away from the SVD's, against
the singular-value gap (seed 001; Saxe, McClelland & Ganguli 2014/2019 on degenerate singular values).

Theory (one hidden layer, :func:`fastdyn.deep_linear.coupled_strengths`): from small weights the product in the SVD
basis grows as e^{St/tau} w0 e^{St/tau}, w0 = G^T G (:func:`fastdyn.deep_linear.effective_w0`), and then follows the
balanced matrix Riccati flow exactly, Z = W^{-1} = E Z0 E + S^{-1}(I - E^2). For two modes i, j:
* exactly degenerate (s_i = s_j): S commutes with everything, the learned mode keeps the angle of w0's top
  eigenvector for ever (any rotation in the plane is a solution);
* near-degenerate: during the plateau the angle drifts on the slow time scale tau / (s_i - s_j), but the plateau
  lasts only ~ tau / (2s) ln(s / a0), so the mode is learned at nearly its initial angle; once learned,
  W_ij = -s_i s_j Z0_ij e^{-(s_i + s_j) t / tau} decays at the fast, gap-independent rate (s_i + s_j) / tau and the
  angle 1/2 atan(2 W_ij / (s_i - s_j)) falls below theta_c at t_c = tau / (s_i + s_j) ln(2 s_i s_j |Z0_ij| /
  ((s_i - s_j) tan 2 theta_c)) (:func:`fastdyn.deep_linear.resolution_time_estimate`): logarithmic in 1 / gap, not
  ~ tau / gap.
Two hidden layers: no closed form; linearised at W = S the off-diagonal decays at rate
K_ij / tau, K_ij = s_i^{4/3} + (s_i s_j)^{2/3} + s_j^{4/3} (the kernel of :func:`fastdyn.deep_linear.end_to_end_operator`).

Measured: (a) a 2-mode problem, M = diag(1, 1 - gap), tau = 1, from small Gaussian weights (h hidden units, one and
two hidden layers), several gaps and seeds (one initial draw per seed for all gaps): the angle
:func:`fastdyn.deep_linear.block_angle` over time, its resolution time (angle < theta_c for good) after the
learning time t* (top eigenvalue of the block at s/2), its late decay rate; (b) the hierarchical data of
``deep-linear`` (1 hidden layer, gamma = 1e-12): every mode against the decoupled logistic and the coupled closed
form, and the resolution times of the near-degenerate pairs.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import deep_linear as dl, plotting
from ..data.hierarchical import correlation_svd, hierarchical
from . import mean_std

DESCRIPTION = "near-degenerate modes: rotation of the learned modes against the singular-value gap, closed form"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in seconds (3 gaps, 2 seeds, 2000 features)."""
    return {
        "gaps": [0.1, 0.01, 0.001] if quick else [0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0],
        "seeds": 2 if quick else 5, "hidden_toy": 16, "gamma_toy": [1e-4, 0.05], "epochs_toy": [30.0, 80.0],
        "steps_per_epoch_toy": 50 if quick else 100, "threshold": 0.01,
        "depth": 3, "branching": 2, "n_features": 2000 if quick else 10_000, "flip": 0.15, "seed": 0,
        "hidden": 30, "lr": 45.0 if quick else 100.0, "gamma": 1e-12, "epochs": 250,
        "steps_per_epoch": 2 if quick else 8, "seeds_tree": 1 if quick else 3,
    }


def _toy_run(gap: float, n_layers: int, seed: int, config: dict) -> dl.Trajectory:
    """The 2-mode problem M = diag(1, 1 - gap) (inputs I_2, targets M^T, lr 2: tau = 1) from seed's Gaussian init."""
    s = np.array([1.0, 1.0 - gap])
    widths = [2] + [config["hidden_toy"]] * (n_layers - 1) + [2]
    weights = dl.init_weights(widths, config["gamma_toy"][n_layers - 2], np.random.default_rng(seed))
    eye = np.eye(2)
    return dl.train(weights, SimpleNamespace(inputs=eye, targets=np.diag(s)), lr=2.0,
                    epochs=config["epochs_toy"][n_layers - 2], dt=1.0 / config["steps_per_epoch_toy"],
                    method="rk4", u=eye, v=eye, feature=0)


def _learning_times(run: dl.Trajectory, s: float) -> tuple[float, float]:
    """First times (t1, t2) at which the top and the second eigenvalue of the 2 x 2 block (symmetric part) reach
    s/2: the first direction of the plane learned, and both."""
    eigenvalues = np.linalg.eigvalsh((run.mode_matrix + np.swapaxes(run.mode_matrix, 1, 2)) / 2)
    return dl.crossing_time(run.times, eigenvalues[:, 1], s / 2), dl.crossing_time(run.times, eigenvalues[:, 0], s / 2)


def _decay_rate(t: np.ndarray, angle: np.ndarray, t_from: float, low: float = 1e-7, high: float = 1e-3) -> float:
    """-d ln(angle)/dt fitted (least squares) where low < angle < high, after t_from and after the angle's last
    crossing of high (the late, linearised regime)."""
    start = np.flatnonzero(angle >= high)
    inside = ((np.arange(angle.size) > (start[-1] if start.size else -1)) & (t > t_from) & (angle > low)
              & (angle < high))
    if inside.sum() < 3:
        return float("nan")
    return float(-np.polyfit(t[inside], np.log(angle[inside]), 1)[0])


def _toy(config: dict, log) -> tuple[dict, dict]:
    summary, curves = {}, {}
    theta = config["threshold"]
    for n_layers in (2, 3):
        for gap in config["gaps"]:
            s = np.array([1.0, 1.0 - gap])
            rows = []
            for seed in range(config["seeds"]):
                run = _toy_run(gap, n_layers, seed, config)
                angle = dl.block_angle(run.mode_matrix, 0, 1)
                t1, t2 = _learning_times(run, s[1])
                row = {"t1": t1, "t2": t2, "stall": t2 - t1,
                       "angle_plateau": float(np.interp(t1 / 2, run.times, angle)),
                       "angle_at_t1": float(np.interp(t1, run.times, angle)),
                       "resolution": dl.resolution_time(run.times, angle, theta) - t2,
                       "decay_rate": _decay_rate(run.times, angle, t2)}
                if n_layers == 3:
                    middle = (run.times > t1 + (t2 - t1) / 4) & (run.times < t2 - (t2 - t1) / 4)
                    row["stall_rate"] = float(-np.polyfit(run.times[middle], np.log(np.tan(angle[middle])), 1)[0])
                    row["stall_rate_theory"] = gap
                if n_layers == 2:
                    w0 = dl.effective_w0(run.initial, np.eye(2), np.eye(2))
                    predicted = dl.block_angle(dl.coupled_strengths(run.times, s, w0, 1.0), 0, 1)
                    row["angle_at_t1_closed_form"] = float(np.interp(t1, run.times, predicted))
                    row["max_abs_angle_error"] = float(np.max(np.abs(angle - predicted)[run.times >= t1 / 2]))
                    row["resolution_closed_form"] = dl.resolution_time(run.times, predicted, theta) - t2
                    row["decay_rate_closed_form"] = _decay_rate(run.times, predicted, t2)
                    if gap > 0:
                        row["resolution_estimate"] = dl.resolution_time_estimate(
                            s[0], s[1], np.linalg.inv(w0)[0, 1], 1.0, theta) - t2
                        row["decay_rate_theory"] = float(s.sum())
                    if seed == 0:
                        curves[f"toy/2/{gap}/predicted"] = predicted
                elif gap > 0:
                    row["decay_rate_theory"] = float(s[0] ** (4 / 3) + (s[0] * s[1]) ** (2 / 3) + s[1] ** (4 / 3))
                if seed == 0:
                    curves[f"toy/{n_layers}/{gap}/times"] = run.times
                    curves[f"toy/{n_layers}/{gap}/angle"] = angle
                    curves[f"toy/{n_layers}/{gap}/t2"] = np.array(t2)
                rows.append(row)
            entry = {}
            for key in rows[0]:
                values = np.array([r[key] for r in rows], dtype=float)
                entry[key] = mean_std(values) if np.all(np.isfinite(values)) else [float(v) for v in values]
            summary[f"{n_layers - 1} hidden, gap {gap}"] = entry
            log(f"  {n_layers - 1} hidden, gap {gap}: stall {entry['stall']}, resolution after t2 {entry['resolution']}, "
                f"decay rate "
                f"{entry['decay_rate']}" + (f" (theory {entry['decay_rate_theory'][0]:.4f})"
                                            if "decay_rate_theory" in entry else ""))
    return summary, curves


def _tree(config: dict, log) -> tuple[dict, dict]:
    data = hierarchical(config["depth"], config["branching"], config["n_features"], config["flip"], config["seed"])
    u, s_yx, v = correlation_svd(data.inputs, data.targets)
    s = s_yx * data.n_items
    tau = data.n_items * data.n_features / (2.0 * config["lr"])
    pairs = [(k, k + 1) for k in range(len(s) - 1) if (s[k] - s[k + 1]) / s[k] < 0.03]
    theta = config["threshold"]
    per_seed, arrays = [], {}
    for seed in range(config["seeds_tree"]):
        weights = dl.init_weights([data.n_items, config["hidden"], data.n_features], config["gamma"],
                                  np.random.default_rng(seed))
        run = dl.train(weights, data, lr=config["lr"], epochs=config["epochs"], dt=1.0 / config["steps_per_epoch"],
                       method="rk4", u=u, v=v, feature=0)
        coupled = dl.coupled_strengths(run.times, s, dl.effective_w0(run.initial, u, v), tau)
        a0 = dl.effective_a0(run.initial, u, v)
        row = {}
        for k, s_k in enumerate(s):
            a = run.modes[:, k]
            row[f"mode {k + 1} rms decoupled"] = dl.window_error(run.times, a, dl.analytic_strength(
                run.times, s_k, a0[k], tau), s_k)
            row[f"mode {k + 1} rms coupled"] = dl.window_error(run.times, a, coupled[:, k, k], s_k)
        for i, j in pairs:
            measured = dl.block_angle(run.mode_matrix, i, j)
            predicted = dl.block_angle(coupled, i, j)
            row[f"pair {i + 1}-{j + 1} resolution"] = dl.resolution_time(run.times, measured, theta)
            row[f"pair {i + 1}-{j + 1} resolution closed form"] = dl.resolution_time(run.times, predicted, theta)
            if seed == 0:
                arrays[f"tree/{i + 1}-{j + 1}/angle"], arrays[f"tree/{i + 1}-{j + 1}/predicted"] = measured, predicted
        if seed == 0:
            arrays.update({"tree/times": run.times, "tree/modes": run.modes, "tree/coupled": np.diagonal(
                coupled, axis1=1, axis2=2), "tree/decoupled": np.stack([dl.analytic_strength(
                    run.times, s_k, a0[k], tau) for k, s_k in enumerate(s)], axis=1), "tree/s": s})
        per_seed.append(row)
    summary = {"s": [float(x) for x in s], "tau_epochs": tau,
               "near_degenerate_pairs": [f"{i + 1}-{j + 1}" for i, j in pairs]}
    for key in per_seed[0]:
        summary[key] = mean_std([r[key] for r in per_seed])
    worst = max(summary[f"mode {k + 1} rms coupled"][0] for k in range(len(s)))
    log(f"  tree: worst mode RMS error coupled {worst:.2e}, decoupled "
        f"{max(summary[f'mode {k + 1} rms decoupled'][0] for k in range(len(s))):.2e}")
    return summary, arrays


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    if not config["gaps"] or min(config["gaps"]) < 0 or max(config["gaps"]) >= 1:
        raise ValueError(f"gaps must be in [0, 1), got {config['gaps']!r}")
    if not 0 < config["threshold"] < np.pi / 4:
        raise ValueError(f"threshold must be in (0, pi/4), got {config['threshold']!r}")
    if config["seeds"] < 1 or config["seeds_tree"] < 1:
        raise ValueError(f"seeds and seeds_tree must be >= 1, got {config['seeds']!r}, {config['seeds_tree']!r}")
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    log("deep-linear-rotation: 2-mode problem")
    toy, curves = _toy(config, log)
    log("deep-linear-rotation: hierarchical data, one hidden layer")
    tree, arrays = _tree(config, log)
    toy.update({f"tree: {key}": value for key, value in tree.items()})
    np.savez_compressed(out / "rotation.npz", **curves, **arrays)
    plotting.save_figure(plotting.deep_linear_rotation(curves, toy, config["gaps"], config["threshold"]), out,
                         "rotation.png")
    plotting.save_figure(plotting.deep_linear_rotation_tree(arrays, toy, config["threshold"]), out,
                         "rotation_tree.png")
    return toy
