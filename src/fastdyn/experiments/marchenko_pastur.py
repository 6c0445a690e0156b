"""The spectrum of X^T X / n for a Gaussian X (n, d) against the Marchenko-Pastur law, and the conditioning of least
squares against gamma = d / n (seed 000: d < n well conditioned, d ~ n ill conditioned, d > n well conditioned on
the positive eigenspace).

* **histograms** at each of ``ratios``: the eigenvalues of ``seeds`` matrices pooled, against
  :func:`fastdyn.theory.marchenko_pastur_density`; the zero eigenvalues (d - rank X of them, rank measured by SVD)
  against the point mass 1 - 1/gamma; the Kolmogorov-Smirnov distance of the positive eigenvalues to the law of the
  non-zero part. (Eigenvalues of one matrix repel, so they are not independent draws: D is reported as a distance,
  without a p-value.)
* **conditioning** over a grid of gamma: the smallest positive and the largest eigenvalue against the edges
  (1 -+ sqrt(gamma))^2 and kappa against ((1 + sqrt gamma) / (1 - sqrt gamma))^2; at gamma = 1 the limit is
  infinite and the measured kappa grows with n (``square_sizes``) like n^2: for a square Gaussian matrix
  n lambda_min(X^T X) has a limit law (Edelman 1988), whose median ``EDELMAN_MEDIAN`` = 0.297 the medians over
  ``square_seeds`` matrices are held against (medians: the law of kappa is heavy-tailed).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from .. import plotting, theory

# Edelman (1988): for an n x n matrix of N(0, 1) entries, n lambda_min(X^T X) tends in law to the density
# (1 + sqrt x) / (2 sqrt x) exp(-(x/2 + sqrt x)), cdf 1 - exp(-(x/2 + sqrt x)); its median solves x/2 + sqrt x = ln 2.
EDELMAN_MEDIAN = (math.sqrt(1 + 2 * math.log(2)) - 1) ** 2

DESCRIPTION = "seed 000: Marchenko-Pastur spectrum of X^T X / n and the conditioning of least squares against d / n"


def config(quick: bool) -> dict:
    return {
        "n": 200 if quick else 1000, "ratios": [0.25, 0.9, 1.0, 1.1, 4.0], "seeds": 2 if quick else 4, "seed": 0,
        "grid": [0.1, 0.3, 0.6, 0.9, 1.0, 1.1, 1.5, 3.0, 10.0] if quick else
        [0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0],
        "grid_n": 100 if quick else 400, "grid_seeds": 3 if quick else 10,
        "square_sizes": [25, 50, 100] if quick else [25, 50, 100, 200, 400, 800], "square_seeds": 30 if quick else 100,
    }


def spectrum(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(eigenvalues of X^T X / n (d,) in ascending order, rank of X) for X (n, d) with N(0, 1) entries, from the
    singular values of X (the d - rank remaining eigenvalues are exact zeros)."""
    x = rng.standard_normal((n, d))
    s = np.linalg.svd(x, compute_uv=False)
    rank = int(np.sum(s > s[0] * max(n, d) * np.finfo(float).eps))
    return np.sort(np.concatenate([np.zeros(d - rank), s[:rank] ** 2 / n])), rank


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    rng = np.random.default_rng(config["seed"])
    n = int(config["n"])
    summary: dict = {}
    arrays: dict[str, np.ndarray] = {}

    histograms = {}
    for ratio in config["ratios"]:
        d = max(1, round(ratio * n))
        pooled, zeros = [], 0
        for _ in range(int(config["seeds"])):
            eigenvalues, rank = spectrum(n, d, rng)
            pooled.append(eigenvalues[d - rank:])
            zeros += d - rank
        positive = np.concatenate(pooled)
        total = d * int(config["seeds"])
        gamma = d / n
        distance = stats.kstest(positive, lambda v: theory.marchenko_pastur_cdf(v, gamma, continuous_only=True))
        histograms[gamma] = (positive, zeros / total)
        lo, hi = theory.marchenko_pastur_edges(gamma)
        key = f"ratio={gamma:g}"
        summary.update({f"{key}_ks_distance": float(distance.statistic),
                        f"{key}_zero_fraction": zeros / total,
                        f"{key}_zero_fraction_theory": theory.marchenko_pastur_zero_mass(gamma),
                        f"{key}_mean": float(positive.sum() / total), f"{key}_variance":
                            float(np.sum(positive ** 2) / total - (positive.sum() / total) ** 2),
                        f"{key}_lambda_min_positive": float(positive.min()), f"{key}_edge_low": lo,
                        f"{key}_lambda_max": float(positive.max()), f"{key}_edge_high": hi})
        arrays[f"eigenvalues/{gamma:g}"] = positive
        log(f"marchenko-pastur: d/n = {gamma:g}: KS distance {distance.statistic:.3g}, "
            f"zeros {zeros / total:.3f} (theory {theory.marchenko_pastur_zero_mass(gamma):.3f})")

    grid_n = int(config["grid_n"])
    grid, low, high, kappa = [], [], [], []
    for ratio in config["grid"]:
        d = max(1, round(ratio * grid_n))
        rows = []
        for _ in range(int(config["grid_seeds"])):
            eigenvalues, rank = spectrum(grid_n, d, rng)
            positive = eigenvalues[d - rank:]
            rows.append((positive[0], positive[-1], positive[-1] / positive[0]))
        rows = np.array(rows)
        grid.append(d / grid_n)
        low.append(rows[:, 0])
        high.append(rows[:, 1])
        kappa.append(rows[:, 2])
    grid = np.array(grid)
    low, high, kappa = np.array(low), np.array(high), np.array(kappa)
    with np.errstate(divide="ignore"):
        kappa_theory = ((1 + np.sqrt(grid)) / np.abs(1 - np.sqrt(grid))) ** 2
    for gamma, k, k_theory in zip(grid, kappa, kappa_theory):
        summary[f"kappa_ratio={gamma:g}"] = float(np.median(k))
        summary[f"kappa_ratio={gamma:g}_theory"] = float(k_theory)

    # d = n: kappa and Edelman's statistic n lambda_min(X^T X) = n^2 lambda_min(X^T X / n), per draw
    square_kappa, square_edelman = [], []
    for size in config["square_sizes"]:
        draws = [spectrum(int(size), int(size), rng) for _ in range(int(config["square_seeds"]))]
        square_kappa.append([_kappa(*draw) for draw in draws])
        square_edelman.append([size ** 2 * eigenvalues[size - rank] for eigenvalues, rank in draws])
    square_kappa, square_edelman = np.array(square_kappa), np.array(square_edelman)
    median_kappa = np.median(square_kappa, axis=1)
    summary["square_kappa_slope"] = float(np.polyfit(np.log(config["square_sizes"]), np.log(median_kappa), 1)[0])
    summary["square_kappa_median"] = median_kappa.tolist()
    summary["square_n_lambda_min_median"] = np.median(square_edelman, axis=1).tolist()
    summary["square_n_lambda_min_median_theory"] = EDELMAN_MEDIAN
    arrays.update({"grid/ratio": grid, "grid/lambda_min_positive": low, "grid/lambda_max": high, "grid/kappa": kappa,
                   "square/sizes": np.asarray(config["square_sizes"]), "square/kappa": square_kappa,
                   "square/n_lambda_min": square_edelman})
    np.savez_compressed(out / "spectra.npz", **arrays)
    plotting.save_figure(plotting.marchenko_pastur_histograms(histograms, summary), out, "histograms.png")
    figure = plotting.marchenko_pastur_conditioning(grid, low, high, kappa, config["square_sizes"], square_edelman,
                                                    EDELMAN_MEDIAN)
    plotting.save_figure(figure, out, "conditioning.png")
    return summary


def _kappa(eigenvalues: np.ndarray, rank: int) -> float:
    positive = eigenvalues[len(eigenvalues) - rank:]
    return float(positive[-1] / positive[0])
