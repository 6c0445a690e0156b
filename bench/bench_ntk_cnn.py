"""Empirical NTK Theta(x, x) of CNNs (``fastdyn.ntk``, the structured path) against torch.func and neural-tangents,
fp32, out="trace" (neural-tangents' default) and out="full" (N, N, 10, 10).

Cases:
* lenet: LeNet-5 (conv 6@5x5 pad 2, ReLU, avg-pool 2, conv 16@5x5, ReLU, avg-pool 2, FC 400-120-84-10; 61,706
  parameters) on 28x28x1 inputs, N = 1000;
* resnet: conv 16@3x3, three residual blocks (16, 32 stride 2, 64 stride 2; conv-ReLU-conv plus the input or its
  1x1-conv projection, then ReLU; no normalisation, as stax has no eval-mode batch norm), global average pooling,
  FC 64-10 (77,706 parameters) on 16x16x3 inputs, N = 500.

Sides:
* fastdyn: ``fastdyn.ntk`` (plan check, hooked forward, a backward per output, per-layer Grams or
  per-point gradients), timed at N and at torch.func's size; its per-layer routes are printed.
* torch.func Jacobian contraction: ``tests/oracles/ntk.py`` (vmap(jacrev), then one einsum per parameter tensor for
  the out asked for), timed at TORCH_N: N for "trace", N / 2 for "full" (there the ratio is measured at N / 2).
* torch.func NTK-vector products (fastdyn's ``ntvp`` path: vjp rows of J(x2), jvp along them), timed at N_NTVP.
* neural-tangents 0.6.5 ``empirical_ntk_fn(implementation=STRUCTURED_DERIVATIVES)``, jitted, at N, in its own venv
  (``bench/peers/neural_tangents_cnn.py``; runs when FASTDYN_NT_PYTHON names that venv's python, else skips).

Peak memory: growth of the peak resident memory during one call, in a fresh interpreter (tests/installed.py) for
fastdyn and torch.func; the peer reports its own the same way. Every fastdyn kernel is checked against an fp64
torch.func oracle on its first CHECK_N points.
Run: ``python -m pytest bench/bench_ntk_cnn.py --benchmark-only -s``.
"""
import copy
import functools
from pathlib import Path

import pytest
import torch
from torch import nn

import fastdyn
from conftest import assert_close
from fastdyn._src.ntk_structured import ntvp_ntk
from harness import ROUNDS, WARMUP, Timer, neural_tangents_python, sized
from installed import run_installed
from oracles.ntk import ntk_jacobian_contraction

