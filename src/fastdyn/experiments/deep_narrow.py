"""The deep narrow network of seed 001 (Neuromatch W1D2): the 1-D chain y = w_D ... w_1 x, x = 1, trained by plain
gradient descent on L = (s - w_D ... w_1)^2 / 2 from the balanced start w_i = c.

Measured (:func:`fastdyn.deep_linear.chain_descent`, all learning rates of a depth in one batch):

* steps to reach ``fraction`` of the initial loss against depth D at one fixed learning rate and at each depth's
  best learning rate (the minimum over a log grid), the best rate beside the stability bound
  :func:`fastdyn.deep_linear.chain_stability_bound` 2 / (D s^{2-2/D});
* the bound checked by simulation: from the minimum w_i = s^{1/D} perturbed by ``perturbation`` (relative, random),
  gradient descent at (1 -/+ ``bound_margin``) x the bound converges below it and does not above it (the balanced
  minimum is the flattest of the minima, so no minimum is stable above it);
* steps against the initial scale c at the fixed learning rate for a few depths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting

DESCRIPTION = "1-D deep chain y = w_D...w_1 x: training time and best lr against depth, stability bound, init scale"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in about a second (depths 1-4, short grids)."""
    return {
        "target": 2.0, "init": 0.5, "fraction": 0.01, "lr": 0.01,
        "depths": [1, 2, 3, 4] if quick else list(range(1, 11)),
        "lr_min": 1e-3, "lr_max": 2.0, "n_lr": 12 if quick else 60,
        "steps": 3000 if quick else 30_000,
        "bound_margin": 0.05, "perturbation": 0.01, "bound_steps": 2000 if quick else 20_000, "seed": 0,
        "init_scales": [0.1, 0.3, 0.5, 0.8, 1.0] if quick else list(np.round(np.geomspace(0.05, 1.2, 16), 4)),
        "init_depths": [1, 2, 4] if quick else [1, 2, 4, 8],
    }


def _check(config: dict) -> None:
    for key in ("target", "init", "lr", "lr_min", "lr_max", "bound_margin", "perturbation"):
        if not config[key] > 0:
            raise ValueError(f"{key} must be > 0, got {config[key]!r}")
    if not 0 < config["fraction"] < 1:
        raise ValueError(f"fraction must be in (0, 1), got {config['fraction']!r}")
    if config["lr_min"] >= config["lr_max"] or config["n_lr"] < 2:
        raise ValueError("need lr_min < lr_max and n_lr >= 2")
    if config["bound_margin"] >= 1:
        raise ValueError(f"bound_margin must be < 1, got {config['bound_margin']!r}")
    for key in ("depths", "init_depths"):
        if not config[key] or any(int(d) != d or d < 1 for d in config[key]):
            raise ValueError(f"{key} must be a non-empty list of integers >= 1, got {config[key]!r}")
    if not config["init_scales"] or min(config["init_scales"]) <= 0:
        raise ValueError("init_scales must be a non-empty list of positive scales")
    if config["steps"] < 1 or config["bound_steps"] < 1:
        raise ValueError("steps and bound_steps must be >= 1")


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    _check(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    s, c, fraction, steps = float(config["target"]), float(config["init"]), float(config["fraction"]), config["steps"]
    depths = np.array(config["depths"], dtype=int)
    lrs = np.geomspace(config["lr_min"], config["lr_max"], config["n_lr"])
    bounds = np.array([dl.chain_stability_bound(s, d) for d in depths])

    # steps against lr (n_depths, n_lr) and at the fixed lr (n_depths,)
    grid = np.array([dl.steps_to(dl.chain_descent(np.full((lrs.size, d), c), s, lrs, steps), fraction)
                     for d in depths])
    fixed = np.array([dl.steps_to(dl.chain_descent(np.full((1, d), c), s, config["lr"], steps), fraction)[0]
                      for d in depths])
    best = np.array([np.nanargmin(row) if np.isfinite(row).any() else -1 for row in grid])
    best_lr = np.where(best >= 0, lrs[best], np.nan)
    best_steps = np.array([row[k] if k >= 0 else np.nan for row, k in zip(grid, best)])
    log(f"deep-narrow: steps at lr {config['lr']:g}: {fixed}; best lr {np.round(best_lr, 4)}")

    # the stability bound by simulation: just below converges, just above does not
    rng = np.random.default_rng(config["seed"])
    margin = float(config["bound_margin"])
    bound_final = np.empty((depths.size, 2))
    for i, d in enumerate(depths):
        start = s ** (1.0 / d) * (1.0 + config["perturbation"] * rng.standard_normal((1, d)))
        losses = dl.chain_descent(np.repeat(start, 2, axis=0), s, bounds[i] * np.array([1 - margin, 1 + margin]),
                                  config["bound_steps"])
        bound_final[i] = losses[-1]
    converged_below = bound_final[:, 0] < 1e-20
    converged_above = bound_final[:, 1] < 1e-20

    # steps against the initial scale at the fixed lr
    scales = np.array(config["init_scales"], dtype=float)
    init_steps = np.array([dl.steps_to(dl.chain_descent(np.repeat(scales[:, None], d, axis=1), s, config["lr"],
                                                        steps), fraction) for d in config["init_depths"]])

    np.savez_compressed(out / "deep_narrow.npz", depths=depths, lrs=lrs, grid=grid, fixed=fixed, bounds=bounds,
                        bound_final=bound_final, scales=scales, init_depths=np.array(config["init_depths"]),
                        init_steps=init_steps)
    plotting.save_figure(plotting.deep_narrow_figure(depths, lrs, grid, fixed, config["lr"], best_lr, bounds,
                                                     bound_final, margin, scales, config["init_depths"], init_steps),
                         out, "deep_narrow.png")
    finite = np.isfinite(best_lr)
    return {
        "fixed_lr": float(config["lr"]),
        "steps_fixed_lr": {f"D={d}": float(v) for d, v in zip(depths, fixed)},
        "best_lr": {f"D={d}": float(v) for d, v in zip(depths, best_lr)},
        "steps_best_lr": {f"D={d}": float(v) for d, v in zip(depths, best_steps)},
        "stability_bound": {f"D={d}": float(v) for d, v in zip(depths, bounds)},
        "best_lr_over_bound": {f"D={d}": float(v) for d, v in zip(depths, best_lr / bounds)},
        "lr_grid_ratio": float(lrs[1] / lrs[0]),
        "log_best_lr_vs_log_bound_slope": float(np.polyfit(np.log(bounds[finite]), np.log(best_lr[finite]), 1)[0])
        if finite.sum() > 1 else float("nan"),
        "bound_converged_below": int(converged_below.sum()), "bound_converged_above": int(converged_above.sum()),
        "bound_depths": int(depths.size),
        "bound_final_loss_below_max": float(bound_final[:, 0].max()),
        "bound_final_loss_above_min": float(bound_final[:, 1].min()),
        "steps_vs_init": {f"D={d}": ", ".join(f"{c_:g}:{v:g}" for c_, v in zip(scales, row))
                          for d, row in zip(config["init_depths"], init_steps)},
    }
