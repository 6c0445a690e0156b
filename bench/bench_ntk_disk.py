"""A kernel larger than one wants in RAM: Theta(x, x) of an FCNet [30, 512, 512, 1] (ReLU, fp32) on N = 20000 points
(FASTDYN_DISK_N sets N: 100000 gives the 40 GB kernel of the issue), written by ``fastdyn.ntk(..., file=...,
block=(B, B))`` to a ``.npy`` in a fresh interpreter whose peak resident memory growth is measured
(tests/installed.py); the issue's bound is 2 GB.

* test_blocked_kernel_on_disk: one call writes the file.
* test_resumes_after_a_kill: the writer kills itself (SIGKILL) in the middle of a block, once KILL_AT of the blocks
  are recorded in ``<file>.progress.json``; the same call run again computes only the other blocks.

Each file's first CHECK_N x CHECK_N entries and a block far from the diagonal are checked against the fp64 torch.func
oracle, and a sample of mirrored entries for exact symmetry; the file is deleted after its test.
Run: ``python -m pytest bench/bench_ntk_disk.py --benchmark-only -s``.
"""
import copy
import json
import math
import os
import signal
import time

import numpy as np
import torch

from conftest import assert_close
from fastdyn.models import FCNet
from harness import sized
from installed import run_installed, start_installed
from oracles.ntk import ntk_jacobian_contraction

N, BLOCK, CHECK_N = sized(int(os.environ.get("FASTDYN_DISK_N", 20000)), 300), sized(4096, 128), sized(16, 8)
KILL_AT = 0.4
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


# Put before _SCRIPT for test_resumes_after_a_kill: the same call, killed by SIGKILL once `stop` (argv[3]) blocks
# are recorded, in the middle of the next one (its numbers computed, none written, the block not recorded).
_KILL_MIDWAY = """
import os, signal
from fastdyn._src import ntk_blocks
stop, write, started = int(sys.argv[3]), ntk_blocks._write, []

def write_or_die(target, compute, *rest):
    started.append(1)

    def compute_then_die(a, b):
        kernel = compute(a, b)
        if len(started) > stop:
            os.kill(os.getpid(), signal.SIGKILL)
        return kernel
    write(target, compute_then_die, *rest)

ntk_blocks._write = write_or_die
"""


def check_file(path):
    """The kernel in ``path`` against the fp64 oracle at both ends of its first columns, and exactly symmetric on
    a sample of entries."""
    kernel = np.load(path, mmap_mode="r")
    assert kernel.shape == (N, N) and kernel.dtype == np.float32
    model, x = problem()
    expected = ntk_jacobian_contraction(copy.deepcopy(model).double(), x[:CHECK_N].double())
    assert_close(torch.from_numpy(np.array(kernel[:CHECK_N, :CHECK_N])), expected, torch.float32)
    far = slice(N - CHECK_N, N)
    expected = ntk_jacobian_contraction(copy.deepcopy(model).double(), x[far].double(), x[:CHECK_N].double())
    assert_close(torch.from_numpy(np.array(kernel[far, :CHECK_N])), expected, torch.float32)
    rows, cols = np.random.default_rng(0).integers(0, N, size=(2, 1000))
    assert np.array_equal(kernel[rows, cols], kernel[cols, rows])


def gflops(seconds, share=1.0):
    """Gram flops of the upper blocks (times the share of the blocks computed) per second."""
    flops = sum(N * N * (w_in + w_out) for w_in, w_out in zip(DIMS[:-1], DIMS[1:]))
    return flops * share / seconds / 1e9


def test_blocked_kernel_on_disk(benchmark, tmp_path):
    path = tmp_path / "kernel.npy"
    start = time.perf_counter()
    result = benchmark.pedantic(lambda: run_installed(_SCRIPT, path, BLOCK, timeout=3000), rounds=1, warmup_rounds=0)
    wall = time.perf_counter() - start
    check_file(path)
    benchmark.extra_info.update(result, file_gb=path.stat().st_size / 1e9)
    print(f"\n[FCNet {DIMS}, N={N}, block {BLOCK}] written in {result['seconds']:.1f} s ({wall:.1f} s with start-up), "
          f"{path.stat().st_size / 1e9:.2f} GB file, peak RSS growth {result['mb']:.0f} MB, "
          f"~{gflops(result['seconds']):.0f} GFLOP/s of Gram flops")
    path.unlink()
    assert result["mb"] < 2048, "peak resident memory growth over the issue's 2 GB"


def test_resumes_after_a_kill(benchmark, tmp_path):
    path = tmp_path / "kernel.npy"
    state = path.with_name(path.name + ".progress.json")
    side = math.ceil(N / BLOCK)
    total = side * (side + 1) // 2  # blocks on and above the diagonal

    def recorded():
        return len(json.loads(state.read_text())["done"])

    stop = max(1, int(KILL_AT * total))
    start = time.perf_counter()
    writer = start_installed(_KILL_MIDWAY + _SCRIPT, path, BLOCK, stop, cwd=tmp_path)
    _, stderr = writer.communicate(timeout=3000)
    killed_after, before = time.perf_counter() - start, recorded()
    assert writer.returncode == -signal.SIGKILL, f"the writer was not killed ({writer.returncode}):\n{stderr[-4000:]}"
    assert before == stop < total
    result = benchmark.pedantic(lambda: run_installed(_SCRIPT, path, BLOCK, timeout=3000), rounds=1, warmup_rounds=0)
    assert recorded() == total
    check_file(path)
    benchmark.extra_info.update(result, blocks=total, before_kill=before)
    print(f"\n[FCNet {DIMS}, N={N}, block {BLOCK}] killed after {before} of {total} blocks ({killed_after:.1f} s); "
          f"the re-run computed the other {total - before} in {result['seconds']:.1f} s "
          f"(~{gflops(result['seconds'], (total - before) / total):.0f} GFLOP/s), peak RSS growth {result['mb']:.0f} MB")
    path.unlink()
    assert result["mb"] < 2048, "peak resident memory growth over the issue's 2 GB"
