"""Kink velocities z_dot of a OneHidden ReLU network (h neurons, p points, d = 10, fp32) against plain torch.

* fastdyn: ``kinks.velocities(backend="cpu")`` — the fused C++ gradient kernel plus an O(h d) chain rule.
* torch formulation: the same maths as chunked GEMMs + masks (``fastdyn._src.backend_torch.onehidden.gradient`` with the
  chunk size that ran fastest here, 2^24 mask entries), then the same chain rule.
* autograd route: what a torch user writes: per chunk of neurons, backward of sum(g * f(x)), then
  ``torch.func.jvp`` of z(omega, b) along the gradient-flow velocities (same size).
* fastdyn again at p = 1e3, for the time per neuron-point pair at two sizes.

* attractors: the fused C++ pattern-key kernel against an independent plain baseline (chunked masks, np.packbits,
  a dict of the bit rows), and against fastdyn's own torch backend of the same function (not a peer: the
  pure-torch path fastdyn falls back to).

Every side is timed alike (``harness.Timer``: warm-up, then the best round's wall time and, beside it, its process
CPU time, both threads): on a machine shared with other jobs the CPU-time ratio is the steadier one. Every z_dot is
checked per neuron against the autograd route in fp64 on the first CHECK_H neurons (those with a point so close to
their kink that fp32 may flip its activation, ``harness.settled_neurons``, are left out: at most half); the
attractor groups of every path are checked against the plain baseline's.

Each fastdyn benchmark prints its GFLOP/s with its fraction of torch.mm's fp32 GEMM rate measured in the same run
and the CPU instruction-set path (``FASTDYN_CPU_ISA=baseline`` forces the portable one). Flops: the gradient
kernel does 2 p h (2 d + 2) (pre-activations 2 d, then the sums of g a x, g a, g a pre: 2 (d + 2) per neuron-point
pair; the O(h d) chain rule is left out), the pattern keys 2 p h d.

The extra peak memory of one call is measured in a fresh interpreter of the installed package (peak RSS during the
call minus RSS before it). Run: ``python -m pytest bench/bench_kinks.py --benchmark-only -s``.
"""
import functools
import math

import numpy as np
import pytest
import torch

import fastdyn
from conftest import assert_close
from fastdyn import kinks
from fastdyn._src.backend_torch.onehidden import gradient as torch_gradient
from gemm_rate import rate
from installed import run_installed
from harness import Timer, settled_neurons, sized

H, P, D = sized(100_000, 300), sized(10_000, 200), 10
P_SMALL = sized(1_000, 50)
TORCH_CHUNK = 1 << 24
AUTOGRAD_CHUNK = sized(4096, 128)
CHECK_H = sized(2048, 300)
SIZE, SIZE_SMALL = f"h={H} p={P}", f"h={H} p={P_SMALL}"
TIMER = Timer()

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


def autograd_z_dot(omega_all, b_all, beta_all, scale, x, g):
    """Autograd of sum(g * f(x)) per neuron chunk, then the Jacobian of z(omega, b) by torch.func.jvp."""
    z_dot = torch.empty_like(omega_all)
    for start in range(0, omega_all.shape[0], AUTOGRAD_CHUNK):
        omega = omega_all[start:start + AUTOGRAD_CHUNK].clone().requires_grad_()
        b = b_all[start:start + AUTOGRAD_CHUNK].clone().requires_grad_()
        out = scale * torch.relu(x @ omega.T / math.sqrt(D) + b) @ beta_all[start:start + AUTOGRAD_CHUNK]
        grad_omega, grad_b = torch.autograd.grad((g * out).sum(), (omega, b))

        def z_of(o, c):
            return -math.sqrt(D) * c[:, None] * o / (o * o).sum(1, keepdim=True)

        z_dot[start:start + AUTOGRAD_CHUNK] = torch.func.jvp(z_of, (omega.detach(), b.detach()),
                                                             (-grad_omega, -grad_b))[1]
    return z_dot


def autograd_velocities(model, x, g):
    return autograd_z_dot(model.omega.detach(), model.b.detach(), model.beta.detach(), model.output_scale, x, g)


