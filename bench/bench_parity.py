"""Benchmarks of fastdyn.parity.solve_gf2 (the bit-packed GF(2) elimination of csrc/cpu/gf2.cpp), each ratio in one
run.

Run: python -m pytest bench/bench_parity.py --benchmark-only -s

* n = 2d parity samples at d = 1024: the "cpu" backend against fastdyn's plain-torch reference (Gauss-Jordan on a
  bool matrix) and against the ``galois`` package (GF(2).row_reduce of the augmented matrix, the same Gauss-Jordan
  elimination; an optional peer: it skips when galois is not installed), all three answers checked equal;
* d = 4096, n = 8192, the issue's largest size, the "cpu" backend alone, with its rate of 64-bit word operations
  (pivots x columns after the pivot x words per column, an upper bound of the XORs done).
"""
import numpy as np
import pytest

from fastdyn import data, parity
from harness import Timer, sized

D_COMPARE, D_LARGE = sized(1024, 40), sized(4096, 70)
TIMER = Timer()


def samples(d):
    split = data.parity(2 * d, d, seed=0, p_test=1)
    return split.x, split.y, split.info["subset"]


@pytest.mark.needs_backend("cpu")
def test_gf2_packed_vs_torch_reference(benchmark):
    x, y, subset = samples(D_COMPARE)
    size = f"d={D_COMPARE} n={2 * D_COMPARE}"
    packed = TIMER(benchmark, "gf2 cpu", parity.solve_gf2, x, y, backend="cpu", size=size)
    reference = TIMER(benchmark, "gf2 torch", parity.solve_gf2, x, y, backend="torch", size=size)
    for result in (packed, reference):
        assert result.unique and result.subset.tolist() == subset
    print(f"\n[solve_gf2 {size}] cpu (bit-packed) {TIMER['gf2 cpu']}, torch reference {TIMER['gf2 torch']}: "
          f"{TIMER.ratio('gf2 torch', 'gf2 cpu')}")


@pytest.mark.needs_backend("cpu")
def test_gf2_packed_vs_galois(benchmark):
    galois = pytest.importorskip("galois", reason="galois is not installed (optional peer: pip install galois)")
    x, y, subset = samples(D_COMPARE)
    size = f"d={D_COMPARE} n={2 * D_COMPARE}"
    field = galois.GF(2)
    augmented = field(np.concatenate([(1 - x) / 2, (1 - y)[:, None] / 2], axis=1).astype(np.uint8))

    def galois_solve():
        reduced = np.asarray(augmented.row_reduce())
        pivots = [int(np.argmax(row[:-1])) for row in reduced if row[:-1].any()]
        solution = np.zeros(x.shape[1], dtype=np.uint8)
        solution[pivots] = [row[-1] for row in reduced[:len(pivots)]]
        return solution

    packed = TIMER(benchmark, "gf2 cpu", parity.solve_gf2, x, y, backend="cpu", size=size)
    peer = TIMER(benchmark, "galois row_reduce", galois_solve, size=size)
    assert packed.unique and np.flatnonzero(peer).tolist() == subset == packed.subset.tolist()
    print(f"\n[solve_gf2 {size}] cpu (bit-packed) {TIMER['gf2 cpu']}, galois {galois.__version__} row_reduce "
          f"{TIMER['galois row_reduce']}: {TIMER.ratio('galois row_reduce', 'gf2 cpu')}")


@pytest.mark.needs_backend("cpu")
def test_gf2_packed_at_the_largest_size(benchmark):
    x, y, subset = samples(D_LARGE)
    size = f"d={D_LARGE} n={2 * D_LARGE}"
    result = TIMER(benchmark, "gf2 cpu large", parity.solve_gf2, x, y, backend="cpu", size=size)
    assert result.unique and result.subset.tolist() == subset
    words = (2 * D_LARGE + 63) // 64
    word_operations = sum((D_LARGE - c) * words for c in range(D_LARGE))   # rank d, every later column at most
    print(f"\n[solve_gf2 {size}] cpu (bit-packed) {TIMER['gf2 cpu large']}: "
          f"{word_operations / TIMER['gf2 cpu large'].wall / 1e9:.2f} G word-XORs/s (upper bound of the work)")
