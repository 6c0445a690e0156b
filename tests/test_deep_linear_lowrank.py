"""Deep linear matrix completion (seed 000): factorised flows against their closed end-to-end forms, the
gradients against torch autograd, the end points against the min-Frobenius / min-nuclear-norm completions.

Tolerances (fp64): flows integrated with DOP853 at rtol 1e-11, atol 1e-13 agree with each other to 1e-8 relative
(max over time of ||B_1(t) - B_2(t)||_F / max ||B||_F); gradients and operators agree to 1e-12 relative.
"""
import json

import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power

from fastdyn import deep_linear as dl
from fastdyn.experiments import run_experiment

TIGHT = {"rtol": 1e-11, "atol": 1e-13}
FLOW_TOL = 1e-8


def _general_problem(size, seed):
    """A non-symmetric target and mask (the end-to-end form needs neither symmetry)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((size, size)) < 0.5
    return dl.CompletionProblem(target=rng.standard_normal((size, 2)) @ rng.standard_normal((2, size)), mask=mask)


def _gap(a, b):
    return np.linalg.norm(a - b, axis=(1, 2)).max() / np.linalg.norm(b, axis=(1, 2)).max()


def _random_psd(size, rng):
    root = rng.standard_normal((size, size))
    return root @ root.T / size


# ------------------------------------------------------------------------------------- gradients vs autograd
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_factor_gradients_match_torch_autograd(depth):
    problem = _general_problem(5, depth)
    factors = [np.random.default_rng(10 + j).standard_normal((5, 5)) for j in range(depth)]
    weights = [torch.tensor(w, requires_grad=True) for w in factors]
    b = weights[0]
    for w in weights[1:]:
        b = w @ b
    mask = torch.tensor(problem.mask)
    loss = 0.5 * ((b - torch.tensor(problem.target))[mask] ** 2).sum()
    loss.backward()
    ours = dl.factor_gradients(problem, factors)
    assert np.isclose(problem.train_loss(dl.product(factors)), loss.item(), rtol=1e-13)
    for mine, theirs in zip(ours, weights):
        reference = theirs.grad.numpy()
        assert np.abs(mine - reference).max() <= 1e-12 * np.abs(reference).max()


def test_symmetric_square_gradient_matches_torch_autograd():
    problem = _general_problem(5, 7)
    a = np.random.default_rng(3).standard_normal((5, 5))   # any A: the formula is G A^T + A^T G
    a_t = torch.tensor(a, requires_grad=True)
    (0.5 * ((a_t @ a_t - torch.tensor(problem.target))[torch.tensor(problem.mask)] ** 2).sum()).backward()
    reference = a_t.grad.numpy()
    assert np.abs(dl.symmetric_square_gradient(problem, a) - reference).max() <= 1e-12 * np.abs(reference).max()


# -------------------------------------------------------------------------------------------- operators
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_psi_for_symmetric_psd_b_is_the_power_sum(depth):
    """psi_B(G) = sum_j B^{2(j-1)/L} G B^{2(L-j)/L} for PSD B: exponents sum to 2 - 2/L (1, the seed's
    B^alpha G B^{1-alpha}, only for L = 2, where it is G B + B G). Powers from scipy's Schur-Pade (independent)."""
    rng = np.random.default_rng(depth)
    b, g = _random_psd(7, rng), rng.standard_normal((7, 7))

    def power(x, p):
        return np.eye(7) if p == 0 else np.real(fractional_matrix_power(x, p))

    expected = sum(power(b, 2 * (j - 1) / depth) @ g @ power(b, 2 * (depth - j) / depth) for j in range(1, depth + 1))
    psi = dl.end_to_end_operator(b, g, depth)
    assert np.abs(psi - expected).max() <= 1e-11 * np.abs(expected).max()
    if depth == 2:
        assert np.allclose(psi, g @ b + b @ g, rtol=0, atol=1e-12 * np.abs(psi).max())


