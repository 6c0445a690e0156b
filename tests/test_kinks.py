"""fastdyn.onehidden.gradient and fastdyn.kinks against torch autograd (fp64) and plain numpy.

Gradients and kink velocities are per-neuron quantities whose sizes differ by orders between neurons (z_dot scales
as 1/||omega||^2), so they are compared neuron by neuron: ``assert_close(..., rows=True)``."""
import math

import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import onehidden as fused
from conftest import assert_close, requires_cuda
from oracles.onehidden import autograd_gradient, autograd_kink_velocity

SIZES = [(13, 3, 37), (1, 4, 9), (29, 20, 18), (40, 16, 33), (6, 1, 5)]  # (p, d, h): odd, p = 1, d > 16, d = 1


def make_problem(p, d, h, dtype, device="cpu", seed=0, scale="mf"):
    gen = torch.Generator().manual_seed(seed)
    model = fastdyn.OneHidden(d, h, scale=scale, dtype=dtype, generator=gen).to(device)
    x = torch.randn(p, d, generator=gen, dtype=dtype).to(device)
    g = torch.randn(p, generator=gen, dtype=dtype).to(device)
    return model, x, g


def assert_neurons_close(actual, expected, dtype):
    """Gradient-like triples (omega (h, d), b (h,), beta (h,)) neuron by neuron: (omega_n, b_n), one sum over the
    points weighted by x_i and by 1, on the scale of that row; beta_n on its own scale."""
    omega, b, beta = map(torch.as_tensor, actual)  # numpy or torch
    omega_ref, b_ref, beta_ref = expected
    assert_close(torch.column_stack([omega, b]), torch.column_stack([omega_ref, b_ref]), dtype, rows=True)
    assert_close(beta, beta_ref, dtype, rows=True)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "p%d-d%d-h%d" % s)
@pytest.mark.parametrize("scale", ["mf", "ntk"])
def test_gradient_matches_autograd(cpu_backend, dtype, size, scale):
    model, x, g = make_problem(*size, dtype, scale=scale)
    expected = autograd_gradient(model, x, g)
    actual = fused.gradient(model, x, g, backend=cpu_backend)
    assert [(a.dtype, a.shape) for a in actual] == [(dtype, e.shape) for e in expected]
    assert_neurons_close(actual, expected, dtype)


def test_gradient_numpy_in_numpy_out(cpu_backend, dtype):
    model, x, g = make_problem(13, 3, 37, dtype)
    out = fused.gradient(model, x.numpy(), g.numpy(), backend=cpu_backend)
    assert all(isinstance(a, np.ndarray) and a.dtype == x.numpy().dtype for a in out)
    assert_neurons_close(out, autograd_gradient(model, x, g), dtype)


def test_gradient_dead_and_always_active_neurons(cpu_backend, dtype):
    model, x, g = make_problem(17, 3, 11, dtype)
    with torch.no_grad():
        model.b[:3] = -1e3  # dead on every point
        model.b[3:6] = 1e3  # active on every point
    grad_omega, grad_b, grad_beta = fused.gradient(model, x, g, backend=cpu_backend)
    assert torch.all(grad_omega[:3] == 0) and torch.all(grad_b[:3] == 0) and torch.all(grad_beta[:3] == 0)
    assert_neurons_close((grad_omega, grad_b, grad_beta), autograd_gradient(model, x, g), dtype)


@pytest.mark.parametrize("d", [2, 10, 30])
def test_gradient_many_points(cpu_backend, dtype, d):
    """p past one L2 block of x and many summation runs, widths not a multiple of the SIMD tile; d = 30 runs the
    C++ kernel's two-pass path, d <= 24 its register path."""
    model, x, g = make_problem(7000, d, 45, dtype, seed=d)
    assert_neurons_close(fused.gradient(model, x, g, backend=cpu_backend), autograd_gradient(model, x, g), dtype)


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
    actual = fused.gradient(model, x, g, backend="cuda")
    assert all(a.is_cuda and a.dtype == dtype for a in actual)
    assert_neurons_close(actual, autograd_gradient(model, x, g), dtype)


