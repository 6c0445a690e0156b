"""Seed 000's linear theory: the closed forms of fastdyn.theory against independent computations (scipy quadrature,
Monte Carlo, scikit-learn, numpy's pinv), the simulations of fastdyn.linear against their limits, and the
experiments min-norm, marchenko-pastur and double-descent at their quick sizes."""
import math
import warnings

import numpy as np
import pytest
from scipy import integrate

from fastdyn import linear, theory
from fastdyn.experiments import run_experiment

RATIOS = [0.25, 0.9, 1.0, 1.1, 4.0]


# ------------------------------------------------------------------------------------------- Marchenko-Pastur
def _quad(f, ratio, sigma2):
    lo, hi = theory.marchenko_pastur_edges(ratio, sigma2)
    return integrate.quad(f, lo, hi, limit=400, epsabs=1e-13, epsrel=1e-12)[0]


@pytest.mark.parametrize("sigma2", [1.0, 2.5])
@pytest.mark.parametrize("ratio", RATIOS)
def test_marchenko_pastur_mass_mean_variance(ratio, sigma2):
    """The continuous part integrates to min(1, 1/ratio), the rest is at 0; mean sigma2, variance sigma2^2 ratio."""
    density = lambda x: theory.marchenko_pastur_density(x, ratio, sigma2)
    mass = _quad(density, ratio, sigma2)
    assert mass + theory.marchenko_pastur_zero_mass(ratio) == pytest.approx(1.0, abs=1e-8)
    assert mass == pytest.approx(min(1.0, 1.0 / ratio), abs=1e-8)
    mean = _quad(lambda x: x * density(x), ratio, sigma2)
    second = _quad(lambda x: x * x * density(x), ratio, sigma2)
    assert mean == pytest.approx(sigma2, rel=1e-8)
    assert second - mean ** 2 == pytest.approx(sigma2 ** 2 * ratio, rel=1e-7)


@pytest.mark.parametrize("ratio", RATIOS)
def test_marchenko_pastur_cdf_matches_quadrature(ratio):
    lo, hi = theory.marchenko_pastur_edges(ratio)
    xs = np.linspace(lo, hi, 9)[1:-1]
    reference = [integrate.quad(lambda x: theory.marchenko_pastur_density(x, ratio), lo, v, limit=400)[0] for v in xs]
    reference = np.array(reference) + theory.marchenko_pastur_zero_mass(ratio)
    np.testing.assert_allclose(theory.marchenko_pastur_cdf(xs, ratio), reference, atol=1e-6)
    assert theory.marchenko_pastur_cdf(-1.0, ratio) == 0.0
    assert theory.marchenko_pastur_cdf(hi + 1, ratio) == pytest.approx(1.0, abs=1e-12)
    assert theory.marchenko_pastur_cdf(hi + 1, ratio, continuous_only=True) == pytest.approx(1.0, abs=1e-12)
    if ratio > 1:   # the point mass: the cdf jumps to 1 - 1/ratio at 0
        assert theory.marchenko_pastur_cdf(0.0, ratio) == pytest.approx(1 - 1 / ratio, abs=1e-12)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("ridge", [1e-3, 0.3, 5.0])
def test_stieltjes_transform_matches_quadrature(ratio, ridge):
    zero = theory.marchenko_pastur_zero_mass(ratio)
    density = lambda x: theory.marchenko_pastur_density(x, ratio)
    m = _quad(lambda x: density(x) / (x + ridge), ratio, 1.0) + zero / ridge
    dm = _quad(lambda x: density(x) / (x + ridge) ** 2, ratio, 1.0) + zero / ridge ** 2
    m_closed, dm_closed = theory.marchenko_pastur_stieltjes(ridge, ratio)
    assert m_closed == pytest.approx(m, rel=1e-7)
    assert dm_closed == pytest.approx(dm, rel=1e-6)


def test_sample_spectrum_follows_the_law():
    """A 600 x 300 Gaussian sample: the eigenvalue cdf is within 0.02 of the law (finite-size KS scale)."""
    x = np.random.default_rng(0).standard_normal((600, 300))
    eigenvalues = np.sort(np.linalg.eigvalsh(x.T @ x / 600))
    empirical = np.arange(1, 301) / 300
    assert np.max(np.abs(empirical - theory.marchenko_pastur_cdf(eigenvalues, 0.5))) < 0.02


# ------------------------------------------------------------------------------------------------------ risk
@pytest.mark.parametrize("n, d", [(30, 9), (20, 43)])
def test_finite_n_ridgeless_risk_matches_monte_carlo(n, d):
    """The exact inverse-Wishart expectations against 4000 Gaussian designs (z-score)."""
    rng = np.random.default_rng(1)
    signal, noise = 1.0, 0.5
    draws = []
    for _ in range(4000):
        beta = rng.standard_normal(d)
        beta *= math.sqrt(signal) / np.linalg.norm(beta)
        x = rng.standard_normal((n, d))
        y = x @ beta + math.sqrt(noise) * rng.standard_normal(n)
        draws.append(np.sum((np.linalg.pinv(x) @ y - beta) ** 2))
    draws = np.array(draws)
    expected = float(theory.ridgeless_risk(d / n, signal=signal, noise=noise, n=n))
    assert abs(draws.mean() - expected) < 4 * draws.std() / math.sqrt(len(draws)), (draws.mean(), expected)


