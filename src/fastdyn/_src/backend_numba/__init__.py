"""The "numba" backend: Numba ``@njit(parallel=True)`` kernels on CPU arrays.

Each family has a registration module (``onehidden``, ``ntk``) over tensors and a kernel module (``*_kernels``) over
numpy arrays, imported at the first call so that ``import fastdyn`` never loads numba.
"""
from . import losses, ntk, onehidden  # noqa: F401  (registrations)
