"""The kernel registry: one Python signature per operation, one implementation per backend.

In the spirit of PyTorch ATen's ``DispatchStub``: an operation such as ``"onehidden.gradient"`` is declared once
here with the signature every backend implements, and each backend package (``backend_torch``, ``backend_numba``,
``backend_cpu``, ``backend_cuda``) registers its implementation where it is written::

    @register("onehidden.gradient", "cpu")
    def gradient(x, g, omega, b, beta, *, scale): ...

:func:`dispatch` resolves (operation, requested backend, device) to a callable through
:func:`fastdyn._src.backends.resolve`; the backends an operation supports are exactly those registered for it.
Implementations receive checked, contiguous tensors of one dtype and device (the public functions validate) and
return tensors; how a backend gets its arrays to its kernels (numpy views, raw buffers, CUDA streams) is its own
business.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import backends

_BACKEND_PACKAGES = {name: f"fastdyn._src.backend_{name}" for name in backends.BACKENDS}


@dataclass
class Operation:
    """One kernel operation: its signature in words and its implementations by backend name."""

    name: str
    signature: str
    implementations: dict[str, Callable] = field(default_factory=dict)


OPERATIONS: dict[str, Operation] = {}


def _declare(name: str, signature: str) -> None:
    OPERATIONS[name] = Operation(name, signature)


# The operations and their one signature. Tensors are contiguous, of one float dtype and device.
_declare("onehidden.forward", "(x (p, d), omega (h, d), b (h,), beta (h,), *, scale) -> f (p,)")
_declare("onehidden.jvp",
         "(x (p, d), omega (h, d), b (h,), beta (h,), v_omega (h, d), v_b (h,), v_beta (h,), *, scale) -> (p,) the "
         "derivative of f(x_i) along the parameter direction (v_omega, v_b, v_beta)")
_declare("onehidden.gradient",
         "(x (p, d), g (p,), omega (h, d), b (h,), beta (h,), *, scale) -> (grad_omega (h, d), grad_b (h,), "
         "grad_beta (h,)) of sum_i g_i f(x_i)")
_declare("onehidden.pattern_keys",
         "(x (p, d), omega (h, d), b (h,)) -> (keys (h, K) numpy, dead (h,) bool numpy): equal keys <=> equal "
         "activation patterns [pre_n(x_i) > 0]")
_declare("loss.hinge_gradient",
         "(f (p,), f0 (p,), y (p,), *, alpha) -> (g (p,), loss, unsatisfied): F = alpha (f - f0), "
         "g = dL/df of L = sum_i relu(1 - F_i y_i) / (p alpha^2), loss = L, unsatisfied = #{F_i y_i < 1}")
_declare("flow.onehidden_hinge",
         "(x (p, d), y (p,), f0 (p,), omega (h, d), b (h,), beta (h,), F (p,), *, alpha, scale, t, dt, dt_max, tol, "
         "max_dout, min_dt, max_time, t_stop, max_steps, max_seconds) -> dict(t, dt, dt_max, steps, rejected, "
         "hinge_events, stop): the exact hinge flow (fastdyn/_src/train/exact.py), omega, b, beta and F in place")
_declare("ntk.onehidden",
         "(x1 (N1, d), x2 (N2, d) or None, omega (h, d), b (h,), beta (h,), *, scale, act) -> Theta (N1, N2); "
         "x2=None: Theta(x1, x1), exactly symmetric")
_declare("kernels.fc",
         "(sigma (N1, N2) Sigma_1, overwritten, var1 (L, N1), var2 (L, N2) the variances Sigma_l(x, x) entering "
         "layers 1..L, weight_vars (L,) float64, bias_vars (L,) float64, *, act, symmetric) -> (nngp (N1, N2), "
         "ntk (N1, N2)): the infinite-width layer recursion of fastdyn.kernels, elementwise; symmetric: the same "
         "points on both sides (var1 is var2), sigma symmetrised first, the kernels exactly symmetric")
_declare("gf2.eliminate",
         "(z (n, d) bool, b (n,) bool) -> (pivots (d,) int64 numpy: the pivot equation of each unknown, -1 for a free "
         "one; b (n,) bool numpy: b after Gauss-Jordan elimination of z s = b over GF(2))")
_declare("kpca.check",
         "(K (B, N, N), labels (B or 1, N) or None, *, center) -> (stats (B, 3) float64: max|K|, max|K - K^T|, "
         "has NaN/Inf; alignment (B,) or None)")
_declare("kpca.full", "(K (B, N, N), *, k, center) -> (values (B, k), vectors (B, N, k), iterations (B,) int32)")
_declare("kpca.topk", "(K (B, N, N), *, k, center) -> (values (B, k), vectors (B, N, k), iterations (B,) int32)")
_declare("kpca.subspace",
         "(K (B, N, N), *, k, center, tol, mixed_precision, seed) -> (values (B, k), vectors (B, N, k), "
         "iterations (B,) int32, -1 where a direct solver took over)")


def register(operation: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as ``backend``'s implementation of ``operation``."""
    if operation not in OPERATIONS:
        raise KeyError(f"unknown operation {operation!r}; declare it in fastdyn/_src/registry.py")
    if backend not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {backends.BACKENDS}, got {backend!r}")

    def decorate(fn: Callable) -> Callable:
        implementations = OPERATIONS[operation].implementations
        if backend in implementations:
            raise RuntimeError(f"{backend!r} registered {operation!r} twice")
        implementations[backend] = fn
        return fn

    return decorate


_loaded = False


def _load() -> None:
    """Import every backend package once, so that their registrations have run (imports stay light: a backend's
    heavy module, numba or a compiled extension, is only loaded when one of its kernels is called)."""
    global _loaded
    if not _loaded:
        for package in _BACKEND_PACKAGES.values():
            importlib.import_module(package)
        _loaded = True


def supported(operation: str) -> tuple[str, ...]:
    """Backends that implement ``operation``, in preference order."""
    _load()
    if operation not in OPERATIONS:
        raise KeyError(f"unknown operation {operation!r}")
    implementations = OPERATIONS[operation].implementations
    return tuple(name for name in backends.BACKENDS if name in implementations)


def implementation(operation: str, backend: str) -> Callable:
    """The implementation of ``operation`` by an already resolved ``backend``; ValueError when it has none."""
    if backend not in supported(operation):
        raise ValueError(f"backend {backend!r} does not implement {operation}; it runs on {supported(operation)}")
    return OPERATIONS[operation].implementations[backend]


def dispatch(operation: str, backend: str, device: torch.device, *, among: tuple[str, ...] | None = None,
             what: str | None = None) -> tuple[str, Callable]:
    """(backend name, implementation) of ``operation`` for arrays on ``device``.

    ``backend`` is "auto" or a name (strict, see :func:`fastdyn._src.backends.resolve`); ``among`` narrows the
    registered backends (e.g. compiled kernels that cover ReLU only); ``what`` names the work in error messages.
    """
    names = supported(operation)
    if among is not None:
        names = tuple(name for name in names if name in among)
    name = backends.resolve(backend, device, names, what=what or operation)
    return name, OPERATIONS[operation].implementations[name]
