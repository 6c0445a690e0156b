"""Neuron tiles of the closed-form NTK kernels: how many neurons' activations are held at once."""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import memory


class TileRule(NamedTuple):
    """About ``budget`` bytes per (points x tile) activation array, clamped to [low, high] neurons."""

    budget: int
    low: int
    high: int


CPU_TILE = TileRule(32 << 20, 256, 8192)    # throughput was flat for 1024-4096 neurons at N = 2000
CUDA_TILE = TileRule(256 << 20, 256, 8192)
TORCH_TILE = 4096                           # the torch backend's fixed tile


def neuron_tile(points: int, h: int, itemsize: int, rule: TileRule) -> int:
    """Neurons per tile for ``points`` rows (N1 + N2) of ``itemsize`` bytes, at most h."""
    return max(1, min(h, rule.high, max(rule.low, rule.budget // max(1, points * itemsize))))


def compiled_ntk_tile(x1: torch.Tensor, x2: torch.Tensor | None, h: int, act: str, rule: TileRule) -> int:
    """Neurons per tile of a compiled closed-form NTK (ReLU only), after the memory guard: the (N1, N2) result, one
    more N1 x N2 sum and four (points x tile) activation arrays (on CUDA also x^T, all in the kernel's scratch)."""
    if act != "relu":
        raise ValueError(f"the compiled closed-form NTK covers act='relu' only, got {act!r}")
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    tile = neuron_tile(n1 + n2, h, x1.element_size(), rule)
    memory.guard(x1.element_size() * (2 * n1 * n2 + 4 * tile * (n1 + n2)), x1.device, what="ntk",
                 advice="compute the kernel in blocks of rows of x1 / x2")
    return tile
