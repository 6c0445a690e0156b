"""The one memory probe: what can still be allocated on a device, and a guard that refuses work before it
allocates."""
from __future__ import annotations

import os

import torch

_GIB = 1 << 30


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (None when unknown).

    CPU: the kernel's MemAvailable (free pages plus reclaimable caches), else free pages; CUDA: free device memory
    plus what torch's caching allocator holds but does not use.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def guard(needed: int, device: torch.device, *, what: str, advice: str) -> None:
    """Raise MemoryError, before anything is allocated, when ``what`` needs more than the device has free."""
    available = available_memory(device)
    if available is not None and needed > available:
        raise MemoryError(f"{what} needs about {needed / _GIB:.2f} GiB of {device.type} memory but only "
                          f"{available / _GIB:.2f} GiB is available; {advice}")
