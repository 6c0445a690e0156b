"""The depth-3 balanced closed form t(a) against a direct simulation of the balanced scalar chain w3 w2 w1 (fp64)."""
import numpy as np
from scipy import integrate

from fastdyn.deep_linear import depth3_time


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
