"""Plain-torch batched symmetric eigensolvers for kernel PCA (the "torch" backend; CPU or CUDA tensors).

Both return the top k pairs in descending order: eigenvalues (B, k), eigenvectors (B, N, k), iterations (B,) int32
(0 for the direct solver, -1 where subspace iteration fell back to it). Signs are fixed by the caller.
"""
from __future__ import annotations

import torch

from ..gram import alignment
from ..registry import register

_MAX_ITER = 100  # subspace iteration steps
_SYMMETRY_TILE = 1024  # the symmetry check compares tiles, so it never copies the whole matrix


def centre(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / N (a new tensor), for K (B, N, N)."""
    rows = K.mean(dim=-1, keepdim=True)
    return K - rows - rows.transpose(-1, -2) + rows.mean(dim=-2, keepdim=True)


def full(K: torch.Tensor, k: int, center: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All eigenpairs by torch.linalg.eigh (batched; cuSOLVER on CUDA), top k kept."""
    values, vectors = torch.linalg.eigh(centre(K) if center else K)
    values = values.flip(-1)[..., :k]
    vectors = vectors.flip(-1)[..., :k]
    return values, vectors, torch.zeros(K.shape[0], dtype=torch.int32)


def subspace(K: torch.Tensor, k: int, block: int, center: bool, tol: float, max_iter: int,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched block subspace iteration with Rayleigh-Ritz (the C++ "subspace" solver adds Chebyshev filters).

    Each step is one batched (N x N) x (N x block) matmul; a matrix is done once the residuals of its top k Ritz
    pairs are <= tol * |largest Ritz value|. Matrices not converged after max_iter steps, or showing a large
    negative eigenvalue (K not PSD), are solved again by :func:`full`.
    """
    batch, n, _ = K.shape
    generator = torch.Generator(device=K.device).manual_seed(seed)
    Q = torch.rand(batch, n, block, dtype=K.dtype, device=K.device, generator=generator) * 2 - 1
    if center:
        Q = Q - Q.mean(dim=-2, keepdim=True)
    Q = torch.linalg.qr(Q).Q
    values = torch.zeros(batch, k, dtype=K.dtype, device=K.device)
    vectors = torch.zeros(batch, n, k, dtype=K.dtype, device=K.device)
    iterations = torch.full((batch,), -1, dtype=torch.int32)
    pending = torch.ones(batch, dtype=torch.bool, device=K.device)
    for step in range(1, max_iter + 1):
        # All matrices step together (indexing K by the pending ones would copy it); results are kept from the
        # step each one first converges.
        Z = K @ Q
        if center:
            Z = Z - Z.mean(dim=-2, keepdim=True)
        H = Q.transpose(-1, -2) @ Z
        theta, S = torch.linalg.eigh((H + H.transpose(-1, -2)) / 2)
        theta, S = theta.flip(-1), S.flip(-1)
        V, KV = Q @ S, Z @ S
        residual = torch.linalg.vector_norm(KV[..., :k] - V[..., :k] * theta[:, None, :k], dim=-2).amax(dim=-1)
        done = pending & (residual <= tol * theta.abs().amax(dim=-1))
        accept = done & (theta[:, -1] >= -0.1 * theta[:, k - 1].abs())
        if bool(accept.any()):
            values[accept] = theta[accept, :k]
            vectors[accept] = V[accept, :, :k]
            iterations[accept.cpu()] = step
        pending &= ~done
        if not bool(pending.any()):
            break
        Q = torch.linalg.qr(KV).Q
    redo = torch.nonzero(iterations < 0).flatten()
    if redo.numel():
        w, v, _ = full(K[redo.to(K.device)], k, center)
        values[redo.to(K.device)], vectors[redo.to(K.device)] = w, v
    return values, vectors, iterations


def fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column of (B, N, k) so that its entry of largest magnitude is positive."""
    largest = vectors.abs().argmax(dim=-2, keepdim=True)
    signs = torch.sign(torch.gather(vectors, -2, largest))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


@register("kpca.full", "torch")
def full_signed(K, *, k, center):
    values, vectors, iterations = full(K, k, center)
    return values, fix_signs(vectors), iterations


@register("kpca.subspace", "torch")
def subspace_signed(K, *, k, center, tol, mixed_precision, seed):
    """Block subspace iteration on min(N, 2k + 10) vectors (``mixed_precision`` is a "cpu" option: unused)."""
    block = min(K.shape[-1], 2 * k + 10)
    values, vectors, iterations = subspace(K, k, block, center, tol, _MAX_ITER, seed)
    return values, fix_signs(vectors), iterations


@register("kpca.check", "torch")
def check(K, labels, *, center):
    """Tile statistics of every matrix and, with labels, the alignment (see the registry's signature)."""
    stats = torch.stack([_tile_stats(K[b]) for b in range(K.shape[0])])
    return stats, None if labels is None else alignment(K, labels, center)


def _tile_stats(K: torch.Tensor) -> torch.Tensor:
    """(max|K|, max|K - K^T|, has NaN/Inf) of one (N, N) matrix by square tiles (i <= j) against their mirror,
    so no temporary is larger than a tile."""
    n = K.shape[-1]
    largest = asymmetry = 0.0
    bad = False
    for i in range(0, n, _SYMMETRY_TILE):
        for j in range(i, n, _SYMMETRY_TILE):
            upper = K[i:i + _SYMMETRY_TILE, j:j + _SYMMETRY_TILE]
            lower = K[j:j + _SYMMETRY_TILE, i:i + _SYMMETRY_TILE]
            bad |= not bool(torch.isfinite(upper).all() & torch.isfinite(lower).all())
            largest = max(largest, float(upper.abs().amax()), float(lower.abs().amax()))
            asymmetry = max(asymmetry, float((upper - lower.T).abs().amax()))
    return torch.tensor([largest, asymmetry, float(bad)], dtype=torch.float64)
