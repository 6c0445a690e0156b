"""Numba kernels at torch's thread count, leaving torch's count as it was."""
from __future__ import annotations

from typing import Callable

import torch


def at_torch_threads(kernel: Callable, *args):
    """``kernel(*args)`` on torch's thread count. Numba's OpenMP layer shares torch's libgomp and sets its thread
    count to NUMBA_NUM_THREADS when it starts (measured: 1 -> 2 under OMP_NUM_THREADS=1, already inside
    ``numba.set_num_threads``), so torch's count is read first and put back after."""
    import numba

    threads = torch.get_num_threads()
    try:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return kernel(*args)
    finally:
        torch.set_num_threads(threads)
