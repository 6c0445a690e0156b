"""Registered loss derivatives ("loss.hinge_gradient") in every backend against autograd on the loss written out."""
import pytest
import torch

import fastdyn
from fastdyn._src import registry

from conftest import RTOL, assert_close, requires_cuda

HINGE_BACKENDS = [name for name in registry.supported("loss.hinge_gradient") if name != "cuda"]


def hinge_case(dtype, p=37, alpha=0.7, seed=0, device="cpu"):
    """(f, f0, y) with every margin at least 1e-2 away from the kink at 1, and about half of them below it."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.where(torch.rand(p, generator=gen) < 0.5, -1.0, 1.0).to(dtype)
    margin = torch.rand(p, generator=gen, dtype=torch.float64) * 3 - 1  # F y in [-1, 2)
    margin = torch.where((margin - 1).abs() < 1e-2, margin + 0.05, margin)
    f0 = torch.randn(p, generator=gen, dtype=torch.float64)
    f = f0 + margin * y.double() / alpha
    return f.to(dtype).to(device), f0.to(dtype).to(device), y.to(device)


def autograd_hinge(f, f0, y, alpha):
    f = f.detach().double().cpu().requires_grad_(True)
    loss = torch.relu(1 - alpha * (f - f0.double().cpu()) * y.double().cpu()).sum() / (f.shape[0] * alpha ** 2)
    (g,) = torch.autograd.grad(loss, f)
    return g, float(loss.detach())


@pytest.mark.parametrize("backend", HINGE_BACKENDS)
@pytest.mark.parametrize("p", [1, 37, 1000])
def test_hinge_gradient_matches_autograd(backend, dtype, p):
    alpha = 0.7
    f, f0, y = hinge_case(dtype, p=p, alpha=alpha)
    g, loss, unsatisfied = registry.implementation("loss.hinge_gradient", backend)(f, f0, y, alpha=alpha)
    g_ref, loss_ref = autograd_hinge(f, f0, y, alpha)
    assert g.dtype == dtype and g.shape == (p,)
    assert_close(g, g_ref, dtype)
    assert abs(loss - loss_ref) <= RTOL[dtype] * max(abs(loss_ref), 1e-300)
    assert unsatisfied == int((alpha * (f - f0).double() * y.double() < 1).sum())


@pytest.mark.parametrize("backend", HINGE_BACKENDS)
def test_hinge_gradient_is_zero_when_every_margin_is_met(backend):
    f0 = torch.zeros(5, dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    g, loss, unsatisfied = registry.implementation("loss.hinge_gradient", backend)(2 * y, f0, y, alpha=1.0)
    assert torch.equal(g, torch.zeros(5, dtype=torch.float64)) and loss == 0.0 and unsatisfied == 0


@requires_cuda
def test_hinge_gradient_cuda(dtype):
    f, f0, y = hinge_case(dtype, p=1001, device="cuda")
    g, loss, unsatisfied = registry.implementation("loss.hinge_gradient", "cuda")(f, f0, y, alpha=0.7)
    g_ref, loss_ref = autograd_hinge(f, f0, y, 0.7)
    assert g.is_cuda
    assert_close(g, g_ref, dtype)
    assert abs(loss - loss_ref) <= RTOL[dtype] * abs(loss_ref)
    assert unsatisfied == int((0.7 * (f - f0).double() * y.double() < 1).sum())


@pytest.mark.parametrize("backend", HINGE_BACKENDS)
def test_hinge_gradient_has_the_bits_of_the_training_loss_derivative(backend, dtype):
    """g is bitwise loss_derivative("hinge", F, y) / (p alpha), signed zeros included, so the training engine can
    use the kernel without changing a trajectory."""
    from fastdyn._src.train.losses import loss_derivative

    alpha = 0.3
    f, f0, y = hinge_case(dtype, p=501, alpha=alpha, seed=3)
    g, _, _ = registry.implementation("loss.hinge_gradient", backend)(f, f0, y, alpha=alpha)
    expected = loss_derivative("hinge", alpha * (f - f0), y) / (f.shape[0] * alpha)
    assert torch.equal(g, expected) and torch.equal(torch.signbit(g), torch.signbit(expected))
