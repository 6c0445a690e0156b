"""Checks of scalar and numpy arguments of the numpy modules (``theory``, ``linear``, ``deep_linear``), one message
style: the argument's name and what was expected. (Tensor inputs of the kernels are checked in :mod:`.arrays`.)"""
from __future__ import annotations

import math
import numbers

import numpy as np


def real(name: str, value, *, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a float: a finite real number > ``minimum`` (>= when ``strict`` is False); else TypeError or
    ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return value


def integer(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def array(name: str, value, *, ndim: int | None = None, minimum: float | None = None,
          strict: bool = True) -> np.ndarray:
    """``value`` as a float64 numpy array with finite entries, of ``ndim`` dimensions if given, each entry
    > ``minimum`` (>= when ``strict`` is False) if given."""
    result = np.asarray(value, dtype=np.float64)
    if ndim is not None and result.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {result.shape}")
    if not np.all(np.isfinite(result)):
        raise ValueError(f"{name} has NaN or infinite entries")
    if minimum is not None and np.any(result <= minimum if strict else result < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g} everywhere, got {value!r}")
    return result