# ---- kinks -----------------------------------------------------------------------------------------------------

from fastdyn import kinks  # noqa: E402
from fastdyn.plotting import attractor_colours, plot_field, plot_kink_panels, plot_kinks  # noqa: E402


def kink_formula(omega, b):
    """z = -sqrt(d) b omega / ||omega||^2 in fp64 numpy."""
    omega, b = np.asarray(omega, float), np.asarray(b, float)
    return -math.sqrt(omega.shape[1]) * b[:, None] * omega / (omega**2).sum(1, keepdims=True)


def test_positions_formula(dtype):
    model, _, _ = make_problem(3, 5, 41, dtype)
    expected = kink_formula(model.omega.detach(), model.b.detach())
    z = kinks.positions(model)
    assert isinstance(z, torch.Tensor) and z.dtype == dtype and z.shape == (41, 5)
    assert_close(z, expected, dtype, rows=True)
    z_np = kinks.positions(model.omega.detach().numpy(), model.b.detach().numpy())
    assert isinstance(z_np, np.ndarray)
    assert_close(z_np, expected, dtype, rows=True)
    # by the definition: the kink lies on the neuron's hyperplane and is its point nearest the origin (parallel to
    # omega), so z . omega / sqrt(d) = -b and z_j omega_k = omega_j z_k
    z64, omega, b = z.double(), model.omega.detach().double(), model.b.detach().double()
    assert_close((z64 * omega).sum(1) / math.sqrt(5), -b, dtype)
    assert_close(z64[:, :, None] * omega[:, None, :], omega[:, :, None] * z64[:, None, :], dtype, rows=True)


