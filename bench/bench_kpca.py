"""Benchmarks of fastdyn.kpca against the peers users reach for, each ratio measured in the same run.

Run: python -m pytest bench/bench_kpca.py --benchmark-only -s   (results: bench/results/kpca_cpu.md)

* top-50 of a batch of 16 NTK-like Gram matrices (N = 2000, fp64, centred, with label projections) against a loop
  of sklearn KernelPCA(kernel="precomputed", n_components=50), eigenvalues checked against the loop's to 1e-8
  (default settings, i.e. mixed precision; the float64-only solver is timed in the same run for comparison);
* the same top-50 by the direct solver (LAPACK syevr) against a loop of scipy's eigh(subset_by_index);
* full spectrum of a batch against a loop of numpy.linalg.eigh;
* top-20 of one large kernel, N = 10000 and N = 20000, against scipy.sparse.linalg.eigsh (ARPACK), with peak memory;
* on a GPU: batched kpca on CUDA tensors against a loop of torch.linalg.eigh.
Every side is timed alike (``harness.Timer``). Work happens only inside the benchmarked tests (CI runs
--benchmark-skip).
"""
import numpy as np
import pytest
import torch

from conftest import assert_close
from fastdyn import kpca
from harness import Timer, sized

HAS_CUDA = torch.cuda.is_available()
BATCH, N_BATCH, K_TOP = sized(16, 3), sized(2000, 120), sized(50, 10)
N_FULL = sized(1000, 100)
N_LARGE, K_LARGE = sized((10_000, 20_000), (400,)), sized(20, 5)
BATCH_SIZE = f"{BATCH} x N={N_BATCH} k={K_TOP}"
TIMER = Timer()


def ntk_like(n, seed, d=10, h=1000):
    """K = A A^T / h + 1e-3 I with A = relu(X W / sqrt(d) + b): random-feature ReLU kernel of Gaussian data."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    A = np.maximum(X @ rng.standard_normal((d, h)) / np.sqrt(d) + rng.standard_normal(h), 0.0)
    K = np.empty((n, n))
    for start in range(0, n, 4096):  # row blocks: numpy's A @ A.T (syrk) segfaulted here at N = 20000
        K[start:start + 4096] = A[start:start + 4096] @ A.T / h
    K[np.diag_indices(n)] += 1e-3
    return K


def batch(n):
    return np.stack([ntk_like(n, seed) for seed in range(BATCH)])


def labels(n, seed=0):
    return np.where(np.random.default_rng(seed).standard_normal(n) > 0, 1.0, -1.0)


def peak_rss_above_now(fn):
    """Run fn and return (result, bytes of peak resident memory above the resident memory before the call)."""
    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as handle:  # reset VmHWM to the current RSS
        handle.write("5")
    before = status("VmRSS:")
    out = fn()
    return out, status("VmHWM:") - before


def test_top50_batch_vs_sklearn_kernelpca(benchmark):
    from sklearn.decomposition import KernelPCA

    K, y = batch(N_BATCH), labels(N_BATCH)

    def sklearn_loop():
        return np.stack([KernelPCA(kernel="precomputed", n_components=K_TOP).fit(k).eigenvalues_ for k in K])

    # sklearn centres the kernel (KernelCenterer), so fastdyn runs with center=True to solve the same problem.
    result = TIMER(benchmark, "kpca top-k", kpca, K, y, k=K_TOP, center=True, size=BATCH_SIZE)
    plain = TIMER(benchmark, "kpca top-k float64", kpca, K, y, k=K_TOP, center=True, mixed_precision=False,
                  size=BATCH_SIZE)
    reference = TIMER(benchmark, "sklearn loop", sklearn_loop, size=BATCH_SIZE)
    for out in (result, plain):
        assert_close(out.eigenvalues, reference, rtol=1e-8)
    print(f"\n[kpca top-{K_TOP}, {BATCH} x N={N_BATCH} fp64] fastdyn {result.backend}/{result.solver} "
          f"{TIMER['kpca top-k']} (products {np.min(result.iterations)}-{np.max(result.iterations)}), sklearn "
          f"KernelPCA loop {TIMER['sklearn loop']}: {TIMER.ratio('sklearn loop', 'kpca top-k')}; float64 only "
          f"(mixed_precision=False) {TIMER['kpca top-k float64']}: {TIMER.ratio('sklearn loop', 'kpca top-k float64')}")


def test_top50_batch_vs_syevr_loop(benchmark):
    """The direct top-k solver (LAPACK syevr, OpenMP over the batch) against scipy's eigh(subset_by_index) loop."""
    import scipy.linalg

    K = batch(N_BATCH)

    def scipy_loop():
        return np.stack([scipy.linalg.eigh(k, subset_by_index=(N_BATCH - K_TOP, N_BATCH - 1), eigvals_only=True)
                         for k in K])

    result = TIMER(benchmark, "kpca topk", kpca, K, k=K_TOP, solver="topk", size=BATCH_SIZE)
    reference = TIMER(benchmark, "scipy loop", scipy_loop, size=BATCH_SIZE)
    assert_close(result.eigenvalues, np.ascontiguousarray(reference[:, ::-1]), rtol=1e-10)
    print(f"\n[kpca top-{K_TOP} syevr, {BATCH} x N={N_BATCH} fp64] fastdyn {TIMER['kpca topk']}, scipy "
          f"eigh(subset) loop {TIMER['scipy loop']}: {TIMER.ratio('scipy loop', 'kpca topk')}")


