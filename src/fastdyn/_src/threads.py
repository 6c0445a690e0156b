"""The torch CPU thread count of a block of work."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def limit_threads(n: int):
    """Run the block with ``n`` torch CPU threads (0 keeps torch's setting) and restore the setting after.

    ``n`` is an experiment's config key "threads": one thread is fastest for small runs (a gradient-flow step is
    well under a millisecond of work, and on a busy machine a second thread mostly waits)."""
    if n < 0:
        raise ValueError(f"config 'threads' must be >= 0 (0: torch's setting), got {n}")
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
