"""Mutual-information estimators of the simplicity-bias measure (against direct sums over the empirical joint law)
and the landscape tools (interpolation against hand-built averaged networks, neuron alignment against a known
permutation, buffers)."""
import copy

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

import fastdyn
from fastdyn import landscape, observables as ob


def _direct_cmi(f, y, l):
    """sum p(f,y,l) log[p(f,y,l) p(l) / (p(f,l) p(y,l))] over the observed triples (plug-in, no correction)."""
    n = len(f)
    triples, counts = np.unique(np.stack([f, y, l]), axis=1, return_counts=True)
    total = 0.0
    for (a, b, c), count in zip(triples.T, counts):
        p = count / n
        p_l = np.mean(l == c)
        p_fl, p_yl = np.mean((f == a) & (l == c)), np.mean((y == b) & (l == c))
        total += p * np.log(p * p_l / (p_fl * p_yl))
    return total


def test_plugin_cmi_matches_the_direct_sum_and_its_correction():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 301)
    l = np.where(rng.random(301) < 0.8, y, 1 - y)
    f = np.where(rng.random(301) < 0.9, y, rng.integers(0, 3, 301))
    plain = ob.conditional_mutual_information(f, y, l, correction="none")
    assert plain == pytest.approx(_direct_cmi(f, y, l), rel=1e-12)
    m = lambda *cols: len(np.unique(np.stack(cols), axis=1).T)  # noqa: E731
    bias = (m(f, l) + m(y, l) - m(f, y, l) - m(l)) / (2 * 301)
    assert ob.conditional_mutual_information(f, y, l) == pytest.approx(max(0.0, plain + bias), rel=1e-12)


def test_known_cases():
    y = np.repeat([0, 1], 50)
    f = np.tile([0, 1], 50)  # exactly independent of y: the plug-in value is 0, the correction makes it negative
    assert ob.discrete_mutual_information(f, y) == 0.0
    assert ob.conditional_mutual_information(f, y, y) == 0.0  # Y = L: nothing left to explain
    assert ob.discrete_mutual_information(y, y, correction="none") == pytest.approx(np.log(2), rel=1e-12)
    parts = ob.simplicity_bias(np.stack([f, y]), y, y)
    np.testing.assert_allclose(parts.mu, parts.mi_fy - parts.mi_fy_given_l)
    assert parts.mi_fy_given_l[1] == 0.0 and parts.mu[1] == pytest.approx(parts.mi_ly[1])
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 20000), rng.integers(0, 3, 20000)
    assert ob.discrete_mutual_information(a, b) < 1e-3
    with pytest.raises(ValueError, match="estimator"):
        ob.conditional_mutual_information(f, y, y, estimator="ksg")
    with pytest.raises(ValueError, match="entries"):
        ob.conditional_mutual_information(f, y[:10], y)


def test_knn_cmi_approaches_the_gaussian_channel_value():
    rng = np.random.default_rng(2)
    n = 6000
    y = rng.integers(0, 2, n)
    l = rng.integers(0, 2, n)  # independent of everything: I(F;Y|L) = I(F;Y)
    f = 2.0 * y + rng.standard_normal(n)

    def integrand(t):  # mixture of N(0,1) and N(2,1) with equal weights
        p0, p1 = norm.pdf(t), norm.pdf(t - 2)
        m = 0.5 * (p0 + p1)
        return 0.5 * (p0 * np.log(p0 / m) + p1 * np.log(p1 / m))
    exact = quad(integrand, -10, 12)[0]
    assert ob.conditional_mutual_information(f, y, l, estimator="knn") == pytest.approx(exact, abs=0.03)
    assert ob.conditional_mutual_information(f, y, y, estimator="knn") == 0.0


def _nets(seed, dims=(4, 5, 6, 3)):
    torch.manual_seed(seed)
    return fastdyn.FCNet(list(dims), dtype=torch.float64)


def test_interpolation_against_hand_averaged_networks():
    a, b = _nets(0), _nets(1)
    x = torch.randn(37, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (37,), generator=torch.Generator().manual_seed(3))
    path = landscape.interpolate(a, b, x, y, steps=5, batch_size=10)
    for t, loss, err in zip(path.t, path.loss, path.error):
        net = _nets(0)
        with torch.no_grad():
            for p, pa, pb in zip(net.parameters(), a.parameters(), b.parameters()):
                p.copy_((1 - t) * pa + t * pb)
            out = net(x)
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-12)
        assert err == pytest.approx(float((out.argmax(1) != y).double().mean()), abs=1e-15)
    assert path.error_barrier == pytest.approx(path.error.max() - (path.error[0] + path.error[-1]) / 2)
    same = landscape.interpolate(a, a, x, y)
    assert same.loss_barrier == 0.0 and same.error_barrier == 0.0
    torch.testing.assert_close(landscape.blend(a, b, 0.5)(x), _mid(a, b)(x))


def _mid(a, b):
    net = copy.deepcopy(a)
    with torch.no_grad():
        for p, pb in zip(net.parameters(), b.parameters()):
            p.copy_((p + pb) / 2)
    return net


def test_hinge_loss_on_one_output_and_errors():
    a, b = _nets(0, (3, 8, 1)), _nets(1, (3, 8, 1))
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.sign(x[:, 0])
    path = landscape.interpolate(a, b, x, y, loss="hinge", steps=3)
    assert path.loss[0] == pytest.approx(float(torch.relu(1 - a(x)[:, 0] * y).mean().detach()), rel=1e-12)
    with pytest.raises(ValueError, match="loss must be"):
        landscape.interpolate(a, b, x, y, loss="l1")
    with pytest.raises(ValueError, match="one architecture"):
        landscape.interpolate(a, _nets(2, (3, 9, 1)), x, y)
    with pytest.raises(ValueError, match="y must have shape"):
        landscape.interpolate(a, b, x, y[:5])
    with pytest.raises(ValueError, match="steps"):
        landscape.interpolate(a, b, x, y, steps=1)


