"""Registration of the "cuda" closed-form NTK (csrc/cuda/ntk.cu: fastdyn's own kernels, no cuBLAS, no TF32)."""
from __future__ import annotations

import torch

from .. import tiling
from ..backends import module
from ..registry import register
from .streams import current_stream


@register("ntk.onehidden", "cuda")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    tile = tiling.compiled_ntk_tile(x1, x2, omega.shape[0], act, tiling.CUDA_TILE)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    result = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    with torch.cuda.device(x1.device):  # launches go to the inputs' GPU
        module("cuda").onehidden_ntk(x1, x2, omega, b, beta, result, scale=scale, tile=tile,
                                     stream=current_stream(x1.device))
    return result
