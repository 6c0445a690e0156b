"""Plain-torch closed-form NTK of :class:`fastdyn.models.OneHidden` (the "torch" backend of :func:`fastdyn.ntk`).

With pre = omega.x/sqrt(d) + b, A = act(pre), D = act'(pre) and s the model's output scale (science.md section 2):

    Theta(x, x') = s^2 [ sum_n A_n(x) A_n(x') + (x.x'/d + 1) sum_n beta_n^2 D_n(x) D_n(x') ]

The neuron sums run in tiles of ``tile`` neurons, so memory is O(N1 N2 + tile (N1 + N2)). With ``tile=None`` all
neurons form one tile: that is the straightforward full-GEMM formulation a user writes by hand, and the
"plain-torch closed form" baseline of bench/bench_ntk.py. Matmuls follow torch's settings (on CUDA, fp32 matmuls use
TF32 only if ``torch.backends.cuda.matmul.allow_tf32`` was switched on; fastdyn's own CUDA kernels never do).
"""
from __future__ import annotations

import math

import torch
from torch.func import jvp

from ...models import activation
from .. import memory
from ..registry import register
from .. import tiling


def activation_and_derivative(pre: torch.Tensor, act: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(act(pre), act'(pre)) elementwise; ReLU by formula (derivative 0 at 0, as torch), others by forward-mode AD."""
    if act == "relu":
        return torch.relu(pre), (pre > 0).to(pre.dtype)
    return jvp(activation(act), (pre,), (torch.ones_like(pre),))


def mirror_upper(kernel: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle (diagonal included) is that of ``kernel``: exactly symmetric."""
    upper = torch.triu(kernel)
    return upper + torch.triu(kernel, diagonal=1).T


def onehidden_ntk(x1: torch.Tensor, x2: torch.Tensor | None, omega: torch.Tensor, b: torch.Tensor,
                  beta: torch.Tensor, scale: float, act: str = "relu", tile: int | None = 4096) -> torch.Tensor:
    """Theta (N1, N2) for x1 (N1, d), x2 (N2, d) or None (= x1, result mirrored to be exactly symmetric).

    omega (h, d), b (h,), beta (h,) are the OneHidden parameters, ``scale`` its output_scale, ``act`` its activation.
    """
    symmetric = x2 is None
    x2_ = x1 if symmetric else x2
    h, d = omega.shape
    tile = h if tile is None else max(1, min(int(tile), h))
    inv_sqrt_d = 1.0 / math.sqrt(d)
    sum_act = torch.zeros(x1.shape[0], x2_.shape[0], dtype=x1.dtype, device=x1.device)
    sum_deriv = torch.zeros_like(sum_act)
    for start in range(0, h, tile):
        rows = slice(start, start + tile)
        act1, deriv1 = activation_and_derivative(torch.addmm(b[rows], x1, omega[rows].T, alpha=inv_sqrt_d), act)
        deriv1 = deriv1 * beta[rows]
        if symmetric:
            act2, deriv2 = act1, deriv1
        else:
            act2, deriv2 = activation_and_derivative(torch.addmm(b[rows], x2_, omega[rows].T, alpha=inv_sqrt_d), act)
            deriv2 = deriv2 * beta[rows]
        sum_act.addmm_(act1, act2.T)
        sum_deriv.addmm_(deriv1, deriv2.T)
    gram = torch.addmm(torch.ones_like(sum_act), x1, x2_.T, alpha=1.0 / d)  # x.x'/d + 1
    kernel = (sum_act + gram * sum_deriv) * (scale * scale)
    return mirror_upper(kernel) if symmetric else kernel


@register("ntk.onehidden", "torch")
def closed_form(x1: torch.Tensor, x2: torch.Tensor | None, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor,
                *, scale: float, act: str) -> torch.Tensor:
    """:func:`onehidden_ntk` in tiles of at most tiling.TORCH_TILE neurons, after the memory guard."""
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    tile = min(omega.shape[0], tiling.TORCH_TILE)
    # the result, five more N1 x N2 arrays (sums, gram, temporaries), six (points x tile) arrays
    memory.guard(x1.element_size() * (6 * n1 * n2 + 6 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    return onehidden_ntk(x1, x2, omega, b, beta, scale, act, tile)
