"""The "torch" backend: plain-torch formulations of every operation, on CPU or CUDA tensors.

These are fastdyn's portable implementations, not test oracles: the tests check them, like every other backend,
against independent references in ``tests/oracles`` (torch.func, autograd, numpy).
"""
from . import gf2, infinite_width, kpca, losses, ntk, onehidden  # noqa: F401  (registrations)
