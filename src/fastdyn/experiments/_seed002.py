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

# The regimes' alpha on their plateaus at h ~ 100 (results/alpha-sweep: the crossover alpha* is near 1-100 there):
# feature four decades below it, lazy where the test error and Lambda no longer change. The experiments that train
# to convergence use these; the older ones keep shared_config's 0.01 / 1000.
PLATEAU_ALPHAS = {"alpha_feature": 1e-4, "alpha_lazy": 1e3}
# Their wall-clock safety net per run (s): the slowest converged run of results/learning-curves took ~250 s.
CONVERGED_MAX_WALL = 1200.0


def shared_config(quick: bool, *, max_steps: int, converged: bool = False) -> dict:
    """The settings every seed-002 experiment carries: the two regimes' alpha, the training caps (``TRAINING_KEYS``;
    quick runs: 1000 steps and no wall-clock cap, full runs: ``max_steps`` and a wall-clock safety net) and one
    torch thread (fastest for these small runs). ``converged``: the experiments that train every run to zero hinge
    loss: ``PLATEAU_ALPHAS`` and the ``CONVERGED_MAX_WALL`` safety net (else alpha 0.01 / 1000, ``FULL_MAX_WALL``)."""
    alphas = PLATEAU_ALPHAS if converged else {"alpha_feature": 0.01, "alpha_lazy": 1000.0}
    wall = CONVERGED_MAX_WALL if converged else FULL_MAX_WALL
    caps = {"max_steps": 1000, "max_wall": None} if quick else {"max_steps": max_steps, "max_wall": wall}
    return {**alphas, **caps, "max_dout": 0.5, "max_dgrad": 1.0, "threads": 1}


