"""Registration of the "cpu" closed-form NTK (csrc/cpu/ntk.cpp: OpenMP + OpenBLAS SYRK/GEMM)."""
from __future__ import annotations

import torch

from .. import tiling
from ..backends import module
from ..registry import register
from ..threads import limit_threads


@register("ntk.onehidden", "cpu")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    tile = tiling.compiled_ntk_tile(x1, x2, omega.shape[0], act, tiling.CPU_TILE)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    result = torch.empty(n1, n2, dtype=x1.dtype)
    # limit_threads(0) restores torch's thread count: on small inputs the kernel sets OpenMP's to 1 and leaves it.
    with limit_threads(0):
        module("cpu").onehidden_ntk(x1, x2, omega, b, beta, result, scale=scale, tile=tile,
                                    threads=torch.get_num_threads())
    return result
