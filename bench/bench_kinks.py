"""Kink velocities z_dot of a OneHidden ReLU network (h neurons, p points, d = 10, fp32) against plain torch.

* fastdyn: ``kinks.velocities(backend="cpu")`` — the fused C++ gradient kernel plus an O(h d) chain rule.
* torch formulation: the same maths as chunked GEMMs + masks (``fastdyn._src.backend_torch.onehidden.gradient`` with the
  chunk size that ran fastest here, 2^24 mask entries), then the same chain rule.
* autograd route: what a torch user writes: per chunk of neurons, backward of sum(g * f(x)), then
  ``torch.func.jvp`` of z(omega, b) along the gradient-flow velocities (same size).
* fastdyn again at p = 1e3, for the time per neuron-point pair at two sizes.

Each timing is the best round's wall time and, beside it, its process CPU time (both threads): on a machine
shared with other jobs the CPU-time ratio is the steadier one.

* attractors: the fused C++ pattern-key kernel against the torch path of the same function.

Each fastdyn benchmark prints its GFLOP/s with its fraction of torch.mm's fp32 GEMM rate measured in the same run
and the CPU instruction-set path (``FASTDYN_CPU_ISA=baseline`` forces the portable one). Flops: the gradient
kernel does 2 p h (2 d + 2) (pre-activations 2 d, then the sums of g a x, g a, g a pre: 2 (d + 2) per neuron-point
pair; the O(h d) chain rule is left out), the pattern keys 2 p h d.

Ratios print at the end of the baseline benchmarks; the extra peak memory of one call is measured in a fresh
subprocess (peak RSS during the call minus RSS before it). Run:
``python -m pytest bench/bench_kinks.py --benchmark-only -s``.
"""
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

import fastdyn
from fastdyn import kinks
from gemm_rate import rate
from fastdyn._src.backend_torch.onehidden import gradient as torch_gradient

H, P, D = 100_000, 10_000, 10
P_SMALL = 1_000
TORCH_CHUNK = 1 << 24
AUTOGRAD_CHUNK = 4096
_seconds: dict[str, float] = {}
_cpu_seconds: dict[str, float] = {}

HAS_CUDA = "cuda" in fastdyn.available_backends()