def test_align_neurons_undoes_a_permutation_and_keeps_the_function():
    a, b = _nets(0, (4, 7, 6, 2)), _nets(5, (4, 7, 6, 2))
    x = torch.randn(15, 4, dtype=torch.float64)
    p, q = torch.randperm(7), torch.randperm(6)
    shuffled = copy.deepcopy(a)
    with torch.no_grad():
        shuffled[0].weight.copy_(a[0].weight[p])
        shuffled[0].bias.copy_(a[0].bias[p])
        shuffled[2].weight.copy_(a[2].weight[q][:, p])
        shuffled[2].bias.copy_(a[2].bias[q])
        shuffled[4].weight.copy_(a[4].weight[:, q])
    restored = landscape.align_neurons(a, shuffled)
    for pa, pr in zip(a.parameters(), restored.parameters()):
        assert torch.equal(pa, pr)
    aligned = landscape.align_neurons(a, b)
    torch.testing.assert_close(aligned(x), b(x), rtol=1e-12, atol=1e-14)
    assert landscape.blend(a, aligned, 0.5) is not None
    with pytest.raises(ValueError, match="Linear layers and elementwise"):
        landscape.align_neurons(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3),
                                                    torch.nn.Linear(3, 1)), torch.nn.Sequential())


def test_batchnorm_buffers_refused_interpolated_or_recomputed():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                              torch.nn.Linear(4, 2)).double()
    other = copy.deepcopy(net)
    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    other.train()
    other(x + 1.0)  # moves its running statistics only
    with pytest.raises(ValueError, match="running_mean"):
        landscape.interpolate(net, other, x, y)
    mixed = landscape.interpolate(net, other, x, y, steps=3, buffers="interpolate")
    assert mixed.loss[0] != mixed.loss[-1]
    repaired = landscape.interpolate(net, other, x, y, steps=3, buffers="recompute")
    np.testing.assert_allclose(repaired.loss, repaired.loss[0], rtol=1e-12)  # same weights, same re-estimated stats
    assert net.training is True and torch.equal(net[1].running_mean, torch.zeros(4, dtype=torch.float64))


def _moved(net, directions, coefficients):
    out = copy.deepcopy(net)
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.add_(sum(c * d[name] for c, d in zip(coefficients, directions)))
    return out


def test_loss_slice_against_hand_moved_networks_1d_and_2d():
    net = _nets(0)
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(29, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = torch.randint(0, 3, (29,), generator=torch.Generator().manual_seed(5))
    line = landscape.loss_slice(net, x, y, steps=5, span=(-0.5, 0.5), batch_size=7)
    assert line.loss.shape == (5,) and line.betas is None
    for a, loss, err in zip(line.alphas, line.loss, line.error):
        out = _moved(net, line.directions, [a])(x).detach()
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-12)
        assert err == pytest.approx(float((out.argmax(1) != y).double().mean()), abs=1e-15)
    assert line.loss[2] == pytest.approx(float(torch.nn.functional.cross_entropy(net(x).detach(), y)), rel=1e-12)
    plane = landscape.loss_slice(net, x, y, directions=2, steps=3, normalise="layer", seed=1)
    assert plane.loss.shape == (3, 3)
    i, j = 0, 2                                       # [i, j] is at alphas[i] d1 + betas[j] d2
    out = _moved(net, plane.directions, [plane.alphas[i], plane.betas[j]])(x).detach()
    assert plane.loss[i, j] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-12)
    again = landscape.loss_slice(net, x, y, directions=2, steps=3, normalise="layer", seed=1)
    assert np.array_equal(again.loss, plane.loss)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_loss_slice_directions_are_filter_layer_or_unit_normalised():
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * 2 * 2, 2)).double()
    x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    params = dict(conv.named_parameters())
    filt = landscape.loss_slice(conv, x, y, steps=2).directions[0]
    for name, d in filt.items():
        if params[name].ndim == 1:
            assert torch.count_nonzero(d) == 0
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), params[name].detach().flatten(1).norm(dim=1),
                                       rtol=1e-12, atol=0)
    layer = landscape.loss_slice(conv, x, y, steps=2, normalise="layer").directions[0]
    torch.testing.assert_close(layer["0.weight"].norm(), params["0.weight"].detach().norm(), rtol=1e-12, atol=0)
    unit = landscape.loss_slice(conv, x, y, steps=2, normalise=None).directions[0]
    assert float(torch.sqrt(sum((d ** 2).sum() for d in unit.values()))) == pytest.approx(1.0, rel=1e-12)


def test_loss_slice_towards_another_network_is_the_interpolation_line():
    a, b = _nets(0), _nets(1)
    x = torch.randn(25, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (25,))
    line = landscape.loss_slice(a, x, y, towards=b, span=(0.0, 1.0), steps=5)
    path = landscape.interpolate(a, b, x, y, steps=5)
    np.testing.assert_allclose(line.loss, path.loss, rtol=1e-12)
    with pytest.raises(ValueError, match="directions must be 1 or 2"):
        landscape.loss_slice(a, x, y, directions=3)
    with pytest.raises(ValueError, match="normalise"):
        landscape.loss_slice(a, x, y, normalise="global")
    with pytest.raises(ValueError, match="span"):
        landscape.loss_slice(a, x, y, span=(1.0, -1.0))
    with pytest.raises(ValueError, match="one architecture"):
        landscape.loss_slice(a, x, y, towards=_nets(2, (4, 7, 3)))