def test_full_spectrum_batch_vs_numpy_eigh(benchmark):
    K = batch(N_FULL)
    size = f"{BATCH} x N={N_FULL}"
    result = TIMER(benchmark, "kpca full", kpca, K, size=size)
    reference = TIMER(benchmark, "numpy loop", lambda: np.stack([np.linalg.eigh(k)[0][::-1] for k in K]), size=size)
    assert_close(result.eigenvalues, reference, rtol=1e-10)
    print(f"\n[kpca full spectrum, {BATCH} x N={N_FULL} fp64] fastdyn {result.backend}/{result.solver} "
          f"{TIMER['kpca full']}, numpy.linalg.eigh loop {TIMER['numpy loop']}: "
          f"{TIMER.ratio('numpy loop', 'kpca full')}")


@pytest.mark.parametrize("n", N_LARGE)
def test_large_top20_memory_vs_arpack(benchmark, n):
    """N = 20000: 3.2 GB per kernel, minutes to build and compare on a 2-core machine (-k "not 20000" leaves it out)."""
    from scipy.sparse.linalg import eigsh

    K, y = ntk_like(n, seed=0, h=2000), labels(n)
    size = f"N={n} k={K_LARGE}"
    result = TIMER(benchmark, f"kpca large {n}", kpca, K, y, k=K_LARGE, size=size)
    reference = TIMER(benchmark, f"arpack {n}", eigsh, K, k=K_LARGE, which="LA", tol=1e-12, size=size)[0]
    _, peak = peak_rss_above_now(lambda: kpca(K, y, k=K_LARGE))
    assert_close(result.eigenvalues, np.sort(reference)[::-1].copy(), rtol=1e-9)
    matrix = K.nbytes
    print(f"\n[kpca top-{K_LARGE}, N={n} fp64] fastdyn {result.backend}/{result.solver} {TIMER[f'kpca large {n}']} "
          f"({int(result.iterations)} iterations), peak memory above the input {peak / 2**20:.0f} MiB = "
          f"{peak / matrix:.3f} x one N x N matrix ({matrix / 2**20:.0f} MiB); scipy eigsh (ARPACK) "
          f"{TIMER[f'arpack {n}']}: {TIMER.ratio(f'arpack {n}', f'kpca large {n}')}")
    benchmark.extra_info.update(peak_bytes=peak, matrix_bytes=matrix)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("solver", ["full", "subspace"])
def test_gpu_batch_vs_eigh_loop(benchmark, solver):
    K = torch.from_numpy(batch(N_BATCH)).cuda()

    def loop():
        out = torch.stack([torch.linalg.eigh(k)[0].flip(-1)[:K_TOP] for k in K])
        torch.cuda.synchronize()
        return out

    def batched():
        out = kpca(K, k=K_TOP, solver=solver)
        torch.cuda.synchronize()
        return out

    result = TIMER(benchmark, f"gpu {solver}", batched, size=BATCH_SIZE)
    reference = TIMER(benchmark, f"gpu eigh loop {solver}", loop, size=BATCH_SIZE)
    assert_close(result.eigenvalues, reference, rtol=1e-9)
    print(f"\n[kpca GPU top-{K_TOP} {solver}, {BATCH} x N={N_BATCH} fp64] fastdyn {TIMER[f'gpu {solver}']}, "
          f"torch.linalg.eigh loop {TIMER[f'gpu eigh loop {solver}']}: "
          f"{TIMER.ratio(f'gpu eigh loop {solver}', f'gpu {solver}')}")