def test_positions_degenerate_and_zero_bias():
    omega = torch.randn(6, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    omega[1] = 0.0  # no kink
    omega[2] = 1e-200  # ||omega||^2 underflows to 0
    b[3] = 0.0  # kink at the origin
    with pytest.warns(RuntimeWarning, match="2 neuron"):
        z = kinks.positions(omega, b)
    assert torch.isfinite(z).all()
    assert torch.all(z[1] == 0) and torch.all(z[2] == 0) and torch.all(z[3] == 0)
    z2, degenerate = kinks.positions(omega, b, return_degenerate=True)
    assert degenerate.tolist() == [False, True, True, False, False, False]
    assert torch.equal(z, z2)
    _, degenerate = kinks.positions(omega, b, eps=10.0, return_degenerate=True)
    assert degenerate.all()


@pytest.mark.parametrize("size", [(13, 3, 37), (1, 4, 9), (29, 20, 18)], ids=lambda s: "p%d-d%d-h%d" % s)
def test_velocities_match_autograd(cpu_backend, dtype, size):
    model, x, g = make_problem(*size, dtype)
    expected = autograd_kink_velocity(model, x, g)
    z_dot, *parameters = kinks.velocities(model, x, g, backend=cpu_backend, return_parameters=True)
    assert z_dot.dtype == dtype and all(v.dtype == dtype for v in parameters)
    assert_close(z_dot, expected, dtype, rows=True)
    assert_neurons_close(parameters, [-grad for grad in autograd_gradient(model, x, g)], dtype)


def test_velocities_degenerate_and_zero_bias(cpu_backend):
    model, x, g = make_problem(11, 3, 8, torch.float64)
    with torch.no_grad():
        model.omega[0] = 0.0
        model.b[1] = 0.0
    z_dot, degenerate = kinks.velocities(model, x, g, backend=cpu_backend, return_degenerate=True)
    assert degenerate.tolist() == [True] + [False] * 7
    assert torch.all(z_dot[0] == 0) and torch.isfinite(z_dot).all()
    # b = 0: z = 0 and z_dot = -sqrt(d) omega b_dot / ||omega||^2
    _, grad_b, _ = autograd_gradient(model, x, g)
    omega = model.omega.detach()[1]
    assert_close(z_dot[1], -math.sqrt(3) * omega * (-grad_b[1]) / omega.dot(omega), torch.float64)
    expected = autograd_kink_velocity(model, x, g)
    assert_close(z_dot[1:], expected[1:], torch.float64, rows=True)
    with pytest.warns(RuntimeWarning, match="1 neuron"):
        kinks.velocities(model, x, g, backend=cpu_backend)


def test_eps_makes_short_omegas_degenerate(cpu_backend, dtype):
    """eps: neurons with ||omega_n|| <= eps get zero rows and the mask; the others are untouched."""
    model, x, g = make_problem(11, 3, 9, dtype, seed=2)
    norms = model.omega.detach().double().norm(dim=1)
    eps = float(norms.sort().values[3:5].mean())  # between the fourth and fifth shortest
    short = norms < eps
    z, degenerate = kinks.positions(model, eps=eps, return_degenerate=True)
    assert degenerate.tolist() == short.tolist() and int(short.sum()) == 4
    assert torch.all(z[short] == 0)
    assert_close(z[~short], kink_formula(model.omega.detach(), model.b.detach())[~short.numpy()], dtype, rows=True)
    z_dot, degenerate = kinks.velocities(model, x, g, backend=cpu_backend, eps=eps, return_degenerate=True)
    assert degenerate.tolist() == short.tolist() and torch.all(z_dot[short] == 0)
    assert_close(z_dot[~short], autograd_kink_velocity(model, x, g)[~short], dtype, rows=True)
    with pytest.warns(RuntimeWarning, match="4 neuron"):
        kinks.velocities(model, x, g, backend=cpu_backend, eps=eps)


def test_velocities_reproduce_seed_closed_form(dtype):
    """Seed 002: z'_dot = beta/(p h b) sum_mu Theta(...) [z' - |z'|^2 x' + 2 (z'.x') z'] y, with z' = z/sqrt(d),
    x' = x/sqrt(d) (the seed's pre-activation has no 1/sqrt(d)), mean-field s = 1/h and g = dL/df = -y/p (hinge
    loss below its margin); Theta(z'.x' > |z'|^2) for b < 0, reversed for b > 0."""
    p, d, h = 9, 2, 30
    model, x, _ = make_problem(p, d, h, dtype, seed=3)
    y = torch.sign(torch.randn(p, generator=torch.Generator().manual_seed(4), dtype=dtype))
    z_dot = kinks.velocities(model, x, -y / p)
    z = kink_formula(model.omega.detach(), model.b.detach()) / math.sqrt(d)
    xs, ys = x.double().numpy() / math.sqrt(d), y.double().numpy()
    beta, b = model.beta.detach().double().numpy(), model.b.detach().double().numpy()
    seed = np.zeros((h, d))
    for n in range(h):
        zz = z[n] @ z[n]
        for mu in range(p):
            zx = z[n] @ xs[mu]
            if (zx > zz) if b[n] < 0 else (zx < zz):
                seed[n] += (z[n] - zz * xs[mu] + 2 * zx * z[n]) * ys[mu]
        seed[n] *= beta[n] / (p * h * b[n])
    assert_close(z_dot / math.sqrt(d), seed, dtype, rows=True)


def test_field_matches_velocities(dtype):
    model, x, g = make_problem(15, 3, 25, dtype, seed=5)
    z = kinks.positions(model)
    field = kinks.field(z, x, g, beta=model.beta.detach(), b=model.b.detach(), scale=model.output_scale,
                        max_elements=40)  # several chunks
    assert_close(field, autograd_kink_velocity(model, x, g), dtype, rows=True)


def test_field_scalars_origin_and_errors():
    x = np.array([[1.0, 0.5]])
    z = np.array([[0.0, 0.0], [0.3, -0.2], [2.0, 1.0]])
    out = kinks.field(z, x, np.array([-1.0]), beta=2.0, b=-0.5, scale=0.1)
    assert isinstance(out, np.ndarray) and out.shape == (3, 2)
    assert np.all(out[0] == 0)
    # z = (2, 1): z.x = 2.5 < |z|^2 = 5 -> inactive for b < 0
    assert np.all(out[2] == 0)
    zz, zx = 0.13, 0.3 - 0.1
    expected = -(0.1 * 2.0 / -0.5) * -1.0 * (z[1] - zz * x[0] / 2 + 2 * zx * z[1] / 2)
    assert_close(out[1], expected, torch.float64)  # z.x = 0.2 > |z|^2 = 0.13 -> active for b < 0
    with pytest.raises(ValueError, match="b must be non-zero"):
        kinks.field(z, x, np.array([1.0]), b=0.0)
    with pytest.raises(ValueError, match="z must have 2 columns"):
        kinks.field(z[:, :1], x, np.array([1.0]))
    with pytest.raises(ValueError, match="b must have length 3"):
        kinks.field(z, x, np.array([1.0]), b=np.ones(2))


def numpy_attractor_labels(model, x):
    """Plain numpy grouping: label by first appearance of each activation pattern, dead neurons -1."""
    omega, b = model.omega.detach().double().numpy(), model.b.detach().double().numpy()
    active = (x.double().numpy() @ omega.T / math.sqrt(x.shape[1]) + b > 0).T
    seen, labels = {}, []
    for row in active:
        key = tuple(row)
        labels.append(-1 if not row.any() else seen.setdefault(key, len(seen)))
    return np.array(labels)


def numpy_attractor_count(model, x, min_size, beta_rtol):
    """Plain numpy counting: patterns of live neurons; of them, those with >= min_size neurons of
    |beta| > beta_rtol max|beta| are attractors. Returns (n_attractors, n_singletons, n_negligible, labels with -1
    dead, -2 live but in no attractor, attractors numbered by first appearance)."""
    labels = numpy_attractor_labels(model, x)
    beta = np.abs(model.beta.detach().double().numpy())
    weighty = (labels >= 0) & ((beta > beta_rtol * beta.max()) if beta_rtol > 0 else True)
    per_pattern = {}
    for n in np.flatnonzero(weighty):
        per_pattern.setdefault(labels[n], []).append(n)
    counted = sorted(key for key, members in per_pattern.items() if len(members) >= min_size)
    out = np.where(labels >= 0, -2, -1)
    for rank, key in enumerate(counted):
        out[per_pattern[key]] = rank
    singletons = sum(len(members) == 1 for members in per_pattern.values())
    return len(counted), singletons, int(((labels >= 0) & ~weighty).sum()), out


ATTRACTOR_BACKENDS = ["cpu", "torch"]


@pytest.mark.parametrize("backend", ATTRACTOR_BACKENDS)
@pytest.mark.parametrize("p", [23, 100])  # one and several 32-point words of bits
def test_attractors_match_numpy_grouping(dtype, backend, p):
    model, x, _ = make_problem(p, 2, 60, dtype, seed=7)
    with torch.no_grad():
        model.omega[30:50] = model.omega[10:30] * 1.5  # same hyperplanes, same patterns: size-2 attractors
        model.b[30:50] = model.b[10:30] * 1.5
        model.b[:5] = -50.0  # dead
        model.b[5:8] = 50.0  # active everywhere: one attractor of 3
    expected = numpy_attractor_labels(model, x)
    found = kinks.attractors(model, x, backend=backend, max_elements=150)  # several torch chunks
    assert np.array_equal(found.labels, expected)
    assert found.n_dead == int((expected == -1).sum()) >= 5
    assert found.n_attractors == expected.max() + 1
    assert np.array_equal(found.sizes, np.bincount(expected[expected >= 0]))
    assert found.sizes.sum() + found.n_dead == 60
    assert np.all(found.labels[5:8] == found.labels[5]) and found.sizes[found.labels[5]] >= 3
    assert np.all(found.labels[10:30] == found.labels[30:50])


@pytest.mark.parametrize("backend", ATTRACTOR_BACKENDS)
@pytest.mark.parametrize("min_size, beta_rtol", [(1, 0.0), (2, 0.0), (2, 0.05), (3, 0.3)])
def test_attractors_counted_without_singletons_and_negligible_beta(backend, min_size, beta_rtol):
    """Groups of 1, 2, 3 and 4 neurons sharing a hyperplane (scaled copies), some of their neurons with tiny |beta|:
    the count, the singletons, the negligible neurons and the attractor labels against the numpy counting."""
    model, x, _ = make_problem(41, 2, 45, torch.float64, seed=11)
    with torch.no_grad():
        for start, copies in ((0, 2), (6, 3), (15, 4)):
            for k in range(1, copies):
                model.omega[start + k] = model.omega[start] * (1 + k)
                model.b[start + k] = model.b[start] * (1 + k)
        model.beta[[1, 7, 16, 17, 30]] = 1e-3  # negligible: breaks the pair at 0 into a singleton
        model.b[40:] = -50.0  # dead
    found = kinks.attractors(model, x, min_size=min_size, beta_rtol=beta_rtol, backend=backend)
    n_attractors, n_singletons, n_negligible, labels = numpy_attractor_count(model, x, min_size, beta_rtol)
    assert (found.n_attractors, found.n_singletons, found.n_negligible) == (n_attractors, n_singletons, n_negligible)
    assert np.array_equal(found.attractor_labels(), labels)
    assert np.array_equal(found.labels, numpy_attractor_labels(model, x))  # the grouping itself is unchanged
    assert found.n_patterns == found.sizes.size and found.n_dead >= 5
    assert n_singletons > 0 and (beta_rtol == 0 or n_negligible >= 4)  # the case exercises both exclusions


def test_attractor_options_errors():
    model, x, _ = make_problem(4, 3, 5, torch.float64)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="min_size"):
            kinks.attractors(model, x, min_size=bad)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="beta_rtol"):
            kinks.attractors(model, x, beta_rtol=bad)