SIZES = {"lenet": sized(1000, 12), "resnet": sized(500, 8)}
# torch.func's size: N for "trace"; N / 2 for "full" (its (N O) x (N O) contraction at LeNet's N = 1000 is 10^13
# flops, minutes a call)
TORCH_N = {(model, out): sized(n if out == "trace" else n // 2, 6) for model, n in SIZES.items()
           for out in ("trace", "full")}
N_NTVP = sized(20, 4)
CHECK_N = sized(16, 4)
CASES = [(model, out) for model in ("lenet", "resnet") for out in ("trace", "full")]
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "neural_tangents_cnn.py"
TIMER = Timer()


class Block(nn.Module):
    """conv-ReLU-conv plus the input (or its 1x1-conv projection when the shape changes), then ReLU."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x):
        return torch.relu(self.main(x) + self.shortcut(x))


def make(model: str) -> tuple[nn.Module, tuple[int, ...]]:
    if model == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), Block(16, 16, 1), Block(16, 32, 2),
                         Block(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)), (3, 16, 16)


def problem(model: str, n: int, seed: int = 0):
    torch.manual_seed(seed)
    net, shape = make(model)
    return net.eval(), torch.randn(n, *shape)


@functools.lru_cache(maxsize=None)
def oracle(model, out):
    net, x = problem(model, CHECK_N)
    return ntk_jacobian_contraction(copy.deepcopy(net).double(), x.double(), None, out)


def check(kernel, model, out):
    assert_close(kernel[:CHECK_N, :CHECK_N], oracle(model, out), torch.float32)


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"{case[0]}-{case[1]}")
def case(request):
    return request.param


def key(case, side, n):
    return f"{case[0]} {case[1]} {side} N={n}"


_PEAK_SCRIPT = """
from bench_ntk_cnn import problem, ntk_jacobian_contraction
import fastdyn
model, out, side, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
net, x = problem(model, n)
fn = fastdyn.ntk if side == "fastdyn" else lambda net, x, out: ntk_jacobian_contraction(net, x, None, out)
fn(net, x[:4], out=out) if side == "fastdyn" else fn(net, x[:4], out)
report(mb=peak_growth_bytes(fn, net, x, out=out) / 2**20 if side == "fastdyn" else
       peak_growth_bytes(fn, net, x, out) / 2**20)
"""


def peak_mb(case, side, n):
    return run_installed(_PEAK_SCRIPT, case[0], case[1], side, n, timeout=1800)["mb"]


def test_fastdyn(benchmark, case):
    model, out = case
    net, x = problem(model, SIZES[model])
    kernel, info = TIMER(benchmark, key(case, "fastdyn", SIZES[model]), fastdyn.ntk, net, x, out=out,
                         return_info=True, size=f"N={SIZES[model]}")
    assert info.path == "structured"
    check(kernel, *case)
    small = TORCH_N[case]
    if small != SIZES[model]:
        check(TIMER(benchmark, key(case, "fastdyn", small), fastdyn.ntk, net, x[:small], out=out, size=f"N={small}"),
              *case)
    routes = ", ".join(f"{r.name}:{r.route}" for r in info.layers)
    mb = peak_mb(case, "fastdyn", SIZES[model])
    benchmark.extra_info.update(peak_growth_mb=mb, routes=routes)
    also = f"; {TIMER[key(case, 'fastdyn', small)]} at N={small}" if small != SIZES[model] else ""
    print(f"\n[{model} {out}] fastdyn: {TIMER[key(case, 'fastdyn', SIZES[model])]} at N={SIZES[model]}, peak growth "
          f"{mb:.0f} MB{also}; routes {routes}")


def test_torch_func_jacobian(benchmark, case):
    model, out = case
    small = TORCH_N[case]
    net, x = problem(model, small)
    k = key(case, "torch.func", small)
    check(TIMER(benchmark, k, ntk_jacobian_contraction, net, x, None, out, size=f"N={small}"), *case)
    mb = peak_mb(case, "torch.func", small)
    benchmark.extra_info.update(peak_growth_mb=mb)
    print(f"\n[{model} {out}] torch.func Jacobian contraction: {TIMER[k]} at N={small}, peak growth {mb:.0f} MB")
    if key(case, "fastdyn", small) in TIMER:
        print(f"  fastdyn vs torch.func, measured at N={small}: {TIMER.ratio(k, key(case, 'fastdyn', small))}")


def test_torch_func_ntvp(benchmark, case):
    model, out = case
    net, x = problem(model, N_NTVP)
    k = key(case, "ntvp", N_NTVP)
    check(TIMER(benchmark, k, ntvp_ntk, net, x, None, out, size=f"N={N_NTVP}"), *case)
    fast = key(case, "fastdyn", N_NTVP)
    TIMER(benchmark, fast, fastdyn.ntk, net, x, out=out, size=f"N={N_NTVP}")
    print(f"\n[{model} {out}] torch.func NTK-vector products: {TIMER[k]} at N={N_NTVP}; fastdyn {TIMER[fast]}: "
          f"{TIMER.ratio(k, fast)}")


def test_neural_tangents(benchmark, case):
    model, out = case
    python = neural_tangents_python()
    n = SIZES[model]
    command = [python, str(PEER_SCRIPT), "--model", model, "--n", str(n), "--out", out, "--repeats", str(ROUNDS),
               "--warmup", str(WARMUP)]

    k = key(case, "neural-tangents", n)
    result = TIMER.peer(benchmark, k, command, size=f"N={n}")
    print(f"\n[{model} {out}] neural-tangents structured derivatives: {TIMER[k]} (first call, compiling, "
          f"{result['first_call_s']:.2f} s), peak growth {result['peak_growth_mb']:.0f} MB, "
          f"{result['parameters']} parameters")
    if key(case, "fastdyn", n) in TIMER:
        print(f"  fastdyn vs neural-tangents at N={n}: {TIMER.ratio(k, key(case, 'fastdyn', n))}")


def test_parameter_counts():
    assert sum(p.numel() for p in make("lenet")[0].parameters()) == 61706
    assert sum(p.numel() for p in make("resnet")[0].parameters()) == 77706
