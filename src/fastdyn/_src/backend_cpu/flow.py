"""Registration of the "cpu" gradient-flow loop (csrc/cpu/flow.cpp)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register


@register("flow.onehidden_hinge", "cpu")
def onehidden_hinge(x, y, f0, omega, b, beta, F, **settings):
    return module("cpu").onehidden_hinge_flow(x, y, f0, omega, b, beta, F, threads=torch.get_num_threads(),
                                              **settings)