@pytest.mark.parametrize("backend", ATTRACTOR_BACKENDS)
def test_attractors_all_dead_and_errors(backend):
    model, x, _ = make_problem(4, 3, 5, torch.float64)
    with torch.no_grad():
        model.b[:] = -1e3
    found = kinks.attractors(model, x, backend=backend)
    assert found.n_attractors == 0 and found.n_dead == 5 and np.all(found.labels == -1)
    with pytest.raises(ValueError, match="x must have 3 columns"):
        kinks.attractors(model, x[:, :2])
    with pytest.raises(TypeError, match="model.omega"):
        kinks.attractors(model, x.float())
    with pytest.raises(TypeError, match="OneHidden"):
        kinks.attractors(torch.nn.Linear(3, 1), x)
    with pytest.raises(ValueError, match="does not implement kinks.attractors"):
        kinks.attractors(model, x, backend="numba")


def test_kinks_input_errors():
    model, x, g = make_problem(5, 3, 4, torch.float64)
    omega, b = model.omega.detach(), model.b.detach()
    with pytest.raises(ValueError, match="b is required"):
        kinks.positions(omega)
    with pytest.raises(ValueError, match="not both"):
        kinks.positions(model, b)
    with pytest.raises(ValueError, match="b must have length 4"):
        kinks.positions(omega, b[:3])
    with pytest.raises(TypeError, match="b has dtype"):
        kinks.positions(omega, b.float())
    bad = omega.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="omega contains NaN or Inf"):
        kinks.positions(bad, b)
    with pytest.raises(ValueError, match="g must have length 5"):
        kinks.velocities(model, x, g[:2])
    with pytest.raises(TypeError, match="model.omega"):
        kinks.velocities(model, x.float(), g.float())
    with pytest.raises(ValueError, match="x contains NaN"):
        kinks.velocities(model, x * float("nan"), g)
    with pytest.raises(ValueError, match="cannot run on cpu"):
        kinks.velocities(model, x, g, backend="cuda")


