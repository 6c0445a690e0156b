"""Registration of the "cuda" closed-form NTK (csrc/cuda/ntk.cu: fastdyn's own kernels, no cuBLAS, no TF32)."""
from __future__ import annotations

import torch

from .. import memory, tiling
from ..backends import module
from ..registry import register
from . import current_stream


@register("ntk.onehidden", "cuda")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    if act != "relu":
        raise ValueError(f"the compiled closed-form NTK covers act='relu' only, got {act!r}")
    n1, h = x1.shape[0], omega.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    tile = tiling.neuron_tile(n1 + n2, h, x1.element_size(), tiling.CUDA_TILE)
    # the result, the kernel's scratch: one more N1 x N2 sum, four (tile x points) activation arrays, x^T
    memory.guard(x1.element_size() * (2 * n1 * n2 + 4 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    result = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    with torch.cuda.device(x1.device):  # launches go to the inputs' GPU
        module("cuda").onehidden_ntk(x1, x2, omega, b, beta, result, scale=scale, tile=tile,
                                     stream=current_stream(x1.device))
    return result
