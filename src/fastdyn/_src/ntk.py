"""Empirical neural tangent kernel: ``Theta(x1, x2) = grad_theta f(x1)^T grad_theta f(x2)``.

:func:`ntk` picks one of these paths from the model (``implementation="auto"``), and for the first one a backend
(operation "ntk.onehidden" of :mod:`fastdyn._src.registry`):

==========================  ==============================================================  =======================
path                        models                                                          backends
==========================  ==============================================================  =======================
``onehidden-closed-form``   :class:`fastdyn.models.OneHidden`: sums over neurons in tiles   relu: cuda, cpu, numba,
                            (science.md section 2), SYRK when x2 is None, GEMM otherwise    torch; other acts: torch
``structured``              parameters only in Linear, Conv1d/2d, eval BatchNorm, LayerNorm  torch (CPU or CUDA)
                            layers, any forward between them (MLPs, CNNs, ResNets):
                            per-layer Gram products (:mod:`.ntk_structured`)
``generic``                 any other ``nn.Module``: torch.func Jacobian contraction        torch (CPU or CUDA)
``ntvp``                    any module, asked for: NTK-vector products (no Jacobian held)   torch (CPU or CUDA)
==========================  ==============================================================  =======================

Precision: fp64 inputs are computed in fp64 end to end; fp32 inputs accumulate in fp32. The CUDA closed form uses
fastdyn's own kernels (no cuBLAS), so fp32 there is true IEEE fp32, never TF32; the other paths run torch's cuBLAS
and cuDNN with TF32 switched off for the call (``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32`` are restored afterwards).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..models import OneHidden
from . import backends, memory, ntk_blocks, ntk_structured
from .arrays import as_tensors, check_finite, check_matrix, match_parameters
from .ntk_structured import OUTS, LayerRoute
from .registry import dispatch

PATHS = ("onehidden-closed-form", "structured", "generic", "ntvp")
IMPLEMENTATIONS = ("auto", "structured", "jacobian", "ntvp")


@dataclass(frozen=True)
class NTKInfo:
    """How :func:`ntk` computed a kernel.

    Attributes:
        path: "onehidden-closed-form", "structured", "generic" or "ntvp".
        backend: "cuda", "cpu", "numba" or "torch".
        dtype: "float32" or "float64", the precision of the whole computation.
        seconds: wall-clock time of the computation (on CUDA, synchronised), validation excluded.
        layers: a :class:`fastdyn.LayerRoute` per layer with parameters, saying how its part
            was computed ("gram", "gradient", "jacobian" or "ntvp"); empty for the closed form.
    """

    path: str
    backend: str
    dtype: str
    seconds: float
    layers: tuple[LayerRoute, ...] = ()


def ntk(model: nn.Module, x1, x2=None, *, out: str = "full", backend: str = "auto", implementation: str = "auto",
        block=None, file=None, progress: bool = True, return_info: bool = False):
    """Empirical NTK of ``model`` between the points of ``x1`` and ``x2``.

    Args:
        model: a ``torch.nn.Module`` mapping (N, ...) to (N,) or (N, O) and treating its points independently
            (dropout and batch norm in eval mode); its parameters' dtype and device must match the inputs'.
        x1: (N1, ...) inputs of the shape the model takes (e.g. (N, C, H, W) for a CNN), numpy array or torch
            tensor (float32 or float64, CPU or CUDA).
        x2: (N2, ...) inputs, or None for Theta(x1, x1): about half the work, and the result is exactly symmetric.
        out: for O > 1 outputs, "full" gives (N1, N2, O, O), "trace" the sum over the output pair's diagonal
            (N1, N2), "diagonal" (N1, N2, O). Scalar outputs ((N,) or (N, 1)) always give (N1, N2).
        backend: "auto", "cuda", "cpu", "numba" or "torch" (see the module table for what each path supports).
        implementation: "auto" (the closed form, else structured where it applies, else generic), "structured"
            (an error where it does not apply), "jacobian" (the generic path) or "ntvp" (NTK-vector products:
            memory-light for many outputs or parameters, slower).
        block: None, B or (B1, B2): compute the kernel in blocks of B1 x B2 points (bounded temporaries; square
            when x2 is None). Needed for kernels that do not fit in memory, with ``file``.
        file: a ``.npy`` path: write the kernel there block by block (default block 2048) and return it as a
            read-only ``numpy.memmap``; resident memory stays about one block, and a run interrupted resumes from
            ``<file>.progress.json`` (a file of another kernel is refused).
        progress: a tqdm bar over the blocks when there are several (tqdm installed).
        return_info: also return an :class:`NTKInfo` saying which path, backend and per-layer routes ran.

    Returns:
        The kernel in the inputs' kind (numpy in, numpy out), dtype and device (a numpy memmap with ``file``);
        with ``return_info``, ``(kernel, NTKInfo)``.

    Raises:
        TypeError / ValueError naming the argument for bad input (shape, dtype, device, NaN, a model in training
        mode with dropout or batch norm); MemoryError before allocating when the kernel would not fit, with the
        block size that would.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if out not in OUTS:
        raise ValueError(f"out must be one of {OUTS}, got {out!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    for flag, value in (("return_info", return_info), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    (t1, t2), kind = as_tensors(x1=x1, x2=x2)
    closed_form = implementation == "auto" and _is_onehidden(model)
    _check_inputs(model, t1, t2, closed_form)
    params = dict(model.named_parameters())
    if not params:
        raise ValueError("model has no parameters, so its NTK is not defined")
    match_parameters("model", params, kind)
    if block is not None or file is not None:
        block = ntk_blocks.check_block(2048 if block is None else block, t2 is None)

    if closed_form:
        path = "onehidden-closed-form"
        # the compiled kernels cover ReLU; every activation runs on "torch"
        among = None if model.act == "relu" else ("torch",)
        name, kernel_fn = dispatch("ntk.onehidden", backend, kind.device, among=among,
                                   what=f"the closed-form NTK of OneHidden(act={model.act!r})")
        omega, b, beta = (p.detach().contiguous() for p in (model.omega, model.b, model.beta))
        outputs, routes = 1, ()

        def compute(a, b2):
            return kernel_fn(a, b2, omega, b, beta, scale=model.output_scale, act=model.act)
    else:
        _check_deterministic(model)
        outputs = _output_count(model, t1)
        plan = ntk_structured.plan_structured(model, t1, out) if implementation in ("auto", "structured") else None
        if implementation == "structured" and plan is None:
            raise ValueError("implementation='structured' does not apply to this model: its parameters must all "
                             "belong to stock Linear, Conv1d/2d, eval-mode BatchNorm or LayerNorm layers, each called "
                             "once, with no hooks (see fastdyn._src.ntk_structured.is_structured)")
        path = "structured" if plan is not None else "ntvp" if implementation == "ntvp" else "generic"
        name = backends.resolve(backend, kind.device, ("torch",), what=f"the {path} NTK path")
        routes = plan.routes if plan is not None else _whole_layers(model, path)
        if file is None:
            rows = t1.shape[0] if block is None else min(block[0], t1.shape[0])
            cols = (t1 if t2 is None else t2).shape[0] if block is None else block[1]
            _guard(t1, t2, outputs, out, kind.device, block is not None, rows, cols)

        def compute(a, b2):
            with _no_tf32(kind.device):
                if path == "structured":
                    return ntk_structured.structured_ntk(model, a, b2, out, plan=plan)
                function = ntk_structured.ntvp_ntk if path == "ntvp" else ntk_structured.generic_ntk
                return function(model, a, b2, out)

    start = time.perf_counter()
    if block is None:
        kernel = compute(t1, t2)
    else:
        trailing = () if outputs == 1 or out == "trace" else (outputs,) if out == "diagonal" else (outputs, outputs)
        settings = {"out": out, "block": list(block), "path": path}
        kernel = ntk_blocks.fill_blocks(
            compute, t1, t2, trailing, block, file=file, progress=progress,
            fingerprint=lambda: ntk_blocks._fingerprint([t1, t2, *params.values()], settings))
    if return_info and kind.device.type == "cuda":
        torch.cuda.synchronize(kind.device)  # so that seconds covers the GPU work
    seconds = time.perf_counter() - start
    if file is None:
        kernel = kind.restore(kernel)
    if not return_info:
        return kernel
    info = NTKInfo(path=path, backend=name, dtype=str(kind.dtype).removeprefix("torch."), seconds=seconds,
                   layers=routes)
    return kernel, info


@contextlib.contextmanager
def _no_tf32(device: torch.device):
    """TF32 off for cuBLAS and cuDNN on CUDA for the duration (the NTK is promised in true fp32)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _whole_layers(model: nn.Module, path: str) -> tuple[LayerRoute, ...]:
    """Routes of the generic / ntvp paths: every module with parameters of its own, one route for all."""
    route = "ntvp" if path == "ntvp" else "jacobian"
    return tuple(LayerRoute(name, type(m).__name__, route, sum(p.numel() for p in m.parameters(recurse=False)))
                 for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None)


def _check_deterministic(model: nn.Module) -> None:
    """Refuse modules whose output for a point depends on the batch or on random masks."""
    for name, m in model.named_modules():
        batch_norm = isinstance(m, nn.modules.batchnorm._BatchNorm)
        if batch_norm and (m.training or m.running_mean is None):
            raise ValueError(f"model.{name or 'self'} ({type(m).__name__}) normalises by the statistics of the batch "
                             f"(training mode or no running statistics), so a point's output depends on the other "
                             f"points; call model.eval() (with running statistics) first")
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(f"model.{name or 'self'} ({type(m).__name__}) is in training mode and drops units at "
                             f"random; call model.eval() first")


def _check_inputs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, closed_form: bool) -> None:
    """x1 (N1, ...) and x2 (N2, ...) non-empty, finite, with the same trailing shape, matching the model's first
    layer where that says what it takes."""
    expected = _expected_input(model)
    for name, tensor in (("x1", x1), ("x2", x2)):
        if tensor is None:
            continue
        if closed_form:
            check_matrix(name, tensor)
        elif tensor.ndim < 2:
            raise ValueError(f"{name} must have shape (N, ...) with the model's input shape after N, got shape "
                             f"{tuple(tensor.shape)}")
        if tensor.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}); give at least one point")
        if expected is not None:
            ndim, axis, size, text, source = expected
            if tensor.ndim != ndim or tensor.shape[axis] != size:
                raise ValueError(f"{name} must have shape {text} to match {source}, got {tuple(tensor.shape)}")
        elif name == "x2" and tensor.shape[1:] != x1.shape[1:]:
            raise ValueError(f"x2 must have shape (N, {', '.join(map(str, x1.shape[1:]))}) like x1, "
                             f"got {tuple(tensor.shape)}")
        if math.prod(tensor.shape[1:]) == 0:
            raise ValueError(f"{name} has no features (shape {tuple(tensor.shape)})")
        check_finite(name, tensor)


def _is_onehidden(model: nn.Module) -> bool:
    """A OneHidden whose maths is the stock one (a subclass that overrides forward goes to the generic path)."""
    return (isinstance(model, OneHidden) and type(model).forward is OneHidden.forward
            and type(model).preactivation is OneHidden.preactivation)


def _expected_input(model: nn.Module):
    """(ndim, axis, size, shape text, source) of what the model's first layer takes, when it says: OneHidden's d,
    a Sequential's first Linear (N, in_features) or Conv1d / Conv2d (N, in_channels, ...); else None."""
    if isinstance(model, OneHidden):
        return 2, 1, model.d, f"(N, {model.d})", "the model's input width"
    first = model
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    if first is model:
        return None
    if isinstance(first, nn.Linear):
        return 2, 1, first.in_features, f"(N, {first.in_features})", "the model's input width"
    if isinstance(first, (nn.Conv1d, nn.Conv2d)):
        spatial = "L" if isinstance(first, nn.Conv1d) else "H, W"
        return (3 if spatial == "L" else 4), 1, first.in_channels, f"(N, {first.in_channels}, {spatial})", \
            f"the model's first layer {type(first).__name__}({first.in_channels}, ...)"
    return None


def _output_count(model: nn.Module, x1: torch.Tensor) -> int:
    """O, from one forward pass on the first point; the output must be (N,) or (N, O)."""
    try:
        with torch.no_grad():
            y = model(x1[:1])
    except Exception as error:  # the model's own message says what it expected
        raise ValueError(f"model could not run on x1[:1] of shape {tuple(x1[:1].shape)}: "
                         f"{type(error).__name__}: {error}") from error
    if not isinstance(y, torch.Tensor) or y.ndim not in (1, 2) or y.shape[0] != 1:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"model must map (N, ...) inputs to (N,) or (N, O) outputs; on one point it returned "
                         f"{shape}")
    return 1 if y.ndim == 1 else y.shape[1]


# ---- memory ----------------------------------------------------------------------------------------------------

def _guard(x1: torch.Tensor, x2: torch.Tensor | None, outputs: int, out: str, device: torch.device, blocked: bool,
           rows: int, cols: int) -> None:
    """MemoryError before allocating when the kernel (plus twice one block, or twice the kernel unblocked, for the
    work arrays) does not fit; the message names a block size and ``file`` that would."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    per_pair = (1 if outputs == 1 or out == "trace" else outputs if out == "diagonal" else outputs**2) * \
        x1.element_size()
    needed = n1 * n2 * per_pair + 2 * (rows * cols if blocked else n1 * n2) * per_pair
    available = memory.available_memory(device)
    side = 256 if available is None else max(256, math.isqrt(max(available // (8 * per_pair), 1)) // 256 * 256)
    memory.guard(needed, device, what=f"ntk ({n1} x {n2} kernel, {per_pair} bytes per pair)",
                 advice=f"write it to disk in blocks: ntk(..., file='kernel.npy', block=({side}, {side}))")
