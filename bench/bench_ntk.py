"""Closed-form NTK of OneHidden ReLU (``fastdyn.ntk``) against the baselines a user has, fp32.

(a) N = 2000, d = 30, h = 1e4, x2 = None:
    * torch.func: ``tests/oracles/ntk.py`` (vmap(jacrev) + einsum; ~5 GB), run once;
    * plain-torch closed form: what a user writes from the formula -- full (N, h) activations, two GEMMs
      (``plain_torch_closed_form`` below, no tiling, no use of symmetry);
    * fastdyn's own torch backend (tiled) and numba backend;
    * torch.mm fp32 GEMM throughput on (N x h) @ (h x N), to report the fraction of it that fastdyn reaches, counting
      2 N^2 h flops for fastdyn's two SYRKs (N^2 h each).
(c) width sweep h = 1e3 .. 1e6 at N = 1000: time per neuron, and the peak-RSS growth of one call measured in a fresh
    interpreter (VmHWM reset through /proc/self/clear_refs just before the call; model and inputs excluded).
(d) GPU (skips without one): N = 16384, h = 65536 against torch.mm's fp32 GEMM rate with TF32 off, and against
    torch.func on the same GPU at N = 1024.

Ratios print as the fastdyn entries finish. Run: ``python -m pytest bench/bench_ntk.py --benchmark-only -s``.
"""
import subprocess
import sys
import time

import pytest
import torch

import fastdyn
from fastdyn import ntk
from fastdyn._src.backend_torch.ntk import onehidden_ntk as torch_closed_form
from oracles.ntk import ntk_jacobian_contraction

N, D, H = 2000, 30, 10_000
SWEEP_N, SWEEP_WIDTHS = 1000, (1_000, 10_000, 100_000, 1_000_000)
GPU_N, GPU_H, GPU_FUNC_N = 16384, 65536, 1024
HAS_CUDA = "cuda" in fastdyn.available_backends()
_seconds: dict[str, float] = {}


def problem(n, h, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(D, h, generator=gen).to(device)
    x = torch.randn(n, D, generator=gen).to(device)
    return model, x


def plain_torch_closed_form(model, x):
    """The closed form as a user writes it: (N, h) activations in memory, A A^T and (beta D)(beta D)^T as GEMMs."""
    with torch.no_grad():
        pre = model.preactivation(x)
        act = torch.relu(pre)
        beta_deriv = (pre > 0).to(x.dtype) * model.beta
        gram = x @ x.T / model.d + 1
        return model.output_scale ** 2 * (act @ act.T + gram * (beta_deriv @ beta_deriv.T))


def timed(benchmark, key, fn, *args, rounds=1, warmup=0, **kwargs):
    result = benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, iterations=1, warmup_rounds=warmup)
    _seconds[key] = benchmark.stats.stats.min
    return result


def ratio(num, den):
    if num in _seconds and den in _seconds:
        return f"{_seconds[num] / _seconds[den]:.2f}x"
    return "n/a (run the whole file)"


# ---- (a) N = 2000, h = 1e4 ----------------------------------------------------------------------------------------

def test_a_torch_func(benchmark):
    model, x = problem(N, H)
    timed(benchmark, "torch.func", ntk_jacobian_contraction, model, x)


def test_a_plain_torch_closed_form(benchmark):
    model, x = problem(N, H)
    timed(benchmark, "plain-torch", plain_torch_closed_form, model, x, rounds=3, warmup=1)


def test_a_torch_gemm_throughput(benchmark):
    act = torch.randn(N, H)
    timed(benchmark, "torch.mm", torch.mm, act, act.T, rounds=3, warmup=1)
    print(f"\n  torch.mm fp32 (N x h)(h x N): {2 * N * N * H / _seconds['torch.mm'] / 1e9:.1f} GFLOP/s")


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_a_other_backends(benchmark, backend):
    model, x = problem(N, H)
    timed(benchmark, f"fastdyn-{backend}", ntk, model, x, backend=backend, rounds=3, warmup=1)
    print(f"\n  fastdyn {backend} backend: {ratio('plain-torch', f'fastdyn-{backend}')} vs plain torch")


