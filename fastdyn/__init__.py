"""fastdyn: fast, exact tools for studying how neural networks learn.

Backends: see :func:`available_backends` and :mod:`fastdyn._backends`.
"""
from ._backends import available_backends, backend_status, build_status, why_unavailable
from . import data, fused, kernel_methods, kinks, models, observables
from .models import FCNet, OneHidden
from .kpca import KernelPCA, kpca
from .ntk import NTKInfo, ntk
from .train import Snapshot, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "available_backends",
    "backend_status",
    "build_status",
    "why_unavailable",
    "data",
    "fused",
    "kernel_methods",
    "observables",
    "kinks",
    "models",
    "FCNet",
    "OneHidden",
    "ntk",
    "NTKInfo",
    "kpca",
    "KernelPCA",
    "train",
    "TrainResult",
    "Snapshot",
]
