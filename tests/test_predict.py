"""fastdyn.predict and fastdyn.linearize against explicit small-step integration (numpy loops), the t = 0 and
t -> inf limits (kernel interpolation, numpy solves), torch autograd Jacobians and fastdyn.train on the linearised
network, in float64."""
import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import predict


def rbf_problem(n=13, m=6, d=3, outputs=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + m, d))
    K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(-1))
    y = rng.standard_normal((n,) if outputs is None else (n, outputs))
    return K[:n, :n], K[n:, :n], y


def euler(K, Kt, y, f0, f0t, lr, t, steps, slope=lambda f, y: f - y):
    """Explicit Euler on df/dt = -(lr / N) K slope(f, y) (and the test outputs alongside)."""
    f, ft = f0.copy(), f0t.copy()
    dt = t / steps
    for _ in range(steps):
        g = slope(f, y) * (-lr / K.shape[0])
        f, ft = f + dt * (K @ g), ft + dt * (Kt @ g)
    return f, ft


def test_mse_flow_matches_small_step_integration_and_both_limits():
    K, Kt, y = rbf_problem()
    rng = np.random.default_rng(1)
    f0, f0t = rng.standard_normal(y.shape), rng.standard_normal(Kt.shape[0])
    p = predict.gradient_descent_mse(K, y, [0.0, 3.0, 1e12], K_test_train=Kt, f0_train=f0, f0_test=f0t, lr=0.7)
    assert isinstance(p.train, np.ndarray) and p.train.shape == (3, 13) and p.test.shape == (3, 6)
    np.testing.assert_allclose(p.train[0], f0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(p.test[0], f0t, rtol=0, atol=1e-14)
    f, ft = euler(K, Kt, y, f0, f0t, 0.7, 3.0, 20000)
    np.testing.assert_allclose(p.train[1], f, atol=1e-4)          # Euler's own error is O(dt) = 1e-4 here
    np.testing.assert_allclose(p.test[1], ft, atol=1e-4)
    f_fine, ft_fine = euler(K, Kt, y, f0, f0t, 0.7, 3.0, 80000)
    assert np.abs(p.train[1] - f_fine).max() < np.abs(p.train[1] - f).max() / 2   # and it shrinks with dt
    # t -> inf: kernel interpolation from f0, f_test = f0_test + K_t K^-1 (y - f0)
    np.testing.assert_allclose(p.train[2], y, atol=1e-6)
    np.testing.assert_allclose(p.test[2], f0t + Kt @ np.linalg.solve(K, y - f0), atol=1e-5)


def test_discrete_steps_several_outputs_and_ridge():
    K, Kt, y = rbf_problem(outputs=3)
    lr = 1.5
    p = predict.gradient_descent_mse(K, y, [0, 1, 7], K_test_train=Kt, lr=lr, discrete=True)
    f, ft = np.zeros_like(y), np.zeros((Kt.shape[0], 3))
    for step in range(1, 8):
        g = (f - y) * (lr / K.shape[0])
        f, ft = f - K @ g, ft - Kt @ g
        if step in (1, 7):
            index = 1 if step == 1 else 2
            np.testing.assert_allclose(p.train[index], f, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(p.test[index], ft, rtol=1e-12, atol=1e-13)
    ridge = predict.gradient_descent_mse(K, y, [1e13], K_test_train=Kt, diag_reg=0.1)
    np.testing.assert_allclose(ridge.test[0], Kt @ np.linalg.solve(K + 0.1 * np.eye(K.shape[0]), y), atol=1e-8)


def test_a_singular_kernel_learns_only_its_range():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((9, 4))             # rank 4 kernel of 9 points
    K, y = features @ features.T, rng.standard_normal(9)
    test_features = rng.standard_normal((5, 4))
    Kt = test_features @ features.T
    p = predict.gradient_descent_mse(K, y, [1e12], K_test_train=Kt)
    projection = K @ np.linalg.pinv(K)
    np.testing.assert_allclose(p.train[0], projection @ y, atol=1e-7)
    np.testing.assert_allclose(p.test[0], Kt @ np.linalg.pinv(K) @ y, atol=1e-6)
    slow = predict.gradient_descent_mse(K, y, [1e-9], K_test_train=Kt)   # (1 - e^{-a lambda}) / lambda -> a
    np.testing.assert_allclose(slow.test[0], Kt @ y * 1e-9 / 9, rtol=1e-6, atol=1e-15)


@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_ode_predictor_matches_small_step_integration(loss):
    K, Kt, y = rbf_problem(seed=3)
    y = np.sign(y)
    slopes = {"mse": lambda f, y: f - y, "logistic": lambda f, y: -y / (1 + np.exp(f * y))}
    p = predict.gradient_descent(loss, K, y, [0.0, 2.0, 6.0], K_test_train=Kt, lr=3.0)
    zeros = (np.zeros_like(y), np.zeros(Kt.shape[0]))
    f, ft = euler(K, Kt, y, *zeros, 3.0, 6.0, 60000, slopes[loss])
    np.testing.assert_allclose(p.train[2], f, atol=1e-4)            # Euler's own error is O(dt)
    np.testing.assert_allclose(p.test[2], ft, atol=1e-4)
    if loss == "mse":
        closed = predict.gradient_descent_mse(K, y, [0.0, 2.0, 6.0], K_test_train=Kt, lr=3.0)
        np.testing.assert_allclose(p.train, closed.train, atol=1e-8)
        np.testing.assert_allclose(p.test, closed.test, atol=1e-8)


def test_bad_input_is_named():
    K, Kt, y = rbf_problem()
    with pytest.raises(ValueError, match="t must be"):
        predict.gradient_descent_mse(K, y, [-1.0])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        predict.gradient_descent_mse(np.diag([1.0, -1.0]), np.ones(2), [1.0])
    with pytest.raises(ValueError, match="not symmetric"):
        predict.gradient_descent_mse(K + np.triu(np.ones_like(K), 1), y, [1.0])
    with pytest.raises(ValueError, match="y_train must be"):
        predict.gradient_descent_mse(K, y[:-1], [1.0])
    with pytest.raises(ValueError, match="K_test_train must be"):
        predict.gradient_descent_mse(K, y, [1.0], K_test_train=Kt[:, :-1])
    with pytest.raises(ValueError, match="whole step counts"):
        predict.gradient_descent_mse(K, y, [1.5], discrete=True)
    with pytest.raises(ValueError, match="loss must be"):
        predict.gradient_descent("cross_entropy", K, y, [1.0])
    with pytest.raises(ValueError, match="slides along the margin"):
        predict.gradient_descent("hinge", K, np.sign(y), [1.0])


def test_linearized_network_is_the_first_order_expansion():
    torch.manual_seed(0)
    net = fastdyn.FCNet([4, 7, 5, 2], act="tanh", dtype=torch.float64)
    x = torch.randn(11, 4, dtype=torch.float64)
    lin = fastdyn.linearize(net)
    assert sum(p.numel() for p in lin.parameters()) == sum(p.numel() for p in net.parameters())
    torch.testing.assert_close(lin(x), net(x), rtol=0, atol=0)
    theta0 = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    delta = 0.3 * torch.randn_like(theta0)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta0 + delta, lin.parameters())

    def outputs(theta):
        shapes = [p.shape for p in net.parameters()]
        chunks = theta.split([s.numel() for s in shapes])
        state = {n: c.view(s) for (n, _), c, s in zip(net.named_parameters(), chunks, shapes)}
        return torch.func.functional_call(net, state, (x,))
    J = torch.autograd.functional.jacobian(outputs, theta0)            # (11, 2, P)
    expected = net(x).detach() + J @ delta
    torch.testing.assert_close(lin(x), expected, rtol=1e-12, atol=1e-12)
    cotangent = torch.randn(11, 2, dtype=torch.float64)
    gradient = torch.autograd.grad((lin(x) * cotangent).sum(), list(lin.parameters()))
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in gradient]), torch.einsum("nc,ncp->p", cotangent, J),
                               rtol=1e-12, atol=1e-12)
    other = fastdyn.FCNet([4, 7, 5, 2], act="tanh", dtype=torch.float64)
    around_other = fastdyn.linearize(net, other)
    torch.testing.assert_close(around_other(x), other(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="params0 must give every parameter"):
        fastdyn.linearize(net, {"0.weight": torch.zeros(7, 4)})


def test_training_the_linearized_network_is_kernel_gradient_descent():
    torch.manual_seed(1)
    net = fastdyn.FCNet([4, 16, 16, 1], dtype=torch.float64)
    x, y = torch.randn(15, 4, dtype=torch.float64), torch.randn(15, dtype=torch.float64)
    result = fastdyn.train(fastdyn.linearize(net), x, y, loss="mse", dynamics="sgd", lr=0.5, batch_size=None,
                           max_steps=40, alpha=3.0, record_weights=False, min_loss=0)
    F = 3.0 * (result.model(x) - net(x)).detach().reshape(-1)          # the alpha-trick's centred output
    kernel = predict.gradient_descent_mse(fastdyn.ntk(net, x), y, [40], lr=0.5, discrete=True)
    torch.testing.assert_close(F, kernel.train[0], rtol=1e-11, atol=1e-12)
