"""Linear models, simulated (seed 000): gradient descent and SGD on least squares and where they converge, ridge and
minimum-norm fits, random ReLU features. fp64 numpy; the closed forms they are compared with are
:mod:`fastdyn.theory`.

Least squares: X (n, d), y (n,), loss L(w) = 1/2 ||X w - y||^2. Gradient descent is the seed's update
w <- w - eta X^T (X w - y); SGD takes one row at a time, w <- w - eta x_i (<x_i, w> - y_i), rows in a fresh random
order each epoch. Each update adds a multiple of rows of X, so w_t - w_0 stays in the row space of X, and with
d > n (an interpolating problem) both converge to the interpolant nearest w_0:
    w_inf = pinv(X) y + (I - P_row) w_0,
which from w_0 = 0 is the minimum-norm interpolant pinv(X) y (:func:`interpolant`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._src import checks

__all__ = ["DescentPath", "row_space_basis", "interpolant", "descent", "stability_bound", "ridge_fit",
           "min_norm_fit", "sphere_weights", "relu_features", "correlated_design"]


def _problem(X, y) -> tuple[np.ndarray, np.ndarray]:
    X, y = checks.array("X", X, ndim=2), checks.array("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have one entry per row of X ({X.shape[0]}), got {y.shape[0]}")
    return X, y


def row_space_basis(X, rtol: float = 1e-12) -> np.ndarray:
    """(d, r) orthonormal basis of the row space of X (n, d), r = numerical rank (singular values > rtol s_1)."""
    _, s, vt = np.linalg.svd(checks.array("X", X, ndim=2), full_matrices=False)
    return vt[s > rtol * s[0]].T


def interpolant(X, y, w0=None) -> np.ndarray:
    """(d,) pinv(X) y + (I - P_row) w0: the least-squares solution nearest w0 (w0=None: the minimum-norm one),
    where gradient descent and SGD from w0 converge."""
    X, y = _problem(X, y)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    if w0 is None:
        return w
    w0 = checks.array("w0", w0, ndim=1)
    basis = row_space_basis(X)
    return w + w0 - basis @ (basis.T @ w0)


def stability_bound(X, method: str = "gd") -> float:
    """The largest stable eta: 2 / lambda_1(X^T X) for gradient descent, 2 / max_i ||x_i||^2 for SGD (each update
    then moves w towards the hyperplane <x_i, w> = y_i without overshooting it by more than its distance)."""
    X = checks.array("X", X, ndim=2)
    if method == "gd":
        return 2.0 / np.linalg.norm(X, 2) ** 2
    if method == "sgd":
        return 2.0 / float(np.max(np.einsum("ij,ij->i", X, X)))
    raise ValueError(f"method must be 'gd' or 'sgd', got {method!r}")


@dataclass
class DescentPath:
    """What :func:`descent` recorded, T = number of records.

    steps (T,) update counts; distance (T,) ||w_t - target|| / ||target||; off_row_space (T,)
    ||(I - P_row)(w_t - w_0)|| / max(||w_t - w_0||, tiny): 0 to rounding in exact arithmetic; loss (T,)
    1/2 ||X w_t - y||^2; w (d,) the last iterate; diverged_at: the step at which ||w_t|| passed 1e100 (None if it
    did not); eta, bound: the step size and :func:`stability_bound`.
    """

    steps: np.ndarray
    distance: np.ndarray
    off_row_space: np.ndarray
    loss: np.ndarray
    w: np.ndarray
    diverged_at: int | None
    eta: float
    bound: float


def descent(X, y, *, eta: float, steps: int, method: str = "gd", w0=None, target=None, seed: int = 0,
            record_every: int = 1, tol: float = 0.0) -> DescentPath:
    """Gradient descent (``method="gd"``) or single-row SGD (``"sgd"``) on 1/2 ||X w - y||^2 from w0 (default 0).

    X (n, d), y (n,), w0 (d,); ``target`` (d,): what the distance is measured to (default :func:`interpolant` of
    w0). Records every ``record_every`` updates; stops after ``steps`` updates, when the distance falls below
    ``tol``, or when the iterate diverges (eta above :func:`stability_bound` warns, then the divergence is
    recorded, not raised).
    """
    X, y = _problem(X, y)
    n, d = X.shape
    eta = checks.real("eta", eta)
    steps, record_every = checks.integer("steps", steps), checks.integer("record_every", record_every)
    bound = stability_bound(X, method)
    if eta >= bound:
        warnings.warn(f"eta={eta:g} is at or above the stability bound {bound:g} of {method}: the iterates diverge",
                      RuntimeWarning, stacklevel=2)
    w = np.zeros(d) if w0 is None else checks.array("w0", w0, ndim=1).copy()
    if w.shape != (d,):
        raise ValueError(f"w0 must have shape ({d},), got {w.shape}")
    start = w.copy()
    if target is None:
        target = interpolant(X, y, None if w0 is None else start)
    target = checks.array("target", target, ndim=1)
    basis = row_space_basis(X)
    scale = max(np.linalg.norm(target), np.finfo(float).tiny)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    records: list[tuple[int, float, float, float]] = []

    def record(step: int) -> float:
        moved = w - start
        off = moved - basis @ (basis.T @ moved)
        distance = float(np.linalg.norm(w - target)) / scale
        records.append((step, distance, float(np.linalg.norm(off)) / max(np.linalg.norm(moved), 1e-300),
                        0.5 * float(np.sum((X @ w - y) ** 2))))
        return distance

    record(0)
    diverged_at = None
    for step in range(1, steps + 1):
        if method == "gd":
            w -= eta * (X.T @ (X @ w - y))
        else:
            position = (step - 1) % n
            if position == 0 and step > 1:
                order = rng.permutation(n)
            row = X[order[position]]
            w -= (eta * (row @ w - y[order[position]])) * row
        last = step == steps
        if step % record_every == 0 or last:
            if not np.all(np.isfinite(w)) or np.linalg.norm(w) > 1e100:
                diverged_at = step
                break
            if record(step) <= tol:
                break
    steps_, distance, off, loss = (np.array(column) for column in zip(*records))
    return DescentPath(steps_.astype(int), distance, off, loss, w, diverged_at, eta, bound)


# ------------------------------------------------------------------------------------------------ fits
def ridge_fit(X, y, ridge: float) -> np.ndarray:
    """(d,) (X^T X / n + ridge I)^-1 X^T y / n, the normalisation of :func:`fastdyn.theory.ridge_risk`
    (ridge = 0: :func:`min_norm_fit`). Solved through the smaller of the two Gram matrices."""
    X, y = _problem(X, y)
    ridge = checks.real("ridge", ridge, strict=False)
    if ridge == 0:
        return min_norm_fit(X, y)
    n, d = X.shape
    if d <= n:
        return np.linalg.solve(X.T @ X / n + ridge * np.eye(d), X.T @ y / n)
    return X.T @ np.linalg.solve(X @ X.T / n + ridge * np.eye(n), y / n)   # push-through identity


def min_norm_fit(X, y) -> np.ndarray:
    """(d,) pinv(X) y: least squares for d < n, the minimum-norm interpolant for d > n (LAPACK gelsd)."""
    X, y = _problem(X, y)
    return np.linalg.lstsq(X, y, rcond=None)[0]


# --------------------------------------------------------------------------------------------- designs
def correlated_design(n: int, d: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(n, d) Gaussian rows with the AR(1) covariance Sigma_ij = rho^|i - j| (unit variances): correlated
    features, whose X^T X is far worse conditioned than an isotropic design's for rho near 1."""
    n, d, rho = checks.integer("n", n), checks.integer("d", d), checks.real("rho", rho, strict=False)
    if rho >= 1:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    z = rng.standard_normal((n, d))
    x = np.empty((n, d))
    x[:, 0] = z[:, 0]
    scale = math.sqrt(1 - rho ** 2)
    for j in range(1, d):
        x[:, j] = rho * x[:, j - 1] + scale * z[:, j]
    return x


def sphere_weights(n_features: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n_features, d) first-layer weights uniform on the sphere of radius sqrt(d) (Mei & Montanari 2019)."""
    n_features, d = checks.integer("n_features", n_features), checks.integer("d", d)
    w = rng.standard_normal((n_features, d))
    return w * (math.sqrt(d) / np.linalg.norm(w, axis=1, keepdims=True))


def relu_features(x, weights) -> np.ndarray:
    """(N, n_features) random features relu(x W^T / sqrt(d)) of inputs x (N, d), weights (n_features, d)."""
    x, weights = checks.array("x", x, ndim=2), checks.array("weights", weights, ndim=2)
    if weights.shape[1] != x.shape[1]:
        raise ValueError(f"weights must have {x.shape[1]} columns (the input dimension), got {weights.shape[1]}")
    return np.maximum(x @ weights.T / math.sqrt(x.shape[1]), 0.0)
