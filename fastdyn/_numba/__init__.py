"""Numba CPU kernels, one module per kernel family; imported only when the "numba" backend runs."""
