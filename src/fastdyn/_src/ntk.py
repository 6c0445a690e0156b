"""Empirical neural tangent kernel: ``Theta(x1, x2) = grad_theta f(x1)^T grad_theta f(x2)``.

:func:`ntk` picks one of three paths from the model, and for the first one a backend (operation
"ntk.onehidden" of :mod:`fastdyn._src.registry`):

==========================  ==============================================================  =======================
path                        models                                                          backends
==========================  ==============================================================  =======================
``onehidden-closed-form``   :class:`fastdyn.models.OneHidden`: sums over neurons in tiles   relu: cuda, cpu, numba,
                            (science.md section 2), SYRK when x2 is None, GEMM otherwise    torch; other acts: torch
``structured``              ``nn.Sequential`` of ``nn.Linear`` and elementwise activations  torch
                            (e.g. :class:`fastdyn.models.FCNet`): structured derivatives
``generic``                 any other ``nn.Module``: torch.func Jacobian contraction        torch
==========================  ==============================================================  =======================

Precision: fp64 inputs are computed in fp64 end to end; fp32 inputs accumulate in fp32. The CUDA closed form uses
fastdyn's own kernels (no cuBLAS), so fp32 there is true IEEE fp32, never TF32; the torch backend follows torch's
matmul settings (TF32 only if ``torch.backends.cuda.matmul.allow_tf32`` was switched on).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..models import OneHidden
from . import backends, memory, ntk_structured
from .arrays import as_tensors, check_matrix, match_parameters
from .ntk_structured import OUTS
from .registry import dispatch

PATHS = ("onehidden-closed-form", "structured", "generic")


@dataclass(frozen=True)
class NTKInfo:
    """How :func:`ntk` computed a kernel.

    Attributes:
        path: "onehidden-closed-form", "structured" or "generic".
        backend: "cuda", "cpu", "numba" or "torch".
        dtype: "float32" or "float64", the precision of the whole computation.
        seconds: wall-clock time of the computation (on CUDA, synchronised), validation excluded.
    """

    path: str
    backend: str
    dtype: str
    seconds: float


def ntk(model: nn.Module, x1, x2=None, *, out: str = "full", backend: str = "auto", return_info: bool = False):
    """Empirical NTK of ``model`` between the rows of ``x1`` and ``x2``.

    Args:
        model: a ``torch.nn.Module`` mapping (N, d_in) to (N,) or (N, O); its parameters' dtype and device must match
            the inputs'.
        x1: (N1, d_in) inputs, numpy array or torch tensor (float32 or float64, CPU or CUDA).
        x2: (N2, d_in) inputs, or None for Theta(x1, x1): half the work, and the result is exactly symmetric.
        out: for O > 1 outputs, "full" gives (N1, N2, O, O), "trace" the sum over the output pair's diagonal
            (N1, N2), "diagonal" (N1, N2, O). Scalar outputs ((N,) or (N, 1)) always give (N1, N2).
        backend: "auto", "cuda", "cpu", "numba" or "torch" (see the module table for what each path supports).
        return_info: also return an :class:`NTKInfo` saying which path and backend ran.

    Returns:
        The kernel in the inputs' kind (numpy in, numpy out), dtype and device; with ``return_info``,
        ``(kernel, NTKInfo)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if out not in OUTS:
        raise ValueError(f"out must be one of {OUTS}, got {out!r}")
    if not isinstance(return_info, bool):
        raise TypeError(f"return_info must be True or False, got {return_info!r}")
    (t1, t2), kind = as_tensors(x1=x1, x2=x2)
    width = _input_width(model)
    for name, tensor in (("x1", t1), ("x2", t2)):
        if tensor is None:
            continue
        check_matrix(name, tensor)
        expected = width if width is not None else t1.shape[1]
        if tensor.shape[1] != expected:
            source = "the model's input width" if width is not None else "x1's number of columns"
            raise ValueError(f"{name} must have shape (N, {expected}) to match {source}, got {tuple(tensor.shape)}")
        if tensor.shape[1] == 0:
            raise ValueError(f"{name} has no feature columns (shape {tuple(tensor.shape)})")
    params = dict(model.named_parameters())
    if not params:
        raise ValueError("model has no parameters, so its NTK is not defined")
    match_parameters("model", params, kind)

    if _is_onehidden(model):
        path = "onehidden-closed-form"
        # the compiled kernels cover ReLU; every activation runs on "torch"
        among = None if model.act == "relu" else ("torch",)
        name, closed_form = dispatch("ntk.onehidden", backend, kind.device, among=among,
                                     what=f"the closed-form NTK of OneHidden(act={model.act!r})")
        start = time.perf_counter()
        omega, b, beta = (p.detach().contiguous() for p in (model.omega, model.b, model.beta))
        kernel = closed_form(t1, t2, omega, b, beta, scale=model.output_scale, act=model.act)
    else:
        path = "structured" if ntk_structured.is_structured(model) else "generic"
        name = backends.resolve(backend, kind.device, ("torch",), what=f"the {path} NTK path")
        start = time.perf_counter()
        outputs = _output_count(model, t1)
        memory.guard(_result_bytes(t1, t2, outputs, out), kind.device, what="ntk",
                     advice="compute the kernel in blocks of rows of x1 / x2")
        compute = ntk_structured.structured_ntk if path == "structured" else ntk_structured.generic_ntk
        kernel = compute(model, t1, t2, out)
    if return_info and kind.device.type == "cuda":
        torch.cuda.synchronize(kind.device)  # so that seconds covers the GPU work
    seconds = time.perf_counter() - start
    kernel = kind.restore(kernel)
    if not return_info:
        return kernel
    return kernel, NTKInfo(path=path, backend=name, dtype=str(kind.dtype).removeprefix("torch."), seconds=seconds)


def _is_onehidden(model: nn.Module) -> bool:
    """A OneHidden whose maths is the stock one (a subclass that overrides forward goes to the generic path)."""
    return (isinstance(model, OneHidden) and type(model).forward is OneHidden.forward
            and type(model).preactivation is OneHidden.preactivation)


def _input_width(model: nn.Module) -> int | None:
    """d_in when the model says it: OneHidden.d, or the in_features of a Sequential's first Linear; else None."""
    if isinstance(model, OneHidden):
        return model.d
    first = model
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    return first.in_features if isinstance(first, nn.Linear) and first is not model else None


def _output_count(model: nn.Module, x1: torch.Tensor) -> int:
    """O, from one forward pass on the first point; the output must be (N,) or (N, O)."""
    with torch.no_grad():
        y = model(x1[:1])
    if not isinstance(y, torch.Tensor) or y.ndim not in (1, 2) or y.shape[0] != 1:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"model must map (N, d_in) to (N,) or (N, O); on one point it returned {shape}")
    return 1 if y.ndim == 1 else y.shape[1]


# ---- memory ----------------------------------------------------------------------------------------------------

def _result_bytes(x1: torch.Tensor, x2: torch.Tensor | None, outputs: int, out: str) -> int:
    """Bytes of the result of the structured/generic paths (doubled for their work arrays)."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    per_pair = 1 if outputs == 1 or out == "trace" else (outputs if out == "diagonal" else outputs * outputs)
    return 2 * n1 * n2 * per_pair * x1.element_size()
