"""Registration of the "cpu" infinite-width layer recursion (csrc/cpu/infinite_width.cpp)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register


@register("kernels.fc", "cpu")
def fc(sigma, var1, var2, weight_vars, bias_vars, *, act, symmetric):
    theta = torch.empty_like(sigma)
    module("cpu").fc_kernels(sigma, theta, var1, var2, weight_vars, bias_vars, act=act, symmetric=symmetric,
                             threads=torch.get_num_threads())
    return sigma, theta
