"""Neuron tiles of the closed-form NTK kernels: how many neurons' activations are held at once."""
from __future__ import annotations

from typing import NamedTuple


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