def test_ridgeless_limit_formula_and_ridge_limit():
    gammas = np.array([0.2, 0.5, 0.9, 1.2, 2.0, 8.0])
    risk = theory.ridgeless_risk(gammas, signal=2.0, noise=0.3)
    expected = np.where(gammas < 1, 0.3 * gammas / (1 - gammas), 2.0 * (1 - 1 / gammas) + 0.3 / (gammas - 1))
    np.testing.assert_allclose(risk, expected, rtol=1e-14)
    # ridge -> 0 through the Stieltjes transform is an independent route to the same limit
    np.testing.assert_allclose(theory.ridge_risk(gammas, 1e-7, signal=2.0, noise=0.3), risk, rtol=1e-4)
    assert np.isinf(theory.ridgeless_risk(1.0)) and np.isinf(theory.ridgeless_risk(1.0, n=50))
    # the optimal ridge noise gamma / signal beats its neighbours
    for g in (0.5, 2.0):
        best = 0.3 * g / 2.0
        values = theory.ridge_risk(g, [best / 2, best, best * 2], signal=2.0, noise=0.3)
        assert values[1] < values[0] and values[1] < values[2]


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_ridge_risk_matches_simulation(gamma):
    rng = np.random.default_rng(2)
    n, ridge = 400, 0.2
    d = int(gamma * n)
    draws = []
    for _ in range(20):
        beta = rng.standard_normal(d)
        beta /= np.linalg.norm(beta)
        x = rng.standard_normal((n, d))
        y = x @ beta + 0.5 * rng.standard_normal(n)
        draws.append(np.sum((linear.ridge_fit(x, y, ridge) - beta) ** 2))
    assert np.mean(draws) == pytest.approx(float(theory.ridge_risk(gamma, ridge, signal=1.0, noise=0.25)), rel=0.05)


@pytest.mark.parametrize("n, d", [(13, 5), (7, 19)])
def test_ridge_fit_matches_scikit_learn(n, d):
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    reference = Ridge(alpha=0.7 * n, fit_intercept=False, solver="svd").fit(x, y).coef_
    np.testing.assert_allclose(linear.ridge_fit(x, y, 0.7), reference, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(linear.ridge_fit(x, y, 0.0), np.linalg.pinv(x) @ y, rtol=1e-9, atol=1e-12)


# -------------------------------------------------------------------------------------------- gradient descent
def _problem(n=11, d=37, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) / math.sqrt(d)
    return x, rng.standard_normal(n), rng.standard_normal(d)


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_descent_converges_to_the_interpolant_nearest_the_init(method):
    x, y, w0 = _problem()
    eta = 0.5 * linear.stability_bound(x, method)
    pinv = np.linalg.pinv(x)
    from_zero = linear.descent(x, y, eta=eta, steps=60_000, method=method, tol=1e-13)
    np.testing.assert_allclose(from_zero.w, pinv @ y, rtol=0, atol=1e-10 * np.linalg.norm(pinv @ y))
    from_w0 = linear.descent(x, y, eta=eta, steps=60_000, method=method, w0=w0, tol=1e-13)
    expected = pinv @ y + (np.eye(x.shape[1]) - pinv @ x) @ w0
    np.testing.assert_allclose(from_w0.w, expected, rtol=0, atol=1e-10 * np.linalg.norm(expected))
    assert np.linalg.norm(from_w0.w - pinv @ y) > 0.1 * np.linalg.norm(pinv @ y)   # a different end point
    assert from_zero.off_row_space.max() < 1e-12 and from_w0.off_row_space.max() < 1e-12


def test_gradient_descent_follows_the_spectral_path():
    x, y, _ = _problem()
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    target = np.linalg.pinv(x) @ y
    for factor in (0.5, 1.0, 1.7):
        eta = factor / s[0] ** 2
        path = linear.descent(x, y, eta=eta, steps=200)
        predicted = theory.gd_error_path(s ** 2, vt @ target, eta, path.steps)
        resolved = predicted > 1e-8
        np.testing.assert_allclose(path.distance[resolved], predicted[resolved], rtol=1e-6)
        late = path.distance[50] / path.distance[49]
        assert late <= theory.gd_contraction(s ** 2, eta) + 1e-9


def test_steps_to_tolerance_is_exact():
    rng = np.random.default_rng(5)
    lam = np.geomspace(0.01, 1.0, 7)
    c = rng.standard_normal(7)
    u, v = np.linalg.qr(rng.standard_normal((7, 7)))[0], np.linalg.qr(rng.standard_normal((15, 7)))[0]
    x = (u * np.sqrt(lam)) @ v.T
    y = x @ (v @ c)
    steps = theory.gd_steps_to_tolerance(lam, c, 1.0, 1e-6)
    path = linear.descent(x, y, eta=1.0, steps=10 * steps)
    crossed = path.steps[np.argmax(path.distance <= 1e-6)]
    assert crossed == steps
    assert steps <= theory.gd_steps_bound(100.0, 1e-6) * 1.0 + 1   # the worst-case bound (kappa = 100) holds


def test_divergence_above_the_bound_warns_and_is_recorded():
    x, y, _ = _problem()
    bound = linear.stability_bound(x, "gd")
    with pytest.warns(RuntimeWarning, match="stability bound"):
        path = linear.descent(x, y, eta=1.2 * bound, steps=5000)
    assert path.diverged_at is not None and path.distance[-1] > 1e10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        linear.descent(x, y, eta=0.99 * bound, steps=10)   # below the bound: no warning


def test_designs():
    rng = np.random.default_rng(6)
    x = linear.correlated_design(20_000, 5, 0.8, rng)
    np.testing.assert_allclose(np.cov(x.T), 0.8 ** np.abs(np.subtract.outer(range(5), range(5))), atol=0.03)
    w = linear.sphere_weights(9, 4, rng)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 2.0, rtol=1e-12)
    inputs = rng.standard_normal((3, 4))
    np.testing.assert_allclose(linear.relu_features(inputs, w), np.maximum(inputs @ w.T / 2.0, 0), rtol=1e-14)


