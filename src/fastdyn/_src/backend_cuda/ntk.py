"""Registration of the "cuda" closed-form NTK (csrc/cuda/ntk.cu: fastdyn's own kernels, no cuBLAS, no TF32)."""
from __future__ import annotations

import torch

from .. import memory
from ..arrays import address, cuda_stream, suffix
from ..backends import module
from ..registry import register
from .. import tiling


@register("ntk.onehidden", "cuda")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    if act != "relu":
        raise ValueError(f"the compiled closed-form NTK covers act='relu' only, got {act!r}")
    (n1, d), h = x1.shape, omega.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    tile = tiling.neuron_tile(n1 + n2, h, x1.element_size(), tiling.CUDA_TILE)
    memory.guard(x1.element_size() * (2 * n1 * n2 + 4 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    like = dict(dtype=x1.dtype, device=x1.device)
    result = torch.empty(n1, n2, **like)
    sum_deriv = torch.empty(n1, n2, **like)
    act1, beta_d1 = torch.empty(tile, n1, **like), torch.empty(tile, n1, **like)
    xt1 = x1.T.contiguous()
    if x2 is None:
        act2 = beta_d2 = xt2 = None
    else:
        act2, beta_d2 = torch.empty(tile, n2, **like), torch.empty(tile, n2, **like)
        xt2 = x2.T.contiguous()
    optional = [0 if t is None else address(t) for t in (x2, xt2, act2, beta_d2)]
    kernel = getattr(module("cuda"), f"onehidden_ntk_{suffix(x1.dtype)}")
    with torch.cuda.device(x1.device):  # launches go to the inputs' GPU
        kernel(address(x1), n1, optional[0], n2, address(xt1), optional[1], address(omega), address(b),
               address(beta), d, h, scale, address(result), address(sum_deriv), address(act1), address(beta_d1),
               optional[2], optional[3], tile, cuda_stream(x1.device))
    return result
