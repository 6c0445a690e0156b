"""Registration of the "cpu" output derivatives of the alpha-trick losses (csrc/cpu/losses.cpp)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register


@register("loss.hinge_gradient", "cpu")
def hinge_gradient(f, f0, y, *, alpha):
    g = torch.empty_like(f)
    result = torch.empty(2, dtype=torch.float64)  # (loss, unsatisfied)
    module("cpu").hinge_gradient(f, f0, y, g, result, alpha=alpha, threads=torch.get_num_threads())
    loss, unsatisfied = result.tolist()
    return g, loss, int(unsatisfied)
