"""Empirical NTK Theta(x, x) of an FCNet (ReLU, scalar output, N = 2000 points, x2 = None), fp32 and fp64.

* fastdyn: ``structured_ntk`` — one forward and explicit backward, then per layer a Gram of deltas and one of
  activations (BLAS syrk: half the flops of a GEMM), exactly symmetric result. Timed at N and at N_TORCH.
* torch.func: ``tests/oracles/ntk.py`` (vmap(jacrev), J J^T), timed on the first N_TORCH = 500 points only (at
  N = 2000 it needs ~17.5 GB). The measured ratio is the one at N_TORCH, fastdyn timed there too; the figure at N
  is printed as *extrapolated* (torch.func's time times (N / N_TORCH)^2, its contraction being quadratic in N), beside
  the extrapolated lower bound (times N / N_TORCH: its Jacobians alone are linear in N).
* neural-tangents 0.6.5 (optional): ``empirical_ntk_fn(implementation=STRUCTURED_DERIVATIVES)``, jitted, with the
  same warm-up (the first call compiles) and rounds, via ``bench/peers/neural_tangents_ntk.py`` in its own venv,
  fp32 and fp64 (``jax_enable_x64``); runs when FASTDYN_NT_PYTHON names that venv's python, else skips.

Cases: [30, 1024, 1024, 1] (the deep MLP) in fp32 and fp64, [30, 4096, 1] (one hidden layer, OneHidden's shapes) in
fp32. Every kernel is checked against an fp64 torch.func oracle on its first CHECK_N points.
Run: ``python -m pytest bench/bench_ntk_mlp.py --benchmark-only -s``; ratios print after the baselines.
"""
import copy
import functools
from pathlib import Path

import pytest
import torch

from conftest import assert_close
from fastdyn._src.ntk_structured import structured_ntk
from fastdyn.models import FCNet
from harness import ROUNDS, WARMUP, Timer, neural_tangents_python, sized
from oracles.ntk import ntk_jacobian_contraction

N, N_TORCH, CHECK_N = sized(2000, 40), sized(500, 20), sized(32, 16)
SHAPES = {"deep": sized([30, 1024, 1024, 1], [7, 33, 17, 1]), "onehidden": sized([30, 4096, 1], [7, 65, 1])}
CASES = [("deep", torch.float32), ("onehidden", torch.float32), ("deep", torch.float64)]
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "neural_tangents_ntk.py"
TIMER = Timer()


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"{case[0]}-{str(case[1])[6:]}")
def case(request):
    """Module scope groups the tests by case, so each peer runs right after fastdyn on the same case."""
    return request.param


def problem(shape, dtype, n, seed=0):
    torch.manual_seed(seed)
    return FCNet(SHAPES[shape], "relu").to(dtype), torch.randn(n, SHAPES[shape][0], dtype=dtype)


@functools.lru_cache(maxsize=None)
def oracle(shape, dtype):
    """fp64 torch.func NTK of the case's model on its first CHECK_N points."""
    model, x = problem(shape, dtype, N)
    return ntk_jacobian_contraction(copy.deepcopy(model).double(), x[:CHECK_N].double())


def check(kernel, shape, dtype):
    assert_close(kernel[:CHECK_N, :CHECK_N], oracle(shape, dtype), dtype)


def name(shape, dtype, side, n):
    return f"{shape} {str(dtype)[6:]} {side} N={n}"


def test_fastdyn_structured(benchmark, case):
    shape, dtype = case
    model, x = problem(shape, dtype, N)
    kernel = TIMER(benchmark, name(*case, "fastdyn", N), structured_ntk, model, x, None, "full", size=f"N={N}")
    assert kernel.shape == (N, N) and torch.equal(kernel, kernel.T)
    check(kernel, *case)
    check(TIMER(benchmark, name(*case, "fastdyn", N_TORCH), structured_ntk, model, x[:N_TORCH], None, "full",
                size=f"N={N_TORCH}"), *case)
    print(f"\n[{shape} {SHAPES[shape]} {dtype}] fastdyn structured: {TIMER[name(*case, 'fastdyn', N)]} at N={N}, "
          f"{TIMER[name(*case, 'fastdyn', N_TORCH)]} at N={N_TORCH}")


def test_neural_tangents(benchmark, case):
    shape, dtype = case
    python = neural_tangents_python()
    command = [python, str(PEER_SCRIPT), "--dims", *map(str, SHAPES[shape]), "--n", str(N), "--repeats",
               str(ROUNDS), "--warmup", str(WARMUP), *(["--float64"] if dtype == torch.float64 else [])]

    key = name(*case, "neural-tangents", N)
    result = TIMER.peer(benchmark, key, command, size=f"N={N}")
    print(f"\n[{shape} {dtype}] neural-tangents {result['implementation']} ({result['dtype']}): {TIMER[key]} "
          f"(first call, compiling, {result['first_call_s']:.2f} s), jax {result['jax']}")
    if name(*case, "fastdyn", N) in TIMER:
        print(f"  fastdyn vs neural-tangents, measured at N={N}: {TIMER.ratio(key, name(*case, 'fastdyn', N))}")


def test_torch_func(benchmark, case):
    shape, dtype = case
    model, x = problem(shape, dtype, N)
    key = name(*case, "torch.func", N_TORCH)
    check(TIMER(benchmark, key, ntk_jacobian_contraction, model, x[:N_TORCH], size=f"N={N_TORCH}"), *case)
    print(f"\n[{shape} {dtype}] torch.func on N={N_TORCH}: {TIMER[key]}")
    if name(*case, "fastdyn", N) in TIMER:
        func, fast = TIMER[key].wall, TIMER[name(*case, "fastdyn", N)].wall
        measured = TIMER.ratio(key, name(*case, "fastdyn", N_TORCH))
        print(f"  fastdyn vs torch.func, measured at N={N_TORCH}: {measured}; "
              f"extrapolated to N={N}: {func * (N / N_TORCH) ** 2 / fast:.1f}x (torch.func's time x "
              f"{(N / N_TORCH) ** 2:.0f}), extrapolated lower bound {func * N / N_TORCH / fast:.1f}x "
              f"(x {N / N_TORCH:.0f})")
