"""Benchmark of fastdyn.observables.linear_cka batched over layers x snapshots, against a loop of the plain numpy
feature-space CKA of Kornblith et al.'s notebook (centre both, ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)), the ratio
in one run, at the issue's size: 10 layers x 50 snapshots of N = 2000 activations of width 512 against each layer's
final state, fp32 (numpy's loop in fp32 too, so both use the same BLAS precision).

Run: python -m pytest bench/bench_similarity.py --benchmark-only -s

FLOPs counted: per (layer, snapshot) pair, the cross product A^T B and the self product A^T A (2 N p^2 each), plus
one B^T B per layer; the numpy loop does B^T B again for every pair.
"""
import numpy as np
import torch

from fastdyn import observables
from harness import Timer, sized

LAYERS, SNAPSHOTS, N, WIDTH = sized(10, 2), sized(50, 3), sized(2000, 40), sized(512, 9)
TIMER = Timer()


def numpy_cka(X, Y):
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    return np.linalg.norm(X.T @ Y) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def test_linear_cka_batched_vs_numpy_loop(benchmark):
    rng = np.random.default_rng(0)
    final = rng.standard_normal((LAYERS, 1, N, WIDTH), dtype=np.float32)
    drift = rng.standard_normal((LAYERS, SNAPSHOTS, N, WIDTH), dtype=np.float32)
    snaps = final + np.linspace(2.0, 0.0, SNAPSHOTS, dtype=np.float32)[None, :, None, None] * drift
    del drift
    stack, last = torch.from_numpy(snaps), torch.from_numpy(final)
    size = f"{LAYERS} layers x {SNAPSHOTS} snapshots, N={N}, width {WIDTH}, fp32"

    def loop():
        return np.array([[numpy_cka(snaps[i, s], final[i, 0]) for s in range(SNAPSHOTS)] for i in range(LAYERS)])

    fast = TIMER(benchmark, "linear_cka batched", observables.linear_cka, stack, last, size=size)
    reference = TIMER(benchmark, "numpy loop", loop, size=size)
    np.testing.assert_allclose(fast.numpy(), reference, rtol=2e-4, atol=2e-5)
    flops = (2 * LAYERS * SNAPSHOTS + LAYERS) * 2 * N * WIDTH ** 2
    rate = flops / TIMER["linear_cka batched"].wall / 1e9
    print(f"\n[linear_cka {size}] batched {TIMER['linear_cka batched']} ({rate:.0f} GFLOP/s), numpy loop "
          f"{TIMER['numpy loop']}: {TIMER.ratio('numpy loop', 'linear_cka batched')}")