def dataset(name: str, p: int, d: int, *, seed: int, p_test: int, device=None) -> data.Split:
    """fp64 torch train/test split of "stripe", "sphere" (x ~ N(0, I_d)) or "digits" (d-PCA of sklearn's 8x8
    digits, even vs odd; p + p_test <= N_IMAGES = 1797, the test set is capped to what is left), on ``device``."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if name == "digits":
        return data.digits(p, d=d, task="parity", p_test=min(p_test, N_IMAGES - p), seed=seed, as_torch=True,
                           device=device)
    return data.GENERATORS[name](p, d, p_test=p_test, seed=seed, as_torch=True, device=device)


def network(d: int, h: int, seed: int, device=None) -> OneHidden:
    """The seed's mean-field ReLU network, fp64, standard-normal weights drawn from ``seed`` (on the CPU, then
    moved to ``device``: the same weights on every device)."""
    model = OneHidden(d, h, dtype=torch.float64, generator=torch.Generator().manual_seed(int(seed)))
    return model if device is None else model.to(device)


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
            "converged": result.converged, "stop_reason": result.stop_reason, "steps": result.step, "t": result.t,
            "seconds": round(result.timings["total"], 2)}


def convergence(records) -> dict:
    """{"converged_fraction": the fraction of the runs that reached their goal (every margin >= 1),
    "runs_stopped_by_wall": how many stopped at the wall-clock safety net (unconverged)} over ``records``
    (:func:`run_record` dicts)."""
    return {"converged_fraction": float(np.mean([record["converged"] for record in records])),
            "runs_stopped_by_wall": sum(record["stop_reason"] == "wall" for record in records)}


def variance_of_mean(errors, n_test) -> np.ndarray:
    """Variance of the seed mean of test errors ``errors`` (seeds, ...) measured on ``n_test`` test points: the
    seed spread (ddof 1) plus the binomial noise eps (1 - eps) / n_test, both over the number of seeds; NaN with
    one seed."""
    errors = np.asarray(errors, dtype=float)
    seeds = errors.shape[0]
    if seeds < 2:
        return np.full(errors.shape[1:], np.nan)
    mean = errors.mean(0)
    return errors.var(0, ddof=1) / seeds + mean * (1 - mean) / n_test / seeds


def compression_norm(omega) -> float:
    """Lambda_norm = RMS_n(omega_n1) / RMS_n(||omega_n,perp||), x_1 the stripe's informative coordinate: the
    parallel weight against the norm of the d - 1 perpendicular ones. At initialisation 1 / sqrt(d - 1)."""
    omega = torch.as_tensor(omega).detach().double()
    parallel = omega[:, 0].pow(2).mean().sqrt()
    perpendicular = omega[:, 1:].pow(2).sum(1).mean().sqrt()
    return float(parallel / perpendicular)


def compression_coordinate(omega) -> float:
    """Lambda_coord = RMS_n(omega_n1) / mean_{j>1} RMS_n(omega_nj): the parallel weight against one perpendicular
    coordinate's (feature_lazy's ``state["w"]``, the ratio its authors use to stretch x_perp, main.py). At
    initialisation 1; for isotropic perpendicular weights Lambda_coord = sqrt(d - 1) Lambda_norm."""
    omega = torch.as_tensor(omega).detach().double()
    rms = omega.pow(2).mean(0).sqrt()
    return float(rms[0] / rms[1:].mean())


def lambda_theory(p) -> np.ndarray:
    """The paper's ODE estimate Lambda ~ sqrt(0.135 p) for the stripe model (science.md section 1, "(paper)"), a
    compression factor that is 1 without compression: compare it with :func:`compression_coordinate`."""
    return np.sqrt(0.135 * np.asarray(p, dtype=float))


def beta_theory(d: int) -> dict:
    """Learning-curve exponents of Paccolat et al. 2021 for a regular boundary in d dimensions: lazy d/(3d-2);
    feature (2d-1)/(3d-2) for the stripe (d_par = 1; the sphere has nothing to compress, d_par = d)."""
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


def power_law(p, errors, *, n_test=None, p_min: float = 0, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit eps = A p^-beta to values ``errors`` (n_seeds, n_p) measured at sizes ``p``, over the sizes >= ``p_min``.

    beta is the least-squares slope of log(mean over seeds) against log p, over the sizes in range where that mean
    is positive. ``beta_err``: with at least two seeds, the standard deviation of beta over ``n_boot`` bootstrap
    draws that resample the seeds independently at each p and, when ``n_test`` (test-set sizes, scalar or (n_p,))
    is given, redraw each test error from Binomial(n_test, eps) / n_test (the finite test set's noise); with one
    seed, the slope's standard error from the fit residuals. ``local_slopes``: -d log(mean) / d log p between
    consecutive sizes (all sizes), to judge where one power law holds.
    Returns {"beta", "beta_err", "log_prefactor", "n_points", "p_min", "local_slopes"} (NaN when fewer than two
    usable sizes).
    """
    p = np.asarray(p, dtype=float)
    errors = np.atleast_2d(np.asarray(errors, dtype=float))
    in_range = p >= p_min

    def slope(mean):
        used = in_range & (mean > 0)
        if used.sum() < 2:
            return math.nan, math.nan, int(used.sum())
        coefficients = np.polyfit(np.log(p[used]), np.log(mean[used]), 1)
        return -coefficients[0], coefficients[1], int(used.sum())

    mean = np.nanmean(errors, 0)
    beta, log_prefactor, n_points = slope(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        local = -np.diff(np.log(mean)) / np.diff(np.log(p))
    n_seeds = errors.shape[0]
    if n_seeds >= 2:
        rng = np.random.default_rng(seed)
        draws = np.empty(n_boot)
        tests = None if n_test is None else np.broadcast_to(np.asarray(n_test, dtype=np.int64), p.shape)
        for k in range(n_boot):
            resampled = errors[rng.integers(0, n_seeds, (n_seeds, p.size)), np.arange(p.size)]
            if tests is not None:
                finite = np.isfinite(resampled)
                noisy = rng.binomial(tests, np.clip(np.where(finite, resampled, 0), 0, 1)) / tests
                resampled = np.where(finite, noisy, np.nan)
            draws[k] = slope(np.nanmean(resampled, 0))[0]
        beta_err = float(np.nanstd(draws)) if np.isfinite(draws).any() else math.nan
    elif n_points > 2:
        used = in_range & (errors[0] > 0)
        x, yv = np.log(p[used]), np.log(errors[0][used])
        residual = yv - (-beta * x + log_prefactor)
        beta_err = float(np.sqrt(residual @ residual / (n_points - 2) / ((x - x.mean()) @ (x - x.mean()))))
    else:
        beta_err = math.nan
    return {"beta": float(beta), "beta_err": beta_err, "log_prefactor": float(log_prefactor), "n_points": n_points,
            "p_min": float(p_min), "local_slopes": [float(v) for v in local]}