def test_symmetric_square_operator_is_the_alpha_sum_and_the_velocity_of_a_squared():
    rng = np.random.default_rng(5)
    problem = dl.completion_problem(7, 2, 0.5, [2.0, 1.0], rng)
    a = _random_psd(7, rng)
    b, g = a @ a, problem.gradient(a @ a)
    root = np.real(fractional_matrix_power(b, 0.5))
    alpha_sum = g @ b + 2 * root @ g @ root + b @ g           # alpha in {0, 1/2, 1/2, 1}
    exact = dl.symmetric_square_operator(b, g)
    assert np.abs(exact - alpha_sum).max() <= 1e-11 * np.abs(exact).max()
    da = -dl.symmetric_square_gradient(problem, a)              # d(A^2)/dt = dA/dt A + A dA/dt
    assert np.abs((da @ a + a @ da) + exact).max() <= 1e-12 * np.abs(exact).max()
    literal = dl.seed_literal_operator(b, g)                   # the seed's sqrt(B) G sqrt(B) is not it
    assert np.abs(literal - exact).max() > 0.5 * np.abs(exact).max()


# ------------------------------------------------------------------------------------------------ flows
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_balanced_factorised_flow_is_the_psi_flow(depth):
    """Arora, Cohen & Hazan 2018 on a non-symmetric 5 x 5 problem from a generic B(0): agree to integration
    accuracy; unbalanced factors with the same B(0) do not (so the comparison can fail)."""
    problem = _general_problem(5, 20 + depth)
    rng = np.random.default_rng(depth)
    b0 = 0.3 * rng.standard_normal((5, 5))
    factors = dl.balanced_factors(b0, depth, rng)
    assert np.allclose(dl.product(factors), b0, rtol=0, atol=1e-14)
    for lower, upper in zip(factors[:-1], factors[1:]):
        assert np.allclose(upper.T @ upper, lower @ lower.T, rtol=0, atol=1e-14)
    times = dl.log_times(1e-2, 5.0, 12)
    factorised = dl.factorised_flow(problem, factors, times, **TIGHT)
    end_to_end = dl.end_to_end_flow(problem, b0, times, lambda b, g: dl.end_to_end_operator(b, g, depth), **TIGHT)
    assert _gap(end_to_end.products, factorised.products) < FLOW_TOL
    assert factorised.train_loss[-1] < 0.5 * factorised.train_loss[0]      # it moved
    if depth > 1:
        tilted = [factors[0] * 2.0] + factors[1:-1] + [factors[-1] / 2.0]   # same product, not balanced
        unbalanced = dl.factorised_flow(problem, tilted, times, **TIGHT)
        assert _gap(end_to_end.products, unbalanced.products) > 1e-3


def test_symmetric_square_flow_is_gb_2aga_bg_not_the_seeds_aga():
    rng = np.random.default_rng(2)
    problem = dl.completion_problem(5, 2, 0.6, [2.0, 1.0], rng)
    a0 = 0.3 * _random_psd(5, rng)
    times = dl.log_times(1e-2, 5.0, 12)
    square = dl.symmetric_square_flow(problem, a0, times, **TIGHT)
    exact = dl.end_to_end_flow(problem, a0 @ a0, times, dl.symmetric_square_operator, **TIGHT)
    literal = dl.end_to_end_flow(problem, a0 @ a0, times, dl.seed_literal_operator, **TIGHT)
    arora = dl.end_to_end_flow(problem, a0 @ a0, times, lambda b, g: dl.end_to_end_operator(b, g, 2), **TIGHT)
    assert _gap(exact.products, square.products) < FLOW_TOL
    assert _gap(literal.products, square.products) > 0.1
    assert _gap(arora.products, square.products) > 0.1   # tied A_1 = A_2 is not the balanced untied depth 2


