"""Numba kernels of the one-hidden-layer ReLU network (same maths as csrc/cpu/onehidden.cpp); registered by
:mod:`fastdyn._src.backend_numba.onehidden`."""
import math

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def _preactivation(x, i, omega, b, n, inv_sqrt_d):
    """omega_n . x_i / sqrt(d) + b_n, accumulated in float64."""
    pre = 0.0
    for k in range(x.shape[1]):
        pre += omega[n, k] * x[i, k]
    return pre * inv_sqrt_d + b[n]


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
            pre = _preactivation(x, i, omega, b, n, inv_sqrt_d)
            if pre > 0:
                total += beta[n] * pre
        out[i] = scale * total
    return out


@numba.njit(parallel=True, fastmath=False, cache=True)
def gradient(x, g, omega, b, beta, scale):
    """Gradient of sum_i g_i f(x_i): (grad_omega (h, d), grad_b (h,), grad_beta (h,)); parallel over neurons.

    The sums over points accumulate in float64 whatever the input dtype (scalar code: no cost)."""
    p, d = x.shape
    h = omega.shape[0]
    inv_sqrt_d = 1.0 / math.sqrt(d)
    grad_omega = np.empty((h, d), dtype=x.dtype)
    grad_b = np.empty(h, dtype=x.dtype)
    grad_beta = np.empty(h, dtype=x.dtype)
    for n in numba.prange(h):
        acc_x = np.zeros(d)
        acc_b = 0.0
        acc_beta = 0.0
        for i in range(p):
            pre = _preactivation(x, i, omega, b, n, inv_sqrt_d)
            if pre > 0:
                for k in range(d):
                    acc_x[k] += g[i] * x[i, k]
                acc_b += g[i]
                acc_beta += g[i] * pre
        weight = scale * beta[n]
        for k in range(d):
            grad_omega[n, k] = weight * inv_sqrt_d * acc_x[k]
        grad_b[n] = weight * acc_b
        grad_beta[n] = scale * acc_beta
    return grad_omega, grad_b, grad_beta
