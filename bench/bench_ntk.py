"""Closed-form NTK of OneHidden ReLU (``fastdyn.ntk``) against the baselines a user has, fp32.

(a) N = 2000, d = 30, h = 1e4, x2 = None:
    * torch.func: ``tests/oracles/ntk.py`` (vmap(jacrev) + einsum; ~5 GB);
    * plain-torch closed form: what a user writes from the formula -- full (N, h) activations, two GEMMs
      (``plain_torch_closed_form`` below, no tiling, no use of symmetry);
    * fastdyn's own torch backend (tiled) and numba backend;
    * torch.mm fp32 GEMM throughput on (N x h) @ (h x N), to report the fraction of it that fastdyn reaches, counting
      2 N^2 h flops for fastdyn's two SYRKs (N^2 h each).
(c) width sweep h = 1e3 .. 1e6 at N = 1000: time per neuron, and the peak-RSS growth of one call measured in a fresh
    interpreter of the installed package (VmHWM reset just before the call; model and inputs excluded).
(d) GPU (skips without one): N = 16384, h = 65536 against torch.mm's fp32 GEMM rate with TF32 off, and against
    torch.func on the same GPU at N = 1024.

Every side is timed alike (``harness.Timer``: warm-up, best of the rounds); every kernel is checked against an fp64
oracle on its first CHECK_N points. Ratios print as the fastdyn entries finish.
Run: ``python -m pytest bench/bench_ntk.py --benchmark-only -s``.
"""
import copy
import functools

import pytest
import torch

import fastdyn
from conftest import assert_close
from fastdyn import ntk
from installed import run_installed
from harness import Timer, sized
from oracles.ntk import ntk_jacobian_contraction

N, D, H = sized(2000, 70), 30, sized(10_000, 300)
SWEEP_N, SWEEP_WIDTHS = sized(1000, 50), sized((1_000, 10_000, 100_000, 1_000_000), (1000,))
GPU_N, GPU_H, GPU_FUNC_N = sized(16384, 300), sized(65536, 500), sized(1024, 64)
CHECK_N = sized(128, 40)
HAS_CUDA = "cuda" in fastdyn.available_backends()
TIMER = Timer()


