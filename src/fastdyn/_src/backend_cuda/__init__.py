"""The "cuda" backend: thin wrappers over fastdyn's own CUDA kernels (``fastdyn._cuda``).

Every buffer comes from torch's caching allocator on the inputs' device, and kernels run on torch's current
stream there, so results are ordered with the caller's torch work. The extension is loaded at the first call.
"""
from . import ntk, onehidden  # noqa: F401  (registrations)
