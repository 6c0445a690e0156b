"""Closed forms of linear theory (seed 000): the Marchenko-Pastur law, the risk of ridge(less) least squares, and the
convergence of gradient descent on least squares. Pure numpy/scipy, fp64; the simulations they are held against
are :mod:`fastdyn.linear` and the experiments ``min-norm``, ``marchenko-pastur`` and ``double-descent``.

Conventions. X is (n, d) with i.i.d. entries of mean 0 and variance sigma2; ``ratio`` = gamma = d / n. The sample
covariance S = X^T X / n (d, d) has, as n, d -> infinity at fixed gamma, the Marchenko-Pastur spectral law:
a density on [sigma2 (1 - sqrt(gamma))^2, sigma2 (1 + sqrt(gamma))^2],

    f(x) = sqrt((x_+ - x)(x - x_-)) / (2 pi sigma2 gamma x),

of total mass min(1, 1/gamma), plus a point mass 1 - 1/gamma at 0 when gamma > 1 (d - n exact zeros). Its mean is
sigma2 and its variance sigma2^2 gamma.

Regression (Hastie, Montanari, Rosset & Tibshirani 2019, "Surprises in high-dimensional ridgeless least squares
interpolation", Theorem 1 and section 5; Dobriban & Wager 2018): x ~ N(0, I_d), y = x^T beta + eps with
||beta||^2 = ``signal`` (r^2) and Var eps = ``noise`` (sigma^2). The ridge estimate
beta_lambda = (S + lambda I)^-1 X^T y / n (lambda -> 0: the minimum-norm least-squares solution pinv(X) y) has
excess test risk E_x (x^T (beta_lambda - beta))^2 = ||beta_lambda - beta||^2 with the limits

    bias = r^2 lambda^2 m'(lambda),   variance = sigma^2 gamma (m(lambda) - lambda m'(lambda)),

m(lambda) = int dF(s) / (s + lambda) the Stieltjes transform of the law above at -lambda (point mass included),
m'(lambda) = int dF(s) / (s + lambda)^2. At lambda = 0 this is the paper's ridgeless risk,
sigma^2 gamma / (1 - gamma) for gamma < 1 and r^2 (1 - 1/gamma) + sigma^2 / (gamma - 1) for gamma > 1. The paper's
text could not be read here, so this is derived from the limits above (both routes are tested to agree) and, in its
exact finite-n form, checked against Monte Carlo.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ._src import checks

__all__ = ["marchenko_pastur_edges", "marchenko_pastur_density", "marchenko_pastur_zero_mass", "marchenko_pastur_cdf",
           "marchenko_pastur_ks_distance", "marchenko_pastur_stieltjes", "ridgeless_risk", "ridge_risk", "gd_contraction", "gd_error_path",
           "gd_steps_to_tolerance", "gd_steps_bound"]


# --------------------------------------------------------------------------------------------- Marchenko-Pastur
def marchenko_pastur_edges(ratio: float, sigma2: float = 1.0) -> tuple[float, float]:
    """(x_-, x_+) = sigma2 (1 -+ sqrt(ratio))^2: the support of the continuous part of the law of X^T X / n."""
    gamma, sigma2 = checks.real("ratio", ratio), checks.real("sigma2", sigma2)
    return sigma2 * (1.0 - math.sqrt(gamma)) ** 2, sigma2 * (1.0 + math.sqrt(gamma)) ** 2


def marchenko_pastur_zero_mass(ratio: float) -> float:
    """The point mass at 0, max(0, 1 - 1/ratio): the fraction d - n of the d eigenvalues that are exactly 0."""
    return max(0.0, 1.0 - 1.0 / checks.real("ratio", ratio))


def marchenko_pastur_density(x, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """The continuous part f(x) of the Marchenko-Pastur law at points x (any shape; 0 outside the support).

    It integrates to min(1, 1/ratio); the rest, :func:`marchenko_pastur_zero_mass`, sits at x = 0.
    """
    lo, hi = marchenko_pastur_edges(ratio, sigma2)
    x = np.asarray(x, dtype=float)
    inside = (x > lo) & (x < hi) & (x > 0)
    safe = np.where(inside, x, 1.0)
    return np.where(inside, np.sqrt(np.clip((hi - safe) * (safe - lo), 0, None)) / (2 * np.pi * sigma2 * ratio * safe),
                    0.0)


def marchenko_pastur_cdf(x, ratio: float, sigma2: float = 1.0, *, continuous_only: bool = False) -> np.ndarray:
    """P(eigenvalue <= x) under the Marchenko-Pastur law (point mass at 0 included), at points x (any shape).

    ``continuous_only``: the law of the non-zero eigenvalues instead (the continuous part renormalised to 1), the
    one to compare with the positive eigenvalues of a sample. Computed by the substitution
    x = x_- + (x_+ - x_-)(1 - cos theta)/2, under which the integrand is smooth (also at x_- = 0), with the
    trapezoidal rule on 4097 nodes (error below 1e-7).
    """
    lo, hi = marchenko_pastur_edges(ratio, sigma2)
    theta = np.linspace(0.0, np.pi, 4097)
    t = lo + (hi - lo) * (1.0 - np.cos(theta)) / 2
    half = (hi - lo) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        integrand = np.where(t > 0, half ** 2 * np.sin(theta) ** 2 / (2 * np.pi * sigma2 * ratio * t),
                             hi / (2 * np.pi * sigma2 * ratio))  # its limit at t = 0 (theta = 0 when lo = 0)
    cumulative = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(theta))])
    continuous_mass = min(1.0, 1.0 / ratio)
    x = np.asarray(x, dtype=float)
    position = np.arccos(np.clip(1.0 - 2.0 * (x - lo) / (hi - lo), -1.0, 1.0))
    # the trapezoid's tiny total error is spread evenly so that the cdf ends exactly at the continuous mass
    part = np.interp(position, theta, cumulative) * (continuous_mass / cumulative[-1])
    if continuous_only:
        return part / continuous_mass
    return np.where(x >= 0, part + marchenko_pastur_zero_mass(ratio), 0.0)


def marchenko_pastur_ks_distance(eigenvalues, ratio: float, sigma2: float = 1.0) -> float:
    """The Kolmogorov-Smirnov distance sup_x |F_n(x) - F(x)| of a sample of eigenvalues (any order) to the
    Marchenko-Pastur law (point mass at 0 included)."""
    values = np.asarray(eigenvalues, dtype=float).ravel()
    return float(stats.kstest(values, lambda v: marchenko_pastur_cdf(v, ratio, sigma2)).statistic)


def marchenko_pastur_stieltjes(ridge, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(m, m') at ``ridge`` = lambda > 0 (any shape), sigma2 = 1: m = int dF(s)/(s + lambda) and
    m' = int dF(s)/(s + lambda)^2 over the whole law (point mass included), in closed form:
    m = (S - (1 - gamma + lambda)) / (2 gamma lambda), S = sqrt((1 + gamma + lambda)^2 - 4 gamma)."""
    gamma = checks.real("ratio", ratio)
    lam = checks.array("ridge", ridge, minimum=0.0)
    root = np.sqrt((1 + gamma + lam) ** 2 - 4 * gamma)
    numerator = root - (1 - gamma + lam)
    m = numerator / (2 * gamma * lam)
    dm = (((1 + gamma + lam) / root - 1) * lam - numerator) / (2 * gamma * lam ** 2)
    return m, -dm