def check_velocities(z_dot, model, x, g, neurons=CHECK_H):
    """z_dot (fp32) per neuron against the autograd route in fp64 on the first ``neurons`` neurons, leaving out those
    with a point so close to the kink that fp32 may flip its activation (not an error there); at most half of them."""
    omega, b, beta = (t.detach()[:neurons].cpu().double() for t in (model.omega, model.b, model.beta))
    x64, g64 = x.cpu().double(), g.cpu().double()
    expected = autograd_z_dot(omega, b, beta, model.output_scale, x64, g64)
    settled = settled_neurons(x64, omega, b)
    assert settled.double().mean() >= 0.5, f"only {int(settled.sum())} of {neurons} neurons away from their kinks"
    assert_close(z_dot[:neurons].cpu()[settled], expected[settled], torch.float32, rows=True)


_PEAK_SCRIPT = """
from bench_kinks import kinks, problem, torch_velocities
route, h, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model, x, g = problem(h, p)
fn = {"fastdyn": lambda *a: kinks.velocities(*a, backend="cpu"), "torch": torch_velocities}[route]
fn(model, x[:50], g[:50])  # load the kernels
report(mb=peak_growth_bytes(fn, model, x, g) / 2**20)
"""


def extra_peak_mb(route: str, h: int, p: int) -> float:
    """Peak RSS of one call minus the RSS before it, in a fresh interpreter of the installed package (MB)."""
    return run_installed(_PEAK_SCRIPT, route, h, p)["mb"]


def gradient_flops(h, p):
    return 2 * p * h * (2 * D + 2)


def test_fastdyn_velocities(benchmark):
    """kinks.velocities h = 1e5, p = 1e4, d = 10, fp32: 2 p h (2 d + 2) = 4.4e10 flops."""
    model, x, g = problem(H, P)
    z_dot = TIMER(benchmark, "fastdyn", kinks.velocities, model, x, g, backend="cpu", size=SIZE)
    check_velocities(z_dot, model, x, g)
    mb = extra_peak_mb("fastdyn", H, P)
    print(f"\nfastdyn kinks.velocities h={H} p={P} d={D} fp32: {TIMER['fastdyn']}, "
          f"extra peak memory {mb:.1f} MB (target < 100 MB)")
    print(rate("fastdyn kinks.velocities", gradient_flops(H, P), TIMER["fastdyn"].wall))


def test_torch_formulation(benchmark):
    model, x, g = problem(H, P)
    z_dot = TIMER(benchmark, "torch", torch_velocities, model, x, g, size=SIZE)
    check_velocities(z_dot, model, x, g)
    mb = extra_peak_mb("torch", H, P)
    print(f"\ntorch chunked GEMM+mask h={H} p={P}: {TIMER['torch']}, extra peak memory {mb:.0f} MB")
    print(rate("torch formulation (same flop count)", gradient_flops(H, P), TIMER["torch"].wall))
    if "fastdyn" in TIMER:
        print(f"speed-up fastdyn vs torch formulation: {TIMER.ratio('torch', 'fastdyn')} (target >= 10x)")


def test_autograd_route(benchmark):
    model, x, g = problem(H, P)
    z_dot = TIMER(benchmark, "autograd", autograd_velocities, model, x, g, size=SIZE)
    check_velocities(z_dot, model, x, g)
    print(f"\nautograd route h={H} p={P}: {TIMER['autograd']}")
    if "fastdyn" in TIMER:
        print(f"speed-up fastdyn vs autograd route: {TIMER.ratio('autograd', 'fastdyn')} (target >= 20x)")


def test_fastdyn_velocities_small(benchmark):
    """kinks.velocities h = 1e5, p = 1e3: 2 p h (2 d + 2) = 4.4e9 flops."""
    model, x, g = problem(H, P_SMALL)
    z_dot = TIMER(benchmark, "fastdyn_small", kinks.velocities, model, x, g, backend="cpu", size=SIZE_SMALL)
    check_velocities(z_dot, model, x, g)
    print(f"\nfastdyn h={H} p={P_SMALL}: {TIMER['fastdyn_small']}")
    print(rate("fastdyn kinks.velocities", gradient_flops(H, P_SMALL), TIMER["fastdyn_small"].wall))
    if "fastdyn" in TIMER:
        per_pair = [TIMER[k].cpu / (H * p) * 1e9 for k, p in (("fastdyn_small", P_SMALL), ("fastdyn", P))]
        print(f"CPU time per 1e9 neuron-point pairs: {per_pair[0]:.3f} s at h*p={H * P_SMALL:.0e}, "
              f"{per_pair[1]:.3f} s at h*p={H * P:.0e} (linear in h*p when equal)")


