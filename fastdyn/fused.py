"""Fused kernels of the one-hidden-layer ReLU network (:class:`fastdyn.models.OneHidden`).

Each entry point validates its inputs once, picks a backend (see :mod:`fastdyn._backends`) and runs the same
maths in C++/OpenMP, CUDA, Numba or plain torch, never forming a points x neurons matrix in the compiled paths.
"""
from __future__ import annotations

import torch

from . import _backends
from ._arrays import address, as_tensors, check_matrix, cuda_stream, match_parameters, suffix
from .models import OneHidden

_SUPPORTED = ("cuda", "cpu", "numba", "torch")


def onehidden_parameters(model: OneHidden, like) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(omega, b, beta) of a ReLU OneHidden, detached and checked against the inputs' dtype and device."""
    if not isinstance(model, OneHidden):
        raise TypeError(f"model must be a fastdyn.models.OneHidden, got {type(model).__name__}")
    if model.act != "relu":
        raise ValueError(f"the fused kernels cover act='relu' only, got model.act={model.act!r}")
    omega, b, beta = match_parameters("model", {"omega": model.omega, "b": model.b, "beta": model.beta}, like)
    return omega, b, beta


def forward(model: OneHidden, x, *, backend: str = "auto"):
    """Network output f(x) of a ReLU :class:`OneHidden` without autograd.

    Args:
        model: the network (its parameters' dtype and device must match ``x``).
        x: (p, d) inputs, numpy array or torch tensor.
        backend: "auto", "cuda", "cpu", "numba" or "torch".

    Returns:
        (p,) outputs, same kind, dtype and device as ``x``.
    """
    (x_t,), kind = as_tensors(x=x)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    omega, b, beta = onehidden_parameters(model, kind)
    name = _backends.resolve(backend, kind.device, _SUPPORTED, what="fused.forward")
    p, d = x_t.shape
    h, scale = omega.shape[0], model.output_scale
    if name == "torch":
        from .reference.onehidden import forward as torch_forward

        out = torch_forward(x_t, omega, b, beta, scale)
    elif name == "numba":
        from ._numba.onehidden import forward as numba_forward

        out = torch.from_numpy(numba_forward(x_t.numpy(), omega.numpy(), b.numpy(), beta.numpy(), scale))
    else:
        out = torch.empty(p, dtype=kind.dtype, device=kind.device)
        kernel = getattr(_backends.module(name), f"onehidden_forward_{suffix(kind.dtype)}")
        last = cuda_stream(kind.device) if name == "cuda" else torch.get_num_threads()
        kernel(address(x_t), address(omega), address(b), address(beta), address(out), p, d, h, scale, last)
    return kind.restore(out)