def test_depth_one_from_zero_ends_at_min_frobenius_completion():
    problem = dl.completion_problem(7, 2, 0.5, [2.0, 1.0], np.random.default_rng(4))
    run = dl.factorised_flow(problem, [np.zeros((7, 7))], dl.log_times(1e-2, 40.0, 10), **TIGHT)
    reference = dl.min_frobenius_completion(problem)   # B(t) = B_F + e^{-t} P_Omega(B(0) - B*): e^{-40} ~ 4e-18
    assert np.abs(run.products[-1] - reference).max() < 1e-8 * np.abs(reference).max()
    assert np.all(run.products[-1][~problem.mask] == 0)
    assert run.test_error[-1] == pytest.approx(1.0)


def test_depth_two_and_three_from_small_init_end_near_the_min_nuclear_norm_completion():
    """Where the min-nuclear-norm completion recovers B* (16 x 16, rank 2, 62% of entries observed), depths 2 and
    3 from B(0) = 1e-3 I end near it and recover the unobserved entries; depth 1 (the min-Frobenius end) does not."""
    problem = dl.completion_problem(16, 2, 0.6, [4.0, 2.0], np.random.default_rng(2))
    nuclear, gap = dl.min_nuclear_norm_completion(problem)
    assert gap < 1e-6                                        # certified by the dual: ||B||_* - min <= 1e-6 ||B||_*
    assert np.array_equal(nuclear[problem.mask], problem.target[problem.mask])
    assert problem.test_error(nuclear) < 1e-6                # this instance is in the exact-recovery regime
    times = dl.log_times(1e-2, 3000.0, 20)
    rng = np.random.default_rng(1)
    distance, test_error = {}, {}
    for depth in (1, 2, 3):
        run = dl.factorised_flow(problem, dl.balanced_factors(1e-3 * np.eye(16), depth, rng), times,
                                 rtol=1e-8, atol=1e-12)
        assert run.train_loss[-1] < 1e-5 * run.train_loss[0]
        distance[depth] = np.linalg.norm(run.products[-1] - nuclear) / np.linalg.norm(nuclear)
        test_error[depth] = run.test_error[-1]
    assert test_error[1] > 0.9 and distance[1] > 0.5          # measured 1.0 and 0.60
    for depth in (2, 3):                                      # measured 0.044, 0.0086 and 0.073, 0.014
        assert distance[depth] < 0.1 * distance[1]
        assert test_error[depth] < 0.1
    assert distance[3] < distance[2]


