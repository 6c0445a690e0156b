"""Registration of the "cuda" infinite-width layer recursion (csrc/cuda/infinite_width.cu)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register
from .streams import current_stream


@register("kernels.fc", "cuda")
def fc(sigma, var1, var2, weight_vars, bias_vars, *, act, symmetric):
    theta = torch.empty_like(sigma)
    with torch.cuda.device(sigma.device):
        module("cuda").fc_kernels(sigma, theta, var1, var2, weight_vars, bias_vars, act=act, symmetric=symmetric,
                                  stream=current_stream(sigma.device))
    return sigma, theta
