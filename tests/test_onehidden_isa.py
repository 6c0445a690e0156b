"""The instruction-set paths of the one-hidden CPU kernels (csrc/cpu/isa/): every path this CPU runs against plain
torch references (autograd for the gradient, a Python transcription of the pattern hash), odd sizes, determinism,
and the choice of path (FASTDYN_CPU_ISA, set_cpu_isa; `fastdyn info` naming it is tests/test_cli.py's)."""
import numpy as np
import pytest
import torch

import fastdyn
from conftest import assert_close
from installed import run_installed
from fastdyn._src import backends
from test_kinks import assert_neurons_close

pytestmark = pytest.mark.needs_backend("cpu")  # fails where fastdyn._core should be built but is not

SIZES = [(37, d, h) for d in (1, 5, 10, 23, 31) for h in (19, 130)]


@pytest.fixture
def core():
    core = backends.module("cpu")
    before = core.cpu_isa()
    yield core
    core.set_cpu_isa(before)


def isas():
    return backends.module("cpu").cpu_isas() if "cpu" in fastdyn.available_backends() else []


def network(p, d, h, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(p, d, generator=gen, dtype=dtype)
    omega, b = torch.randn(h, d, generator=gen, dtype=dtype), torch.randn(h, generator=gen, dtype=dtype)
    beta, g = torch.randn(h, generator=gen, dtype=dtype), torch.randn(p, generator=gen, dtype=dtype)
    return x, omega, b, beta, g


def pre_activations(x, omega, b):
    """(p, h) in float64."""
    d = x.shape[1]
    return x.double() @ omega.double().T / d ** 0.5 + b.double()


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p, d, h", SIZES)
def test_forward_gradient_moments_against_autograd(core, isa, dtype, p, d, h):
    core.set_cpu_isa(isa)
    assert core.cpu_isa() == isa
    x, omega, b, beta, g = network(p, d, h, dtype, seed=d * 1000 + h)
    scale = 0.7

    out = torch.empty(p, dtype=dtype)
    core.onehidden_forward(x, omega, b, beta, out, scale=scale, threads=2)
    params = [t.double().clone().requires_grad_() for t in (omega, b, beta)]
    f = scale * torch.relu(x.double() @ params[0].T / d ** 0.5 + params[1]) @ params[2]
    assert_close(out, f, dtype)

    grads = [torch.empty_like(t) for t in (omega, b, beta)]
    core.onehidden_gradient(x, g, omega, b, beta, *grads, scale=scale, threads=2)
    assert_neurons_close(grads, torch.autograd.grad((g.double() * f).sum(), params), dtype)

    sx, s1, sp = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(b)
    core.onehidden_moments(x, g, omega, b, sx, s1, sp, threads=2)
    pre = pre_activations(x, omega, b)
    ga = (pre > 0).double() * g.double()[:, None]  # (p, h) g_i a_ni
    assert_neurons_close((sx, s1, sp), (ga.T @ x.double(), ga.sum(0), (ga * pre).sum(0)), dtype)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p, d, h", SIZES)
def test_jvp_against_forward_mode_autograd(core, isa, dtype, p, d, h):
    core.set_cpu_isa(isa)
    x, omega, b, beta, _ = network(p, d, h, dtype, seed=d * 1000 + h)
    direction = network(1, d, h, dtype, seed=d * 1000 + h + 1)[1:4]  # (v_omega, v_b, v_beta)
    scale = 0.7
    out = torch.empty(p, dtype=dtype)
    core.onehidden_jvp(x, omega, b, beta, *direction, out, scale=scale, threads=2)

    def f(w, c, a):
        return scale * torch.relu(x.double() @ w.T / d ** 0.5 + c) @ a
    _, expected = torch.func.jvp(f, tuple(t.double() for t in (omega, b, beta)),
                                 tuple(t.double() for t in direction))
    assert_close(out, expected, dtype)


def reference_keys(active):
    """The kernel's hash (csrc/cpu/isa/onehidden_simd.hpp, pattern_keys) written out in Python: active (p, h) bool."""
    mask = (1 << 64) - 1
    p, h = active.shape
    keys = np.zeros((h, 3), dtype=np.uint64)
    for n in range(h):
        s1, s2 = 0x243F6A8885A308D3, 0x13198A2E03707344
        for i0 in range(0, p, 32):
            bits = sum(1 << j for j, a in enumerate(active[i0:i0 + 32, n]) if a)
            s1 = ((s1 ^ bits) * 0x9E3779B97F4A7C15) & mask
            s1 ^= s1 >> 32
            s2 = ((s2 + bits + 1) * 0xC2B2AE3D27D4EB4F) & mask
            s2 ^= s2 >> 29
        keys[n] = s1, s2, int(active[:, n].sum())
    return keys


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p, d, h", [(37, 1, 19), (37, 10, 130), (70, 23, 19), (37, 31, 130)])
def test_pattern_keys_against_python_hash(core, isa, dtype, p, d, h):
    core.set_cpu_isa(isa)
    x, omega, b, _, _ = network(p, d, h, dtype, seed=d)
    omega[h // 2:] = omega[:h - h // 2] * 2.0  # scaled copies: the same patterns, so equal keys
    b[h // 2:] = b[:h - h // 2] * 2.0
    pre = pre_activations(x, omega, b)
    decided = (pre.abs() > 1e-4).all(0).numpy()  # neurons with no point near their kink (no rounding flips)
    assert decided.sum() > h // 2
    keys = np.empty((h, 3), dtype=np.uint64)
    core.onehidden_pattern_keys(x, omega, b, keys, threads=2)
    np.testing.assert_array_equal(keys[decided], reference_keys((pre > 0).numpy())[decided])


@pytest.mark.parametrize("isa", isas())
def test_several_blocks_and_runs(core, isa):
    """p = 7000 points: several runs of 128 points and two blocks of x per tile group."""
    core.set_cpu_isa(isa)
    x, omega, b, beta, g = network(7000, 10, 45, torch.float64, seed=3)
    grads = [torch.empty_like(t) for t in (omega, b, beta)]
    core.onehidden_gradient(x, g, omega, b, beta, *grads, scale=1.5, threads=2)
    pre = pre_activations(x, omega, b)
    ga = (pre > 0).double() * g.double()[:, None]
    expected = (1.5 * beta[:, None] * (ga.T @ x) / 10 ** 0.5, 1.5 * beta * ga.sum(0), 1.5 * (ga * pre).sum(0))
    assert_neurons_close(grads, expected, torch.float64)
    out = torch.empty(7000, dtype=torch.float64)
    core.onehidden_forward(x, omega, b, beta, out, scale=1.5, threads=2)
    assert_close(out, 1.5 * torch.relu(pre) @ beta, torch.float64)


@pytest.mark.parametrize("isa", isas())
def test_each_path_is_deterministic(core, isa):
    """Bitwise the same results on a repeat and for another thread count (sums in a schedule-free order)."""
    core.set_cpu_isa(isa)
    x, omega, b, beta, g = network(3000, 10, 300, torch.float32, seed=5)

    def run(threads):
        out, grads = torch.empty(3000), [torch.empty_like(t) for t in (omega, b, beta)]
        core.onehidden_forward(x, omega, b, beta, out, scale=1.0, threads=threads)
        core.onehidden_gradient(x, g, omega, b, beta, *grads, scale=1.0, threads=threads)
        return [out, *grads]

    first = run(2)
    for again in (run(2), run(1)):
        for a, b_ in zip(first, again):
            assert torch.equal(a, b_)


def test_paths_and_set_cpu_isa(core):
    available = core.cpu_isas()
    assert available[0] == "baseline" and set(available) <= {"baseline", "avx2", "avx512"}
    assert core.cpu_isa() in available
    assert backends.cpu_isa() == core.cpu_isa()
    with pytest.raises(ValueError, match="name must be one of baseline, avx2, avx512.*got 'sse9'"):
        core.set_cpu_isa("sse9")
    missing = [name for name in ("avx2", "avx512") if name not in available]
    if missing:
        with pytest.raises(ValueError, match=f"'{missing[-1]}': this CPU cannot run that path; available here"):
            core.set_cpu_isa(missing[-1])


def _isa_in_subprocess(value, monkeypatch, cwd):
    """The path the installed _core takes (or its ValueError) in a fresh interpreter with FASTDYN_CPU_ISA=value."""
    monkeypatch.setenv("FASTDYN_CPU_ISA", value)
    code = ("try:\n    isa = module('cpu').cpu_isa()\nexcept ValueError as error:\n    isa = f'ValueError: {error}'\n"
            "report(isa=isa)")
    return run_installed(code, cwd=cwd)["isa"]


def test_environment_variable_forces_the_path(monkeypatch, tmp_path):
    for name in isas():
        assert _isa_in_subprocess(name, monkeypatch, tmp_path) == name
    error = _isa_in_subprocess("fast", monkeypatch, tmp_path)
    assert error.startswith("ValueError: the environment variable FASTDYN_CPU_ISA must be one of baseline, avx2, "
                            "avx512") and "got 'fast'" in error
    missing = [name for name in ("avx2", "avx512") if name not in isas()]
    if missing:
        error = _isa_in_subprocess(missing[-1], monkeypatch, tmp_path)
        assert f"FASTDYN_CPU_ISA = '{missing[-1]}': this CPU cannot run that path" in error


def test_moments_buffers_are_checked_by_name(core):
    x, omega, b, _, g = network(5, 3, 4, torch.float64)
    sx, s1, sp = torch.empty_like(omega), torch.empty_like(b), torch.empty_like(b)
    with pytest.raises(ValueError, match=r"onehidden_moments: sx must have shape \(h, d\) with h = 4, got \(3, 3\)"):
        core.onehidden_moments(x, g, omega, b, sx[:3].clone(), s1, sp, threads=1)
    with pytest.raises(TypeError, match="onehidden_moments: sp has dtype float32 but x has float64"):
        core.onehidden_moments(x, g, omega, b, sx, s1, sp.float(), threads=1)
    with pytest.raises(ValueError, match=r"onehidden_moments: g must have shape \(p\) with p = 5"):
        core.onehidden_moments(x, g[:4].clone(), omega, b, sx, s1, sp, threads=1)

