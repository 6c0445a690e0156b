"""Registration of the "numba" output derivatives of the alpha-trick losses."""
from __future__ import annotations

import torch

from ..registry import register
from .threads import at_torch_threads


@register("loss.hinge_gradient", "numba")
def hinge_gradient(f, f0, y, *, alpha):
    from .losses_kernels import hinge_gradient as kernel

    g, loss, unsatisfied = at_torch_threads(kernel, f.numpy(), f0.numpy(), y.numpy(), alpha)
    return torch.from_numpy(g), float(loss), int(unsatisfied)
