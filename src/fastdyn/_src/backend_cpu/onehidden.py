"""Registrations of the "cpu" one-hidden-layer kernels (csrc/cpu/onehidden.cpp)."""
from __future__ import annotations

import numpy as np
import torch

from ..backends import module
from ..registry import register


@register("onehidden.forward", "cpu")
def forward(x, omega, b, beta, *, scale):
    out = torch.empty(x.shape[0], dtype=x.dtype)
    module("cpu").onehidden_forward(x, omega, b, beta, out, scale=scale, threads=torch.get_num_threads())
    return out


@register("onehidden.jvp", "cpu")
def jvp(x, omega, b, beta, v_omega, v_b, v_beta, *, scale):
    out = torch.empty(x.shape[0], dtype=x.dtype)
    module("cpu").onehidden_jvp(x, omega, b, beta, v_omega, v_b, v_beta, out, scale=scale,
                                threads=torch.get_num_threads())
    return out


@register("onehidden.gradient", "cpu")
def gradient(x, g, omega, b, beta, *, scale):
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    module("cpu").onehidden_gradient(x, g, omega, b, beta, grad_omega, grad_b, grad_beta, scale=scale,
                                     threads=torch.get_num_threads())
    return grad_omega, grad_b, grad_beta


@register("onehidden.pattern_keys", "cpu")
def pattern_keys(x, omega, b, *, max_elements):
    """(h, 3) uint64 keys: two 64-bit hashes and the active count (dead where it is 0). The fused kernel needs no
    temporaries, so ``max_elements`` (the torch path's bound) does not apply."""
    keys = np.empty((omega.shape[0], 3), dtype=np.uint64)
    module("cpu").onehidden_pattern_keys(x, omega, b, keys, threads=torch.get_num_threads())
    return keys, keys[:, 2] == 0