# ---- attractors ---------------------------------------------------------------------------------------------------

def plain_attractors(model, x):
    """What a user writes: per neuron chunk the activation patterns (pre > 0) as packed bit rows, then a dict from
    row to group. Labels by first appearance as fastdyn numbers them, -1 for dead neurons (never active)."""
    omega, b = model.omega.detach(), model.b.detach()
    chunk = max(1, TORCH_CHUNK // x.shape[0])
    labels, groups = np.full(model.h, -1, dtype=np.int64), {}
    for start in range(0, model.h, chunk):
        pre = torch.addmm(b[start:start + chunk, None], omega[start:start + chunk], x.T, alpha=1 / math.sqrt(D))
        for n, row in enumerate(np.packbits((pre > 0).numpy(), axis=1), start):
            if row.any():
                labels[n] = groups.setdefault(row.tobytes(), len(groups))
    return labels


@functools.lru_cache(maxsize=None)
def plain_groups(h, p):
    model, x, _ = problem(h, p)
    return plain_attractors(model, x)


def check_groups(labels, expected):
    """The neurons' groups agree with the expected ones (up to relabelling) for >= 99.9 % of the neurons (fp32 may
    flip a point's activation on a neuron with a point at its kink), for all of them when nothing flipped."""
    a, b = np.asarray(labels) + 1, np.asarray(expected) + 1
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    same = (np.bincount(pairs[:, 0], minlength=a.max() + 1)[a] == 1) & \
           (np.bincount(pairs[:, 1], minlength=b.max() + 1)[b] == 1)
    assert same.mean() >= 0.999, f"{int((~same).sum())} of {a.size} neurons grouped differently"


def test_attractors_plain(benchmark):
    model, x, _ = problem(H, P)
    labels = TIMER(benchmark, "attractors_plain", plain_attractors, model, x, size=SIZE)
    print(f"\nplain baseline (chunked masks, np.packbits, a dict of the rows) h={H} p={P}: "
          f"{TIMER['attractors_plain']}, {labels.max() + 1} attractors")


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_attractors(benchmark, backend):
    """kinks.attractors h = 1e5, p = 1e4: pattern keys 2 p h d = 2e10 flops (plus the grouping of the keys)."""
    model, x, _ = problem(H, P)
    key = f"attractors_{backend}"
    found = TIMER(benchmark, key, kinks.attractors, model, x, backend=backend, size=SIZE)
    check_groups(found.labels, plain_groups(H, P))
    what = "fused C++ kernel" if backend == "cpu" else "fastdyn's own torch backend, not a peer"
    print(f"\nfastdyn kinks.attractors ({backend}: {what}) h={H} p={P}: {TIMER[key]}, "
          f"{found.n_attractors} attractors, {found.n_dead} dead")
    if backend == "cpu":
        print(rate("fastdyn kinks.attractors", 2 * P * H * D, TIMER[key].wall))
    if "attractors_plain" in TIMER:
        print(f"speed-up over the plain baseline: {TIMER.ratio('attractors_plain', key)}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and fastdyn._cuda")
def test_cuda_velocities_vs_torch(benchmark):
    """h = 1e6, p = 1e5 on the GPU: the CUDA kernel against the torch formulation on the same GPU."""
    h, p = sized(1_000_000, 300), sized(100_000, 200)
    model, x, g = problem(h, p, device="cuda")

    def synchronized(fn, *args, **kwargs):
        out = fn(*args, **kwargs)
        torch.cuda.synchronize()
        return out

    z_dot = TIMER(benchmark, "cuda", synchronized, kinks.velocities, model, x, g, backend="cuda", size=f"h={h} p={p}")
    check_velocities(z_dot, model, x, g, neurons=512)
    check_velocities(TIMER(benchmark, "cuda_torch", synchronized, torch_velocities, model, x, g, size=f"h={h} p={p}"),
                     model, x, g, neurons=512)
    print(f"\nGPU h={h} p={p}: fastdyn {TIMER['cuda']}, torch formulation {TIMER['cuda_torch']}, "
          f"speed-up {TIMER.ratio('cuda_torch', 'cuda')}")
