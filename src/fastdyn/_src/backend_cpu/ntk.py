"""Registration of the "cpu" closed-form NTK (csrc/cpu/ntk.cpp: OpenMP + OpenBLAS SYRK/GEMM)."""
from __future__ import annotations

import torch

from .. import memory
from ..backends import module
from ..registry import register
from .. import tiling


@register("ntk.onehidden", "cpu")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    if act != "relu":
        raise ValueError(f"the compiled closed-form NTK covers act='relu' only, got {act!r}")
    n1, h = x1.shape[0], omega.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    tile = tiling.neuron_tile(n1 + n2, h, x1.element_size(), tiling.CPU_TILE)
    # the result, one more N1 x N2 sum, four (points x tile) activation arrays
    memory.guard(x1.element_size() * (2 * n1 * n2 + 4 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    result = torch.empty(n1, n2, dtype=x1.dtype)
    module("cpu").onehidden_ntk(x1, x2, omega, b, beta, result, scale=scale, tile=tile,
                                threads=torch.get_num_threads())
    return result
