"""
Precision and performance
=========================

What precision each kernel computes in, which CPU code path and GPU kernels run, how many threads, and how the
benchmarks that back fastdyn's speed claims were measured.
"""
import time

import torch

import fastdyn
from fastdyn._src import backends

# %%
# fp32 and fp64
# -------------
# Results come back in the inputs' dtype: fp64 inputs are computed in fp64 end to end, fp32 inputs accumulate in
# fp32. Every kernel is tested against an fp64 oracle (torch.func, autograd, LAPACK) to ~1e-9 in fp64 and ~1e-4
# in fp32, relative to the RMS of the expected values. Here the same network's NTK in both precisions:
x64 = torch.randn(500, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
model64 = fastdyn.OneHidden(d=20, h=4000, dtype=torch.float64)
model32 = fastdyn.OneHidden(d=20, h=4000)
model32.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
K64, info64 = fastdyn.ntk(model64, x64, return_info=True)
K32, info32 = fastdyn.ntk(model32, x64.float(), return_info=True)
error = ((K32.double() - K64).abs().max() / K64.pow(2).mean().sqrt()).item()
print(f"fp64: {info64.seconds * 1e3:.1f} ms, fp32: {info32.seconds * 1e3:.1f} ms on {info32.backend}; "
      f"fp32 error relative to the RMS entry {error:.1e}")

# %%
# CPU instruction sets and threads
# --------------------------------
# One build runs on any x86-64 CPU: the one-hidden kernels (forward, gradient, moments, pattern keys) are compiled
# once per instruction set and the best path this CPU runs is picked at first use. ``FASTDYN_CPU_ISA`` forces
# one; experiments record the path in ``results.json``. Each path is deterministic whatever the thread count;
# paths agree to rounding, not bitwise. CPU kernels use ``torch.get_num_threads()`` threads, so
# ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` apply; ``fastdyn info`` prints the same.
print("threads:", torch.get_num_threads(), " path:", backends.cpu_isa())
if "cpu" in fastdyn.available_backends():  # the C++ extension was built
    import fastdyn._core as core

    print("paths this CPU runs:", core.cpu_isas(), " build:", backends.module("cpu").build_info())
    x = torch.randn(1000, 10, generator=torch.Generator().manual_seed(1))
    model = fastdyn.OneHidden(d=10, h=10_000)
    g = torch.randn(1000)
    default, reference = backends.cpu_isa(), fastdyn.onehidden.gradient(model, x, g)
    for isa in core.cpu_isas():
        core.set_cpu_isa(isa)
        fastdyn.onehidden.gradient(model, x, g)  # warm-up
        start = time.perf_counter()
        grads = fastdyn.onehidden.gradient(model, x, g)
        seconds = time.perf_counter() - start
        difference = max((a - b).abs().max().item() for a, b in zip(grads, reference))
        print(f"{isa:8s} fused gradient {seconds * 1e3:6.2f} ms, max difference to {default}: {difference:.1e}")
    core.set_cpu_isa(default)
else:
    print("no compiled CPU kernels here:", fastdyn.why_unavailable("cpu"))

# %%
# GPU
# ---
# With ``nvcc`` at install, ``fastdyn._cuda`` holds fastdyn's own CUDA kernels (sm_80 and sm_90 machine code plus
# compute_90 PTX); CUDA tensors select the "cuda" backend. The CUDA closed-form NTK uses no cuBLAS, so fp32 there
# is true IEEE fp32, never TF32; the NTK's other paths run torch's cuBLAS and cuDNN with TF32 switched off for the
# call. Kernels run on torch's current stream. As the README records, no GPU number has been measured yet: the
# CUDA kernels compile and have tests and benchmarks marked to run on a GPU.
print("cuda here:", "cuda" in fastdyn.available_backends(), "-", fastdyn.why_unavailable("cuda") or "available")

# %%
# How the benchmarks measure
# --------------------------
# ``bench/`` holds pytest-benchmark files, run by ``bench/run_all.sh``. Its harness (``bench/harness.py``) gives
# every side of a comparison, fastdyn and baseline alike, the same problem size, warm-up call and best of the same
# 3 rounds, at the same thread count, and records wall and process CPU time; a ratio of timings taken otherwise is
# refused. Every timed result is checked against an fp64 oracle, peak memory is measured in fresh interpreters,
# and a figure for a size that was not timed is labelled *extrapolated*. ``FASTDYN_BENCH_SMOKE=1`` runs them all
# at tiny sizes, as the test suite does.
#
# Some numbers from one run of ``bench/run_all.sh`` on a quiet 2-core AMD EPYC Zen 4 (path ``avx512``, 2 threads,
# fp32), raw output in ``bench/results/all_cpu_avx512_20261202.txt``:
#
# * NTK of ``OneHidden``, N = 2000, d = 30, h = 1e4, ``x2=None``: 0.52 s (153 GFLOP/s) against 21.1 s for the
#   torch.func Jacobian contraction, **40×**;
# * NTK of ``FCNet([30, 1024, 1024, 1])``, N = 2000: 0.33 s against neural-tangents 0.6.5's 0.40 s, **1.24×**;
# * kink velocities, h = 1e5, p = 1e4, d = 10: 0.26 s (172 GFLOP/s) against 11.3 s for the chunked-GEMM torch
#   formulation, **44×**;
# * a gradient-flow step of ``OneHidden``, p = 1000, d = 10, h = 1e4: 6.3 ms (euler method, fused kernels)
#   against 121 ms for a plain torch autograd loop, **19×**;
# * kPCA of 16 kernels, N = 2000, fp64, top 50 with projections: 1.16 s against 5.88 s for a loop of sklearn's
#   ``KernelPCA``, **5.1×**.
#
# The :doc:`overview <../overview>` has the full tables for Zen 4 and Zen 3 (AVX2), including the cases where
# fastdyn is slower (LAPACK ``syevr`` top-k, 0.79×; one N = 10000 kernel against ARPACK, 0.66×); the per-topic
# notes are ``bench/results/*.md`` (for instance ``isa_cpu.md`` on the three instruction-set paths).
