"""Representation-similarity algebra in torch, batched over leading dimensions: the SVD-truncated CCA behind SVCCA and
PWCCA, and linear CKA on activations (full data, or accumulated unbiased HSIC over minibatches).

Activations are (..., N, p): N points (rows), p features. Every routine centres the features over the points first.
"""
from __future__ import annotations

import torch

from . import gram


def centre(A: torch.Tensor) -> torch.Tensor:
    """Features centred over the points (axis -2)."""
    return A - A.mean(dim=-2, keepdim=True)


def kept_directions(A: torch.Tensor, keep: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of one centred (N, p) activation matrix, truncated.

    Keeps the fewest leading singular directions whose squared singular values reach ``keep`` of the total (all of
    them for None), and never a direction below the numerical rank (s <= max(N, p) eps s_max), so constant or
    duplicated neurons add nothing. Returns U (N, k), s (k,), Vh (k, p); k = 0 when A has no variance.
    """
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    if s.numel() == 0 or s[0] == 0:
        return U[:, :0], s[:0], Vh[:0]
    rank = int((s > max(A.shape) * torch.finfo(A.dtype).eps * s[0]).sum())
    k = rank
    if keep is not None:
        energy = torch.cumsum(s[:rank] ** 2, dim=0)
        k = min(rank, int(torch.searchsorted(energy, keep * energy[-1]).item()) + 1)
    return U[:, :k], s[:k], Vh[:k]


Directions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def cca(a: Directions, b: Directions, weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Canonical correlations (m,) of two representations from their :func:`kept_directions`, descending in [0, 1],
    with the PWCCA weights (m,) of A's side (Morcos et al. 2018) when ``weights``; m = min(kA, kB) (0: a side has
    no variance).

    The correlations are the singular values of U_A^T U_B (Björck & Golub), so no covariance is inverted. A's
    canonical variates are h_i = U_A m_i (orthonormal); the weight of i is sum_j |<h_i, a_j>| over A's centred
    neurons a_j, which is sum_j |(M^T S_A V_A^T)_ij| because U_A^T A = S_A V_A^T.
    """
    (Ua, sa, Vha), (Ub, _, _) = a, b
    m = min(Ua.shape[1], Ub.shape[1])
    if m == 0:
        return Ua.new_zeros(0), (Ua.new_zeros(0) if weights else None)
    M, rho, _ = torch.linalg.svd(Ua.mT @ Ub, full_matrices=False)
    rho = rho[:m].clamp(0.0, 1.0)  # cosines of principal angles: rounding may step past 1
    if not weights:
        return rho, None
    alpha = (M[:, :m].mT @ (sa[:, None] * Vha)).abs().sum(dim=1)
    return rho, alpha


def linear_cka(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Linear CKA ||A^T B||_F^2 / (||A^T A||_F ||B^T B||_F) of centred activations, broadcast over batch dims.

    Each side's norm is computed once for its own batch (a fixed B against a stack of A costs one B^T B); the
    feature-space products cost N p^2, the point-space Grams N^2 p: the smaller is used.
    """
    n, pa, pb = A.shape[-2], A.shape[-1], B.shape[-1]
    if n < max(pa, pb):
        Ka, Kb = A @ A.mT, B @ B.mT
        cross = torch.einsum("...ij,...ij->...", Ka, Kb)
        norm_a = torch.linalg.vector_norm(Ka, dim=(-2, -1))
        norm_b = torch.linalg.vector_norm(Kb, dim=(-2, -1))
    else:
        cross = torch.linalg.vector_norm(A.mT @ B, dim=(-2, -1)) ** 2
        norm_a = torch.linalg.vector_norm(A.mT @ A, dim=(-2, -1))
        norm_b = torch.linalg.vector_norm(B.mT @ B, dim=(-2, -1))
    return (cross / (norm_a * norm_b)).clamp(0.0, 1.0)


def minibatch_linear_cka(A: torch.Tensor, B: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021): sum_b HSIC_1(K_b, L_b) / sqrt(sum_b HSIC_1(K_b, K_b)
    sum_b HSIC_1(L_b, L_b)) over consecutive batches of ``batch_size`` points (a last batch of fewer than 4 points
    is dropped), HSIC_1 the unbiased estimator of Song et al. (2012) on the linear Grams of the raw batch."""
    n = A.shape[-2]
    cross = norm_a = norm_b = 0.0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        if stop - start < 4:
            break
        Ka = A[..., start:stop, :] @ A[..., start:stop, :].mT
        Kb = B[..., start:stop, :] @ B[..., start:stop, :].mT
        cross = cross + gram.unbiased_hsic(Ka, Kb)
        norm_a = norm_a + gram.unbiased_hsic(Ka, Ka)
        norm_b = norm_b + gram.unbiased_hsic(Kb, Kb)
    return cross / torch.sqrt(norm_a * norm_b)
