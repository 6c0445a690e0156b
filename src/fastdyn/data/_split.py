"""The train/test container and helpers shared by the data generators."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}


@dataclass(frozen=True)
class Split:
    """Train and test sets: ``x`` (p, d), ``y`` (p,), ``x_test`` (p_test, d), ``y_test`` (p_test,).

    Unpacks as ``x, y, x_test, y_test = split``. ``info`` holds generator facts (e.g. the parity subset).
    """

    x: Any
    y: Any
    x_test: Any
    y_test: Any
    info: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.x, self.y, self.x_test, self.y_test))


def check_sizes(**sizes: int) -> None:
    """p, d >= 1 and p_test >= 0, as integers."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < (0 if name == "p_test" else 1):
            raise ValueError(f"{name} must be >= {0 if name == 'p_test' else 1}, got {value}")


def streams(seed: int, name: str, n: int = 2) -> list[np.random.Generator]:
    """n independent numpy generators from ``seed`` and the data set's name (train, test, ...)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])
    return [np.random.default_rng(s) for s in sequence.spawn(n)]


def make_split(x, y, x_test, y_test, dtype, as_torch: bool, device=None, info: dict | None = None) -> Split:
    """Cast to ``dtype`` ("float32"/"float64", numpy or torch dtype) and to torch tensors on ``device`` if asked."""
    key = {np.float32: "float32", np.float64: "float64", torch.float32: "float32", torch.float64: "float64"}.get(dtype, dtype)
    if key not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    np_dtype, torch_dtype = DTYPES[key]
    arrays = [np.ascontiguousarray(a, dtype=np_dtype) for a in (x, y, x_test, y_test)]
    if as_torch:
        arrays = [torch.from_numpy(a).to(device=device, dtype=torch_dtype) for a in arrays]
    elif device is not None:
        raise ValueError("device applies to torch output: pass as_torch=True")
    return Split(*arrays, info=dict(info or {}))
