"""The "cpu" backend: thin wrappers over the compiled C++ kernels of ``fastdyn._core`` (OpenMP when built with it).

The wrappers allocate the outputs with torch (or numpy), pass the tensors themselves (the bindings read them through
DLPack and check dtype, shapes, contiguity and device) with ``threads=torch.get_num_threads()`` (so
``OMP_NUM_THREADS`` and ``torch.set_num_threads`` apply). The extension is loaded at the first call
(:func:`fastdyn._src.backends.module`), so registration never needs it.
"""
from . import flow, gf2, infinite_width, kpca, losses, ntk, onehidden  # noqa: F401  (registrations)
