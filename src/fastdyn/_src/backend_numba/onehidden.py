"""Registrations of the "numba" one-hidden-layer kernels (numpy views of the tensors, no copies)."""
from __future__ import annotations

import torch

from ..registry import register
from .threads import at_torch_threads


@register("onehidden.forward", "numba")
def forward(x, omega, b, beta, *, scale):
    from .onehidden_kernels import forward as kernel

    return torch.from_numpy(at_torch_threads(kernel, x.numpy(), omega.numpy(), b.numpy(), beta.numpy(), scale))


@register("onehidden.gradient", "numba")
def gradient(x, g, omega, b, beta, *, scale):
    from .onehidden_kernels import gradient as kernel

    arrays = at_torch_threads(kernel, x.numpy(), g.numpy(), omega.numpy(), b.numpy(), beta.numpy(), scale)
    return tuple(torch.from_numpy(a) for a in arrays)