def problem(n, h, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(D, h, generator=gen).to(device)
    x = torch.randn(n, D, generator=gen).to(device)
    return model, x


@functools.lru_cache(maxsize=None)
def oracle(n, h):
    """fp64 NTK of problem(n, h) on its first CHECK_N points by the plain closed form (itself held to torch.func by
    test_plain_baseline_matches_oracle; torch.func's Jacobians would need CHECK_N x h (d + 2) numbers)."""
    model, x = problem(n, h)
    return plain_torch_closed_form(copy.deepcopy(model).double(), x[:CHECK_N].double())


def check(kernel, n, h):
    """kernel (fp32, N x N) against the fp64 oracle on the first CHECK_N points."""
    assert kernel.shape == (n, n)
    assert_close(kernel[:CHECK_N, :CHECK_N], oracle(n, h), torch.float32)


def plain_torch_closed_form(model, x):
    """The closed form as a user writes it: (N, h) activations in memory, A A^T and (beta D)(beta D)^T as GEMMs."""
    with torch.no_grad():
        pre = model.preactivation(x)
        act = torch.relu(pre)
        beta_deriv = (pre > 0).to(x.dtype) * model.beta
        gram = x @ x.T / model.d + 1
        return model.output_scale ** 2 * (act @ act.T + gram * (beta_deriv @ beta_deriv.T))


def ratio(slow, fast):
    return TIMER.ratio(slow, fast) if slow in TIMER and fast in TIMER else "n/a (run the whole file)"


# ---- (a) N = 2000, h = 1e4 ----------------------------------------------------------------------------------------

def test_a_torch_func(benchmark):
    model, x = problem(N, H)
    check(TIMER(benchmark, "torch.func", ntk_jacobian_contraction, model, x, size=f"N={N}"), N, H)


def test_a_plain_torch_closed_form(benchmark):
    model, x = problem(N, H)
    check(TIMER(benchmark, "plain-torch", plain_torch_closed_form, model, x, size=f"N={N}"), N, H)


def test_a_torch_gemm_throughput(benchmark):
    act = torch.randn(N, H)
    TIMER(benchmark, "torch.mm", torch.mm, act, act.T, size=f"N={N}")
    print(f"\n  torch.mm fp32 (N x h)(h x N): {2 * N * N * H / TIMER['torch.mm'].wall / 1e9:.1f} GFLOP/s")


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_a_other_backends(benchmark, backend):
    model, x = problem(N, H)
    check(TIMER(benchmark, f"fastdyn-{backend}", ntk, model, x, backend=backend, size=f"N={N}"), N, H)
    print(f"\n  fastdyn {backend} backend: {ratio('plain-torch', f'fastdyn-{backend}')} vs plain torch")


def test_a_fastdyn_cpu(benchmark):
    model, x = problem(N, H)
    kernel = TIMER(benchmark, "fastdyn-cpu", ntk, model, x, backend="cpu", size=f"N={N}")
    check(kernel, N, H)
    assert torch.equal(kernel, kernel.T)
    seconds = TIMER["fastdyn-cpu"].wall
    gflops = 2 * N * N * H / seconds / 1e9
    fraction = (f"{TIMER['torch.mm'].wall / seconds:.0%} of torch.mm's rate" if "torch.mm" in TIMER
                else "torch.mm not measured")
    print(f"\n  fastdyn cpu: {TIMER['fastdyn-cpu']}, {gflops:.1f} GFLOP/s ({fraction}); "
          f"{ratio('torch.func', 'fastdyn-cpu')} vs torch.func, {ratio('plain-torch', 'fastdyn-cpu')} vs "
          f"plain-torch closed form")
    benchmark.extra_info.update(gflops=gflops, vs_torch_func=ratio("torch.func", "fastdyn-cpu"),
                                vs_plain_torch=ratio("plain-torch", "fastdyn-cpu"))


# ---- (c) width sweep ----------------------------------------------------------------------------------------------

_PEAK_SCRIPT = """
from fastdyn import ntk
from bench_ntk import problem
n, h = map(int, sys.argv[1:])
model, x = problem(n, h)
ntk(model, x[:8], backend="cpu")  # load the extension and start the threads first
report(mb=peak_growth_bytes(ntk, model, x, backend="cpu") / 2**20)
"""


def peak_rss_growth_mb(n: int, h: int) -> float:
    """Peak RSS during one ntk call minus the RSS before it, in a fresh interpreter of the installed package (MB)."""
    return run_installed(_PEAK_SCRIPT, n, h)["mb"]


@pytest.mark.parametrize("h", SWEEP_WIDTHS)
def test_c_width_sweep(benchmark, h):
    model, x = problem(SWEEP_N, h)
    check(TIMER(benchmark, f"sweep-{h}", ntk, model, x, backend="cpu", size=f"N={SWEEP_N} h={h}"), SWEEP_N, h)
    seconds = TIMER[f"sweep-{h}"].wall
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
    check(TIMER(benchmark, "gpu-fastdyn", _synchronized, ntk, model, x, size=f"N={GPU_N}").cpu(), GPU_N, GPU_H)
    k = 8192  # torch.mm rate on (N x k)(k x N), TF32 off
    act = torch.randn(GPU_N, k, device="cuda")
    TIMER(benchmark, "gpu-mm", _synchronized, torch.mm, act, act.T, size=f"N={GPU_N}")
    mm_rate = 2 * GPU_N * GPU_N * k / TIMER["gpu-mm"].wall
    rate = 2 * GPU_N * GPU_N * GPU_H / TIMER["gpu-fastdyn"].wall
    small_model, small_x = problem(GPU_FUNC_N, GPU_H, device="cuda")
    TIMER(benchmark, "gpu-torch.func", _synchronized, ntk_jacobian_contraction, small_model, small_x,
          size=f"N={GPU_FUNC_N}")
    small = TIMER(benchmark, "gpu-fastdyn-small", _synchronized, ntk, small_model, small_x, size=f"N={GPU_FUNC_N}")
    check(small.cpu(), GPU_FUNC_N, GPU_H)
    vs_func = TIMER.ratio("gpu-torch.func", "gpu-fastdyn-small")
    print(f"\n  GPU N={GPU_N} h={GPU_H}: {TIMER['gpu-fastdyn'].wall:.3f} s, {rate / 1e12:.2f} TFLOP/s = "
          f"{rate / mm_rate:.0%} of torch.mm fp32 (TF32 off, {mm_rate / 1e12:.2f} TFLOP/s); at N={GPU_FUNC_N} "
          f"{vs_func} vs torch.func")
    benchmark.extra_info.update(tflops=rate / 1e12, fraction_of_mm=rate / mm_rate, vs_torch_func=vs_func)


def test_plain_baseline_matches_oracle():
    """The plain baseline computes the NTK (small case, so this also runs under --benchmark-skip)."""
    model, x = problem(50, 300)
    expected = ntk_jacobian_contraction(copy.deepcopy(model).double(), x.double())
    assert_close(plain_torch_closed_form(model, x), expected, torch.float32)
