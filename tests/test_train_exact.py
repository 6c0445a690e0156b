"""The exact flow method (fastdyn/_src/train/exact.py) and its C++ loop (csrc/cpu/flow.cpp), against plain
references: an RK4 integration of the frozen-pattern ODE, torch autograd of the hinge loss, and a tiny-step Euler
integration of the full flow."""
import math

import numpy as np
import pytest
import torch

from fastdyn import train
from fastdyn.data import stripe
from fastdyn.models import OneHidden
from fastdyn._src.train.exact import advance

from conftest import CPU_BACKENDS, assert_close

needs_native = pytest.mark.needs_backend("cpu")  # the C++ loop; fails where "cpu" should be built (conftest.py)


def _problem(p=23, d=3, h=11, seed=0, dtype=torch.float64):
    x, y, xt, yt = stripe(p=p, d=d, p_test=31, seed=seed, as_torch=True, dtype="float64")
    model = OneHidden(d, h, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return x.to(dtype), y.to(dtype), xt.to(dtype), yt.to(dtype), model


def test_advance_solves_the_frozen_pattern_ode():
    """The hyperbolic rotation against RK4 with 4000 steps of d(omega, b)/dt = -beta v, dbeta/dt = -v.(omega, b)."""
    g = torch.Generator().manual_seed(3)
    h, d, tau = 7, 4, 0.8
    omega, b, beta = (torch.randn(h, d, generator=g, dtype=torch.float64), torch.randn(h, generator=g,
                      dtype=torch.float64), torch.randn(h, generator=g, dtype=torch.float64))
    u, ub = torch.randn(h, d, generator=g, dtype=torch.float64), torch.randn(h, generator=g, dtype=torch.float64)
    u[0], ub[0] = 0, 0  # a neuron without active points stays put
    q = (omega * u).sum(1) + b * ub
    got = advance(omega, b, beta, u, ub, q, tau)

    v = np.concatenate([u.numpy(), ub.numpy()[:, None]], axis=1)
    state = np.concatenate([omega.numpy(), b.numpy()[:, None], beta.numpy()[:, None]], axis=1)

    def rate(s):
        theta, bt = s[:, :-1], s[:, -1]
        return np.concatenate([-bt[:, None] * v, -(v * theta).sum(1, keepdims=True)], axis=1)

    n = 4000
    dt = tau / n
    for _ in range(n):
        k1 = rate(state)
        k2 = rate(state + dt / 2 * k1)
        k3 = rate(state + dt / 2 * k2)
        k4 = rate(state + dt * k3)
        state = state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    state = torch.from_numpy(state)
    assert_close(got[0], state[:, :d], rtol=1e-10, rows=True)
    assert_close(got[1], state[:, d], rtol=1e-10)
    assert_close(got[2], state[:, d + 1], rtol=1e-10)
    assert torch.equal(got[0][0], omega[0]) and got[2][0] == beta[0]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_moments_give_the_autograd_hinge_gradient(backend):
    """beta u, beta ub, q of the active points are grad L by omega, b, beta (autograd of the full hinge loss)."""
    from fastdyn._src.train.evaluate import Evaluator, Problem
    from fastdyn._src.train.exact import _Flow

    x, y, _, _, model = _problem(p=37, d=5, h=19)
    alpha = 30.0
    with torch.no_grad():  # move away from F = 0 so that some margins are >= 1 (inactive points)
        model.beta.mul_(3.0)
        model.b.add_(0.3)
    problem = Problem(Evaluator(model, True, backend), x, y, None, None, alpha, "hinge")
    with torch.no_grad():
        model.omega.add_(0.5 * torch.randn(model.omega.shape, generator=torch.Generator().manual_seed(1),
                                           dtype=torch.float64))
    flow = _Flow(problem)
    w = (model.omega.detach(), model.b.detach(), model.beta.detach())
    F = flow.outputs(w)
    assert 0 < int((F * y < 1).sum()) < x.shape[0]  # both kinds of points
    (u, ub, q), n = flow.moments(w, F)
    assert n == int((F * y < 1).sum())

    params = [model.omega, model.b, model.beta]
    F_graph = alpha * (model(x) - problem.f0)
    loss = torch.relu(1 - F_graph * y).sum() / (x.shape[0] * alpha ** 2)
    grads = torch.autograd.grad(loss, params)
    assert_close(model.beta.detach()[:, None] * u, grads[0], rows=True)
    assert_close(model.beta.detach() * ub, grads[1])
    assert_close(q, grads[2])


def _reference_flow(omega, b, beta, x, y, alpha, scale, t_end, steps):
    """Fixed-step explicit Euler of dw/dt = -grad L with L by torch autograd: the tiny-step reference."""
    w = [t.detach().clone().requires_grad_(True) for t in (omega, b, beta)]
    d, p = x.shape[1], x.shape[0]

    def f(w):
        return scale * torch.relu(x @ w[0].T / math.sqrt(d) + w[1]) @ w[2]

    f0 = f(w).detach()
    dt = t_end / steps
    for _ in range(steps):
        loss = torch.relu(1 - alpha * (f(w) - f0) * y).sum() / (p * alpha ** 2)
        grads = torch.autograd.grad(loss, w)
        with torch.no_grad():
            for a, g in zip(w, grads):
                a.sub_(dt * g)
    with torch.no_grad():
        return [a.detach() for a in w], alpha * (f(w) - f0)


@needs_native
@pytest.mark.parametrize("alpha", [0.05, 20.0])
def test_exact_flow_follows_a_tiny_step_reference(alpha):
    """Through kink crossings and margin events, the adaptive exact flow at tol = 1e-3 agrees with autograd Euler at
    10000 fixed steps to 5e-3 relative in the weights and 2.5e-2 in the outputs F. (The reference's own error, from
    5000 against 20000 steps: 3e-3 in omega and 1.5e-2 in F at alpha = 0.05; the exact flow at tol 1e-4 and 1e-5
    lands as close.)"""
    x, y, _, _, model = _problem(p=11, d=3, h=7, seed=2)
    t_end = 30.0 if alpha < 1 else 600.0
    result = train(model, x, y, alpha=alpha, max_time=t_end, tol=1e-3, dt=1e-3, backend="cpu")
    assert result.stop_reason in ("time", "margins") and result.counts["hinge_events"] > 0
    (omega, b, beta), F_ref = _reference_flow(model.omega, model.b, model.beta, x, y, alpha, model.output_scale,
                                              t_end, 10000)
    got = result.model
    for a, ref in [(got.omega, omega), (got.b, b), (got.beta, beta)]:
        assert float((a.detach() - ref).abs().max() / ref.abs().max()) < 5e-3
    assert float((result.final.train_out - F_ref).abs().max()) < 2.5e-2
    moved = (omega - model.omega.detach()).abs().max() / omega.abs().max()
    assert moved > 5e-2  # the weights did move: the agreement is not that of two runs standing still


@needs_native
@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_native_loop_takes_the_python_steps(alpha):
    """The C++ loop and the Python-driven stepper: the same accepted and rejected steps, events and state after
    400 steps through kink crossings and hinge events. (Over many thousands of steps a step whose error estimate
    sits at the bound to the last bits may be accepted by one and rejected by the other: sinh and sums round
    differently in torch and in C++; from there on the two are different, equally accurate, trajectories.)"""
    x, y, xt, yt, model = _problem(p=13, d=4, h=9, seed=1)
    runs = [train(model, x, y, alpha=alpha, x_test=xt, y_test=yt, max_steps=400, loop=loop, backend="cpu")
            for loop in ("native", "python")]
    native, python = runs
    assert native.engine.startswith("flow, exact method, C++ loop (cpu, ")
    assert python.engine.startswith("flow, exact method, Python steps (fused cpu, ")
    assert native.stop_reason == python.stop_reason == "steps" and not native.converged
    assert native.step == python.step == 400 and native.counts == python.counts
    assert native.counts["hinge_events"] > 0 and native.counts["rejected"] > 0
    assert native.t == pytest.approx(python.t, rel=1e-9)
    for a, b in zip(native.model.parameters(), python.model.parameters()):
        assert_close(a.detach(), b.detach(), rows=a.ndim == 2)
    assert_close(native.final.test_out, python.final.test_out)


@needs_native
def test_native_loop_float32_follows_float64():
    x, y, _, _, model = _problem(p=29, d=3, h=17, seed=4)
    x32, y32, model32 = x.float(), y.float(), OneHidden(3, 17, dtype=torch.float32)
    model32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    r64 = train(model, x, y, alpha=1.0, max_time=50.0, backend="cpu")
    r32 = train(model32, x32, y32, alpha=1.0, max_time=50.0, backend="cpu")
    assert r32.engine.startswith("flow, exact method, C++ loop (cpu, ")
    for a, b in zip(r32.model.parameters(), r64.model.parameters()):
        assert_close(a.detach(), b.detach(), rtol=1e-3, rows=a.ndim == 2)  # through switches: step choices differ


@needs_native
def test_active_set_compaction_matches_the_full_sum():
    """The loop sums the gradient over the active points only; the full sum with g = 0 elsewhere is the same."""
    from fastdyn._src.registry import implementation
    from fastdyn._src.train.evaluate import Evaluator, Problem
    from fastdyn._src.train.exact import _Flow

    x, y, _, _, model = _problem(p=50, d=6, h=21, seed=5)
    with torch.no_grad():
        model.beta.mul_(4.0)
    problem = Problem(Evaluator(model, True, "cpu"), x, y, None, None, 30.0, "hinge")
    with torch.no_grad():
        model.b.add_(0.4)
    flow = _Flow(problem)
    w = (model.omega.detach(), model.b.detach(), model.beta.detach())
    F = flow.outputs(w)
    (u, ub, q), n = flow.moments(w, F)
    assert 0 < n < x.shape[0]
    f = implementation("onehidden.forward", "cpu")(x, *w, scale=model.output_scale)
    g, _, unsatisfied = implementation("loss.hinge_gradient", "cpu")(f, problem.f0, y, alpha=30.0)
    assert unsatisfied == n
    full = implementation("onehidden.gradient", "cpu")(x, g, w[0], w[1], torch.ones_like(w[2]),
                                                       scale=model.output_scale)
    for a, b in zip((u, ub, q), full):
        assert_close(a, b, rtol=1e-12, rows=a.ndim == 2)


@needs_native
def test_stop_reasons_and_convergence_flag():
    x, y, _, _, model = _problem(p=31, d=3, h=15, seed=6)
    done = train(model, x, y, alpha=1.0, backend="cpu")
    assert done.stop_reason == "margins" and done.converged and bool((done.final.train_out * y >= 1).all())
    capped = train(model, x, y, alpha=1.0, max_steps=3, backend="cpu")
    assert capped.stop_reason == "steps" and not capped.converged and capped.step == 3
    timed = train(model, x, y, alpha=1.0, max_time=0.5, backend="cpu")
    assert timed.stop_reason == "time" and not timed.converged and timed.t == pytest.approx(0.5, rel=1e-12)
    stuck = train(model, x, y, alpha=1.0, dt=1e3, tol=1e-12, min_dt=1.0, backend="cpu")
    assert stuck.stop_reason == "dt_underflow" and not stuck.converged and stuck.counts["rejected"] > 0
    assert "min_dt" in stuck.message


@needs_native
def test_resume_mid_run_gives_the_uninterrupted_run(tmp_path):
    x, y, _, _, model = _problem(p=33, d=4, h=19, seed=7)
    whole = train(model, x, y, alpha=0.3, max_steps=400, backend="cpu")
    path = tmp_path / "run.pt"
    first = train(model, x, y, alpha=0.3, max_steps=150, backend="cpu", checkpoint=path)
    assert first.stop_reason == "steps" and first.step == 150
    resumed = train(model, x, y, alpha=0.3, max_steps=400, backend="cpu", checkpoint=path, resume=True)
    assert resumed.step == whole.step and resumed.counts == whole.counts
    assert resumed.t == pytest.approx(whole.t, rel=1e-12)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters()):
        assert_close(a.detach(), b.detach(), rtol=1e-12, rows=a.ndim == 2)


def test_exact_method_needs_relu_onehidden_and_hinge():
    x, y, _, _, model = _problem()
    with pytest.raises(ValueError, match="method='exact'"):
        train(model, x, y, loss="mse", method="exact", max_steps=2)
    with pytest.raises(ValueError, match="loop='native'"):
        train(model, x, y, method="exact", loop="native", backend="torch", max_steps=2)
    with pytest.raises(ValueError, match="method must be one of"):
        train(model, x, y, method="rk4")
    with pytest.raises(ValueError, match="tol must be > 0"):
        train(model, x, y, tol=0.0)
    euler = train(model, x, y, loss="mse", max_steps=2)
    assert euler.engine.startswith("flow, euler method")
