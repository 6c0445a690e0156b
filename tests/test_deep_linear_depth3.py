"""The balanced closed forms t(a) (depth 3, and depths 1 to 3 in balanced_time) against a direct simulation of the
balanced scalar chain w_D ... w_1 (fp64), and the aligned balanced init."""
import numpy as np
import pytest
from scipy import integrate

from fastdyn.deep_linear import aligned_balanced_weights, balanced_time, depth3_time, product


def test_depth3_time_matches_balanced_chain_flow():
    s, a0, tau = 2.5, 1e-3, 0.7

    def rhs(_, w):  # tau dw_i/dt = (s - w1 w2 w3) prod_{j != i} w_j: gradient flow of (s - w3 w2 w1)^2 / 2
        prod = np.prod(w)
        return (s - prod) * prod / w / tau

    levels = s * np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    events = []
    for level in levels:
        def hit(_, w, level=level):
            return np.prod(w) - level
        hit.terminal = False
        events.append(hit)
    sol = integrate.solve_ivp(rhs, (0.0, 100.0), np.full(3, np.cbrt(a0)), events=events, rtol=1e-12, atol=1e-14,
                              method="DOP853")
    measured = np.array([e[0] for e in sol.t_events])
    np.testing.assert_allclose(depth3_time(levels, s, a0, tau), measured, rtol=1e-7)


def test_chain_stability_bound_is_two_over_autograd_sharpness():
    import torch

    from fastdyn.deep_linear import chain_stability_bound

    s = 3.0
    for depth in (1, 2, 4, 7):
        w = torch.full((depth,), s ** (1.0 / depth), dtype=torch.float64)
        hessian = torch.autograd.functional.hessian(lambda v: 0.5 * (s - v.prod()) ** 2, w)
        top = torch.linalg.eigvalsh(hessian).max().item()
        np.testing.assert_allclose(chain_stability_bound(s, depth), 2.0 / top, rtol=1e-12)


def _balanced_chain_times(depth, s, a0, tau, levels):
    """Times at which the balanced scalar chain w_D ... w_1 (w_i(0) = a0^{1/D}) under tau dw_i/dt = (s - p) p / w_i
    reaches each of ``levels``, by DOP853."""
    def rhs(_, w):
        p = np.prod(w)
        return (s - p) * p / w / tau

    events = []
    for level in levels:
        def hit(_, w, level=level):
            return np.prod(w) - level
        events.append(hit)
    sol = integrate.solve_ivp(rhs, (0.0, 1e3), np.full(depth, a0 ** (1.0 / depth)), events=events, rtol=1e-12,
                              atol=1e-14, method="DOP853")
    return np.array([e[0] for e in sol.t_events])


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_balanced_time_matches_balanced_chain_flow(depth):
    s, a0, tau = 2.5, 1e-3, 0.7
    levels = s * np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    np.testing.assert_allclose(balanced_time(levels, s, a0, tau, depth),
                               _balanced_chain_times(depth, s, a0, tau, levels), rtol=1e-7)
    with pytest.raises(ValueError, match="n_layers"):
        balanced_time(levels, s, a0, tau, 4)


def test_start_time_leading_orders():
    # small-a0 limits of the closed forms: depth 2 logarithmic, depth 3 a power law a0^{-1/3}
    s, tau = 2.0, 1.0
    for a0 in (1e-9, 1e-12):
        assert balanced_time(s / 2, s, a0, tau, 2) == pytest.approx(tau / (2 * s) * np.log(s / a0), rel=1e-8)
        assert balanced_time(s / 2, s, a0, tau, 3) == pytest.approx(tau / (s * np.cbrt(a0)), rel=2e-3)


def test_aligned_balanced_weights_are_balanced_with_the_given_modes():
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.standard_normal((12, 4)))[0]
    v = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    a0 = np.array([1e-3, 2e-3, 3e-3, 4e-3])
    weights = aligned_balanced_weights([4, 7, 6, 12], a0, u, v, rng)
    assert [w.shape for w in weights] == [(7, 4), (6, 7), (12, 6)]
    np.testing.assert_allclose(u.T @ product(weights) @ v, np.diag(a0), atol=1e-15)
    for lower, upper in zip(weights[:-1], weights[1:]):
        np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-15)
    with pytest.raises(ValueError, match="a0"):
        aligned_balanced_weights([4, 7, 12], -1.0, u, v, rng)
    with pytest.raises(ValueError, match="widths"):
        aligned_balanced_weights([4, 3, 12], 1e-3, u, v, rng)
