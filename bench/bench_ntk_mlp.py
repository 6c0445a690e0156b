"""Empirical NTK Theta(x, x) of an FCNet (ReLU, fp32, scalar output, N = 2000 points, x2 = None).

* fastdyn: ``structured_ntk`` — one forward and explicit backward, then per layer a Gram of deltas and one of
  activations (BLAS syrk: half the flops of a GEMM), exactly symmetric result.
* torch.func: ``tests/oracles/ntk.py`` (vmap(jacrev), J J^T), run on the first
  N_TORCH = 500 points and scaled by (N / N_TORCH)^2 (its contraction is quadratic in N and dominates; at N = 2000
  it needs ~17.5 GB). Also printed: the ratio against a strict lower bound, the subset time scaled by N / N_TORCH.
* neural-tangents 0.6.5 (optional): ``empirical_ntk_fn(implementation=STRUCTURED_DERIVATIVES)``, jitted, best of 5
  calls after the compiling one, via ``bench/peers/neural_tangents_ntk.py`` in its own venv; runs when the
  environment variable FASTDYN_NT_PYTHON names that venv's python, else skips.

Shapes: [30, 1024, 1024, 1] (the deep MLP) and [30, 4096, 1] (one hidden layer, OneHidden's shapes).
Run: ``python -m pytest bench/bench_ntk_mlp.py --benchmark-only -s``; ratios print after the baselines.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastdyn._src.ntk_structured import structured_ntk
from fastdyn.models import FCNet
from oracles.ntk import ntk_jacobian_contraction

N, N_TORCH = 2000, 500
SHAPES = {"deep": [30, 1024, 1024, 1], "onehidden": [30, 4096, 1]}
PEER_SCRIPT = Path(__file__).parent / "peers" / "neural_tangents_ntk.py"
_seconds: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module", params=list(SHAPES))
def shape(request):
    """Module scope groups the tests by shape, so each peer runs right after fastdyn on the same shape."""
    return request.param


def problem(dims, n, seed=0):
    torch.manual_seed(seed)
    return FCNet(dims, "relu"), torch.randn(n, dims[0])


def _report(shape):
    fast = _seconds.get((shape, "fastdyn"))
    if fast is None:
        return
    for name in ("torch.func", "torch.func lower bound", "neural-tangents"):
        if (shape, name) in _seconds:
            print(f"\n[{shape} {SHAPES[shape]}, N={N}, fp32] fastdyn structured {fast:.3f} s; {name} "
                  f"{_seconds[shape, name]:.3f} s -> fastdyn is {_seconds[shape, name] / fast:.1f}x faster")


def test_fastdyn_structured(benchmark, shape):
    model, x = problem(SHAPES[shape], N)
    kernel = benchmark.pedantic(structured_ntk, args=(model, x, None, "full"), rounds=5, warmup_rounds=1)
    assert kernel.shape == (N, N) and torch.equal(kernel, kernel.T)
    _seconds[shape, "fastdyn"] = benchmark.stats.stats.min


def test_neural_tangents(benchmark, shape):
    python = os.environ.get("FASTDYN_NT_PYTHON")
    if not python:
        pytest.skip("set FASTDYN_NT_PYTHON to the python of a venv with neural-tangents 0.6.5 (see bench/peers)")
    command = [python, str(PEER_SCRIPT), "--dims", *map(str, SHAPES[shape]), "--n", str(N), "--repeats", "5"]

    def run_peer():
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(run_peer, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(result)
    _seconds[shape, "neural-tangents"] = result["best_s"]
    print(f"\n[{shape}] neural-tangents {result['implementation']}: best {result['best_s']:.3f} s "
          f"(first call with compile {result['first_call_s']:.2f} s), jax {result['jax']}")
    _report(shape)


def test_torch_func(benchmark, shape):
    model, x = problem(SHAPES[shape], N)
    subset = x[:N_TORCH]
    reference = benchmark.pedantic(ntk_jacobian_contraction, args=(model, subset), rounds=1, warmup_rounds=0)
    scale = (N / N_TORCH) ** 2
    _seconds[shape, "torch.func"] = benchmark.stats.stats.min * scale
    # Its per-point Jacobians cost O(N), so (N / N_TORCH) is a strict lower bound on the scaling.
    _seconds[shape, "torch.func lower bound"] = benchmark.stats.stats.min * N / N_TORCH
    benchmark.extra_info["scaled_to_n"] = N
    benchmark.extra_info["scale"] = scale
    mine = structured_ntk(model, subset, None)
    error = float((mine - reference).abs().max() / reference.abs().max())
    print(f"\n[{shape}] torch.func on N={N_TORCH}: {benchmark.stats.stats.min:.2f} s, x{scale:.0f} for N={N}; "
          f"max relative difference of fastdyn from it: {error:.1e}")
    _report(shape)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "--benchmark-only", "-s"]))
