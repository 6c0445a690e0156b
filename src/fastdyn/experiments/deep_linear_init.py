"""Initialisation and quantitative RSA in deep linear networks on hierarchical data (seed 001).

The set-up of ``deep-linear`` (:mod:`fastdyn.experiments.deep_linear`: 8 items of a binary tree, one-hot inputs,
mean squared error, flow by RK4 in epochs) with the three initialisations the seed names:

* ``small``: Gaussian weights of std gamma / sqrt(n_in + n_out), gamma = 1e-12 (two hidden layers: ``gamma_two_hidden``,
  since 1e-12 would need ~1e13 epochs there);
* ``orthogonal``: every layer gamma = 1 times a random semi-orthogonal matrix (:func:`fastdyn.deep_linear.
  orthogonal_weights`, "dynamic isometry": all singular values of every layer and of the product are 1);
* ``large``: Gaussian with gamma = 10.

For each init and number of hidden layers, ``n_seeds`` networks (different initial weights, same data) are trained.
Measured: the loss trajectory; the correlation (over off-diagonal entries, :func:`fastdyn.deep_linear.rsa_correlation`)
between the first hidden layer's similarity matrix H H^T and the tree's ideal similarity, the number of shared
ancestors (depth + 1 - tree distance), over training, against the balanced theory's final V S^{2/L} V^T (L
weight matrices); how nearly the retrainings agree (spread of that correlation
across seeds, correlation between the final RSMs of different seeds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting
from ..data.hierarchical import correlation_svd, hierarchical
from . import mean_std

DESCRIPTION = "deep linear nets on the tree: small / orthogonal (dynamic isometry) / large init, RSA over training, seeds"

INITS = ("small", "orthogonal", "large")


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in seconds (2000 features, one hidden layer, two seeds)."""
    return {
        "depth": 3, "branching": 2, "n_features": 2000 if quick else 10_000, "flip": 0.15, "seed": 0,
        "hidden": 30, "lr": 45.0 if quick else 100.0, "epochs": 250, "steps_per_epoch": 2 if quick else 4,
        "gamma_small": 1e-12, "gamma_orthogonal": 1.0, "gamma_large": 10.0,
        "hidden_layers": [1] if quick else [1, 2], "gamma_two_hidden": 0.05, "epochs_two_hidden": 400,
        # gamma = 10 with two hidden layers makes the flow stiff: RK4 at 4 steps per epoch blows up, 32 is stable
        "steps_per_epoch_two_hidden_large": 32,
        "n_seeds": 2 if quick else 5,
    }


def _check(config: dict) -> None:
    for key in ("gamma_small", "gamma_orthogonal", "gamma_large", "gamma_two_hidden", "lr"):
        if not config[key] > 0:
            raise ValueError(f"{key} must be > 0, got {config[key]!r}")
    if not config["hidden_layers"] or any(n not in (1, 2) for n in config["hidden_layers"]):
        raise ValueError(f"hidden_layers must be a non-empty list of 1 and/or 2, got {config['hidden_layers']!r}")
    if config["n_seeds"] < 2:
        raise ValueError(f"n_seeds must be >= 2 (the seed spread is measured), got {config['n_seeds']!r}")
    if config["epochs"] <= 0 or config["epochs_two_hidden"] <= 0 or min(
            config["steps_per_epoch"], config["steps_per_epoch_two_hidden_large"]) < 1:
        raise ValueError("epochs, epochs_two_hidden and the steps per epoch must be positive")


