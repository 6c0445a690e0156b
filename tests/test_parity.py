"""Parities (seed 000): GF(2) elimination against brute force and against plain Python elimination, the full-rank
probability, the seed's ReLU construction by enumeration, the Walsh transform and the gradient-signal lemma."""
import itertools

import numpy as np
import pytest
import torch

from fastdyn import data, parity
from fastdyn._src.backends import available_backends
from fastdyn.models import FCNet

BACKENDS = [name for name in ("cpu", "torch") if name in available_backends()]


def _system(n, d, rng, *, rank=None):
    """x (n, d), y (n,) in {-1, +1}: y = chi_I(x) for a random I, or rows drawn from a rank-``rank`` row space."""
    if rank is None:
        z = rng.integers(0, 2, (n, d))
    else:
        basis = rng.integers(0, 2, (rank, d))
        z = (rng.integers(0, 2, (n, rank)) @ basis) % 2
    s = rng.integers(0, 2, d)
    b = (z @ s) % 2
    return 1.0 - 2.0 * z, 1.0 - 2.0 * b


def _brute_force(x, y):
    """Every s in {0, 1}^d with Z s = b (mod 2)."""
    z, b = ((1 - x) / 2).astype(int), ((1 - y) / 2).astype(int)
    d = z.shape[1]
    return [np.array(s) for s in itertools.product((0, 1), repeat=d) if np.all((z @ np.array(s)) % 2 == b)]


def _gf2_rank(z):
    """Rank over GF(2) by plain Python row reduction (the oracle of full_rank_probability)."""
    rows = [int("".join(map(str, row)), 2) for row in z]
    rank = 0
    for bit in reversed(range(z.shape[1])):
        pivot = next((r for r in rows if r >> bit & 1), None)
        if pivot is None:
            continue
        rows = [r ^ pivot if r >> bit & 1 else r for r in rows if r is not pivot]
        rank += 1
    return rank


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, d, rank", [(14, 7, None), (5, 9, None), (11, 8, 4), (1, 6, None), (70, 9, None),
                                        (13, 10, 10)])
