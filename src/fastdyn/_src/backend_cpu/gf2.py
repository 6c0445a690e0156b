"""Registration of the "cpu" GF(2) elimination (csrc/cpu/gf2.cpp): bit-packs the columns, 64 equations per word."""
from __future__ import annotations

import numpy as np
import torch

from ..backends import module
from ..registry import register


def pack_columns(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(d + 1, ceil(n / 64)) uint64: bit r % 64 of word r // 64 of column j is z[r, j] (column d: b)."""
    n = z.shape[0]
    bits = np.concatenate([z, b[:, None]], axis=1).T                  # (d + 1, n) bool
    packed = np.packbits(bits, axis=1, bitorder="little")              # (d + 1, ceil(n / 8)) bytes
    pad = -packed.shape[1] % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view("<u8")[:, :(n + 63) // 64].copy()


@register("gf2.eliminate", "cpu")
def eliminate(z, b):
    z, b = np.asarray(z, dtype=bool), np.asarray(b, dtype=bool)
    columns = pack_columns(z, b)
    pivots = np.empty(z.shape[1], dtype=np.int32)
    module("cpu").gf2_eliminate(columns, pivots, n=z.shape[0], threads=torch.get_num_threads())
    reduced = np.unpackbits(columns[-1].view(np.uint8), bitorder="little")[:z.shape[0]].astype(bool)
    return pivots.astype(np.int64), reduced
