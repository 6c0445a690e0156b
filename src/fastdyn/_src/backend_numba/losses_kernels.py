"""Numba kernels of the loss derivatives (same maths as csrc/cpu/losses.cpp); registered by
:mod:`fastdyn._src.backend_numba.losses`."""
import numba
import numpy as np


@numba.njit(cache=True)
def hinge_gradient(f, f0, y, alpha):
    """(g (p,), L, #{F y < 1}) for L = sum_i relu(1 - F_i y_i) / (p alpha^2), F = alpha (f - f0); L in float64."""
    p = f.shape[0]
    g = np.empty_like(f)
    scale = 1.0 / (p * alpha)
    total = 0.0
    unsatisfied = 0
    for i in range(p):
        margin = alpha * (f[i] - f0[i]) * y[i]
        if margin < 1:
            g[i] = -y[i] * scale
            total += 1.0 - margin
            unsatisfied += 1
        else:
            g[i] = 0.0
    return g, total / (p * alpha * alpha), unsatisfied
