"""fastdyn.kernels against 2-D Gaussian integrals by scipy quadrature and against Monte-Carlo averages of the
empirical kernels of many random wide networks (fastdyn.ntk for OneHidden; torch.func Jacobians of NTK-parametrised
MLPs written here), within the Monte-Carlo error."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

import fastdyn
from conftest import requires_cuda
from fastdyn import kernels


@pytest.mark.parametrize("s11,s12,s22", [(1.0, 0.3, 2.0), (0.5, -0.45, 0.6), (2.0, 1.99, 2.0)])
def test_relu_expectations_against_quadrature(s11, s12, s22):
    # over u > 0 with v | u ~ N(mu, sd^2): E[relu(v) | u] = mu Phi(mu / sd) + sd phi(mu / sd), a smooth integrand
    sd = math.sqrt(s22 - s12 * s12 / s11)

    def density(u):
        return math.exp(-u * u / (2 * s11)) / math.sqrt(2 * math.pi * s11)

    def relu_relu(u):
        mu = s12 / s11 * u
        return u * (mu * special.ndtr(mu / sd) + sd * math.exp(-(mu / sd) ** 2 / 2) / math.sqrt(2 * math.pi))

    value = integrate.quad(lambda u: relu_relu(u) * density(u), 0, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    slope = integrate.quad(lambda u: special.ndtr(s12 / s11 * u / sd) * density(u), 0, np.inf, epsabs=1e-13,
                           epsrel=1e-12)[0]
    got = kernels.gaussian_expectations(*(torch.tensor(s, dtype=torch.float64) for s in (s11, s12, s22)), "relu")
    assert float(got[0]) == pytest.approx(value, rel=1e-10)
    assert float(got[1]) == pytest.approx(slope, rel=1e-10)


@pytest.mark.parametrize("s11,s12,s22", [(1.0, 0.3, 2.0), (0.5, -0.45, 0.6), (2.0, 1.99, 2.0)])
def test_erf_expectations_against_quadrature(s11, s12, s22):
    L = np.linalg.cholesky(np.array([[s11, s12], [s12, s22]]))

    def expect(fn):
        def integrand(z2, z1):
            u, v = L @ np.array([z1, z2])
            return fn(u) * fn(v) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)
        return integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-11, epsrel=1e-10)[0]
    got = kernels.gaussian_expectations(*(torch.tensor(s, dtype=torch.float64) for s in (s11, s12, s22)), "erf")
    assert float(got[0]) == pytest.approx(expect(special.erf), rel=1e-7, abs=1e-9)
    assert float(got[1]) == pytest.approx(expect(lambda u: 2 / math.sqrt(math.pi) * math.exp(-u * u)), rel=1e-7)


def monte_carlo_check(samples, analytic, bound=4.5):
    """Every entry of the mean of ``samples`` (R, N, N) within ``bound`` standard errors of ``analytic``."""
    mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    z = ((mean - analytic) / stderr).abs().max()
    assert z < bound, f"largest deviation {float(z):.2f} standard errors"


@pytest.mark.parametrize("scale", ["ntk", "mf"])
def test_onehidden_kernels_are_the_mean_of_empirical_ones(scale):
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R, h = 120, 400
    ntks, nngps = [], []
    for r in range(R):
        net = fastdyn.OneHidden(4, h, scale=scale, dtype=torch.float64, generator=torch.Generator().manual_seed(r))
        ntks.append(fastdyn.ntk(net, x))
        f = net(x).detach()
        nngps.append(torch.outer(f, f))
    analytic = kernels.onehidden_kernels(x, scale=scale, h=h)
    monte_carlo_check(torch.stack(ntks), analytic.ntk)
    monte_carlo_check(torch.stack(nngps), analytic.nngp)


class NTKParametrisedMLP(torch.nn.Module):
    """h_{l+1} = sqrt(w / n_l) W h_l + sqrt(b) c, standard normal W, c (the kernels' module docstring)."""

    def __init__(self, widths, act, weight_var, bias_var, generator):
        super().__init__()
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(o, i, generator=generator,
                                                                              dtype=torch.float64))
                                               for i, o in zip(widths[:-1], widths[1:])])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(o, generator=generator,
                                                                             dtype=torch.float64))
                                              for o in widths[1:]])
        self.act = torch.relu if act == "relu" else torch.erf
        self.weight_var, self.bias_var = weight_var, bias_var

    def forward(self, x):
        for i, (W, c) in enumerate(zip(self.weights, self.biases)):
            if i:
                x = self.act(x)
            x = math.sqrt(self.weight_var / W.shape[1]) * x @ W.T + math.sqrt(self.bias_var) * c
        return x[:, 0]


