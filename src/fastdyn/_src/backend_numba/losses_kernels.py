"""Numba kernels of the loss derivatives (same maths as csrc/cpu/losses.cpp); registered by
:mod:`fastdyn._src.backend_numba.losses`."""
import numba
import numpy as np


@numba.njit(cache=True)
def hinge_gradient(f, f0, y, alpha):
    """(g (p,), L, #{F y < 1}) for L = sum_i relu(1 - F_i y_i) / (p alpha^2), F = alpha (f - f0); L in float64."""
    p = f.shape[0]
    g = np.empty_like(f)
    one = f.dtype.type(1)
    a = f.dtype.type(alpha)
    denominator = f.dtype.type(p * alpha)
    total = 0.0
    unsatisfied = 0
    for i in range(p):
        margin = a * (f[i] - f0[i]) * y[i]  # in the inputs' dtype, as the other backends
        below = margin < one
        g[i] = -y[i] * (one if below else f.dtype.type(0)) / denominator  # -0.0 where met, as -y * mask
        if below:
            total += 1.0 - margin
            unsatisfied += 1
    return g, total / (p * alpha * alpha), unsatisfied