# ------------------------------------------------------------------------------------------------ experiments
def test_min_norm_experiment(tmp_path):
    s = run_experiment("min-norm", tmp_path, quick=True, progress=False)
    for design in ("gaussian", "correlated"):
        for method in ("gd", "sgd"):
            for init in ("zero", "tiny", "random"):
                key = f"{design}_{method}_{init}"
                assert s[f"{key}_distance_to_limit"] < 1e-10, key
                assert s[f"{key}_off_row_space_max"] < 1e-12, key
            assert 1e-7 < s[f"{design}_{method}_tiny_distance_to_min_norm"] < 1e-4   # the init's own scale
            assert s[f"{design}_{method}_random_distance_to_min_norm"] > 0.1
        assert s[f"{design}_gd_rate_measured"] == pytest.approx(s[f"{design}_gd_rate_predicted"], rel=1e-3)
    for factor in (0.5, 1, 1.5, 1.9, 2.05):
        key = f"eta={factor:g}/lambda1"
        assert s[f"{key}_path_max_rel_diff"] < 1e-6, key
        assert s[f"{key}_warned"] == (factor > 2), key
    assert s["eta=2.05/lambda1_final_distance"] > 1
    assert s["kappa_steps_measured"] == s["kappa_steps_exact"]
    assert all(m <= b for m, b in zip(s["kappa_steps_measured"], s["kappa_steps_bound"]))
    for name in ("distance.png", "stability.png", "kappa.png", "paths.npz"):
        assert (tmp_path / name).stat().st_size > 0


def test_marchenko_pastur_experiment(tmp_path):
    s = run_experiment("marchenko-pastur", tmp_path, quick=True, progress=False)
    for ratio in RATIOS:
        key = f"ratio={ratio:g}"
        assert s[f"{key}_zero_fraction"] == pytest.approx(s[f"{key}_zero_fraction_theory"], abs=1e-12)
        assert s[f"{key}_ks_distance"] < 0.06, key
        assert s[f"{key}_mean"] == pytest.approx(1.0, abs=0.05)
        assert s[f"{key}_variance"] == pytest.approx(ratio, rel=0.15)
    # the seed's three regimes: well conditioned away from d = n on both sides, not at d = n
    assert s["kappa_ratio=0.1"] < 10 and s["kappa_ratio=10"] < 10 and s["kappa_ratio=1"] > 1e3
    assert 1.2 < s["square_kappa_slope"] < 2.8   # medians of a heavy-tailed law over 25 <= n <= 100
    assert all(0.15 < m < 0.6 for m in s["square_n_lambda_min_median"])   # Edelman's limit median 0.297
    assert (tmp_path / "histograms.png").stat().st_size > 0 and (tmp_path / "conditioning.png").stat().st_size > 0


def test_double_descent_experiment(tmp_path):
    s = run_experiment("double-descent", tmp_path, quick=True, progress=False)
    assert s["ridgeless_max_abs_z"] < 4
    assert s["ridgeless_peak_gamma"] == 1.0 and s["rf_peak_ratio"] == 1.0
    assert s["gamma=1_risk_median"] > 5 * max(s["gamma=0.5_risk_median"], s["gamma=2_risk_median"])
    assert s["rf_ridge_peak_error"] < s["rf_peak_error"] / 5   # a small ridge tames the peak
    assert s["ridge=0.05_peak_risk"] < s["gamma=1_risk_median"]
    for name in ("ridgeless.png", "features.png", "risks.npz", "network.json"):
        assert (tmp_path / name).stat().st_size > 0
