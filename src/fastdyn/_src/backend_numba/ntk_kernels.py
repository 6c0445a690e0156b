"""Numba closed-form NTK of the one-hidden-layer ReLU network (same maths and tiling as csrc/cpu/ntk.cpp).

np.dot on the (points x tile) activation tiles calls the BLAS GEMM numba links to; the elementwise passes run in
prange loops. Memory: the result, two more N1 x N2 arrays and O(tile (N1 + N2)).
"""
import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _relu_tile(x, omega_tile, b_tile, beta_tile, inv_sqrt_d):
    """(relu(pre), beta [pre > 0]) as (p, nt) arrays for pre = x omega_tile^T / sqrt(d) + b_tile."""
    act = np.dot(x, omega_tile.T)
    beta_d = np.empty_like(act)
    p, nt = act.shape
    for i in numba.prange(p):
        for n in range(nt):
            pre = act[i, n] * inv_sqrt_d + b_tile[n]
            if pre > 0:
                act[i, n] = pre
                beta_d[i, n] = beta_tile[n]
            else:
                act[i, n] = 0.0
                beta_d[i, n] = 0.0
    return act, beta_d


@numba.njit(parallel=True, cache=True)
def onehidden_ntk(x1, x2, symmetric, omega, b, beta, scale, tile):
    """Theta (N1, N2) of a ReLU OneHidden; with ``symmetric`` x2 must be x1 and the result is exactly symmetric."""
    n1, d = x1.shape
    n2 = x2.shape[0]
    h = omega.shape[0]
    inv_sqrt_d = 1.0 / math.sqrt(d)
    sum_act = np.zeros((n1, n2), dtype=x1.dtype)
    sum_deriv = np.zeros((n1, n2), dtype=x1.dtype)
    for start in range(0, h, tile):
        stop = min(start + tile, h)
        omega_tile = np.ascontiguousarray(omega[start:stop])
        act1, beta_d1 = _relu_tile(x1, omega_tile, b[start:stop], beta[start:stop], inv_sqrt_d)
        if symmetric:
            act2, beta_d2 = act1, beta_d1
        else:
            act2, beta_d2 = _relu_tile(x2, omega_tile, b[start:stop], beta[start:stop], inv_sqrt_d)
        sum_act += np.dot(act1, act2.T)
        sum_deriv += np.dot(beta_d1, beta_d2.T)
    gram = np.dot(x1, x2.T)
    out = np.empty((n1, n2), dtype=x1.dtype)
    scale2 = scale * scale
    for i in numba.prange(n1):
        for j in range(i if symmetric else 0, n2):
            out[i, j] = scale2 * (sum_act[i, j] + (gram[i, j] / d + 1.0) * sum_deriv[i, j])
    if symmetric:
        for i in numba.prange(n1):
            for j in range(i):
                out[i, j] = out[j, i]
    return out
