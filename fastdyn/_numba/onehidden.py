"""Numba kernels of the one-hidden-layer ReLU network (same maths as csrc/cpu/onehidden.cpp)."""
import math

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=False, cache=True)
def forward(x, omega, b, beta, scale):
    """out (p,) = scale * sum_n beta_n relu(omega_n . x_i / sqrt(d) + b_n) for x (p, d), omega (h, d)."""
    p, d = x.shape
    h = omega.shape[0]
    inv_sqrt_d = 1.0 / math.sqrt(d)
    out = np.empty(p, dtype=x.dtype)
    for i in numba.prange(p):
        total = 0.0
        for n in range(h):
            pre = 0.0
            for k in range(d):
                pre += omega[n, k] * x[i, k]
            pre = pre * inv_sqrt_d + b[n]
            if pre > 0:
                total += beta[n] * pre
        out[i] = scale * total
    return out