def test_solve_gf2_matches_brute_force(backend, n, d, rank):
    rng = np.random.default_rng(n * 100 + d)
    x, y = _system(n, d, rng, rank=rank)
    solutions = _brute_force(x, y)
    result = parity.solve_gf2(x, y, backend=backend)
    assert result.backend == backend and result.consistent
    assert 2 ** result.nullity == len(solutions) and result.rank == d - result.nullity
    assert any(np.array_equal(result.s, s) for s in solutions)
    assert result.unique == (len(solutions) == 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inconsistent_and_all_zero_systems(backend):
    rng = np.random.default_rng(1)
    x = np.ones((6, 5))                                       # Z = 0: every s fits b = 0, none fits b != 0
    result = parity.solve_gf2(x, np.ones(6), backend=backend)
    assert result.consistent and result.rank == 0 and result.nullity == 5 and not result.unique
    assert not parity.solve_gf2(x, -np.ones(6), backend=backend).consistent
    x, y = _system(30, 6, rng)
    y[0] = -y[0]                                              # one flipped label: no parity fits all 30
    noisy = parity.solve_gf2(x, y, backend=backend)
    assert not noisy.consistent and noisy.s is None and noisy.subset is None and len(_brute_force(x, y)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_the_parity_of_the_data(backend):
    split = data.parity(200, 90, k=17, seed=3)               # 200 > 64: several words per column
    result = parity.solve_gf2(split.x, split.y, backend=backend)
    assert result.unique and result.subset.tolist() == split.info["subset"]


@pytest.mark.skipif("cpu" not in available_backends(), reason="needs the compiled cpu backend")
def test_packed_kernel_agrees_with_the_torch_reference_across_word_boundaries():
    rng = np.random.default_rng(2)
    for n, d, rank in ((129, 70, None), (64, 130, None), (300, 200, 150), (65, 64, 63)):
        x, y = _system(n, d, rng, rank=rank)
        cpu, reference = parity.solve_gf2(x, y, backend="cpu"), parity.solve_gf2(x, y, backend="torch")
        assert (cpu.rank, cpu.consistent, cpu.free.tolist()) == (reference.rank, reference.consistent,
                                                                  reference.free.tolist())
        np.testing.assert_array_equal(cpu.s, reference.s)
        z, b = ((1 - x) / 2).astype(int), ((1 - y) / 2).astype(int)
        np.testing.assert_array_equal((z @ cpu.s) % 2, b)    # it solves the system


def test_full_rank_probability_against_monte_carlo():
    rng = np.random.default_rng(4)
    d = 6
    for n in (6, 7, 9):
        ranks = [_gf2_rank(rng.integers(0, 2, (n, d))) for _ in range(3000)]
        measured = np.mean(np.array(ranks) == d)
        expected = float(parity.full_rank_probability(n, d))
        assert abs(measured - expected) < 4 * np.sqrt(expected * (1 - expected) / 3000), (n, measured, expected)
    np.testing.assert_allclose(parity.full_rank_probability(np.arange(1, 6), 1), 1 - 2.0 ** -np.arange(1, 6))
    assert parity.full_rank_probability(3, 4) == 0.0


@pytest.mark.parametrize("d, subset", [(1, [0]), (6, [0, 1, 2, 3, 4, 5]), (9, [2, 5, 7]), (12, list(range(0, 12, 2))),
                                       (11, [10])])
def test_relu_construction_is_exact_on_every_input(d, subset):
    net = parity.relu_parity_network(d, subset)
    assert net[0].out_features <= 4 * d
    x = parity.all_inputs(d)
    expected = torch.prod(x[:, subset], dim=1)               # chi_I written out
    assert torch.equal(net(x).squeeze(1), expected)


def test_walsh_coefficients_against_the_dense_transform():
    d = 5
    x = parity.all_inputs(d)
    g = torch.randn(2 ** d, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    characters = torch.stack([torch.prod(x[:, [j for j in range(d) if r >> j & 1]], dim=1) for r in range(2 ** d)])
    np.testing.assert_allclose(parity.walsh_coefficients(g), characters @ g / 2 ** d, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose((parity.walsh_coefficients(g) ** 2).sum(0), (g ** 2).mean(0), rtol=1e-12)


def test_gradient_signal_exact_is_parseval_and_monte_carlo_agrees():
    torch.manual_seed(0)
    d = 8
    net = FCNet([d, 32, 1], dtype=torch.float64)
    exact = parity.gradient_signal(net, d)
    assert exact.exact
    np.testing.assert_allclose(exact.signal, exact.bound, rtol=1e-10)
    # the input gradient by finite differences at one point (independent of autograd's graph)
    x = parity.all_inputs(d)[5:6].clone()
    step = 1e-6
    numeric = [(net(x + step * torch.eye(d)[i]) - net(x - step * torch.eye(d)[i])).item() / (2 * step)
               for i in range(d)]
    xg = x.clone().requires_grad_(True)
    np.testing.assert_allclose(torch.autograd.grad(net(xg).sum(), xg)[0][0], numeric, rtol=1e-6, atol=1e-9)
    sampled = parity.gradient_signal(net, d, exact=False, n_samples=50_000, n_subsets=2000, seed=1)
    # the Monte Carlo estimate = the true value + the sampling floor power / n_samples, within its error
    assert np.all(np.abs(sampled.signal - sampled.floor - exact.signal) < 5 * sampled.signal_sem + 1e-3 * exact.power)
    np.testing.assert_allclose(sampled.power, exact.power, rtol=0.05)


@pytest.mark.parametrize("call, error, match", [
    (lambda: parity.solve_gf2(np.array([[1.0, 0.5]]), np.ones(1)), ValueError, "x must hold only -1 and \\+1"),
    (lambda: parity.solve_gf2(np.array([[1.0, np.nan]]), np.ones(1)), ValueError, "x must hold only -1 and \\+1"),
    (lambda: parity.solve_gf2(np.ones((3, 2)), np.ones(2)), ValueError, "y must have one label per row of x"),
    (lambda: parity.solve_gf2(np.ones(3), np.ones(3)), ValueError, "x must be 2-D"),
    (lambda: parity.solve_gf2(np.ones((0, 3)), np.ones(0)), ValueError, "x is empty"),
    (lambda: parity.solve_gf2(np.ones((2, 2), dtype=bool), np.ones(2)), TypeError, "x must be a numeric array"),
    (lambda: parity.solve_gf2(np.ones((2, 2)), np.ones(2), backend="numba"), ValueError, "numba"),
    (lambda: parity.full_rank_probability(-1, 3), ValueError, "n must be non-negative integers"),
    (lambda: parity.relu_parity_network(4, [4]), ValueError, "subset must list distinct indices"),
    (lambda: parity.relu_parity_network(4, [1, 1]), ValueError, "subset must list distinct indices"),
    (lambda: parity.all_inputs(25), ValueError, "d must be <= 24"),
    (lambda: parity.all_inputs(3, start=5, stop=4), ValueError, "start and stop must satisfy"),
    (lambda: parity.all_inputs(3, stop=9), ValueError, "start and stop must satisfy"),
    (lambda: parity.random_inputs(0, 3), ValueError, "n must be an integer >= 1"),
    (lambda: parity.random_inputs(4, 2.0), TypeError, "d must be an integer"),
    (lambda: parity.walsh_coefficients(torch.ones(6)), ValueError, "values must have 2\\^d rows"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_parity_elimination_experiment(tmp_path):
    from fastdyn.experiments import run_experiment
    s = run_experiment("parity-elimination", tmp_path, quick=True, progress=False)
    for d in (16, 64):
        assert s[f"d={d}_wrong_subsets"] == 0 and s[f"d={d}_nullity_at_least_d_minus_n"]
        assert s[f"d={d}_max_abs_z"] < 4.5                     # against the exact full-rank probability
        assert s[f"d={d}_n={d - 2}_success"] == 0.0 and s[f"d={d}_n={2 * d}_success"] == 1.0
        assert 0.1 < s[f"d={d}_n={d}_success"] < 0.5          # the threshold: P(rank d at n = d) = 0.289
    assert s["time_d=256_correct"] and (tmp_path / "threshold.png").stat().st_size > 0
