"""Gradient descent and SGD on over-parameterised least squares find the minimum-norm interpolant, at the rate the
spectrum of X^T X predicts (seed 000, "Analysing SGD for over-parameterized linear regression").

Three parts, all fp64 (:mod:`fastdyn.linear` simulates, :mod:`fastdyn.theory` predicts):

* **limit**: d >> n, an isotropic Gaussian design and a correlated one (AR(1), rho); GD (eta = 1/lambda_1) and
  single-row SGD (eta = 1/max ||x_i||^2) from zero, from a tiny and from an O(1) random init. Every iterate stays
  in w_0 + row space of X, and the end point is pinv(X) y + (I - P_row) w_0 (from zero: pinv(X) y).
* **stability**: GD at eta = c / lambda_1 for several c, the measured distance against the exact spectral path
  (:func:`fastdyn.theory.gd_error_path`) and the late per-step contraction against max_i |1 - eta lambda_i|
  (:func:`fastdyn.theory.gd_contraction`); between c = 1 and 2 the top component flips sign every step but still
  shrinks, above c = 2 the iterates diverge (with a warning).
* **kappa**: designs with a prescribed spectrum of condition number kappa (on the positive eigenspace) in
  [1, kappa_max], the error spread evenly over the eigenvectors; the measured number of GD steps (eta = 1/lambda_1)
  to reach the relative tolerance, against the exact spectral count and the worst-case bound kappa ln(1/tol).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .. import linear, plotting, theory

DESCRIPTION = "seed 000: GD/SGD on over-parameterised least squares converge to the min-norm interpolant, rate ~ kappa"

INITS = ("zero", "tiny", "random")


def config(quick: bool) -> dict:
    return {
        "n": 10 if quick else 40, "d": 60 if quick else 400, "rho": 0.9, "noise": 0.1, "seed": 0,
        "tiny_init": 1e-6, "max_steps": 20_000 if quick else 50_000, "tol": 1e-13,
        "eta_factors": [0.5, 1.0, 1.5, 1.9, 2.05], "stability_steps": 300 if quick else 1500,
        "kappa_n": 12 if quick else 30, "kappa_d": 40 if quick else 120,
        "kappas": [1.0, 10.0, 100.0] if quick else [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4],
        "kappa_tol": 1e-6 if quick else 1e-8,
    }


def designs(config: dict) -> dict[str, np.ndarray]:
    """The two (n, d) designs of the limit part, scaled so that the rows have squared norm ~ 1."""
    n, d, rng = int(config["n"]), int(config["d"]), np.random.default_rng(config["seed"])
    return {"gaussian": rng.standard_normal((n, d)) / math.sqrt(d),
            "correlated": linear.correlated_design(n, d, float(config["rho"]), rng) / math.sqrt(d)}


def prescribed_design(n: int, d: int, kappa: float, rng: np.random.Generator):
    """(X (n, d), y (n,), eigenvalues (n,), coefficients (n,)): X = U diag(sqrt(lambda)) V^T with lambda log-spaced
    from 1/kappa to 1 and random orthonormal U, V; y = X w_inf with w_inf = V c, c = 1/sqrt(n) on every direction."""
    lam = np.geomspace(1.0 / kappa, 1.0, n)
    u = np.linalg.qr(rng.standard_normal((n, n)))[0]
    v = np.linalg.qr(rng.standard_normal((d, n)))[0]
    x = (u * np.sqrt(lam)) @ v.T
    c = np.full(n, 1 / math.sqrt(n))
    return x, x @ (v @ c), lam, c


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    rng = np.random.default_rng(config["seed"] + 1)
    summary: dict = {}
    arrays: dict[str, np.ndarray] = {}

    # ---- limit: where GD and SGD end, and that they never leave w0 + row space
    limit_paths: dict[str, dict[str, linear.DescentPath]] = {}
    for name, x in designs(config).items():
        y = x @ rng.standard_normal(x.shape[1]) + config["noise"] * rng.standard_normal(x.shape[0])
        spectrum = np.linalg.svd(x, compute_uv=False) ** 2
        summary[f"{name}_kappa"] = float(spectrum[0] / spectrum[-1])
        min_norm = linear.interpolant(x, y)
        inits = {"zero": None, "tiny": config["tiny_init"] * rng.standard_normal(x.shape[1]),
                 "random": rng.standard_normal(x.shape[1])}
        limit_paths[name] = {}
        for method, eta in (("gd", 1.0 / spectrum[0]), ("sgd", 0.5 * linear.stability_bound(x, "sgd"))):
            for init, w0 in inits.items():
                # zero and tiny inits are measured against pinv(X) y (tiny: a plateau at the init's scale), the O(1)
                # init against its own limit pinv(X) y + (I - P_row) w0
                limit = linear.interpolant(x, y, w0)
                path = linear.descent(x, y, eta=eta, steps=int(config["max_steps"]), method=method, w0=w0,
                                      target=limit if init == "random" else min_norm, tol=float(config["tol"]),
                                      record_every=10)
                key = f"{name}_{method}_{init}"
                limit_paths[name][f"{method} {init}"] = path
                summary[f"{key}_distance_to_limit"] = float(np.linalg.norm(path.w - limit) / np.linalg.norm(limit))
                summary[f"{key}_distance_to_min_norm"] = float(np.linalg.norm(path.w - min_norm)
                                                               / np.linalg.norm(min_norm))
                summary[f"{key}_off_row_space_max"] = float(path.off_row_space[1:].max())
                summary[f"{key}_steps"] = int(path.steps[-1])
                arrays.update({f"{key}/steps": path.steps, f"{key}/distance": path.distance,
                               f"{key}/off_row_space": path.off_row_space})
            zero = f"{name}_{method}_zero"
            log(f"min-norm: {name} {method}: distance to the limit {summary[zero + '_distance_to_limit']:.2g}"
                f" after {summary[zero + '_steps']} steps (from zero)")
        gd = limit_paths[name]["gd zero"]
        summary[f"{name}_gd_rate_predicted"] = theory.gd_contraction(spectrum, 1.0 / spectrum[0])
        summary[f"{name}_gd_rate_measured"] = _rate(gd)

    # ---- stability: eta around the bounds 1/lambda_1 (no sign change) and 2/lambda_1 (divergence)
    x = designs(config)["gaussian"]
    y = x @ rng.standard_normal(x.shape[1])
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    spectrum, coefficients = s ** 2, vt @ linear.interpolant(x, y)   # the error -w_inf from zero, per eigenvector
    stability: dict[float, tuple[linear.DescentPath, np.ndarray]] = {}
    for factor in config["eta_factors"]:
        eta = factor / spectrum[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = linear.descent(x, y, eta=eta, steps=int(config["stability_steps"]), tol=1e-14)
        predicted = theory.gd_error_path(spectrum, coefficients, eta, path.steps)
        stability[factor] = (path, predicted)
        key = f"eta={factor:g}/lambda1"
        resolved = predicted > 1e-8   # well above the rounding floor (~1e-15) of the measured distance
        summary[f"{key}_path_max_rel_diff"] = float(np.max(np.abs(path.distance[resolved] / predicted[resolved] - 1)))
        summary[f"{key}_rate_measured"] = _rate(path)
        summary[f"{key}_rate_predicted"] = theory.gd_contraction(spectrum, eta)
        summary[f"{key}_warned"] = any("stability bound" in str(w.message) for w in caught)
        summary[f"{key}_final_distance"] = float(path.distance[-1])
        arrays.update({f"stability/{factor:g}/steps": path.steps, f"stability/{factor:g}/distance": path.distance,
                       f"stability/{factor:g}/predicted": predicted})

    # ---- kappa: steps to a tolerance against the condition number
    tol = float(config["kappa_tol"])
    measured, exact = [], []
    for kappa in config["kappas"]:
        x, y, lam, c = prescribed_design(int(config["kappa_n"]), int(config["kappa_d"]), float(kappa), rng)
        path = linear.descent(x, y, eta=1.0 / lam.max(), steps=int(20 * kappa * math.log(1 / tol)) + 10, tol=tol)
        measured.append(int(path.steps[-1]) if path.distance[-1] <= tol else -1)
        exact.append(theory.gd_steps_to_tolerance(lam, c, 1.0 / lam.max(), tol))
        log(f"min-norm: kappa={kappa:g}: {measured[-1]} steps, predicted {exact[-1]}")
    bound = theory.gd_steps_bound(np.asarray(config["kappas"]), tol)
    summary["kappa_steps_measured"] = measured
    summary["kappa_steps_exact"] = exact
    summary["kappa_steps_bound"] = bound.astype(int).tolist()
    summary["kappa_steps_max_abs_diff"] = int(np.max(np.abs(np.array(measured) - np.array(exact))))
    summary["kappa_slope"] = float(np.polyfit(np.log(config["kappas"][1:]), np.log(measured[1:]), 1)[0])
    arrays.update({"kappa/kappas": np.asarray(config["kappas"]), "kappa/measured": np.asarray(measured),
                   "kappa/exact": np.asarray(exact), "kappa/bound": bound})

    np.savez_compressed(out / "paths.npz", **arrays)
    plotting.save_figure(plotting.min_norm_paths(limit_paths), out, "distance.png")
    plotting.save_figure(plotting.min_norm_stability(stability), out, "stability.png")
    plotting.save_figure(plotting.min_norm_kappa(config["kappas"], measured, exact, bound, tol), out, "kappa.png")
    return summary


def _rate(path: linear.DescentPath) -> float:
    """The measured per-step contraction over the second half of a path (above the rounding floor 1e-12)."""
    usable = path.distance > 1e-12
    steps, distance = path.steps[usable], path.distance[usable]
    if len(steps) < 3:
        return float("nan")
    half = len(steps) // 2
    return float(math.exp(math.log(distance[-1] / distance[half]) / (steps[-1] - steps[half])))