# ------------------------------------------------------------------------------------------------------ risk
def ridgeless_risk(ratio, *, signal: float = 1.0, noise: float = 1.0, n: int | None = None) -> np.ndarray:
    """Excess test risk ||beta_hat - beta||^2 of the minimum-norm least-squares fit at gamma = ``ratio`` = d/n.

    n=None: the proportional limit (Hastie et al. 2019, Theorem 1): noise gamma / (1 - gamma) for gamma < 1,
    signal (1 - 1/gamma) + noise / (gamma - 1) for gamma > 1, inf at gamma = 1.
    n given: the exact expectation over a Gaussian design of n rows and d = ratio n columns (inverse-Wishart means,
    E tr (X^T X)^-1 = d / (n - d - 1) and E tr (X X^T)^-1 = n / (d - n - 1)): noise d / (n - d - 1) for d <= n - 2,
    signal (1 - n/d) + noise n / (d - n - 1) for d >= n + 2, inf in between.
    """
    gamma = checks.array("ratio", ratio, minimum=0.0)
    signal, noise = checks.real("signal", signal), checks.real("noise", noise, strict=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        if n is None:
            under = noise * gamma / (1 - gamma)
            over = signal * (1 - 1 / gamma) + noise / (gamma - 1)
            return np.where(gamma < 1, under, np.where(gamma > 1, over, np.inf))
        n = checks.integer("n", n)
        d = gamma * n
        under = noise * d / (n - d - 1)
        over = signal * (1 - n / d) + noise * n / (d - n - 1)
        return np.where(d <= n - 2, under, np.where(d >= n + 2, over, np.inf))


def ridge_risk(ratio, ridge, *, signal: float = 1.0, noise: float = 1.0) -> np.ndarray:
    """Limiting excess risk of ridge regression beta_lambda = (X^T X / n + ridge I)^-1 X^T y / n, isotropic
    features: signal ridge^2 m'(ridge) + noise gamma (m(ridge) - ridge m'(ridge)) (module docstring);
    ridge = 0 is :func:`ridgeless_risk`. The optimal ridge is noise gamma / signal (Dobriban & Wager 2018)."""
    gamma = checks.array("ratio", ratio, minimum=0.0)
    lam = checks.array("ridge", ridge, minimum=0.0, strict=False)
    gamma, lam = np.broadcast_arrays(gamma, lam)
    result = np.empty(gamma.shape)
    flat_gamma, flat_lam, flat = gamma.ravel(), lam.ravel(), result.reshape(-1)
    for index, (g, r) in enumerate(zip(flat_gamma, flat_lam)):
        if r == 0:
            flat[index] = ridgeless_risk(g, signal=signal, noise=noise)
        else:
            m, dm = marchenko_pastur_stieltjes(r, g)
            flat[index] = signal * r ** 2 * dm + noise * g * (m - r * dm)
    return result


# --------------------------------------------------------------------------------------- gradient descent rate
def gd_contraction(eigenvalues, eta: float) -> float:
    """The per-step contraction max |1 - eta lambda_i| over the positive eigenvalues of X^T X of the error
    w_t - w_inf of w <- w - eta X^T (X w - y) (the seed's update). Below 1 iff eta < 2 / lambda_1; the seed's
    eta < 1/lambda_1 is the bound below which no component changes sign. With eta = 1/lambda_1 it is 1 - 1/kappa,
    kappa = lambda_1 / lambda_min^+."""
    lam = _positive_spectrum(eigenvalues)
    return float(np.max(np.abs(1 - checks.real("eta", eta) * lam)))


def gd_error_path(eigenvalues, coefficients, eta: float, steps) -> np.ndarray:
    """||w_t - w_inf|| / ||w_0 - w_inf|| at the given step counts (any shape) of gradient descent, from the error's
    components c_i (shape of ``eigenvalues``) along the eigenvectors of X^T X with positive eigenvalues lambda_i:
    ||w_t - w_inf||^2 = sum_i c_i^2 (1 - eta lambda_i)^(2t). Exact; above 1 and growing when eta > 2 / lambda_1."""
    lam = _positive_spectrum(eigenvalues)
    c2 = np.asarray(coefficients, dtype=float).ravel() ** 2
    if c2.shape != lam.shape:
        raise ValueError(f"coefficients must have the shape of eigenvalues {lam.shape}, got {c2.shape}")
    t = np.asarray(steps, dtype=float)
    eta = checks.real("eta", eta)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_factor = np.log(np.abs(1 - eta * lam))   # -inf where eta lambda = 1: that component is gone after a step
        terms = c2 * np.exp(2 * t[..., None] * log_factor)
        terms = np.where((t[..., None] == 0), c2, terms)
    return np.sqrt(terms.sum(axis=-1) / c2.sum())


def gd_steps_to_tolerance(eigenvalues, coefficients, eta: float, tol: float) -> int:
    """The exact number of gradient-descent steps t after which ||w_t - w_inf|| <= tol ||w_0 - w_inf||, from the
    error's components c_i along the eigenvectors of X^T X with positive eigenvalues lambda_i:
    ||w_t - w_inf||^2 = sum_i c_i^2 (1 - eta lambda_i)^(2t). Raises ValueError when it never gets there."""
    lam = _positive_spectrum(eigenvalues)
    c2 = np.asarray(coefficients, dtype=float).ravel() ** 2
    if c2.shape != lam.shape:
        raise ValueError(f"coefficients must have the shape of eigenvalues {lam.shape}, got {c2.shape}")
    eta, tol = checks.real("eta", eta), checks.real("tol", tol)
    if np.any((np.abs(1 - eta * lam) >= 1) & (c2 > 0)):
        raise ValueError(f"eta={eta:g} does not contract every component (needs eta < 2/lambda_1 = {2 / lam.max():g})")
    # the error decreases monotonically in t: double to an upper bound, then bisect on the exact path
    def above(t: int) -> bool:
        return float(gd_error_path(lam, coefficients, eta, t)) > tol
    if not above(0):
        return 0
    high = 1
    while above(high):
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if above(middle) else (low, middle)
    return high


def gd_steps_bound(kappa, tol: float) -> np.ndarray:
    """ceil(ln tol / ln(1 - 1/kappa)) ~ kappa ln(1/tol): steps at eta = 1/lambda_1 when the error lies along the
    smallest positive eigenvalue's direction (the worst case), for condition numbers kappa >= 1 (1 step at 1)."""
    kappa = checks.array("kappa", kappa, minimum=1.0, strict=False)   # a condition number
    tol = checks.real("tol", tol)
    with np.errstate(divide="ignore"):
        return np.where(kappa == 1, 1.0, np.ceil(np.log(tol) / np.log1p(-1 / kappa)))


def _positive_spectrum(eigenvalues) -> np.ndarray:
    lam = checks.array("eigenvalues", eigenvalues, ndim=1, minimum=0.0)   # the positive eigenvalues of X^T X
    if lam.size == 0:
        raise ValueError("eigenvalues must hold at least one positive eigenvalue of X^T X")
    return lam
