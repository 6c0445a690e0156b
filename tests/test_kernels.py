"""fastdyn.kernels against 2-D Gaussian integrals by scipy quadrature and against Monte-Carlo averages of the
empirical kernels of many random wide networks (fastdyn.ntk for OneHidden; torch.func Jacobians of NTK-parametrised
MLPs written here), within the Monte-Carlo error."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

import fastdyn
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
