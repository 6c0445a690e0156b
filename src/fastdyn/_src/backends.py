"""The one place that knows fastdyn's backends: their names, whether each loads here, and how one is chosen.

Which backends implement which operation follows from the kernel registry (:mod:`fastdyn._src.registry`);
this module only says which of them can run on given arrays.

=========  =====================================================  ===========
name       what runs                                              arrays
=========  =====================================================  ===========
``cuda``   compiled CUDA kernels (``fastdyn._cuda``)              CUDA tensors
``cpu``    compiled C++17/OpenMP kernels + OpenBLAS (``_core``)   CPU
``numba``  Numba ``@njit(parallel=True)`` kernels                 CPU
``torch``  plain-torch formulation, always there                  CPU or CUDA
=========  =====================================================  ===========

``backend="auto"`` picks "cuda" for CUDA tensors, else "cpu", else "numba", else "torch", skipping backends an
operation does not implement. The environment variable ``FASTDYN_BACKEND`` replaces "auto" by a preferred name
wherever that backend implements the kernel and runs on the arrays' device. An explicit ``backend=`` argument
is strict: a missing, unsupported or wrong-device backend is a ``ValueError`` that says why.
"""
from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch

BACKENDS = ("cuda", "cpu", "numba", "torch")
_CPU_BACKENDS = ("cpu", "numba", "torch")
_CUDA_BACKENDS = ("cuda", "torch")


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> tuple[ModuleType | None, str | None]:
    """Load a backend once: (module or None, reason it is missing or None)."""
    if name == "torch":
        return torch, None
    if name == "numba":
        try:
            return importlib.import_module("numba"), None
        except Exception as exc:  # noqa: BLE001 - any import failure means "not available", with its text
            return None, f"numba failed to import: {exc}"
    if name == "cpu":
        try:
            import scipy_openblas32  # noqa: F401  (loads libscipy_openblas.so for _core)

            return importlib.import_module("fastdyn._core"), None
        except ImportError as exc:
            return None, f"the C++ extension fastdyn._core was not built or fails to import: {exc}"
    if name == "cuda":
        try:
            module = importlib.import_module("fastdyn._cuda")
        except ImportError as exc:
            return None, f"the CUDA extension fastdyn._cuda was not built (no nvcc at install time?): {exc}"
        count, error = module.device_count()
        if count == 0:
            return None, f"fastdyn._cuda is built but sees no GPU ({error or 'no CUDA device'})"
        if not torch.cuda.is_available():
            return None, "fastdyn._cuda sees a GPU but this torch build has no CUDA support"
        return module, None
    raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {name!r}")


def available_backends(verbose: bool = False) -> list[str]:
    """Usable backend names in preference order; with ``verbose``, print why the others are missing."""
    names = [name for name in BACKENDS if _probe(name)[0] is not None]
    if verbose:
        for name, reason in backend_status().items():
            print(f"{name:6s} {'available' if reason is None else 'missing: ' + reason}")
    return names


def backend_status() -> dict[str, str | None]:
    """Map each backend name to None when usable, else the reason it is missing."""
    return {name: _probe(name)[1] for name in BACKENDS}


def why_unavailable(name: str) -> str | None:
    """Why ``name`` cannot be used here, or None when it can."""
    return _probe(name)[1]


def module(name: str) -> ModuleType:
    """The loaded module of a backend ("cpu" gives fastdyn._core, "cuda" fastdyn._cuda)."""
    loaded, reason = _probe(name)
    if loaded is None:
        raise ValueError(f"backend {name!r} is not available: {reason}")
    return loaded


def cpu_isa() -> str | None:
    """The instruction-set path of the "cpu" backend's dispatched kernels ("baseline", "avx2" or "avx512": the
    best this CPU runs, or the one ``FASTDYN_CPU_ISA`` forces), for result records; None without fastdyn._core."""
    loaded, _ = _probe("cpu")
    return None if loaded is None else loaded.cpu_isa()


def build_status() -> dict[str, str]:
    """Whether the compiled extensions were built and import, for diagnostics and CI."""
    status = {}
    for ext in ("_core", "_cuda"):
        try:
            if ext == "_core":
                import scipy_openblas32  # noqa: F401
            importlib.import_module(f"fastdyn.{ext}")
            status[ext] = "built"
        except ImportError as exc:
            status[ext] = f"not built ({exc})"
    return status


def resolve(backend: str, device: torch.device, supported: tuple[str, ...] = BACKENDS, *, what: str = "this kernel") -> str:
    """Choose the backend that runs ``what`` on arrays living on ``device``.

    ``supported`` lists the backends that implement the kernel. Raises ValueError for an unknown name, or an
    explicit request that is missing, unsupported or on the wrong device.
    """
    if backend not in BACKENDS and backend != "auto":
        raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {backend!r}")
    on_device = _CUDA_BACKENDS if device.type == "cuda" else _CPU_BACKENDS
    if backend == "auto":
        preferred = os.environ.get("FASTDYN_BACKEND", "auto").strip().lower() or "auto"
        if preferred not in BACKENDS and preferred != "auto":
            raise ValueError(f"FASTDYN_BACKEND must be one of {BACKENDS} or 'auto', got {preferred!r}")
        order = ([preferred] if preferred != "auto" else []) + list(on_device)
        for name in order:
            if name in supported and name in on_device and _probe(name)[0] is not None:
                return name
        raise ValueError(f"no backend available for {what} on {device.type} arrays; status: {backend_status()}")
    if backend not in supported:
        raise ValueError(f"backend {backend!r} does not implement {what}; it runs on {supported}")
    if backend not in on_device:
        raise ValueError(
            f"backend {backend!r} cannot run on {device.type} arrays; on {device.type} use one of {on_device}"
        )
    module(backend)  # raises with the reason when missing
    return backend
