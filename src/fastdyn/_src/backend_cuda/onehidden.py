"""Registrations of the "cuda" one-hidden-layer kernels (csrc/cuda/onehidden.cu)."""
from __future__ import annotations

import torch

from ..arrays import address, cuda_stream, suffix
from ..backends import module
from ..registry import register


@register("onehidden.forward", "cuda")
def forward(x, omega, b, beta, *, scale):
    p, d = x.shape
    out = torch.empty(p, dtype=x.dtype, device=x.device)
    kernel = getattr(module("cuda"), f"onehidden_forward_{suffix(x.dtype)}")
    with torch.cuda.device(x.device):
        kernel(address(x), address(omega), address(b), address(beta), address(out), p, d, omega.shape[0], scale,
               cuda_stream(x.device))
    return out


@register("onehidden.gradient", "cuda")
def gradient(x, g, omega, b, beta, *, scale):
    p, d = x.shape
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    kernel = getattr(module("cuda"), f"onehidden_gradient_{suffix(x.dtype)}")
    with torch.cuda.device(x.device):
        kernel(address(x), address(g), address(omega), address(b), address(beta), address(grad_omega),
               address(grad_b), address(grad_beta), p, d, omega.shape[0], scale, cuda_stream(x.device))
    return grad_omega, grad_b, grad_beta
