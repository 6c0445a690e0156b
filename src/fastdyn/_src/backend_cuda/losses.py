"""Registration of the "cuda" output derivatives of the alpha-trick losses (csrc/cuda/losses.cu)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register
from .streams import current_stream


@register("loss.hinge_gradient", "cuda")
def hinge_gradient(f, f0, y, *, alpha):
    g = torch.empty_like(f)
    result = torch.empty(2, dtype=torch.float64, device=f.device)  # (loss, unsatisfied)
    with torch.cuda.device(f.device):
        module("cuda").hinge_gradient(f, f0, y, g, result, alpha=alpha, stream=current_stream(f.device))
    loss, unsatisfied = result.tolist()  # waits for the kernels
    return g, loss, int(unsatisfied)
