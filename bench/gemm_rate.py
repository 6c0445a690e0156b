"""The yardstick of the CPU kernel benchmarks: torch.mm's GEMM rate measured in the same run (same threads), and
the line each kernel benchmark prints: its GFLOP/s, that rate's fraction of the GEMM rate, the ISA path in use."""
import functools

import torch

from fastdyn._src.backends import cpu_isa
from harness import best_of, sized

GEMM_N = sized(2000, 128)


@functools.lru_cache(maxsize=None)
def gemm_gflops(dtype=torch.float32, threads=None) -> float:
    """(n, n) @ (n, n) torch.mm, 2 n^3 flops, n = GEMM_N, on ``threads`` (torch's count), timed as every side is."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(GEMM_N, GEMM_N, generator=gen, dtype=dtype) for _ in range(2))
    return 2 * GEMM_N ** 3 / best_of(torch.mm, a, b) / 1e9


def rate(name: str, flops: float, seconds: float, dtype=torch.float32) -> str:
    """'name: X GFLOP/s (F of torch.mm's fp32 GEMM rate, G GFLOP/s), cpu isa I, T threads'."""
    threads = torch.get_num_threads()
    gemm = gemm_gflops(dtype, threads)
    gflops = flops / seconds / 1e9
    bits = torch.finfo(dtype).bits
    return (f"{name}: {gflops:.1f} GFLOP/s ({gflops / gemm:.0%} of torch.mm's fp{bits} GEMM rate, {gemm:.1f} "
            f"GFLOP/s), cpu isa {cpu_isa()}, {threads} threads")