def test_effective_rank():
    assert dl.effective_rank(np.array([1.0, 1.0, 1.0, 0.0])) == pytest.approx(3.0)
    assert dl.effective_rank(np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert np.isnan(dl.effective_rank(np.zeros(3)))
    p = np.array([0.5, 0.25, 0.25])
    assert dl.effective_rank(4 * p) == pytest.approx(np.exp(-(p * np.log(p)).sum()))


# ------------------------------------------------------------------------------------------- experiment
def test_quick_experiment(tmp_path):
    summary = run_experiment("deep-linear-lowrank", tmp_path, quick=True, progress=False)
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == pytest.approx(summary)
    for name in ("singular_values.png", "rank_error.png", "scale.png", "trajectories.npz"):
        assert (tmp_path / name).stat().st_size > 1000
    prefix = "f=0.5"
    for depth in (1, 2, 3):
        assert summary[f"{prefix}_check_L={depth}_factorised_vs_psi"] < 1e-8
    assert summary[f"{prefix}_check_A^2_vs_exact"] < 1e-8
    assert summary[f"{prefix}_check_L=1_vs_min_frobenius_from_b0_max"] < 1e-8   # B(0) + P_Omega(B* - B(0))
    assert summary[f"{prefix}_check_A^2_vs_seed_literal"] > 0.1
    for name in ("L=1", "L=2", "L=3", "A^2"):
        for scale in ("0.1", "0.001"):
            key = f"{prefix}_{name}_s={scale}"
            for quantity in ("train_loss_rel_max", "test_error", "effective_rank", "nuclear_norm_ratio", "dist_nuclear",
                             "dist_frobenius"):
                assert np.isfinite(summary[f"{key}_{quantity}"])
    for name in ("L=2", "L=3", "A^2"):                                  # incremental: sigma_1 before sigma_2
        half = f"{prefix}_seed=0_{name}_s=0.001_t_half_{{}}"
        assert 0 < summary[half.format(1)] < summary[half.format(2)]
    small = f"{prefix}_{{}}_s=0.001_{{}}"
    assert summary[small.format("L=1", "dist_frobenius")] < 1e-2     # depth 1 ends at B(0) + P_Omega(B* - B(0))
    assert summary[small.format("L=1", "test_error")] > 0.9
    for name in ("L=2", "L=3", "A^2"):
        assert summary[small.format(name, "test_error")] < 0.5 * summary[small.format("L=1", "test_error")]
        assert summary[small.format(name, "effective_rank")] < summary[small.format("L=1", "effective_rank")]


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    rng = np.random.default_rng(0)
    problem = dl.completion_problem(4, 1, 0.5, [1.0], rng)
    times = dl.log_times(0.1, 1.0, 3)
    cases = [
        (ValueError, "size", lambda: dl.completion_problem(0, 1, 0.5, [1.0], rng)),
        (TypeError, "size", lambda: dl.completion_problem(4.0, 1, 0.5, [1.0], rng)),
        (ValueError, "rank", lambda: dl.completion_problem(4, 5, 0.5, [1.0] * 5, rng)),
        (ValueError, "fraction", lambda: dl.completion_problem(4, 1, float("nan"), [1.0], rng)),
        (ValueError, "fraction", lambda: dl.completion_problem(4, 1, 1.0, [1.0], rng)),
        (ValueError, "singular_values", lambda: dl.completion_problem(4, 1, 0.5, [-1.0], rng)),
        (ValueError, "mask", lambda: dl.CompletionProblem(problem.target, np.ones((4, 3), bool))),
        (TypeError, "mask", lambda: dl.CompletionProblem(problem.target, problem.mask.astype(float))),
        (ValueError, "target", lambda: dl.CompletionProblem(np.full((4, 4), np.nan), problem.mask)),
        (ValueError, "depth", lambda: dl.balanced_factors(np.eye(4), 0, rng)),
        (TypeError, "depth", lambda: dl.balanced_factors(np.eye(4), 1.5, rng)),
        (ValueError, "b0", lambda: dl.balanced_factors(np.full((4, 4), np.nan), 2, rng)),
        (ValueError, "depth", lambda: dl.end_to_end_operator(np.eye(4), np.eye(4), 0)),
        (ValueError, "t_end", lambda: dl.log_times(0.1, float("nan"), 3)),
        (ValueError, "t_first", lambda: dl.log_times(-1.0, 1.0, 3)),
        (ValueError, r"factors\[1\]", lambda: dl.factorised_flow(problem, [np.eye(4), np.eye(3)], times)),
        (TypeError, "factors", lambda: dl.factorised_flow(problem, [], times)),
        (ValueError, "a0", lambda: dl.symmetric_square_flow(problem, np.triu(np.ones((4, 4))), times)),
        (ValueError, "times", lambda: dl.factorised_flow(problem, [np.eye(4)], np.array([0.0, 2.0, 1.0]))),
        (ValueError, "rtol", lambda: dl.factorised_flow(problem, [np.eye(4)], times, rtol=0.0)),
        (TypeError, "operator", lambda: dl.end_to_end_flow(problem, np.eye(4), times, "psi")),
        (ValueError, "b0", lambda: dl.min_frobenius_completion(problem, np.eye(3))),
    ]
    for error, name, call in cases:
        with pytest.raises(error, match=name):
            call()


@pytest.mark.parametrize("key, value, error", [
    ("scales", [1e-2, 0.0], ValueError), ("scales", [float("nan")], ValueError), ("depths", [0], ValueError),
    ("depths", [2.0], TypeError), ("t_end", float("nan"), ValueError), ("size", 0, ValueError),
    ("fractions", [1.5], ValueError)])
def test_experiment_bad_config_names_the_key(tmp_path, key, value, error):
    with pytest.raises(error, match=key.rstrip("s")):
        run_experiment("deep-linear-lowrank", tmp_path, quick=True, overrides={key: value}, progress=False)
