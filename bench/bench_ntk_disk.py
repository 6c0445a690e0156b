"""A kernel larger than one wants in RAM: Theta(x, x) of an FCNet [30, 512, 512, 1] (ReLU, fp32) on N = 20000 points,
written by ``fastdyn.ntk(..., file=..., block=(B, B))`` to a 1.6 GB ``.npy``, in a fresh interpreter whose peak
resident memory growth is measured (tests/installed.py); the issue's bound is 2 GB. The file's first CHECK_N x
CHECK_N entries are checked against the fp64 torch.func oracle and a block far from the diagonal against an in-RAM
call on those points.
Run: ``python -m pytest bench/bench_ntk_disk.py --benchmark-only -s``.
"""
import copy
import time

import numpy as np
import torch

from conftest import assert_close
from fastdyn.models import FCNet
from harness import sized
from installed import run_installed
from oracles.ntk import ntk_jacobian_contraction

N, BLOCK, CHECK_N = sized(20000, 300), sized(4096, 128), sized(16, 8)
DIMS = sized([30, 512, 512, 1], [5, 9, 7, 1])


def problem(n=N):
    torch.manual_seed(0)
    return FCNet(DIMS, "relu"), torch.randn(n, DIMS[0])


_SCRIPT = """
import time
from bench_ntk_disk import problem
import fastdyn
path, block = sys.argv[1], int(sys.argv[2])
model, x = problem()
fastdyn.ntk(model, x[:8])  # imports and thread start-up first
start = time.perf_counter()
mb = peak_growth_bytes(fastdyn.ntk, model, x, file=path, block=(block, block), progress=False) / 2**20
report(mb=mb, seconds=time.perf_counter() - start)
"""


def test_blocked_kernel_on_disk(benchmark, tmp_path):
    path = tmp_path / "kernel.npy"
    start = time.perf_counter()
    result = benchmark.pedantic(lambda: run_installed(_SCRIPT, path, BLOCK, timeout=3000), rounds=1, warmup_rounds=0)
    wall = time.perf_counter() - start
    kernel = np.load(path, mmap_mode="r")
    assert kernel.shape == (N, N) and kernel.dtype == np.float32
    model, x = problem()
    expected = ntk_jacobian_contraction(copy.deepcopy(model).double(), x[:CHECK_N].double())
    assert_close(torch.from_numpy(np.array(kernel[:CHECK_N, :CHECK_N])), expected, torch.float32)
    far = slice(N - CHECK_N, N)
    expected = ntk_jacobian_contraction(copy.deepcopy(model).double(), x[far].double(), x[:CHECK_N].double())
    assert_close(torch.from_numpy(np.array(kernel[far, :CHECK_N])), expected, torch.float32)
    flops = sum(N * N * (w_in + w_out) for w_in, w_out in zip(DIMS[:-1], DIMS[1:]))  # Grams of the upper blocks
    benchmark.extra_info.update(result, file_gb=path.stat().st_size / 1e9)
    print(f"\n[FCNet {DIMS}, N={N}, block {BLOCK}] written in {result['seconds']:.1f} s ({wall:.1f} s with start-up), "
          f"{path.stat().st_size / 1e9:.2f} GB file, peak RSS growth {result['mb']:.0f} MB, "
          f"~{flops / result['seconds'] / 1e9:.0f} GFLOP/s of Gram flops")
    assert result["mb"] < 2048, "peak resident memory growth over the issue's 2 GB"
