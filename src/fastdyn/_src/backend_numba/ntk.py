"""Registration of the "numba" closed-form NTK of the ReLU one-hidden-layer network."""
from __future__ import annotations

import torch

from .. import memory
from ..registry import register
from .. import tiling
from .threads import at_torch_threads


@register("ntk.onehidden", "numba")
def onehidden_ntk(x1, x2, omega, b, beta, *, scale, act):
    if act != "relu":
        raise ValueError(f"the numba closed-form NTK covers act='relu' only, got {act!r}")
    from .ntk_kernels import onehidden_ntk as kernel

    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    tile = tiling.neuron_tile(n1 + n2, omega.shape[0], x1.element_size(), tiling.CPU_TILE)
    # the result, three more N1 x N2 arrays, four (points x tile) activation arrays
    memory.guard(x1.element_size() * (4 * n1 * n2 + 4 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    x2_np = x1.numpy() if x2 is None else x2.numpy()
    return torch.from_numpy(at_torch_threads(kernel, x1.numpy(), x2_np, x2 is None, omega.numpy(), b.numpy(),
                                             beta.numpy(), scale, tile))
