"""Array interop and input checks shared by every public kernel.

Public functions take torch tensors (CPU or CUDA) or numpy arrays and answer in the caller's kind, dtype and
device. Numpy input is viewed as a tensor without a copy (``torch.from_numpy``); contiguous tensors are passed
on as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..models import OneHidden

FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ArrayKind:
    """How the caller gave its arrays, so results go back the same way."""

    numpy: bool
    dtype: torch.dtype
    device: torch.device

    def restore(self, value: Any) -> Any:
        """Return tensors (also inside tuples, lists and dicts) as numpy arrays when the caller gave numpy."""
        if not self.numpy:
            return value
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, (tuple, list)):
            return type(value)(self.restore(v) for v in value)
        if isinstance(value, dict):
            return {k: self.restore(v) for k, v in value.items()}
        return value


def as_tensor(name: str, value: Any) -> torch.Tensor:
    """A contiguous float tensor view of ``value`` (numpy array or tensor), checked for dtype."""
    if isinstance(value, np.ndarray):
        if value.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must have dtype float32 or float64, got numpy {value.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        if value.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
        tensor = value.detach()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")
    return tensor


def as_tensors(**arrays: Any) -> tuple[list[torch.Tensor | None], ArrayKind]:
    """Convert named arrays (None passes through) and check they agree in dtype and device.

    Returns the tensors in argument order and the ArrayKind that restores results.
    """
    tensors: list[torch.Tensor | None] = []
    first_name, first = None, None
    all_numpy = True
    for name, value in arrays.items():
        if value is None:
            tensors.append(None)
            continue
        all_numpy &= isinstance(value, np.ndarray)
        tensor = as_tensor(name, value)
        if first is None:
            first_name, first = name, tensor
        elif tensor.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {tensor.dtype} but {first_name} has {first.dtype}; give both the same")
        elif tensor.device != first.device:
            raise ValueError(f"{name} is on {tensor.device} but {first_name} is on {first.device}; move both to one device")
        tensors.append(tensor)
    if first is None:
        raise ValueError(f"expected at least one array among {tuple(arrays)}")
    return tensors, ArrayKind(numpy=all_numpy, dtype=first.dtype, device=first.device)


def labelled_data(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) as tensors (numpy converted, tensors as they are): x (N, ...) with N >= 1 and y (N,) labels."""
    inputs = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    labels = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(f"x must be (N, ...) inputs with N >= 1, got shape {tuple(inputs.shape)}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"y must have shape ({inputs.shape[0]},) to match x, got {tuple(labels.shape)}")
    return inputs, labels


def check_matrix(name: str, tensor: torch.Tensor, cols: int | None = None, *, allow_empty: bool = False) -> None:
    """Require a 2-D (rows, cols) array with finite entries."""
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (points, features), got shape {tuple(tensor.shape)}")
    if cols is not None and tensor.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(tensor.shape)}")
    if not allow_empty and tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}); give at least one row")
    check_finite(name, tensor)


def check_vector(name: str, tensor: torch.Tensor, length: int | None = None) -> None:
    """Require a 1-D array (of ``length``) with finite entries."""
    if tensor.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if length is not None and tensor.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {tensor.shape[0]}")
    check_finite(name, tensor)


_FINITE_CHUNK = 1 << 22  # elements checked at a time, so a check never allocates more than a few MB


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise ValueError when ``tensor`` holds NaN or Inf."""
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), _FINITE_CHUNK):
        if not bool(torch.isfinite(flat[start:start + _FINITE_CHUNK]).all()):
            raise ValueError(f"{name} contains NaN or Inf")


def match_parameters(what: str, params: dict[str, torch.Tensor], like: ArrayKind) -> list[torch.Tensor]:
    """Detached contiguous model parameters, checked against the inputs' dtype and device."""
    out = []
    for name, tensor in params.items():
        if tensor.dtype != like.dtype:
            raise TypeError(
                f"{what}.{name} is {tensor.dtype} but the inputs are {like.dtype}; convert one of them "
                f"(e.g. model.to({like.dtype}))"
            )
        if tensor.device != like.device:
            raise ValueError(f"{what}.{name} is on {tensor.device} but the inputs are on {like.device}")
        check_finite(f"{what}.{name}", tensor)
        out.append(tensor.detach().contiguous())
    return out


def onehidden_parameters(model: OneHidden, like) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(omega, b, beta) of a ReLU OneHidden, detached and checked against the inputs' dtype and device."""
    if not isinstance(model, OneHidden):
        raise TypeError(f"model must be a fastdyn.models.OneHidden, got {type(model).__name__}")
    if model.act != "relu":
        raise ValueError(f"the fused kernels cover act='relu' only, got model.act={model.act!r}")
    omega, b, beta = match_parameters("model", {"omega": model.omega, "b": model.b, "beta": model.beta}, like)
    return omega, b, beta