def test_plot_helpers(tmp_path):
    model, x, g = make_problem(8, 2, 30, torch.float64)
    z, degenerate = kinks.positions(model, return_degenerate=True)
    degenerate[:4] = True  # hidden
    labels = kinks.attractors(model, x).labels
    ax = plot_kinks(z, labels=labels, degenerate=degenerate, title="init")
    assert sum(len(c.get_offsets()) for c in ax.collections) == 26
    fig = plot_kink_panels([("(A) init", z), ("(B) lazy", z.numpy(), labels), ("(C)", z), ("(D)", z)])
    assert len(fig.axes) == 4
    fig.savefig(tmp_path / "panels.png")
    ax = plot_field(x[:1], g[:1], b=-1.0, n=9)
    ax.figure.savefig(tmp_path / "field.png")
    assert (tmp_path / "panels.png").stat().st_size > 0 and (tmp_path / "field.png").stat().st_size > 0
    with pytest.raises(ValueError, match="d = 2"):
        plot_field(np.ones((1, 3)), np.ones(1))


def model_with_kinks(points, seed=0):
    """A ReLU OneHidden whose kinks are ``points`` (h, d): neuron n's hyperplane is {x : (x - z_n) . z_n = 0},
    scaled by a random factor and oriented at random (omega_n = +-s_n z_n / ||z_n||)."""
    points = np.asarray(points, float)
    h, d = points.shape
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, h) * rng.choice([-1.0, 1.0], h)
    norm = np.linalg.norm(points, axis=1)
    model = fastdyn.OneHidden(d, h, dtype=torch.float64)
    with torch.no_grad():
        model.omega.copy_(torch.from_numpy(scale[:, None] * points / norm[:, None]))
        model.b.copy_(torch.from_numpy(-scale * norm / math.sqrt(d)))
    return model


