"""Benchmark of fastdyn.kernels.fc_kernels: the analytic NNGP and NTK of a depth-3 ReLU network for N x N points
(d = 30), the fused C++ recursion ("cpu": one pass over each row chunk through all layers, no (N, N) temporaries)
against the same recursion in plain torch (backend "torch": elementwise maps of whole matrices), the ratio in one
run, at the issue's N = 10^4 in float32 (float64 needs 3 x 0.8 GB outputs and temporaries on "torch"), and at
N = 4000 in float64.

Run: python -m pytest bench/bench_kernels.py --benchmark-only -s
"""
import pytest
import torch

from fastdyn import kernels
from harness import Timer, sized

TIMER = Timer()
SIZES = [(sized(10_000, 50), torch.float32), (sized(4000, 40), torch.float64)]


@pytest.mark.parametrize("n,dtype", SIZES, ids=lambda v: str(v))
def test_relu_depth3_ntk_vs_plain_torch(benchmark, n, dtype):
    x = torch.randn(n, 30, dtype=dtype, generator=torch.Generator().manual_seed(0))
    label = f"N={n}, depth 3, {dtype}"
    fast = TIMER(benchmark, f"cpu {label}", kernels.fc_kernels, x, depth=3, weight_var=2.0, backend="cpu",
                 size=label)
    plain = TIMER(benchmark, f"torch {label}", kernels.fc_kernels, x, depth=3, weight_var=2.0, backend="torch",
                  size=label)
    difference = float((fast.ntk - plain.ntk).abs().max() / plain.ntk.abs().max())
    # near the diagonal (angle ~ 0) sqrt(1 - cos^2) turns one rounding of cos into ~1e-8 in fp64 on either side
    assert difference < (1e-7 if dtype == torch.float64 else 1e-3)
    print(f"\n[{label}] fused cpu {TIMER[f'cpu {label}']}, plain torch {TIMER[f'torch {label}']}: "
          f"{TIMER.ratio(f'torch {label}', f'cpu {label}')}; largest NTK difference {difference:.1e} of max")