def test_a_fastdyn_cpu(benchmark):
    model, x = problem(N, H)
    kernel = timed(benchmark, "fastdyn-cpu", ntk, model, x, backend="cpu", rounds=3, warmup=1)
    gflops = 2 * N * N * H / _seconds["fastdyn-cpu"] / 1e9
    fraction = (f"{_seconds['torch.mm'] / _seconds['fastdyn-cpu']:.0%} of torch.mm's rate"
                if "torch.mm" in _seconds else "torch.mm not measured")
    print(f"\n  fastdyn cpu: {_seconds['fastdyn-cpu']:.3f} s, {gflops:.1f} GFLOP/s ({fraction}); "
          f"{ratio('torch.func', 'fastdyn-cpu')} vs torch.func, {ratio('plain-torch', 'fastdyn-cpu')} vs plain-torch "
          f"closed form")
    benchmark.extra_info.update(gflops=gflops, vs_torch_func=ratio("torch.func", "fastdyn-cpu"),
                                vs_plain_torch=ratio("plain-torch", "fastdyn-cpu"))
    assert torch.equal(kernel, kernel.T)


# ---- (c) width sweep ----------------------------------------------------------------------------------------------

_PEAK_SCRIPT = """
import sys, torch, fastdyn
from fastdyn import ntk
n, d, h = map(int, sys.argv[1:])
gen = torch.Generator().manual_seed(0)
model = fastdyn.OneHidden(d, h, generator=gen)
x = torch.randn(n, d, generator=gen)
ntk(model, x[:8], backend="cpu")  # load the extension and start the threads first
def kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # resets the peak RSS (VmHWM) to the current RSS
before = kib("VmRSS")
ntk(model, x, backend="cpu")
print((kib("VmHWM") - before) / 1024)
"""


def peak_rss_growth_mb(n: int, h: int) -> float:
    """Peak RSS during one ntk call minus the RSS before it, in a fresh interpreter (MB)."""
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(D), str(h)], capture_output=True,
                          text=True, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.parametrize("h", SWEEP_WIDTHS)
def test_c_width_sweep(benchmark, h):
    model, x = problem(SWEEP_N, h)
    timed(benchmark, f"sweep-{h}", ntk, model, x, backend="cpu")
    seconds = _seconds[f"sweep-{h}"]
    peak_mb = peak_rss_growth_mb(SWEEP_N, h)
    benchmark.extra_info.update(peak_rss_growth_mb=peak_mb, ns_per_neuron=seconds / h * 1e9)
    print(f"\n  h={h:>8d}: {seconds:.3f} s, {seconds / h * 1e6:.2f} us per neuron, "
          f"peak RSS growth {peak_mb:.0f} MB in a fresh process (result {SWEEP_N ** 2 * 4 / 2 ** 20:.0f} MB)")
    assert peak_mb < 1536


# ---- (d) GPU ------------------------------------------------------------------------------------------------------

def _synchronized(fn, *args, **kwargs):
    result = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return result


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and fastdyn._cuda")
def test_d_gpu(benchmark):
    torch.backends.cuda.matmul.allow_tf32 = False
    model, x = problem(GPU_N, GPU_H, device="cuda")
    timed(benchmark, "gpu-fastdyn", _synchronized, ntk, model, x, rounds=3, warmup=1)
    k = 8192  # torch.mm rate on (N x k)(k x N), TF32 off
    act = torch.randn(GPU_N, k, device="cuda")
    _synchronized(torch.mm, act, act.T)
    start = time.perf_counter()
    _synchronized(torch.mm, act, act.T)
    mm_rate = 2 * GPU_N * GPU_N * k / (time.perf_counter() - start)
    rate = 2 * GPU_N * GPU_N * GPU_H / _seconds["gpu-fastdyn"]
    small_model, small_x = problem(GPU_FUNC_N, GPU_H, device="cuda")
    start = time.perf_counter()
    _synchronized(ntk_jacobian_contraction, small_model, small_x)
    func_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _synchronized(ntk, small_model, small_x)
    fast_seconds = time.perf_counter() - start
    print(f"\n  GPU N={GPU_N} h={GPU_H}: {_seconds['gpu-fastdyn']:.3f} s, {rate / 1e12:.2f} TFLOP/s = "
          f"{rate / mm_rate:.0%} of torch.mm fp32 (TF32 off, {mm_rate / 1e12:.2f} TFLOP/s); at N={GPU_FUNC_N} "
          f"{func_seconds / fast_seconds:.1f}x vs torch.func")
    benchmark.extra_info.update(tflops=rate / 1e12, fraction_of_mm=rate / mm_rate,
                                vs_torch_func=func_seconds / fast_seconds)


def test_plain_baseline_matches_fastdyn():
    """The baselines compute the same kernel (small case, so this also runs under --benchmark-skip)."""
    model, x = problem(50, 300)
    expected = torch_closed_form(x.double(), None, *(p.detach().double() for p in (model.omega, model.b, model.beta)),
                                 model.output_scale)
    for kernel in (plain_torch_closed_form(model, x), ntk(model, x)):
        assert (kernel.double() - expected).abs().max() <= 1e-4 * expected.abs().max()