@pytest.mark.parametrize("act,depth", [("relu", 2), ("erf", 2), ("relu", 3)])
def test_fc_kernels_are_the_mean_of_empirical_ones(act, depth):
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    R, width, w, b = 60, 256, 1.7, 0.2
    ntks, nngps = [], []
    for r in range(R):
        net = NTKParametrisedMLP([3] + [width] * depth + [1], act, w, b, torch.Generator().manual_seed(100 + r))
        params = {name: p.detach() for name, p in net.named_parameters()}
        J = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (x,)))(params)
        J = torch.cat([j.reshape(x.shape[0], -1) for j in J.values()], 1)
        ntks.append(J @ J.T)
        f = net(x).detach()
        nngps.append(torch.outer(f, f))
    analytic = kernels.fc_kernels(x, depth=depth, act=act, weight_var=w, bias_var=b)
    monte_carlo_check(torch.stack(ntks), analytic.ntk)
    monte_carlo_check(torch.stack(nngps), analytic.nngp)


def test_symmetric_psd_cross_blocks_and_the_output_bias():
    x = np.random.default_rng(2).standard_normal((40, 5))
    full = kernels.fc_kernels(x, depth=3, weight_var=2.0, bias_var=0.1)
    assert isinstance(full.ntk, np.ndarray) and np.array_equal(full.ntk, full.ntk.T)
    for K in (full.nngp, full.ntk):
        assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()
    cross = kernels.fc_kernels(x[:15], x[15:], depth=3, weight_var=2.0, bias_var=0.1)
    np.testing.assert_allclose(cross.ntk, full.ntk[:15, 15:], rtol=1e-13)
    np.testing.assert_allclose(cross.nngp, full.nngp[:15, 15:], rtol=1e-13)
    # OneHidden has no output bias: the depth-1 network with bias variance 1 everywhere is it plus 1
    one = kernels.onehidden_kernels(x)
    np.testing.assert_allclose(kernels.fc_kernels(x, depth=1, bias_var=1.0).ntk, one.ntk + 1, rtol=1e-13)


def test_bad_input_is_named():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="act must be"):
        kernels.fc_kernels(x, act="tanh")
    with pytest.raises(ValueError, match="depth"):
        kernels.fc_kernels(x, depth=0)
    with pytest.raises(ValueError, match="x2 must have 2 columns"):
        kernels.fc_kernels(x, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="needs the width h"):
        kernels.onehidden_kernels(x, scale="mf")


def _numpy_fc_kernels(x1, x2, depth, act, w, c):
    """A plain numpy fp64 reference of the layer recursion (entry by entry formulas, np.arccos / np.arcsin)."""
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    d = x1.shape[1]
    s = w * x1 @ x2.T / d + c
    v1, v2 = w * (x1 ** 2).sum(1) / d + c, w * (x2 ** 2).sum(1) / d + c
    theta = s.copy()
    for _ in range(depth):
        if act == "relu":
            norm = np.sqrt(np.outer(v1, v2))
            t = np.arccos(np.clip(s / norm, -1, 1))
            value, slope = norm * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi), (np.pi - t) / (2 * np.pi)
            v1, v2 = v1 / 2, v2 / 2
        else:
            ac = np.outer(1 + 2 * v1, 1 + 2 * v2)
            value, slope = 2 / np.pi * np.arcsin(2 * s / np.sqrt(ac)), 4 / np.pi / np.sqrt(ac - 4 * s * s)
            v1, v2 = 2 / np.pi * np.arcsin(2 * v1 / (1 + 2 * v1)), 2 / np.pi * np.arcsin(2 * v2 / (1 + 2 * v2))
        s, theta = w * value + c, theta * w * slope + w * value + c
        v1, v2 = w * v1 + c, w * v2 + c
    return s, theta


