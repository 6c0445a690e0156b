"""fastdyn.fused.gradient and fastdyn.kinks against torch autograd and plain numpy."""
import math

import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import fused
from conftest import CPU_BACKENDS, assert_close, requires_cuda

SIZES = [(13, 3, 37), (1, 4, 9), (29, 20, 18), (40, 16, 33), (6, 1, 5)]  # (p, d, h): odd, p = 1, d > 16, d = 1


def make_problem(p, d, h, dtype, device="cpu", seed=0, scale="mf"):
    gen = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(d, h, scale=scale, dtype=dtype, generator=gen).to(device)
    x = torch.randn(p, d, generator=gen, dtype=dtype).to(device)
    g = torch.randn(p, generator=gen, dtype=dtype).to(device)
    return model, x, g


def autograd_gradient(model, x, g):
    """Gradient of sum(g * model(x)) in fp64 by torch autograd."""
    ref = fastdyn.OneHidden(model.d, model.h, scale=model.scale, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for name in ("omega", "b", "beta"):
            getattr(ref, name).copy_(getattr(model, name))
    (g.double() * ref(x.double())).sum().backward()
    return ref.omega.grad, ref.b.grad, ref.beta.grad


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "p%d-d%d-h%d" % s)
@pytest.mark.parametrize("scale", ["mf", "ntk"])
def test_gradient_matches_autograd(cpu_backend, dtype, size, scale):
    model, x, g = make_problem(*size, dtype, scale=scale)
    expected = autograd_gradient(model, x, g)
    actual = fused.gradient(model, x, g, backend=cpu_backend)
    for a, e in zip(actual, expected):
        assert a.dtype == dtype
        assert_close(a, e, dtype)


def test_gradient_numpy_in_numpy_out(cpu_backend):
    model, x, g = make_problem(13, 3, 37, torch.float64)
    out = fused.gradient(model, x.numpy(), g.numpy(), backend=cpu_backend)
    assert all(isinstance(a, np.ndarray) for a in out)
    for a, e in zip(out, autograd_gradient(model, x, g)):
        assert_close(a, e, torch.float64)


def test_gradient_dead_and_always_active_neurons(cpu_backend):
    model, x, g = make_problem(17, 3, 11, torch.float64)
    with torch.no_grad():
        model.b[:3] = -1e3  # dead on every point
        model.b[3:6] = 1e3  # active on every point
    grad_omega, grad_b, grad_beta = fused.gradient(model, x, g, backend=cpu_backend)
    assert torch.all(grad_omega[:3] == 0) and torch.all(grad_b[:3] == 0) and torch.all(grad_beta[:3] == 0)
    for a, e in zip((grad_omega, grad_b, grad_beta), autograd_gradient(model, x, g)):
        assert_close(a, e, torch.float64)


def test_gradient_large_width_tiles(cpu_backend):
    """Widths that are not multiples of the SIMD tile, many point blocks (p > one L2 block of x)."""
    model, x, g = make_problem(7000, 2, 45, torch.float64)
    for a, e in zip(fused.gradient(model, x, g, backend=cpu_backend), autograd_gradient(model, x, g)):
        assert_close(a, e, torch.float64)


def test_gradient_input_errors():
    model, x, g = make_problem(5, 3, 4, torch.float64)
    with pytest.raises(ValueError, match="g must have length 5"):
        fused.gradient(model, x, g[:4])
    with pytest.raises(ValueError, match="x must have 3 columns"):
        fused.gradient(model, x[:, :2], g)
    with pytest.raises(TypeError, match="g has dtype"):
        fused.gradient(model, x, g.float())
    with pytest.raises(TypeError, match="model.omega"):
        fused.gradient(model, x.float(), g.float())
    bad = g.clone()
    bad[2] = float("nan")
    with pytest.raises(ValueError, match="g contains NaN"):
        fused.gradient(model, x, bad)
    with pytest.raises(TypeError, match="OneHidden"):
        fused.gradient(torch.nn.Linear(3, 1).double(), x, g)
    with pytest.raises(ValueError, match="act='relu'"):
        fused.gradient(fastdyn.OneHidden(3, 4, act="tanh", dtype=torch.float64), x, g)
    with pytest.raises(ValueError, match="cannot run on cpu"):
        fused.gradient(model, x, g, backend="cuda")


@requires_cuda
@pytest.mark.parametrize("size", SIZES + [(300, 40, 7), (2000, 10, 3)], ids=lambda s: "p%d-d%d-h%d" % s)
def test_gradient_cuda_matches_autograd(dtype, size):
    model, x, g = make_problem(*size, dtype, device="cuda")
    expected = autograd_gradient(model, x, g)
    for a, e in zip(fused.gradient(model, x, g, backend="cuda"), expected):
        assert a.is_cuda
        assert_close(a, e, dtype)
