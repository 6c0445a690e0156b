"""Registrations of the "cuda" one-hidden-layer kernels (csrc/cuda/onehidden.cu)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register
from .streams import current_stream


@register("onehidden.forward", "cuda")
def forward(x, omega, b, beta, *, scale):
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        module("cuda").onehidden_forward(x, omega, b, beta, out, scale=scale, stream=current_stream(x.device))
    return out


@register("onehidden.jvp", "cuda")
def jvp(x, omega, b, beta, v_omega, v_b, v_beta, *, scale):
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        module("cuda").onehidden_jvp(x, omega, b, beta, v_omega, v_b, v_beta, out, scale=scale,
                                     stream=current_stream(x.device))
    return out


@register("onehidden.gradient", "cuda")
def gradient(x, g, omega, b, beta, *, scale):
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    with torch.cuda.device(x.device):
        module("cuda").onehidden_gradient(x, g, omega, b, beta, grad_omega, grad_b, grad_beta, scale=scale,
                                          stream=current_stream(x.device))
    return grad_omega, grad_b, grad_beta