def drawn_points(collection):
    return np.asarray(collection.get_offsets(), float).reshape(-1, 2)


@pytest.mark.parametrize("d, dims", [(2, (0, 1)), (3, (2, 0))])
def test_kink_picture_axes_in_input_units(d, dims):
    """The kink picture's axes are z in the units of x: a model whose kinks sit at known points (each neuron
    switches exactly there, checked on its pre-activation) is drawn at those points, dead / uncounted / attractor
    neurons each in their own collection."""
    rng = np.random.default_rng(d)
    points = rng.uniform(-2.5, 2.5, (11, d))
    model = model_with_kinks(points, seed=d)
    pre = points @ model.omega.detach().numpy().T / math.sqrt(d) + model.b.detach().numpy()
    assert_close(np.diag(pre), np.zeros(11), scale=1.0)  # z_n is on neuron n's hyperplane
    labels = np.array([-1, -1, -2, 0, 0, 1, 2, 2, -2, 3, 1])
    fig = plot_kink_panels([("known kinks", kinks.positions(model), labels)], dims=dims, limit=3.0)
    ax, = fig.axes
    dead, uncounted, members = (drawn_points(c) for c in ax.collections)
    for drawn, which in ((dead, labels == -1), (uncounted, labels == -2), (members, labels >= 0)):
        assert_close(drawn, points[which][:, list(dims)], scale=1.0)
    assert ax.get_xlim() == (-3.0, 3.0) and f"x_{dims[0] + 1}" in ax.get_xlabel()


def test_kink_picture_label_boundary_in_input_units():
    """The dashed label boundary drawn beside the kinks is where the data's label flips, in the units of x."""
    from fastdyn.data.synthetic import sphere_labels, stripe_labels
    from fastdyn.experiments.kinks import label_boundary

    z = np.zeros((1, 2))
    ax, = plot_kink_panels([("stripe", z)], limit=2.0, **label_boundary("stripe")).axes
    for line in ax.get_lines():
        x1 = np.unique(line.get_xdata())
        assert x1.size == 1
        assert stripe_labels(np.array([[x1[0] - 1e-6, 0.0]]))[0] != stripe_labels(np.array([[x1[0] + 1e-6, 0.0]]))[0]
    assert len(ax.get_lines()) == 2
    ax, = plot_kink_panels([("sphere", z)], limit=2.0, **label_boundary("sphere")).axes
    circle, = ax.patches
    radius, angle = circle.get_radius(), 0.7
    on_circle = np.array([[np.cos(angle), np.sin(angle)]])
    assert circle.center == (0.0, 0.0)
    assert sphere_labels(on_circle * (radius - 1e-6))[0] == -1 and sphere_labels(on_circle * (radius + 1e-6))[0] == 1


