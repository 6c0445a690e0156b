"""Fused kernels of the one-hidden-layer ReLU network (:class:`fastdyn.models.OneHidden`).

* :func:`forward` — f(x), parallel over points.
* :func:`gradient` — the parameter gradient of sum_i g_i f(x_i) (g = dL/df), parallel over neurons; the kink
  velocities of :mod:`fastdyn.kinks` and gradient-flow training build on it.

Each entry point validates its inputs once, picks a backend (see :mod:`fastdyn._backends`) and runs the same
maths in C++/OpenMP, CUDA, Numba or plain torch, never forming a points x neurons matrix in the compiled paths.
"""
from __future__ import annotations

import torch

from . import _backends
from ._arrays import address, as_tensors, check_matrix, check_vector, cuda_stream, match_parameters, suffix
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


def gradient(model: OneHidden, x, g, *, backend: str = "auto"):
    """Gradient of ``sum_i g_i f(x_i)`` with respect to the parameters of a ReLU :class:`OneHidden`.

    With ``g_i = dL/df(x_i)`` this is the loss gradient; gradient flow moves the parameters by minus it. For
    a_n(x) = [omega_n . x / sqrt(d) + b_n > 0] and s = ``model.output_scale``:
    grad_omega_n = s beta_n sum_i g_i a_n(x_i) x_i / sqrt(d), grad_b_n = s beta_n sum_i g_i a_n(x_i),
    grad_beta_n = s sum_i g_i relu(omega_n . x_i / sqrt(d) + b_n).
    The compiled kernels run parallel over neurons with memory O((h + p) d), never a points x neurons matrix.

    Args:
        model: the network (its parameters' dtype and device must match ``x``).
        x: (p, d) inputs, numpy array or torch tensor.
        g: (p,) weights of the points (dL/df), same kind, dtype and device as ``x``.
        backend: "auto", "cuda", "cpu", "numba" or "torch".

    Returns:
        (grad_omega (h, d), grad_b (h,), grad_beta (h,)), same kind, dtype and device as ``x``.
    """
    (x_t, g_t), kind = as_tensors(x=x, g=g)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    check_vector("g", g_t, x_t.shape[0])
    omega, b, beta = onehidden_parameters(model, kind)
    name = _backends.resolve(backend, kind.device, _SUPPORTED, what="fused.gradient")
    return kind.restore(parameter_gradient(x_t, g_t, omega, b, beta, model.output_scale, name))


def parameter_gradient(x: torch.Tensor, g: torch.Tensor, omega: torch.Tensor, b: torch.Tensor, beta: torch.Tensor,
                       scale: float, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`gradient` on checked contiguous tensors and a resolved backend name (internal entry point)."""
    p, d = x.shape
    h = omega.shape[0]
    if backend == "torch":
        from .reference.onehidden import gradient as torch_gradient

        return torch_gradient(x, g, omega, b, beta, scale)
    if backend == "numba":
        from ._numba.onehidden import gradient as numba_gradient

        arrays = numba_gradient(x.numpy(), g.numpy(), omega.numpy(), b.numpy(), beta.numpy(), scale)
        return tuple(torch.from_numpy(a) for a in arrays)
    grad_omega, grad_b, grad_beta = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(beta)
    kernel = getattr(_backends.module(backend), f"onehidden_gradient_{suffix(x.dtype)}")
    last = cuda_stream(x.device) if backend == "cuda" else torch.get_num_threads()
    kernel(address(x), address(g), address(omega), address(b), address(beta), address(grad_omega), address(grad_b),
           address(grad_beta), p, d, h, scale, last)
    return grad_omega, grad_b, grad_beta