def problem(h, p, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(D, h, generator=gen).to(device)
    x = torch.randn(p, D, generator=gen).to(device)
    g = (torch.randn(p, generator=gen) / p).to(device)
    return model, x, g


def torch_velocities(model, x, g):
    """Chunked GEMMs + masks, then the chain rule (plain torch)."""
    omega, b, beta = model.omega.detach(), model.b.detach(), model.beta.detach()
    grad_omega, grad_b, _ = torch_gradient(x, g, omega, b, beta, scale=model.output_scale, max_elements=TORCH_CHUNK)
    return kinks._chain_rule(omega, b, -grad_omega, -grad_b, 0.0)[0]


def autograd_velocities(model, x, g):
    """Autograd of sum(g * f(x)) per neuron chunk, then the Jacobian of z(omega, b) by torch.func.jvp."""
    omega_all, b_all, beta_all = model.omega.detach(), model.b.detach(), model.beta.detach()
    z_dot = torch.empty_like(omega_all)
    for start in range(0, model.h, AUTOGRAD_CHUNK):
        omega = omega_all[start:start + AUTOGRAD_CHUNK].clone().requires_grad_()
        b = b_all[start:start + AUTOGRAD_CHUNK].clone().requires_grad_()
        out = model.output_scale * torch.relu(x @ omega.T / math.sqrt(D) + b) @ beta_all[start:start + AUTOGRAD_CHUNK]
        grad_omega, grad_b = torch.autograd.grad((g * out).sum(), (omega, b))

        def z_of(o, c):
            return -math.sqrt(D) * c[:, None] * o / (o * o).sum(1, keepdim=True)

        z_dot[start:start + AUTOGRAD_CHUNK] = torch.func.jvp(z_of, (omega.detach(), b.detach()),
                                                             (-grad_omega, -grad_b))[1]
    return z_dot


def run_once(benchmark, key, fn, *args, rounds=1):
    """benchmark.pedantic; records the best wall time and the best process CPU time under ``key``."""
    cpu = []

    def timed(*a):
        start = time.process_time()
        out = fn(*a)
        cpu.append(time.process_time() - start)
        return out

    result = benchmark.pedantic(timed, args=args, rounds=rounds, iterations=1, warmup_rounds=0)
    _seconds[key] = benchmark.stats.stats.min
    _cpu_seconds[key] = min(cpu)
    return result


def timing(key):
    return f"{_seconds[key]:.3f} s wall ({_cpu_seconds[key]:.3f} s CPU)"


def ratio(slow, fast, target=None):
    wall, cpu = _seconds[slow] / _seconds[fast], _cpu_seconds[slow] / _cpu_seconds[fast]
    return f"{wall:.1f}x wall, {cpu:.1f}x CPU time" + (f" (target >= {target}x)" if target else "")


def extra_peak_mb(route: str, h: int, p: int) -> float:
    """Peak RSS of one call minus the RSS before it, in a fresh interpreter (MB)."""
    code = f"""
import resource, sys, json, torch
sys.path.insert(0, {os.path.dirname(__file__)!r})
import bench_kinks as bk
model, x, g = bk.problem({h}, {p})
fn = {{"fastdyn": lambda *a: bk.kinks.velocities(*a, backend="cpu"), "torch": bk.torch_velocities}}[{route!r}]
fn(model, x[:50], g[:50])  # load the kernels
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * resource.getpagesize()
fn(model, x, g)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(max(0, peak - before) / 2**20))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gradient_flops(h, p):
    return 2 * p * h * (2 * D + 2)


def test_fastdyn_velocities(benchmark):
    """kinks.velocities h = 1e5, p = 1e4, d = 10, fp32: 2 p h (2 d + 2) = 4.4e10 flops."""
    model, x, g = problem(H, P)
    run_once(benchmark, "fastdyn", lambda: kinks.velocities(model, x, g, backend="cpu"), rounds=3)
    mb = extra_peak_mb("fastdyn", H, P)
    print(f"\nfastdyn kinks.velocities h={H} p={P} d={D} fp32: {timing('fastdyn')}, "
          f"extra peak memory {mb:.1f} MB (target < 100 MB)")
    print(rate("fastdyn kinks.velocities", gradient_flops(H, P), _seconds["fastdyn"]))


def test_torch_formulation(benchmark):
    model, x, g = problem(H, P)
    expected = kinks.velocities(model, x, g, backend="cpu")
    z_dot = run_once(benchmark, "torch", torch_velocities, model, x, g)
    err = float((z_dot - expected).abs().max() / expected.abs().max())
    mb = extra_peak_mb("torch", H, P)
    print(f"\ntorch chunked GEMM+mask h={H} p={P}: {timing('torch')}, extra peak memory {mb:.0f} MB, "
          f"max rel. difference {err:.1e}")
    print(rate("torch formulation (same flop count)", gradient_flops(H, P), _seconds["torch"]))
    if "fastdyn" in _seconds:
        print(f"speed-up fastdyn vs torch formulation: {ratio('torch', 'fastdyn', 10)}")


def test_autograd_route(benchmark):
    model, x, g = problem(H, P)
    expected = kinks.velocities(model, x, g, backend="cpu")
    z_dot = run_once(benchmark, "autograd", autograd_velocities, model, x, g)
    err = float((z_dot - expected).abs().max() / expected.abs().max())
    print(f"\nautograd route h={H} p={P}: {timing('autograd')}, max rel. difference {err:.1e}")
    if "fastdyn" in _seconds:
        print(f"speed-up fastdyn vs autograd route: {ratio('autograd', 'fastdyn', 20)}")


def test_fastdyn_velocities_small(benchmark):
    model, x, g = problem(H, P_SMALL)
    """kinks.velocities h = 1e5, p = 1e3: 2 p h (2 d + 2) = 4.4e9 flops."""
    run_once(benchmark, "fastdyn_small", lambda: kinks.velocities(model, x, g, backend="cpu"), rounds=5)
    print(f"\nfastdyn h={H} p={P_SMALL}: {timing('fastdyn_small')}")
    print(rate("fastdyn kinks.velocities", gradient_flops(H, P_SMALL), _seconds["fastdyn_small"]))
    if "fastdyn" in _seconds:
        per_pair = [_cpu_seconds[k] / (H * p) * 1e9 for k, p in (("fastdyn_small", P_SMALL), ("fastdyn", P))]
        print(f"CPU time per 1e9 neuron-point pairs: {per_pair[0]:.3f} s at h*p={H * P_SMALL:.0e}, "
              f"{per_pair[1]:.3f} s at h*p={H * P:.0e} (linear in h*p when equal)")


def test_attractors_cpu(benchmark):
    """kinks.attractors h = 1e5, p = 1e4: pattern keys 2 p h d = 2e10 flops (plus the grouping of the keys)."""
    model, x, _ = problem(H, P)
    found = run_once(benchmark, "attractors", lambda: kinks.attractors(model, x, backend="cpu"), rounds=3)
    print(f"\nfastdyn kinks.attractors (cpu) h={H} p={P}: {timing('attractors')}, "
          f"{found.n_attractors} attractors, {found.n_dead} dead")
    print(rate("fastdyn kinks.attractors", 2 * P * H * D, _seconds["attractors"]))


def test_attractors_torch(benchmark):
    model, x, _ = problem(H, P)
    found = run_once(benchmark, "attractors_torch", lambda: kinks.attractors(model, x, backend="torch"))
    print(f"\ntorch path (chunked masks, packbits, BLAKE2b) h={H} p={P}: {timing('attractors_torch')}, "
          f"{found.n_attractors} attractors")
    if "attractors" in _seconds:
        print(f"speed-up fastdyn attractors cpu vs torch path: {ratio('attractors_torch', 'attractors')}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and fastdyn._cuda")
def test_cuda_velocities_vs_torch(benchmark):
    """h = 1e6, p = 1e5 on the GPU: the CUDA kernel against the torch formulation on the same GPU."""
    model, x, g = problem(1_000_000, 100_000, device="cuda")

    def fastdyn_cuda():
        out = kinks.velocities(model, x, g, backend="cuda")
        torch.cuda.synchronize()
        return out

    def torch_cuda():
        out = torch_velocities(model, x, g)
        torch.cuda.synchronize()
        return out

    fastdyn_cuda()
    run_once(benchmark, "cuda", fastdyn_cuda, rounds=3)
    start = time.perf_counter()
    torch_cuda()
    baseline = time.perf_counter() - start
    print(f"\nGPU h=1e6 p=1e5: fastdyn {_seconds['cuda']:.3f} s, torch formulation {baseline:.3f} s, "
          f"speed-up {baseline / _seconds['cuda']:.1f}x")
