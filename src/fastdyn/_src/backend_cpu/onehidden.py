"""Registrations of the "cpu" one-hidden-layer kernels (csrc/cpu/onehidden.cpp)."""
from __future__ import annotations

import numpy as np
import torch

from ..arrays import address, suffix
from ..backends import module
from ..registry import register


@register("onehidden.forward", "cpu")
def forward(x, omega, b, beta, *, scale):
    p, d = x.shape
    out = torch.empty(p, dtype=x.dtype)
    kernel = getattr(module("cpu"), f"onehidden_forward_{suffix(x.dtype)}")
    kernel(address(x), address(omega), address(b), address(beta), address(out), p, d, omega.shape[0], scale,
           torch.get_num_threads())
    return out


@register("onehidden.gradient", "cpu")
def gradient(x, g, omega, b, beta, *, scale):
    p, d = x.shape
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    kernel = getattr(module("cpu"), f"onehidden_gradient_{suffix(x.dtype)}")
    kernel(address(x), address(g), address(omega), address(b), address(beta), address(grad_omega), address(grad_b),
           address(grad_beta), p, d, omega.shape[0], scale, torch.get_num_threads())
    return grad_omega, grad_b, grad_beta


@register("onehidden.pattern_keys", "cpu")
def pattern_keys(x, omega, b, *, max_elements):
    """(h, 3) uint64 keys: two 64-bit hashes and the active count (dead where it is 0). The fused kernel needs no
    temporaries, so ``max_elements`` (the torch path's bound) does not apply."""
    p, d = x.shape
    keys = np.empty((omega.shape[0], 3), dtype=np.uint64)
    kernel = getattr(module("cpu"), f"onehidden_pattern_keys_{suffix(x.dtype)}")
    kernel(address(x), address(omega), address(b), keys.ctypes.data, p, d, omega.shape[0], torch.get_num_threads())
    return keys, keys[:, 2] == 0
