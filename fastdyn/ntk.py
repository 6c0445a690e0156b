"""Empirical neural tangent kernel: ``Theta(x1, x2) = grad_theta f(x1)^T grad_theta f(x2)``.

:func:`ntk` picks one of three paths from the model, and for the first one a backend (see :mod:`fastdyn._backends`):

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

import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from . import _backends
from ._arrays import address, as_tensors, check_matrix, cuda_stream, match_parameters, suffix
from .models import OneHidden

OUTS = ("full", "trace", "diagonal")
PATHS = ("onehidden-closed-form", "structured", "generic")
_CLOSED_FORM_BACKENDS = ("cuda", "cpu", "numba", "torch")
_CPU_TILE_BYTES = 32 << 20    # neuron tile of the CPU backends: about this many bytes per activation array ...
_CPU_TILE_RANGE = (256, 8192)  # ... within these bounds (throughput was flat for 1024-4096 neurons at N=2000)
_CUDA_TILE_BYTES = 256 << 20   # neuron tile of the CUDA kernels, same rule
_CUDA_TILE_RANGE = (256, 8192)
_TORCH_TILE = 4096


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
        supported = _CLOSED_FORM_BACKENDS if model.act == "relu" else ("torch",)
        what = f"the closed-form NTK of OneHidden(act={model.act!r})"
    else:
        paths = _structured_paths()
        path = "structured" if paths.is_structured(model) else "generic"
        supported = ("torch",)
        what = f"the {path} NTK path"
    name = _backends.resolve(backend, kind.device, supported, what=what)

    start = time.perf_counter()
    if path == "onehidden-closed-form":
        kernel = _onehidden_ntk(model, t1, t2, name)
    else:
        outputs = _output_count(model, t1)
        _guard_memory(_result_bytes(t1, t2, outputs, out), kind.device)
        compute = paths.structured_ntk if path == "structured" else paths.generic_ntk
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


def _structured_paths():
    """fastdyn._ntk_structured (structured_ntk, generic_ntk, is_structured), imported when first needed."""
    try:
        from . import _ntk_structured
    except ImportError as exc:
        raise NotImplementedError(
            "the structured and generic NTK paths (fastdyn/_ntk_structured.py) are missing from this build; "
            "only fastdyn.models.OneHidden is supported here"
        ) from exc
    return _ntk_structured


# ---- OneHidden closed form -------------------------------------------------------------------------------------

def _onehidden_ntk(model: OneHidden, x1: torch.Tensor, x2: torch.Tensor | None, name: str) -> torch.Tensor:
    omega, b, beta = (p.detach().contiguous() for p in (model.omega, model.b, model.beta))
    n1, d = x1.shape
    n2 = n1 if x2 is None else x2.shape[0]
    h, scale, elt = model.h, model.output_scale, x1.element_size()
    if name == "cuda":
        tile = _tile(n1 + n2, h, elt, _CUDA_TILE_BYTES, _CUDA_TILE_RANGE)
    elif name == "torch":
        tile = min(h, _TORCH_TILE)
    else:
        tile = _tile(n1 + n2, h, elt, _CPU_TILE_BYTES, _CPU_TILE_RANGE)
    extra_squares = {"cpu": 1, "cuda": 1, "numba": 3, "torch": 5}[name]  # N1 x N2 work arrays besides the result
    per_point = 4 if name != "torch" else 6  # tile-sized arrays per point
    _guard_memory(elt * (n1 * n2 * (1 + extra_squares) + per_point * tile * (n1 + n2)), x1.device)

    if name == "torch":
        from .reference.ntk_closed_form import onehidden_ntk as torch_ntk

        return torch_ntk(x1, x2, omega, b, beta, scale, model.act, tile)
    if name == "numba":
        from ._numba.ntk import onehidden_ntk as numba_ntk

        x2_np = x1.numpy() if x2 is None else x2.numpy()
        result = numba_ntk(x1.numpy(), x2_np, x2 is None, omega.numpy(), b.numpy(), beta.numpy(), scale, tile)
        return torch.from_numpy(result)
    kernel = getattr(_backends.module(name), f"onehidden_ntk_{suffix(x1.dtype)}")
    result = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    x2_address = 0 if x2 is None else address(x2)
    if name == "cpu":
        kernel(address(x1), n1, x2_address, n2, address(omega), address(b), address(beta), d, h, scale,
               address(result), tile, torch.get_num_threads())
        return result
    # CUDA: every buffer comes from torch's caching allocator on the inputs' device; kernels run on torch's stream.
    like = dict(dtype=x1.dtype, device=x1.device)
    sum_deriv = torch.empty(n1, n2, **like)
    act1, beta_d1 = torch.empty(tile, n1, **like), torch.empty(tile, n1, **like)
    xt1 = x1.T.contiguous()
    if x2 is None:
        act2 = beta_d2 = xt2 = None
    else:
        act2, beta_d2 = torch.empty(tile, n2, **like), torch.empty(tile, n2, **like)
        xt2 = x2.T.contiguous()
    optional = [0 if t is None else address(t) for t in (xt2, act2, beta_d2)]
    with torch.cuda.device(x1.device):  # launches go to the inputs' GPU
        kernel(address(x1), n1, x2_address, n2, address(xt1), optional[0], address(omega), address(b),
               address(beta), d, h, scale, address(result), address(sum_deriv), address(act1), address(beta_d1),
               optional[1], optional[2], tile, cuda_stream(x1.device))
    return result


def _tile(points: int, h: int, elt: int, budget: int, bounds: tuple[int, int]) -> int:
    """Neurons per tile: about ``budget`` bytes per (points x tile) activation array, clamped to ``bounds`` and h."""
    low, high = bounds
    return max(1, min(h, high, max(low, budget // max(1, points * elt))))


# ---- memory guard ----------------------------------------------------------------------------------------------

def _result_bytes(x1: torch.Tensor, x2: torch.Tensor | None, outputs: int, out: str) -> int:
    """Bytes of the result of the structured/generic paths (doubled for their work arrays)."""
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    per_pair = 1 if outputs == 1 or out == "trace" else (outputs if out == "diagonal" else outputs * outputs)
    return 2 * n1 * n2 * per_pair * x1.element_size()


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (None when unknown): MemAvailable, or CUDA free + cached."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _guard_memory(needed: int, device: torch.device) -> None:
    """Refuse, before allocating anything, a computation that would not fit in the device's memory."""
    available = available_memory(device)
    if available is not None and needed > available:
        gib = 1 << 30
        raise MemoryError(
            f"ntk needs about {needed / gib:.2f} GiB of {device.type} memory but only {available / gib:.2f} GiB is "
            f"available; compute the kernel in blocks of rows of x1 / x2"
        )

