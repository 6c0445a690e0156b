"""fastdyn: fast, exact tools for studying how neural networks learn.

Backends: see :func:`available_backends` and :mod:`fastdyn._backends`.
"""
from ._backends import available_backends, backend_status, build_status, why_unavailable
from . import fused, kinks, models
from .models import FCNet, OneHidden
from .ntk import NTKInfo, ntk

__version__ = "0.1.0"

__all__ = [
    "available_backends",
    "backend_status",
    "build_status",
    "why_unavailable",
    "fused",
    "kinks",
    "models",
    "FCNet",
    "OneHidden",
    "ntk",
    "NTKInfo",
]
