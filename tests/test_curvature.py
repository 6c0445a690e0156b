"""fastdyn.curvature against dense references: torch.autograd.functional.hessian / jacobian of the full-data loss,
per-example gradients by a plain backward loop, numpy's eigvalsh, exact traces and powers."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import fastdyn
from conftest import requires_cuda
from fastdyn import curvature as cv


def mlp(dtype=torch.float64):
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Softplus(), nn.Linear(6, 3)).to(dtype)


def cnn(dtype=torch.float64):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, stride=2), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(2 * 2 * 2, 3)).to(dtype)


def batchnorm_net(dtype=torch.float64):
    net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)).to(dtype)
    with torch.no_grad():   # running statistics that are not the defaults, so using them is tested
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.train()


def one_output(dtype=torch.float64):
    return nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 1)).to(dtype)


def data(model_name, loss, n=23, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, 7, 7) if model_name == "cnn" else (n, 5)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if loss == "cross_entropy":
        y = torch.randint(0, 3, (n,), generator=g)
    elif loss == "mse":
        y = torch.randn(n, generator=g, dtype=dtype)
    else:
        y = torch.randint(0, 2, (n,), generator=g).to(dtype) * 2 - 1
    return x, y


MODELS = {"mlp": mlp, "cnn": cnn, "batchnorm": batchnorm_net, "one_output": one_output}
CASES = [("mlp", "cross_entropy"), ("cnn", "cross_entropy"), ("batchnorm", "cross_entropy"), ("one_output", "mse"),
         ("one_output", "logistic")]


def reference_loss(model, x, y, loss):
    """theta -> the full-data mean loss, written directly with torch.nn.functional (model in eval mode)."""
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def mean_loss(theta):
        chunks = theta.split([p.numel() for p in params])
        state = {n: c.view(p.shape) for n, c, p in zip(names, chunks, params)}
        out = torch.func.functional_call(model, {**state, **buffers}, (x,))
        if loss == "cross_entropy":
            return nn.functional.cross_entropy(out, y)
        out = out[:, 0]
        if loss == "mse":
            return (0.5 * (out - y) ** 2).mean()
        return nn.functional.softplus(-out * y).mean()
    return mean_loss, nn.utils.parameters_to_vector(params).detach()


def dense_hessian(model, x, y, loss):
    was_training = model.training
    model.eval()
    mean_loss, theta = reference_loss(model, x, y, loss)
    H = torch.autograd.functional.hessian(mean_loss, theta)
    model.train(was_training)
    return H


@pytest.mark.parametrize("name,loss", CASES)
def test_hvp_matches_the_dense_hessian_in_float64(name, loss):
    torch.manual_seed(1)
    model = MODELS[name]()
    x, y = data(name, loss)
    H = dense_hessian(model, x, y, loss)
    V = torch.randn(3, H.shape[0], dtype=torch.float64)
    got = cv.hvp(model, x, y, V, loss=loss, chunk_size=5)
    assert torch.allclose(got, V @ H, rtol=1e-10, atol=1e-12 * float(H.abs().max()))
    assert torch.allclose(cv.hvp(model, x, y, V[0], loss=loss), V[0] @ H, rtol=1e-10, atol=1e-12 * float(H.abs().max()))


def test_chunked_equals_unchunked_and_the_model_is_left_as_it_was():
    torch.manual_seed(2)
    model = batchnorm_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data("mlp", "cross_entropy", n=31)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    whole = cv.hvp(model, x, y, v, chunk_size=31)
    for chunk in (1, 4, 10):
        assert torch.allclose(cv.hvp(model, x, y, v, chunk_size=chunk), whole, rtol=1e-12, atol=1e-14)
    for kind in cv.KINDS:
        cached = cv.CurvatureOperator(model, x, y, kind=kind, chunk_size=8)
        fresh = cv.CurvatureOperator(model, x, y, kind=kind, chunk_size=8, cache=False)
        for _ in range(2):       # a cached graph gives the same product when used again
            assert torch.allclose(cached.matvec(v), fresh.matvec(v), rtol=1e-12, atol=1e-14)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_float32_hvp_agrees_with_the_float64_hessian():
    torch.manual_seed(3)
    model64 = mlp()
    model32 = mlp(torch.float32)
    model32.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    x, y = data("mlp", "cross_entropy")
    H = dense_hessian(model64, x, y, "cross_entropy")
    v = torch.randn(H.shape[0], dtype=torch.float64)
    got = cv.hvp(model32, x.float(), y, v.float())
    assert got.dtype == torch.float32
    assert float((got.double() - H @ v).norm() / (H @ v).norm()) < 1e-4


@pytest.mark.parametrize("name,loss", [("mlp", "cross_entropy"), ("cnn", "cross_entropy"), ("one_output", "mse"),
                                       ("one_output", "logistic")])
def test_ggn_is_jacobian_transpose_output_hessian_jacobian(name, loss):
    torch.manual_seed(4)
    model = MODELS[name]()
    x, y = data(name, loss)
    _, theta = reference_loss(model, x, y, loss)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def outputs(t):
        state = {n: c.view(p.shape) for n, c, p in zip(names, t.split([p.numel() for p in params]), params)}
        return torch.func.functional_call(model, state, (x,)).reshape(x.shape[0], -1)
    J = torch.autograd.functional.jacobian(outputs, theta)               # (N, C, P)
    out = outputs(theta).detach()
    G = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    for i in range(x.shape[0]):                                          # d^2 l / df^2 point by point, by hand
        f = out[i]
        if loss == "cross_entropy":
            p = torch.softmax(f, 0)
            h = torch.diag(p) - torch.outer(p, p)
        elif loss == "mse":
            h = torch.ones(1, 1, dtype=torch.float64)
        else:
            s = torch.sigmoid(-f * y[i])
            h = (s * (1 - s)).reshape(1, 1)
        G += J[i].T @ h @ J[i]
    G /= x.shape[0]
    V = torch.randn(2, theta.numel(), dtype=torch.float64)
    got = cv.ggn_vp(model, x, y, V, loss=loss, chunk_size=6)
    assert torch.allclose(got, V @ G, rtol=1e-10, atol=1e-12 * float(G.abs().max()))


def test_ggn_equals_the_hessian_for_a_model_linear_in_its_parameters():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 1)).double()
    x, y = data("one_output", "mse")
    A = cv.CurvatureOperator(model, x, y, loss="mse", kind="ggn").dense()
    B = cv.CurvatureOperator(model, x, y, loss="mse", kind="hessian").dense()
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    assert torch.allclose(A, B, rtol=1e-12, atol=1e-14)
    assert torch.allclose(B, design.T @ design / x.shape[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,loss", [("mlp", "cross_entropy"), ("one_output", "logistic")])
def test_empirical_fisher_matches_per_example_gradients(name, loss):
    torch.manual_seed(6)
    model = MODELS[name]()
    x, y = data(name, loss)
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        out = model(x[i:i + 1])
        point = (nn.functional.cross_entropy(out, y[i:i + 1]) if loss == "cross_entropy"
                 else nn.functional.softplus(-out[0, 0] * y[i]))
        point.backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    g = torch.stack(rows)
    F = g.T @ g / x.shape[0]
    V = torch.randn(2, F.shape[0], dtype=torch.float64)
    assert torch.allclose(cv.fisher_vp(model, x, y, V, loss=loss, chunk_size=7), V @ F, rtol=1e-10,
                          atol=1e-12 * float(F.abs().max()))


def test_a_callable_loss_gives_the_same_products_as_its_name():
    torch.manual_seed(7)
    model = one_output()
    x, y = data("one_output", "mse")
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    by_name = cv.hvp(model, x, y, v, loss="mse")
    by_function = cv.hvp(model, x, y, v, loss=lambda f, t: 0.5 * (f - t) ** 2)
    assert torch.allclose(by_name, by_function, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("which", ["top", "bottom", "magnitude"])
def test_hessian_eigs_match_numpy_eigvalsh(which):
    torch.manual_seed(8)
    model = mlp()
    x, y = data("mlp", "cross_entropy", n=41)
    H = dense_hessian(model, x, y, "cross_entropy").numpy()
    exact = np.linalg.eigvalsh(H)
    pairs = cv.hessian_eigs(model, x, y, k=5, which=which)
    expected = {"top": exact[::-1][:5], "bottom": exact[:5],
                "magnitude": exact[np.argsort(-np.abs(exact))][:5]}[which]
    np.testing.assert_allclose(pairs.values, expected, rtol=1e-8, atol=1e-10 * abs(exact).max())
    V = pairs.vectors.numpy()
    np.testing.assert_allclose(V @ H, pairs.values[:, None] * V, atol=1e-7 * abs(exact).max())
    assert pairs.residuals.max() < 1e-7 * abs(exact).max()
    np.testing.assert_allclose(V @ V.T, np.eye(5), atol=1e-10)


def test_hessian_eigs_float32_and_ggn():
    torch.manual_seed(9)
    model64 = mlp()
    model32 = mlp(torch.float32)
    model32.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    x, y = data("mlp", "cross_entropy", n=41)
    exact = np.linalg.eigvalsh(dense_hessian(model64, x, y, "cross_entropy").numpy())[::-1][:3]
    got = cv.hessian_eigs(model32, x.float(), y, k=3).values
    np.testing.assert_allclose(got, exact, rtol=1e-4)
    G = cv.CurvatureOperator(model64, x, y, kind="ggn").dense().numpy()
    np.testing.assert_allclose(cv.hessian_eigs(model64, x, y, k=3, kind="ggn").values,
                               np.linalg.eigvalsh(G)[::-1][:3], rtol=1e-8)


def test_slq_with_full_lanczos_recovers_the_eigenvalues_and_its_moments_estimate_the_traces():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()   # P = 26
    x, y = data("mlp", "cross_entropy")
    x, y = x[:, :3], y % 2
    H = dense_hessian(model, x, y, "cross_entropy").numpy()
    P = H.shape[0]
    exact = np.linalg.eigvalsh(H)
    full = cv.spectral_density(model, x, y, n_vectors=3, n_steps=P)
    for nodes, weights in zip(full.nodes, full.weights):
        used = weights > 1e-14
        distance = np.abs(nodes[used][:, None] - exact[None, :]).min(axis=1)
        assert distance.max() < 1e-8 * abs(exact).max()      # every Ritz value with weight is an eigenvalue
        assert math.isclose(weights.sum(), 1.0, rel_tol=1e-12)
    dx = full.grid[1] - full.grid[0]
    assert math.isclose(full.density.sum() * dx, 1.0, rel_tol=1e-3)
    short = cv.spectral_density(model, x, y, n_vectors=40, n_steps=4)
    for power in (1, 2, 3):
        estimate, stderr = short.moment(power)
        truth = np.sum(exact ** power) / P
        assert abs(estimate - truth) < 4 * stderr, (power, estimate, truth, stderr)
    assert short.density_stderr.shape == short.density.shape


def test_hutchinson_is_within_its_error_and_hutch_plus_plus_is_exact_with_a_full_sketch():
    torch.manual_seed(11)
    model = mlp()
    x, y = data("mlp", "cross_entropy")
    H = dense_hessian(model, x, y, "cross_entropy")
    truth, P = float(torch.trace(H)), H.shape[0]
    for method in ("hutchinson", "hutch++"):
        estimate = cv.hessian_trace(model, x, y, n_vectors=90, method=method)
        assert abs(estimate.value - truth) < 4 * estimate.stderr, (method, estimate.value, truth, estimate.stderr)
        assert estimate.n_products == 90
    full = cv.hessian_trace(model, x, y, n_vectors=3 * P + 3, method="hutch++")
    assert math.isclose(full.value, truth, rel_tol=1e-9)
    assert full.stderr < 1e-9 * abs(truth)


def test_weight_spectrum_fits_marchenko_pastur_to_a_gaussian_layer_and_counts_spikes():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((1200, 300)) * math.sqrt(0.7)
    spectrum = cv.weight_spectrum(torch.tensor(W))
    assert spectrum.ratio == 0.25 and spectrum.eigenvalues.shape == (300,)
    assert abs(spectrum.sigma2 / 0.7 - 1) < 0.02 and spectrum.n_outliers == 0 and spectrum.ks < 0.03
    u, v = np.linalg.qr(rng.standard_normal((1200, 3)))[0], np.linalg.qr(rng.standard_normal((300, 3)))[0]
    spiked = W + u @ np.diag([60.0, 50.0, 40.0]) @ v.T
    assert cv.weight_spectrum(torch.tensor(spiked.T)).n_outliers == 3            # (300, 1200) is read as (1200, 300)
    conv = nn.Conv2d(16, 32, 3)
    assert cv.weight_spectrum(conv).eigenvalues.shape == (32,)                   # (32, 16 x 3 x 3) -> M = 32


@pytest.mark.parametrize("mu", [0.75, 1.0])
def test_weight_spectrum_tail_exponent_follows_martin_mahoney_for_pareto_entries(mu):
    # Martin & Mahoney (2021): entries with a power-law tail of exponent mu < 2 give an ESD tail alpha ~ 1 + mu / 2
    rng = np.random.default_rng(1)
    W = rng.pareto(mu, (2000, 500)) * rng.choice([-1.0, 1.0], (2000, 500))
    spectrum = cv.weight_spectrum(torch.tensor(W))
    assert abs(spectrum.alpha - (1 + mu / 2)) < 0.1
    assert spectrum.alpha_stderr > 0 and spectrum.xmin > 0


def onehidden_case(loss, scale="mf", dtype=torch.float64, n=29, d=6, h=11, seed=12):
    g = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(d, h, scale=scale, dtype=dtype, generator=g)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(n, generator=g, dtype=dtype) if loss == "mse" else torch.randint(0, 2, (n,), generator=g).to(
        dtype) * 2 - 1
    return model, x, y


def onehidden_dense_hessian(model, x, y, loss):
    d, s = model.d, model.output_scale

    def mean_loss(theta):
        h = model.h
        omega, b, beta = theta[:h * d].view(h, d), theta[h * d:h * d + h], theta[h * d + h:]
        f = s * torch.relu(x @ omega.T / d ** 0.5 + b) @ beta
        if loss == "mse":
            return (0.5 * (f - y) ** 2).mean()
        if loss == "logistic":
            return nn.functional.softplus(-f * y).mean()
        return torch.relu(1 - f * y).mean()
    return torch.autograd.functional.hessian(mean_loss, nn.utils.parameters_to_vector(model.parameters()).detach())


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("scale", ["mf", "ntk"])
@pytest.mark.parametrize("loss", ["mse", "logistic", "hinge"])
def test_fused_onehidden_products_match_the_dense_hessian_and_the_generic_path(backend, scale, loss):
    if backend not in fastdyn.available_backends():
        pytest.skip(f"backend {backend} not built")
    model, x, y = onehidden_case(loss, scale)
    H = onehidden_dense_hessian(model, x, y, loss)
    V = torch.randn(3, H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fused = cv.CurvatureOperator(model, x, y, loss=loss, fused=True, backend=backend)
    assert fused.fused and fused.backend == backend
    atol = 1e-12 * float(H.abs().max())
    assert torch.allclose(fused.matvec(V), V @ H, rtol=1e-10, atol=atol)
    for kind in ("hessian", "ggn"):
        a = cv.CurvatureOperator(model, x, y, loss=loss, kind=kind, backend=backend).matvec(V)
        b = cv.CurvatureOperator(model, x, y, loss=loss, kind=kind, fused=False).matvec(V)
        assert torch.allclose(a, b, rtol=1e-10, atol=atol)


def test_fused_onehidden_float32_and_its_eigenvalues():
    model64, x, y = onehidden_case("mse", h=40, n=57)
    model32 = fastdyn.OneHidden(model64.d, model64.h, dtype=torch.float32)
    model32.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    H = onehidden_dense_hessian(model64, x, y, "mse").numpy()
    got = cv.hessian_eigs(model32, x.float(), y.float(), k=4, loss="mse")
    np.testing.assert_allclose(got.values, np.linalg.eigvalsh(H)[::-1][:4], rtol=1e-4)
    with pytest.raises(ValueError, match="fused=True needs the closed form"):
        cv.CurvatureOperator(model64, x, y, loss="mse", kind="fisher", fused=True)
    with pytest.raises(ValueError, match="not a ReLU fastdyn.OneHidden"):
        cv.CurvatureOperator(mlp(), x[:, :5], y, loss="mse", fused=True)


@requires_cuda
@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_fused_onehidden_products_on_cuda_match_the_cpu_generic_path(loss):
    model, x, y = onehidden_case(loss, h=300, n=257)
    V = torch.randn(2, sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    expected = cv.CurvatureOperator(model, x, y, loss=loss, fused=False).matvec(V)
    on_gpu = cv.CurvatureOperator(model.to("cuda"), x.cuda(), y.cuda(), loss=loss, fused=True, backend="cuda")
    assert on_gpu.backend == "cuda"
    assert torch.allclose(on_gpu.matvec(V.cuda()).cpu(), expected, rtol=1e-10, atol=1e-12 * float(expected.abs().max()))


def test_bad_input_is_named():
    model = mlp()
    x, y = data("mlp", "cross_entropy")
    with pytest.raises(ValueError, match="kind"):
        cv.CurvatureOperator(model, x, y, kind="laplacian")
    with pytest.raises(ValueError, match="loss"):
        cv.hvp(model, x, y, torch.zeros(3), loss="l1")
    with pytest.raises(ValueError, match="v must have shape"):
        cv.hvp(model, x, y, torch.zeros(3))
    with pytest.raises(ValueError, match="y must have shape"):
        cv.hvp(model, x, y[:-1], torch.zeros(3))
    with pytest.raises(ValueError, match="k must be below"):
        cv.hessian_eigs(model, x, y, k=10_000)
    with pytest.raises(ValueError, match="which"):
        cv.hessian_eigs(model, x, y, which="largest")
    with pytest.raises(ValueError, match="method"):
        cv.hessian_trace(model, x, y, method="exact")
    with pytest.raises(TypeError, match="nn.Module"):
        cv.CurvatureOperator(lambda z: z, x, y)
    with pytest.raises(MemoryError, match="max_entries"):
        cv.CurvatureOperator(model, x, y).dense(max_entries=100)
    with pytest.raises(TypeError, match="layer"):
        cv.weight_spectrum(torch.zeros(5))