def _weights(init: str, widths: list[int], n_hidden: int, config: dict, rng) -> list[np.ndarray]:
    if init == "orthogonal":
        return dl.orthogonal_weights(widths, config["gamma_orthogonal"], rng)
    gamma = config["gamma_large"] if init == "large" else (
        config["gamma_small"] if n_hidden == 1 else config["gamma_two_hidden"])
    return dl.init_weights(widths, gamma, rng)


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    _check(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    data = hierarchical(config["depth"], config["branching"], config["n_features"], config["flip"], config["seed"])
    u, s_yx, v = correlation_svd(data.inputs, data.targets)
    ideal = data.depth + 1 - data.tree_distance()        # (P, P) number of shared ancestors
    upper = np.triu_indices(data.n_items, 1)

    curves, summary, arrays = {}, {}, {"ideal": ideal}
    for n_hidden in config["hidden_layers"]:
        widths = [data.n_items] + [config["hidden"]] * n_hidden + [data.n_features]
        epochs = config["epochs"] if n_hidden == 1 else config["epochs_two_hidden"]
        # balanced small-init theory: W_1 = R S^{1/L} V^T for L = n_hidden + 1 layers, so H H^T = V S^{2/L} V^T
        theory = float(dl.rsa_correlation((v * (s_yx * data.n_items) ** (1.0 / (n_hidden + 1)))[None], ideal)[0])
        for init in INITS:
            name = f"{n_hidden} hidden, {init}"
            dt = 1.0 / (config["steps_per_epoch_two_hidden_large"] if (n_hidden, init) == (2, "large")
                        else config["steps_per_epoch"])
            losses, rsa, finals = [], [], []
            for seed in range(config["n_seeds"]):
                rng = np.random.default_rng([config["seed"], n_hidden, INITS.index(init), seed])
                run_ = dl.train(_weights(init, widths, n_hidden, config, rng), data, lr=config["lr"], epochs=epochs,
                                dt=dt, method="rk4", u=u, v=v, feature=0)
                if not np.all(np.isfinite(run_.loss)):
                    raise RuntimeError(f"{name}, seed {seed}: RK4 at dt = {dt:g} epochs blew up; raise the steps "
                                       "per epoch")
                losses.append(run_.loss)
                rsa.append(dl.rsa_correlation(run_.hidden, ideal))
                finals.append(run_.hidden[-1] @ run_.hidden[-1].T)
            losses, rsa, finals = np.array(losses), np.array(rsa), np.array(finals)
            times = run_.times
            curves[name] = {"times": times, "loss": losses, "rsa": rsa, "final_rsm": finals[0]}
            key = name.replace(" ", "_").replace(",", "")
            arrays.update({f"{key}/times": times, f"{key}/loss": losses, f"{key}/rsa": rsa, f"{key}/final_rsm": finals})
            between = [np.corrcoef(finals[i][upper], finals[j][upper])[0, 1]
                       for i in range(len(finals)) for j in range(i + 1, len(finals))]
            final_rsa = mean_std(rsa[:, -1])
            summary[name] = {
                "final_loss": mean_std(losses[:, -1])[0], "initial_loss": mean_std(losses[:, 0])[0],
                "rsa_initial_mean": mean_std(rsa[:, 0])[0], "rsa_final_mean": final_rsa[0],
                "rsa_balanced_theory": theory,
                "rsa_final_sd": final_rsa[1], "rsa_max_sd_over_time": float(np.nanmax(rsa.std(axis=0))),
                "final_rsm_between_seeds_min_r": float(min(between)),
                "loss_max_relative_sd": float(np.max(losses.std(axis=0) / losses.mean(axis=0))),
            }
            log(f"deep-linear-init {name}: final loss {summary[name]['final_loss']:.3g}, RSA final "
                f"{final_rsa[0]:.4f} +- {final_rsa[1]:.1e}, between seeds r >= {min(between):.6f}")

    np.savez_compressed(out / "deep_linear_init.npz", **arrays)
    plotting.save_figure(plotting.deep_linear_init_curves(curves, config["hidden_layers"], INITS), out, "init_rsa.png")
    plotting.save_figure(plotting.deep_linear_init_rsms(curves, ideal, data.item_names, config["hidden_layers"], INITS),
                         out, "init_rsm.png")
    return summary
