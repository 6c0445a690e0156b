"""Shared pieces of the seed-002 experiments (feature vs lazy learning; science.md sections 1-4).

Data sets, the network, one training run with the alpha-trick, the compression ratio Lambda, kernel baselines on
the same split and power-law fits with an uncertainty. The experiment modules (``learning_curves``,
``compression``, ``ntk_pca``, ``intrinsic_dimension``, ``kinks``) are thin scripts over these and
:mod:`fastdyn.plotting`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import data
from ..data.digits import N_IMAGES
from ..kernel_methods import knn_error, svc_error
from ..models import OneHidden
from .. import ntk
from . import wall_limit

DATASETS = ("stripe", "sphere", "digits")

# Options of :func:`fit` every seed-002 configuration carries.
TRAINING_KEYS = ("max_steps", "max_wall", "max_dout", "max_dgrad")

# Wall-clock safety net of one training run in the full configurations (s); a run stopped by it is unconverged and
# counted in the summaries ("runs_stopped_by_wall"). Quick configurations have none: they stop by steps only, so
# their results do not depend on the machine's load.
FULL_MAX_WALL = 300.0


def shared_config(quick: bool, *, max_steps: int) -> dict:
    """The settings every seed-002 experiment carries: the two regimes' alpha, the training caps (``TRAINING_KEYS``;
    quick runs: 1000 steps and no wall-clock cap, full runs: ``max_steps`` and the ``FULL_MAX_WALL`` safety net)
    and one torch thread (fastest for these small runs)."""
    caps = {"max_steps": 1000, "max_wall": None} if quick else {"max_steps": max_steps, "max_wall": FULL_MAX_WALL}
    return {"alpha_feature": 0.01, "alpha_lazy": 1000.0, **caps, "max_dout": 0.5, "max_dgrad": 1.0, "threads": 1}


def dataset(name: str, p: int, d: int, *, seed: int, p_test: int) -> data.Split:
    """fp64 torch train/test split of "stripe", "sphere" (x ~ N(0, I_d)) or "digits" (d-PCA of sklearn's 8x8
    digits, even vs odd; p + p_test <= N_IMAGES = 1797, the test set is capped to what is left)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if name == "digits":
        return data.digits(p, d=d, task="parity", p_test=min(p_test, N_IMAGES - p), seed=seed, as_torch=True)
    return data.GENERATORS[name](p, d, p_test=p_test, seed=seed, as_torch=True)


def network(d: int, h: int, seed: int) -> OneHidden:
    """The seed's mean-field ReLU network, fp64, standard-normal weights drawn from ``seed``."""
    return OneHidden(d, h, dtype=torch.float64, generator=torch.Generator().manual_seed(int(seed)))


def fit(model: OneHidden, split: data.Split, alpha: float, config: dict, **train_options):
    """Hinge-loss gradient flow of ``model`` on ``split`` with the alpha-trick, stopped when every margin is met or
    at the caps of ``config`` (``TRAINING_KEYS``; ``max_wall`` None: no wall-clock cap). Returns
    :class:`fastdyn.TrainResult`."""
    from .. import train

    return train(model, split.x, split.y, x_test=split.x_test, y_test=split.y_test, alpha=float(alpha),
                 loss="hinge", dynamics="flow", max_steps=int(config["max_steps"]),
                 max_wall=wall_limit(config["max_wall"]),
                 max_dout=float(config["max_dout"]), max_dgrad=float(config["max_dgrad"]), **train_options)


def run_record(result) -> dict:
    """The scalars of a finished run worth keeping."""
    final = result.final
    return {"test_err": final.test_err, "train_err": final.train_err, "unsatisfied": final.unsatisfied,
            "stop_reason": result.stop_reason, "steps": result.step, "t": result.t,
            "seconds": round(result.timings["total"], 2)}


def stopped_by_wall(results) -> int:
    """How many of the runs ``results`` (TrainResults) stopped at the wall-clock safety net (unconverged)."""
    return sum(result.stop_reason == "wall" for result in results)