def _isas():
    if "cpu" not in fastdyn.available_backends():
        return []
    from fastdyn._src import backends
    return backends.module("cpu").cpu_isas()


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_recursion_on_every_isa_against_numpy(isa, act, dtype):
    from fastdyn._src import backends
    core = backends.module("cpu")
    before = core.cpu_isa()
    generator = torch.Generator().manual_seed(3)
    x1 = torch.randn(37, 7, generator=generator, dtype=torch.float64)
    x2 = torch.randn(261, 7, generator=generator, dtype=torch.float64)   # one full 256-column chunk and a rest
    x2[0] = x1[0]                                                        # an angle of exactly 0
    x2[1] = -x1[1]                                                       # and of exactly pi
    nngp_ref, ntk_ref = _numpy_fc_kernels(x1, x2, 3, act, 1.7, 0.3)
    try:
        core.set_cpu_isa(isa)
        got = kernels.fc_kernels(x1.to(dtype), x2.to(dtype), depth=3, act=act, weight_var=1.7, bias_var=0.3,
                                 backend="cpu")
        sym = kernels.fc_kernels(x1.to(dtype), depth=3, act=act, weight_var=1.7, bias_var=0.3, backend="cpu")
    finally:
        core.set_cpu_isa(before)
    # entrywise: at an angle near 0, sqrt(1 - cos^2) turns one rounding of cos into ~1e-8 (fp64), ~3e-4 (fp32)
    rtol = 1e-8 if dtype == torch.float64 else 3e-4
    for value, reference in ((got.nngp, nngp_ref), (got.ntk, ntk_ref)):
        assert value.dtype == dtype
        np.testing.assert_allclose(value.double().numpy(), reference, rtol=rtol, atol=rtol * np.abs(reference).max())
    assert torch.equal(sym.ntk, sym.ntk.T) and torch.equal(sym.nngp, sym.nngp.T)
    nngp_ref, ntk_ref = _numpy_fc_kernels(x1, x1, 3, act, 1.7, 0.3)
    np.testing.assert_allclose(sym.ntk.double().numpy(), ntk_ref, rtol=rtol, atol=rtol * np.abs(ntk_ref).max())


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_backends_agree_with_the_default(backend):
    if backend not in fastdyn.available_backends():
        pytest.skip(f"backend {backend} not built")
    x = torch.randn(19, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ref = kernels.onehidden_kernels(x, scale="ntk")
    got = kernels.onehidden_kernels(x, scale="ntk", backend=backend)
    torch.testing.assert_close(got.ntk, ref.ntk, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="backend"):
        kernels.fc_kernels(x, backend="nope")


@requires_cuda
@pytest.mark.parametrize("act", ["relu", "erf"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_recursion_against_numpy(act, dtype):
    generator = torch.Generator().manual_seed(4)
    x1 = torch.randn(41, 6, generator=generator, dtype=torch.float64)
    x2 = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    x2[0] = x1[0]
    nngp_ref, ntk_ref = _numpy_fc_kernels(x1, x2, 3, act, 1.7, 0.3)
    got = kernels.fc_kernels(x1.to(dtype).cuda(), x2.to(dtype).cuda(), depth=3, act=act, weight_var=1.7,
                             bias_var=0.3, backend="cuda")
    sym = kernels.fc_kernels(x1.to(dtype).cuda(), depth=3, act=act, weight_var=1.7, bias_var=0.3, backend="cuda")
    rtol = 1e-8 if dtype == torch.float64 else 3e-4
    for value, reference in ((got.nngp, nngp_ref), (got.ntk, ntk_ref)):
        assert value.dtype == dtype and value.is_cuda
        np.testing.assert_allclose(value.double().cpu().numpy(), reference, rtol=rtol,
                                   atol=rtol * np.abs(reference).max())
    assert torch.equal(sym.ntk, sym.ntk.T) and torch.equal(sym.nngp, sym.nngp.T)
