"""The infinite-width layer recursion in plain torch (elementwise maps of whole (N1, N2) matrices), and the Gaussian
expectations it is made of (fastdyn.kernels documents the formulas)."""
from __future__ import annotations

import math

import torch

from ..registry import register


def gaussian_expectations(s11, s12, s22, act: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[act(u) act(v)], E[act'(u) act'(v)]) for (u, v) ~ N(0, [[s11, s12], [s12, s22]]), elementwise."""
    if act == "relu":
        norm = torch.sqrt(s11 * s22)
        cos = (s12 / norm).clamp(-1.0, 1.0)
        angle = torch.arccos(cos)
        value = norm * (torch.sqrt(1 - cos * cos) + (math.pi - angle) * cos) / (2 * math.pi)
        return value, (math.pi - angle) / (2 * math.pi)
    a, c = 1 + 2 * s11, 1 + 2 * s22
    value = (2 / math.pi) * torch.asin((2 * s12 / torch.sqrt(a * c)).clamp(-1.0, 1.0))
    return value, (4 / math.pi) / torch.sqrt(a * c - 4 * s12 * s12)


@register("kernels.fc", "torch")
def fc(sigma, var1, var2, weight_vars, bias_vars, *, act, symmetric):
    if symmetric:
        sigma = (sigma + sigma.T) / 2
    theta = sigma.clone()
    for v1, v2, w, c in zip(var1, var2, weight_vars.tolist(), bias_vars.tolist()):
        value, slope = gaussian_expectations(v1[:, None], sigma, v2[None, :], act)
        sigma, theta = w * value + c, theta * (w * slope) + (w * value + c)
        if symmetric:                     # elementwise maps of a symmetric matrix, but arccos rounds each entry
            sigma, theta = (sigma + sigma.T) / 2, (theta + theta.T) / 2
    return sigma, theta
