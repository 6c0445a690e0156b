"""Registrations of the "cpu" kernel-PCA solvers (csrc/cpu/kpca.cpp: OpenMP over the batch, OpenBLAS LAPACK)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register

_MAX_PRODUCTS = 300  # products of K with the block
_FILTER_DEGREE = 3  # Chebyshev filter degree; higher degrees lose the smaller wanted pairs to rounding
_MIXED_COPY_BYTES = 1 << 30  # float32 copies of K the mixed-precision solver may hold at once


@register("kpca.check", "cpu")
def check(K, labels, *, center):
    """One compiled tiled pass per matrix: statistics and alignment, without copying K."""
    stats = torch.empty(K.shape[0], 4, dtype=torch.float64)
    module("cpu").kpca_check(K, labels, stats, center=center, threads=torch.get_num_threads())
    return stats[:, :3], None if labels is None else stats[:, 3].to(K.dtype)


def _direct(solver: str):
    def solve(K, *, k, center):
        batch, n = K.shape[0], K.shape[-1]
        values = torch.empty(batch, k, dtype=K.dtype)
        vectors = torch.empty(batch, n, k, dtype=K.dtype)  # columns signed by the C++ side
        getattr(module("cpu"), f"kpca_{solver}")(K, values, vectors, center=center, threads=torch.get_num_threads())
        return values, vectors, torch.zeros(batch, dtype=torch.int32)

    solve.__name__ = solve.__qualname__ = solver
    solve.__doc__ = f"Top-k pairs of each matrix by LAPACK {'syevd' if solver == 'full' else 'syevr'}."
    return solve


register("kpca.full", "cpu")(_direct("full"))
register("kpca.topk", "cpu")(_direct("topk"))


@register("kpca.subspace", "cpu")
def subspace(K, *, k, center, tol, mixed_precision, seed):
    """Chebyshev-filtered subspace iteration on :func:`subspace_block` vectors, float32 first when mixed."""
    batch, n = K.shape[0], K.shape[-1]
    values = torch.empty(batch, k, dtype=K.dtype)
    vectors = torch.empty(batch, n, k, dtype=K.dtype)
    iterations = torch.zeros(batch, dtype=torch.int32)
    mixed = use_mixed(mixed_precision, K.dtype, batch, n)
    module("cpu").kpca_subspace(K, values, vectors, iterations, block=subspace_block(k, n), degree=_FILTER_DEGREE,
                                center=center, tol=tol, max_products=_MAX_PRODUCTS, mixed=mixed, seed=seed,
                                threads=torch.get_num_threads())
    return values, vectors, iterations


def subspace_block(k: int, n: int) -> int:
    """Vectors in the filtered block: k plus a guard of max(10, 2k/5), at most N.

    The slowest wanted pair converges like the ratio lambda_(l+1) / lambda_k through the filter, so the guard buys
    speed where the spectrum has a cluster just below lambda_k (NTKs do: spherical-harmonic degeneracies); 2k/5
    was the fastest of 0.3k-0.7k on NTK-like, power-law and exponential spectra (N = 2000, k = 20 and 50)."""
    return min(n, k + max(10, (2 * k + 4) // 5))


def use_mixed(mixed_precision: bool | None, dtype: torch.dtype, batch: int, n: int) -> bool:
    """Whether the float64 subspace solver starts in float32 (see ``kpca``'s mixed_precision)."""
    if dtype != torch.float64 or mixed_precision is False:
        return False
    if mixed_precision:
        return True
    return min(batch, torch.get_num_threads()) * n * n * 4 <= _MIXED_COPY_BYTES
