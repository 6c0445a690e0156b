"""The losses of training: the registered hinge derivative ("loss.hinge_gradient") in every backend, and
``loss_terms`` / ``loss_derivative`` of every loss, against autograd on the losses written out."""
import pytest
import torch

from fastdyn._src import registry
from fastdyn._src.train.losses import LOSSES, loss_derivative, loss_terms

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
    alpha = 0.3
    f, f0, y = hinge_case(dtype, p=501, alpha=alpha, seed=3)
    g, _, _ = registry.implementation("loss.hinge_gradient", backend)(f, f0, y, alpha=alpha)
    expected = loss_derivative("hinge", alpha * (f - f0), y) / (f.shape[0] * alpha)
    assert torch.equal(g, expected) and torch.equal(torch.signbit(g), torch.signbit(expected))


def direct_loss(loss, F, y):
    """The losses of the alpha-trick written out independently of fastdyn.train."""
    if loss == "hinge":
        return torch.clamp(1 - F * y, min=0)
    if loss == "mse":
        return 0.5 * (F - y) ** 2
    if loss == "logistic":
        return torch.log1p(torch.exp(-F * y))
    return -torch.log_softmax(F, dim=1).gather(1, y[:, None])[:, 0]


def loss_case(loss, dtype, n=29, classes=3, seed=1):
    """(F, y) in ``dtype``: margins in [-2, 3) kept 1e-2 away from the hinge kink; y = +-1 or class indices."""
    gen = torch.Generator().manual_seed(seed)
    if loss == "cross_entropy":
        return (2 * torch.randn(n, classes, generator=gen, dtype=torch.float64)).to(dtype), \
            torch.randint(classes, (n,), generator=gen)
    y = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    margin = torch.rand(n, generator=gen, dtype=torch.float64) * 5 - 2
    margin = torch.where((margin - 1).abs() < 1e-2, margin + 0.05, margin)
    return (margin * y).to(dtype), y.to(dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_terms_are_the_written_out_losses(loss, dtype):
    F, y = loss_case(loss, dtype)
    got = loss_terms(loss, F, y)
    assert got.dtype == dtype and got.shape == (F.shape[0],)
    expected = direct_loss(loss, F.double(), y if loss == "cross_entropy" else y.double())
    assert_close(got, expected, dtype)
    if loss == "hinge":
        assert 0 < int((got == 0).sum()) < F.shape[0]  # both sides of the kink


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_derivative_is_the_autograd_derivative(loss, dtype):
    F, y = loss_case(loss, dtype)
    got = loss_derivative(loss, F, y)
    F64 = F.double().requires_grad_(True)
    (expected,) = torch.autograd.grad(direct_loss(loss, F64, y if loss == "cross_entropy" else y.double()).sum(), F64)
    assert got.dtype == dtype and got.shape == F.shape
    assert_close(got, expected, dtype)


def test_hinge_derivative_takes_the_subgradient_zero_at_the_kink():
    y = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    F = torch.tensor([1.0, -1.0, 1 - 2 ** -40, -(1 - 2 ** -40)], dtype=torch.float64)  # F y = 1, 1, just below 1
    assert torch.equal(loss_derivative("hinge", F, y), torch.tensor([0.0, 0.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.equal(loss_terms("hinge", F, y)[:2], torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("function", [loss_terms, loss_derivative])
def test_unknown_loss_is_named(function):
    with pytest.raises(ValueError, match="loss must be one of .* got 'l1'"):
        function("l1", torch.zeros(3), torch.ones(3))
