"""The "cpu" backend: thin wrappers over the compiled C++/OpenMP kernels of ``fastdyn._core``.

The wrappers allocate the outputs with torch, pass the buffers and ``threads=torch.get_num_threads()`` (so
``OMP_NUM_THREADS`` and ``torch.set_num_threads`` apply), and keep the tensors alive for the call. The extension is
loaded at the first call (:func:`fastdyn._src.backends.module`), so registration never needs it.
"""
from . import kpca, ntk, onehidden  # noqa: F401  (registrations)
