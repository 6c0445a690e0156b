"""The empirical NTK converges to the analytic infinite-width kernel as the width grows, and stays put during
training at the NTK scale but not at the mean-field scale (Jacot, Gabriel & Hongler 2018; seed 003 "Kernels").

* data: a seed-002 set (``dataset``, ``d``, ``p``, ``p_test``, seed ``data_seed``), the same for every network;
* at init: for each width in ``hs_init`` and ``seeds_init`` networks (ReLU :class:`fastdyn.OneHidden`, NTK scale),
  the relative Frobenius error ||Theta_emp - Theta_inf||_F / ||Theta_inf||_F of the empirical NTK
  (:func:`fastdyn.ntk`, closed form) of the training inputs against :func:`fastdyn.kernels.onehidden_kernels`; the
  slope of its seed mean against h (expected -1/2: Theta_emp is a mean of h i.i.d. per-neuron terms whose
  expectation is Theta_inf). Monte Carlo check of that expectation on the first ``monte_carlo_points`` training
  points: the seed mean of Theta_emp against Theta_inf in units of its standard error per entry (the mean of z^2
  over entries is ~(seeds - 1) / (seeds - 3) when there is no bias; the entries share the neurons, so this mean
  scatters like a few draws, not like an average over many);
* during training: ``seeds`` networks per width in ``hs`` at both output scales, alpha = 1, trained on MSE by
  full-batch gradient descent (:func:`._kernel_regime.descend`, ``steps`` steps of ``lr_fraction`` p / lambda_max of
  the analytic kernel); ||Theta_t - Theta_0||_F / ||Theta_0||_F at every snapshot, its value at the end against h.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import ntk, plotting
from .._src import checks
from . import _kernel_regime as regime
from ._store import RunStore

DESCRIPTION = "issue 20: empirical NTK vs the analytic one against h (slope -1/2); its change in training, NTK vs mf"

FREE_KEYS = ("hs_init", "hs", "seeds_init", "seeds")  # change no run's record (RunStore)


def config(quick: bool) -> dict:
    sizes = ({"p": 48, "p_test": 128, "hs_init": [16, 256, 4096], "seeds_init": 4, "hs": [64, 1024], "seeds": 2,
              "steps": 200, "snapshots": 8} if quick else
             {"p": 128, "p_test": 500, "hs_init": [16, 64, 256, 1024, 4096, 16384, 65536], "seeds_init": 40,
              "hs": [64, 256, 1024, 4096, 16384], "seeds": 3, "steps": 2000, "snapshots": 15})
    return {"dataset": "stripe", "d": 5, "data_seed": 0, **sizes, "monte_carlo_points": 16, "lr_fraction": 0.2,
            "threads": 1}


def check_config(config: dict) -> None:
    regime.check_common(config)
    regime.check_widths(config, "hs_init")
    regime.check_widths(config, "hs")
    checks.integer("config 'seeds_init'", config["seeds_init"], minimum=4)
    if checks.integer("config 'monte_carlo_points'", config["monte_carlo_points"]) > config["p"]:
        raise ValueError(f"config 'monte_carlo_points' must be <= p ({config['p']}), got {config['monte_carlo_points']}")


def init_run(split, h: int, seed: int, points: int) -> dict:
    """The empirical NTK of one NTK-scaled network at init against the analytic kernel; its block of the first
    ``points`` training points (for the Monte Carlo mean)."""
    model = regime.network(split.x.shape[1], h, "ntk", seed)
    empirical = ntk(model, split.x)
    return {"relative_error": regime.relative_change(empirical, regime.analytic_ntk(split.x, "ntk", h)),
            "kernel_block": empirical[:points, :points].tolist()}


def training_run(config: dict, split, scale: str, h: int, seed: int) -> dict:
    """One network trained on MSE, alpha = 1: the relative change of its empirical NTK at every snapshot."""
    model = regime.network(int(config["d"]), h, scale, seed)
    start = ntk(model, split.x)
    lr = regime.learning_rate(split.x, scale, h, float(config["lr_fraction"]))
    change = {"ntk_change": lambda net, context: regime.relative_change(ntk(net, split.x), start)}
    result = regime.descend(model, split, alpha=1.0, loss="mse", lr=lr, steps=int(config["steps"]),
                            snapshots=int(config["snapshots"]), observables=change)
    history = result.history()
    return {"steps": history["step"].tolist(), "time": (history["step"] * float(config["lr_fraction"])).tolist(),
            "ntk_change": history["obs_ntk_change"].tolist(), "test_err": float(history["test_err"][-1]),
            "train_loss": float(history["train_loss"][-1]),
            "relative_weight_change": regime.relative_change(regime.parameter_vector(result.model),
                                                             regime.parameter_vector(model))}


def monte_carlo_z2(kernels: np.ndarray, analytic: np.ndarray) -> float:
    """Mean over the upper-triangle entries of z^2, z = (seed mean of ``kernels`` (seeds, N, N) - ``analytic``) /
    its standard error: ~1 when the empirical NTK is an unbiased estimate of the analytic one."""
    upper = np.triu_indices(analytic.shape[0])
    values = kernels[:, upper[0], upper[1]]
    z = (values.mean(0) - analytic[upper]) / (values.std(0, ddof=1) / np.sqrt(values.shape[0]))
    return float(np.mean(z ** 2))


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = regime.dataset(config)
    hs_init, hs, seeds = config["hs_init"], config["hs"], int(config["seeds"])
    errors = np.empty((int(config["seeds_init"]), len(hs_init)))
    z2, points = [], int(config["monte_carlo_points"])
    for i, h in enumerate(hs_init):
        records = [store.get({"stage": "init", "h": h, "seed": seed}, lambda: init_run(split, h, seed, points))
                   for seed in range(int(config["seeds_init"]))]
        errors[:, i] = [r["relative_error"] for r in records]
        z2.append(monte_carlo_z2(np.array([r["kernel_block"] for r in records]),
                                 regime.analytic_ntk(split.x[:points], "ntk", h).numpy()))
        log(f"ntk-convergence: init h={h}: relative error {errors[:, i].mean():.3g}, Monte Carlo mean z^2 {z2[-1]:.2f}")
    training = {scale: [[store.get({"stage": "train", "scale": scale, "h": h, "seed": seed},
                                   lambda: training_run(config, split, scale, h, seed)) for seed in range(seeds)]
                        for h in hs] for scale in regime.SCALES}
    for scale, rows in training.items():
        for h, row in zip(hs, rows):
            log(f"ntk-convergence: {scale} h={h}: NTK change {np.mean([r['ntk_change'][-1] for r in row]):.3g}")
    final_change = {scale: np.array([[r["ntk_change"][-1] for r in row] for row in rows]).T  # (seeds, n_h)
                    for scale, rows in training.items()}

    init_fit = regime.width_slope(hs_init, errors)
    analytic = regime.analytic_ntk(split.x, "ntk", hs_init[0]).numpy()
    summary: dict = {"runs_reused_from_records": store.reused, "p": int(config["p"]),
                     "init_error_slope": init_fit["slope"], "init_error_slope_err": init_fit["slope_err"],
                     "init_error_slope_theory": -0.5, "init_error_local_slopes": init_fit["local_slopes"],
                     "init_error": {f"h{h}": regime.mean_sd(errors[:, i]) for i, h in enumerate(hs_init)},
                     "monte_carlo_mean_z2": {f"h{h}": value for h, value in zip(hs_init, z2)},
                     "monte_carlo_mean_z2_expected": (int(config["seeds_init"]) - 1) / (int(config["seeds_init"]) - 3),
                     "analytic_symmetric": bool(np.array_equal(analytic, analytic.T)),
                     "analytic_min_eigenvalue_over_max": float(np.linalg.eigvalsh(analytic)[0]
                                                               / np.linalg.eigvalsh(analytic)[-1]),
                     "final_time": float(config["lr_fraction"]) * int(config["steps"])}
    for scale, rows in training.items():
        fit = regime.width_slope(hs, final_change[scale])
        summary[f"{scale}_change_slope"], summary[f"{scale}_change_slope_err"] = fit["slope"], fit["slope_err"]
        summary[f"{scale}_change_local_slopes"] = fit["local_slopes"]
        summary[f"{scale}_change"] = {f"h{h}": regime.mean_sd(final_change[scale][:, i]) for i, h in enumerate(hs)}
        for key in ("test_err", "train_loss", "relative_weight_change"):
            summary[f"{scale}_{key}"] = {f"h{h}": regime.mean_sd([r[key] for r in row]) for h, row in zip(hs, rows)}

    np.savez(out / "ntk_convergence.npz", hs_init=np.asarray(hs_init), init_error=errors, hs=np.asarray(hs),
             time=np.asarray(training["ntk"][0][0]["time"]),
             **{f"{scale}_change": np.array([[r["ntk_change"] for r in row] for row in rows])  # (h, seed, T)
                for scale, rows in training.items()})
    (out / "training.json").write_text(json.dumps({scale: {f"h{h}": row for h, row in zip(hs, rows)}
                                                   for scale, rows in training.items()}, indent=1))
    curves = {scale: np.array([[r["ntk_change"] for r in row] for row in rows]) for scale, rows in training.items()}
    plotting.save_figure(plotting.ntk_convergence_figure(hs_init, errors, hs, np.asarray(training["ntk"][0][0]["time"]),
                                                         curves, summary), out, "ntk_convergence.png")
    summary["figures"] = ["ntk_convergence.png"]
    return summary

