"""Gram-matrix algebra shared by the observables and the kernel-PCA check: alignment, centred inner products and the
unbiased HSIC, batched over (B, N, N) kernels and never forming H K H."""
from __future__ import annotations

import torch


def alignment(K3: torch.Tensor, labels: torch.Tensor, center: bool) -> torch.Tensor:
    """y^T K y / (||y||^2 ||K||_F) for K3 (B, N, N) and labels (1 or B, N); centred without copying K."""
    if center:
        labels = labels - labels.mean(dim=-1, keepdim=True)
    norm2 = (labels * labels).sum(dim=-1)
    if bool((norm2 == 0).any()):
        raise ValueError("y is zero (or constant, with centring); alignment needs a non-trivial label vector")
    quad = (labels.unsqueeze(-2) @ K3 @ labels.unsqueeze(-1))[..., 0, 0]
    frob2 = centred_inner(K3, K3) if center else torch.linalg.vector_norm(K3, dim=(-2, -1)) ** 2
    return quad / (norm2 * torch.sqrt(frob2))


def centred_inner(K1: torch.Tensor, K2: torch.Tensor) -> torch.Tensor:
    """<H K1 H, H K2 H>_F = <K1, K2>_F - (2/N) r1.r2 + s1 s2 / N^2 (r row sums, s total sums; K symmetric)."""
    n = K1.shape[-1]
    r1, r2 = K1.sum(dim=-1), K2.sum(dim=-1)
    inner = torch.einsum("...ij,...ij->...", K1, K2)
    return inner - 2.0 / n * (r1 * r2).sum(dim=-1) + r1.sum(dim=-1) * r2.sum(dim=-1) / n**2


def unbiased_hsic(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC_1 of Song et al. (2012) for symmetric (..., n, n) kernels, n >= 4, broadcast over batch dims:

        [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)),  K~ = K - diag(K).
    """
    n = K.shape[-1]
    Kt = K - torch.diag_embed(torch.diagonal(K, dim1=-2, dim2=-1))
    Lt = L - torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1))
    rk, rl = Kt.sum(dim=-1), Lt.sum(dim=-1)
    trace = torch.einsum("...ij,...ij->...", Kt, Lt)
    total = rk.sum(dim=-1) * rl.sum(dim=-1) / ((n - 1) * (n - 2))
    return (trace + total - 2.0 / (n - 2) * (rk * rl).sum(dim=-1)) / (n * (n - 3))