def test_kink_picture_dead_neurons_unlike_every_attractor_colour():
    """No attractor colour is grey, and dead neurons (grey crosses) and uncounted ones (hollow rings) differ from
    every attractor colour and from each other."""
    from matplotlib.colors import to_rgba

    colours = attractor_colours()
    assert len(colours) == 18 and (colours[:, :3].max(1) - colours[:, :3].min(1)).min() > 0.1  # none grey
    labels = np.concatenate([[-1, -2], np.arange(len(colours))])
    ax = plot_kinks(np.random.default_rng(0).normal(size=(labels.size, 2)), labels=labels)
    dead, uncounted, members = ax.collections
    live_rgb = members.get_facecolors()[:, :3]
    assert np.allclose(live_rgb, colours[:, :3])
    dead_rgb = np.array(to_rgba(dead.get_facecolors()[0]))[:3]
    assert np.abs(live_rgb - dead_rgb).max(1).min() > 0.15
    assert not np.any(uncounted.get_facecolors()[:, 3] > 0) and uncounted.get_edgecolors()[:, 3].min() > 0  # hollow
    marker_shapes = [c.get_paths()[0].vertices.tobytes() for c in (dead, uncounted, members)]
    assert marker_shapes[0] != marker_shapes[2]


@requires_cuda
def test_velocities_cuda_match_autograd(dtype):
    model, x, g = make_problem(300, 10, 257, dtype, device="cuda")
    expected = autograd_kink_velocity(model, x, g)
    z_dot = kinks.velocities(model, x, g, backend="cuda")
    assert z_dot.is_cuda
    assert_close(z_dot, expected, dtype, rows=True)
    labels = kinks.attractors(model, x).labels
    assert np.array_equal(labels, numpy_attractor_labels(model.cpu(), x.cpu()))


@pytest.mark.parametrize("backend", ATTRACTOR_BACKENDS)
def test_attractors_patterns_one_bit_apart(backend):
    """d = 1, neuron k active on the points above the k-th gap: neighbouring patterns differ in one bit."""
    p = 97
    x = torch.linspace(-3, 3, p, dtype=torch.float64)[:, None]
    thresholds = (x[:-1, 0] + x[1:, 0]) / 2  # p - 1 gaps: patterns with 1..p-1 active points
    model = fastdyn.OneHidden(1, 2 * (p - 1), dtype=torch.float64)
    with torch.no_grad():
        model.omega[:] = 1.0
        model.b[: p - 1] = -thresholds
        model.omega[p - 1:] = 2.0  # the same hyperplanes again, scaled: same patterns
        model.b[p - 1:] = -2 * thresholds
    found = kinks.attractors(model, x, backend=backend)
    assert found.n_attractors == p - 1 and found.n_dead == 0
    assert np.array_equal(found.labels, np.tile(np.arange(p - 1), 2))
    assert np.all(found.sizes == 2)


def test_velocities_numpy_in_numpy_out(cpu_backend):
    model, x, g = make_problem(13, 3, 37, torch.float64)
    out = kinks.velocities(model, x.numpy(), g.numpy(), backend=cpu_backend, return_parameters=True,
                           return_degenerate=True)
    assert len(out) == 5 and all(isinstance(a, np.ndarray) for a in out)
    assert_close(out[0], autograd_kink_velocity(model, x, g), torch.float64, rows=True)
    assert out[4].dtype == bool and not out[4].any()
