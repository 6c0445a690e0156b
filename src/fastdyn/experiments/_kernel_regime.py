"""Shared pieces of the kernel-regime experiments of issue 20 (``lazy-is-kernel``, ``ntk-convergence``,
``mean-field-vs-ntk``): the seed's OneHidden at either output scale, the time unit from the analytic kernel,
full-batch gradient descent with :func:`fastdyn.train`, and slopes against the width.

Time: full-batch gradient descent with step ``lr`` on L = (1 / (p alpha^2)) sum l(F), F = alpha (f - f0), moves the
outputs by dF = -(lr / p) Theta l'(F) to first order (:mod:`fastdyn._src.train`), the convention of
:mod:`fastdyn.predict`. ``lr = lr_fraction * p / lambda_max`` with lambda_max the top eigenvalue of the analytic
infinite-width NTK of the training inputs (:func:`fastdyn.kernels.onehidden_kernels`; 1/h of the NTK-scaled one for
the mean-field scale): the same step in kernel units for every width, seed and scale, so time in units of
p / lambda_max is ``lr_fraction * step``.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import data, train
from .._src import checks
from ..kernels import onehidden_kernels
from ..models import OneHidden
from . import _seed002 as common
from .specialisation import snapshot_steps

SCALES = ("ntk", "mf")


def check_positive_integers(config: dict, keys) -> None:
    for key in keys:
        checks.integer(f"config {key!r}", config[key])


def check_widths(config: dict, key: str) -> list[int]:
    """The increasing list of at least two positive widths ``config[key]``; ValueError naming the key."""
    widths = config[key]
    if (not isinstance(widths, list) or len(widths) < 2 or any(isinstance(h, bool) or not isinstance(h, int)
                                                                 or h < 1 for h in widths)
            or widths != sorted(set(widths))):
        raise ValueError(f"config {key!r} must be an increasing list of at least two positive integers, got {widths}")
    return widths


def check_common(config: dict) -> None:
    """The keys every kernel-regime experiment has; ValueError or TypeError naming the key."""
    if config["dataset"] not in ("stripe", "sphere"):
        raise ValueError(f"config 'dataset' must be 'stripe' or 'sphere', got {config['dataset']!r}")
    check_positive_integers(config, ("d", "p", "p_test", "steps", "snapshots", "seeds"))
    checks.integer("config 'data_seed'", config["data_seed"], minimum=0)
    fraction = checks.real("config 'lr_fraction'", config["lr_fraction"])
    if fraction >= 1:  # gradient descent on the top kernel mode is stable below 2; keep well inside
        raise ValueError(f"config 'lr_fraction' must be in (0, 1), got {fraction}")


def dataset(config: dict) -> data.Split:
    """The fp64 train/test split every network of an experiment learns (seed ``data_seed``)."""
    return common.dataset(config["dataset"], int(config["p"]), int(config["d"]), seed=int(config["data_seed"]),
                          p_test=int(config["p_test"]))


def network(d: int, h: int, scale: str, seed: int) -> OneHidden:
    """fp64 ReLU OneHidden with standard-normal weights drawn from ``seed``, output scale 1/h ("mf") or
    1/sqrt(h) ("ntk")."""
    return OneHidden(d, h, scale=scale, dtype=torch.float64, generator=torch.Generator().manual_seed(int(seed)))


def analytic_ntk(x: torch.Tensor, scale: str, h: int, x2: torch.Tensor | None = None) -> torch.Tensor:
    """The infinite-width NTK of OneHidden at ``scale`` between x (N1, d) and x2 (N2, d) (None: x)."""
    return onehidden_kernels(x, x2, scale=scale, h=h if scale == "mf" else None).ntk


def learning_rate(x: torch.Tensor, scale: str, h: int, fraction: float) -> float:
    """``fraction * p / lambda_max`` of the analytic NTK of the training inputs x (p, d) (module docstring)."""
    return float(fraction) * x.shape[0] / float(torch.linalg.eigvalsh(analytic_ntk(x, scale, h))[-1])


def descend(model, split: data.Split, *, alpha: float, loss: str, lr: float, steps: int, snapshots: int,
            observables=None):
    """Full-batch gradient descent (``fastdyn.train``, dynamics "sgd" with the full batch) for ``steps`` steps of
    size ``lr`` with the alpha-trick, snapshots at step 0 and about ``snapshots`` log-spaced steps (exactly: t is a
    multiple of lr). Hinge runs stop earlier once every margin is met. Returns :class:`fastdyn.TrainResult`."""
    times = snapshot_steps(int(steps), int(snapshots))[1:] * float(lr)
    return train(model, split.x, split.y, x_test=split.x_test, y_test=split.y_test, alpha=float(alpha), loss=loss,
                 dynamics="sgd", lr=float(lr), batch_size=None, max_steps=int(steps), snapshot_times=times,
                 record_weights=False, observables=observables)


def relative_change(after, before) -> float:
    """||after - before|| / ||before|| (Frobenius) of two arrays or tensors of one shape."""
    after, before = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    return float(np.linalg.norm(after - before) / np.linalg.norm(before))


def parameter_vector(model) -> np.ndarray:
    """All parameters of ``model`` in one flat float64 vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().numpy()


def width_slope(widths, values) -> dict:
    """Slope of log(seed mean of ``values`` (seeds, n_widths)) against log h and its bootstrap error over seeds
    (:func:`_seed002.power_law`, whose beta is minus this slope): {"slope", "slope_err", "local_slopes"}."""
    fit = common.power_law(np.asarray(widths, dtype=float), np.asarray(values, dtype=float), seed=0)
    return {"slope": -fit["beta"], "slope_err": fit["beta_err"], "local_slopes": [-s for s in fit["local_slopes"]]}


def mean_sd(values) -> tuple[float, float]:
    """(mean, standard deviation over seeds, ddof 1; NaN with one seed) of ``values``."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")
