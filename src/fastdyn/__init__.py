"""fastdyn: fast, exact tools for studying how neural networks learn.

Public names live here and in the public modules (``curvature``, ``data``, ``kernels``, ``kinks``, ``landscape``,
``models``, ``observables``, ``kernel_methods``, ``onehidden``, ``deep_linear``, ``linear``, ``parity``,
``predict``, ``theory``, ``plotting``); implementations are private, under ``fastdyn._src``. Only numpy, scipy and
torch are imported: scikit-learn, matplotlib and the experiments' other extras load when a function that needs them
runs. Backends: see :func:`available_backends`; kernels and their backends: :mod:`fastdyn._src.registry`.
"""
from ._src.backends import available_backends, backend_status, build_status, why_unavailable
from . import (curvature, data, deep_linear, kernel_methods, kernels, kinks, landscape, linear, models,
               observables, onehidden, parity, plotting, predict, theory)
from .models import FCNet, OneHidden
from ._src.kpca import KernelPCA, kpca
from ._src.linearize import Linearized, linearize
from ._src.ntk import NTKInfo, ntk
from ._src.ntk_structured import LayerRoute
from ._src.train import Context, FlowOptions, SGDOptions, Snapshot, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "available_backends",
    "backend_status",
    "build_status",
    "why_unavailable",
    "curvature",
    "data",
    "kernel_methods",
    "kernels",
    "observables",
    "kinks",
    "landscape",
    "models",
    "onehidden",
    "deep_linear",
    "linear",
    "parity",
    "theory",
    "plotting",
    "predict",
    "linearize",
    "Linearized",
    "FCNet",
    "OneHidden",
    "ntk",
    "NTKInfo",
    "LayerRoute",
    "kpca",
    "KernelPCA",
    "train",
    "FlowOptions",
    "SGDOptions",
    "TrainResult",
    "Snapshot",
    "Context",
]
