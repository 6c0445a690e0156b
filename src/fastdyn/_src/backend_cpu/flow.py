"""Registration of the "cpu" gradient-flow loop (csrc/cpu/flow.cpp)."""
from __future__ import annotations

import torch

from ..backends import module
from ..registry import register
from ..threads import limit_threads


@register("flow.onehidden_hinge", "cpu")
def onehidden_hinge(x, y, f0, omega, b, beta, F, **settings):
    # limit_threads(0) restores torch's thread count: on small inputs the loop sets OpenMP's to 1 and leaves it.
    with limit_threads(0):
        return module("cpu").onehidden_hinge_flow(x, y, f0, omega, b, beta, F, threads=torch.get_num_threads(),
                                                  **settings)
