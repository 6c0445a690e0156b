"""Plain-torch output derivatives of the alpha-trick losses (the "torch" backend)."""
from __future__ import annotations

import torch

from ..registry import register


@register("loss.hinge_gradient", "torch")
def hinge_gradient(f: torch.Tensor, f0: torch.Tensor, y: torch.Tensor, *, alpha: float):
    """g = dL/df (p,), L and #{F y < 1} for L = sum_i relu(1 - F_i y_i) / (p alpha^2), F = alpha (f - f0)."""
    p = f.shape[0]
    margin = alpha * (f - f0) * y
    below = margin < 1
    g = -y * below.to(y.dtype) / (p * alpha)  # the same bits as train's loss_derivative("hinge") / (p alpha)
    loss = float(torch.relu(1 - margin).sum(dtype=torch.float64)) / (p * alpha * alpha)
    return g, loss, int(below.sum())