def compression(omega) -> float:
    """Lambda = RMS(omega_par) / RMS(||omega_perp||) over neurons, with x_par = x_1 the stripe's informative
    coordinate (seed 002; Paccolat et al. 2021). At initialisation Lambda ~ 1 / sqrt(d - 1)."""
    omega = torch.as_tensor(omega).detach().double()
    parallel = omega[:, 0].pow(2).mean().sqrt()
    perpendicular = omega[:, 1:].pow(2).sum(1).mean().sqrt()
    return float(parallel / perpendicular)


def lambda_theory(p) -> np.ndarray:
    """The paper's ODE estimate Lambda ~ sqrt(0.135 p) for the stripe model (science.md section 1, "(paper)")."""
    return np.sqrt(0.135 * np.asarray(p, dtype=float))


def beta_theory(d: int) -> dict:
    """Stripe-model learning-curve exponents (d_par = 1): lazy d/(3d-2), feature (2d-1)/(3d-2)."""
    return {"lazy": d / (3 * d - 2), "feature": (2 * d - 1) / (3 * d - 2)}


def ntk_svc_error(model: OneHidden, split: data.Split, *, C: float) -> float:
    """Test error of an SVC (hinge loss, the paper's choice) with the model's empirical NTK as precomputed kernel.

    The kernel is divided by the mean of its training diagonal so that ``C`` means the same thing for every
    network (the alpha^2 of the alpha-trick and the 1/h of the mean-field scale drop out); a large ``C`` is close
    to the hard margin that hinge-loss training to zero loss reaches."""
    K_train = ntk(model, split.x)
    K_test = ntk(model, split.x_test, split.x)
    scale = torch.diagonal(K_train).mean()
    return svc_error(K_train / scale, split.y, K_test / scale, split.y_test, C=C).test_error


def knn5_error(split: data.Split) -> float:
    """kNN (k = 5) on the raw inputs, the seed's baseline."""
    return knn_error(split.x, split.y, split.x_test, split.y_test, k=min(5, split.x.shape[0])).test_error


def power_law(p, errors, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit eps = A p^-beta to test errors ``errors`` (n_seeds, n_p) measured at training-set sizes ``p``.

    beta is the least-squares slope of log(mean over seeds eps) against log p, over the sizes where that mean is
    positive. ``beta_err`` is the bootstrap standard deviation over seeds (seeds resampled with replacement,
    ``n_boot`` times) when there are at least two seeds, else the slope's standard error from the fit residuals.
    Returns {"beta", "beta_err", "log_prefactor", "n_points"} (NaN when fewer than two usable sizes).
    """
    p = np.asarray(p, dtype=float)
    errors = np.atleast_2d(np.asarray(errors, dtype=float))

    def slope(mean):
        used = mean > 0
        if used.sum() < 2:
            return math.nan, math.nan, int(used.sum())
        coefficients = np.polyfit(np.log(p[used]), np.log(mean[used]), 1)
        return -coefficients[0], coefficients[1], int(used.sum())

    beta, log_prefactor, n_points = slope(errors.mean(0))
    if errors.shape[0] >= 2:
        rng = np.random.default_rng(seed)
        draws = [slope(errors[rng.integers(0, errors.shape[0], errors.shape[0])].mean(0))[0] for _ in range(n_boot)]
        draws = np.asarray(draws)
        beta_err = float(np.nanstd(draws)) if np.isfinite(draws).any() else math.nan
    elif n_points > 2:
        used = errors[0] > 0
        x, yv = np.log(p[used]), np.log(errors[0][used])
        residual = yv - (-beta * x + log_prefactor)
        beta_err = float(np.sqrt(residual @ residual / (n_points - 2) / ((x - x.mean()) @ (x - x.mean()))))
    else:
        beta_err = math.nan
    return {"beta": float(beta), "beta_err": beta_err, "log_prefactor": float(log_prefactor), "n_points": n_points}
