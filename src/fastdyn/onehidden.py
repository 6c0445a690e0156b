"""Fused kernels of the one-hidden-layer ReLU network (:class:`fastdyn.models.OneHidden`).

* :func:`forward` — f(x), parallel over points.
* :func:`gradient` — the parameter gradient of sum_i g_i f(x_i) (g = dL/df), parallel over neurons; the kink
  velocities of :mod:`fastdyn.kinks` and gradient-flow training build on it.

Each entry point validates its inputs once and dispatches the operation ("onehidden.forward",
"onehidden.gradient") to a backend through the kernel registry (:mod:`fastdyn._src.registry`): the same maths in
C++/OpenMP, CUDA, Numba or plain torch, never forming a points x neurons matrix in the compiled paths.
"""
from __future__ import annotations

from ._src.arrays import as_tensors, check_matrix, check_vector, onehidden_parameters
from ._src.registry import dispatch
from .models import OneHidden

__all__ = ["forward", "gradient"]


def forward(model: OneHidden, x, *, backend: str = "auto"):
    """Network output f(x) of a ReLU :class:`OneHidden` without autograd.

    Args:
        model: the network (its parameters' dtype and device must match ``x``).
        x: (p, d) inputs, numpy array or torch tensor.
        backend: "auto", "cuda", "cpu", "numba" or "torch".

    Returns:
        (p,) outputs, same kind, dtype and device as ``x``.

    Raises:
        TypeError: ``model`` is not a :class:`OneHidden`; ``x`` is not float32/float64 or not of the model's dtype.
        ValueError: ``x`` is not (p, d), holds NaN/Inf or is on another device; ``model.act`` is not "relu"; a
            ``backend`` that is unknown, missing here or does not run on the inputs' device (the message says why).
    """
    (x_t,), kind = as_tensors(x=x)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    omega, b, beta = onehidden_parameters(model, kind)
    _, kernel = dispatch("onehidden.forward", backend, kind.device)
    return kind.restore(kernel(x_t, omega, b, beta, scale=model.output_scale))


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

    Raises:
        TypeError, ValueError: as :func:`forward`; ValueError also when ``g`` is not (p,).
    """
    (x_t, g_t), kind = as_tensors(x=x, g=g)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    check_vector("g", g_t, x_t.shape[0])
    omega, b, beta = onehidden_parameters(model, kind)
    _, kernel = dispatch("onehidden.gradient", backend, kind.device)
    return kind.restore(kernel(x_t, g_t, omega, b, beta, scale=model.output_scale))
