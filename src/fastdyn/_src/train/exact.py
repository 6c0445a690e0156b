"""The piecewise-exact gradient flow of a ReLU :class:`~fastdyn.models.OneHidden` on the hinge loss (method "exact").

With ``F = alpha (f - f0)``, ``L = sum_i relu(1 - F_i y_i) / (p alpha^2)`` and ``f(x) = s sum_n beta_n relu(pre_n(x))``,
``pre_n(x) = omega_n . x / sqrt(d) + b_n``, the flow dw/dt = -grad L is piecewise smooth: it is smooth while the
activation pattern ``a_ni = [pre_n(x_i) > 0]`` and the hinge active set ``A = {i : F_i y_i < 1}`` stay fixed, and
switches when a point crosses a neuron's hyperplane or a margin crosses 1 (flow can also slide along such a switch).
Inside a region the loss derivative ``g_i = -y_i [i in A] / (p alpha)`` is constant, so the moments

    u_n = s sum_{i in A} g_i a_ni x_i / sqrt(d),   ub_n = s sum_{i in A} g_i a_ni        (the gradient with beta = 1)

are constant too and each neuron's flow is linear: d(omega_n, b_n)/dt = -beta_n v_n, dbeta_n/dt = -v_n . (omega_n, b_n)
with v_n = (u_n, ub_n). Its exact solution over a time tau is a hyperbolic rotation (``advance``; r = |v_n|, z = r tau,
q_n = v_n . (omega_n, b_n)):

    beta_n' = cosh(z) beta_n - sinh(z) / r q_n,   (omega_n, b_n)' = (omega_n, b_n) + (2 sinh(z/2)^2 / r^2 q_n - sinh(z) / r beta_n) v_n

A step of the integrator advances by this solution with the pattern and active set of its start, so it is exact
unless a switch happens inside it; the error of a step crossing switches is first order in tau (the time spent on
the wrong side times the jump of the velocity field). It is estimated by step doubling: one step of tau against two
of tau / 2, whose second half starts from the pattern and active set found at the midpoint; the two-half result is
kept. The step is accepted when

    err = max(max_i |F1_i - F2_i|, max_n |w1_n - w2_n|_1 / |w_n|_1) <= tol     and     max_i |F2_i - F_i| <= max_dout

(outputs in margin units, weights relative per neuron), and the next tau is the accepted one times
min(2, 0.9 / max(err / tol, dout / max_dout)); a rejected step is retried with tau times max(0.1, min(0.5, that)).
Because the error of a step that crosses switches is O(tau) rather than O(1), the step never collapses at a switch
(feature_lazy's gradient test does: a hinge switch is an O(1) gradient jump at any tau), and sliding along a kink or
the margin proceeds with tau ~ tol / |jump|, which is the Euler-type approximation of the Filippov sliding flow
(Dontchev & Lempio 1992: Euler's method converges to Filippov solutions). Without switches the step is exact and
grows by 2 each time, up to the max_dout bound.

Two drivers share these operations: :class:`ExactFlowStepper` takes one accepted step per call from Python with the
registered kernels of any backend; :class:`NativeFlowStepper` advances by chunks of steps inside the C++ loop of the
"flow.onehidden_hinge" operation (csrc/cpu/flow.cpp), the same computation with no Python per step.
"""
from __future__ import annotations

import math
import time

import torch

from ...models import OneHidden
from ..registry import dispatch, supported
from .evaluate import Problem
from .options import FlowOptions, Limits
from .state import RunState

CHUNK_SECONDS = 0.5  # wall-clock length of one C++ chunk: snapshots, checkpoints and callbacks happen between chunks


def applies(problem: Problem) -> bool:
    """Whether the exact method covers the problem: a ReLU OneHidden with the fused kernels, on the hinge loss."""
    model = problem.evaluator.model
    return problem.evaluator.fused and isinstance(model, OneHidden) and model.act == "relu" and problem.loss == "hinge"


def native_backend(problem: Problem) -> str | None:
    """The backend whose C++ loop runs the problem's flow (the fused kernels' backend), or None."""
    backend = problem.evaluator.backend
    return backend if backend in supported("flow.onehidden_hinge") else None


def advance(omega, b, beta, u, ub, q, tau: float):
    """(omega', b', beta') after the exact frozen-pattern flow for time ``tau`` (module docstring)."""
    r2 = ub * ub + (u * u).sum(dim=1)
    r = r2.sqrt()
    z = r * tau
    moving = z > 0
    safe_r, safe_r2 = torch.where(moving, r, 1), torch.where(moving, r2, 1)
    cosh_z = torch.where(moving, torch.cosh(z), 1)
    sinh_r = torch.where(moving, torch.sinh(z) / safe_r, tau)
    coshm1_r2 = torch.where(moving, 2 * torch.sinh(z / 2) ** 2 / safe_r2, tau * tau / 2)
    coef = coshm1_r2 * q - sinh_r * beta
    return omega + coef[:, None] * u, b + coef * ub, cosh_z * beta - sinh_r * q


class _Flow:
    """The operations of one step on (omega, b, beta) tensors, by the fused kernels of ``problem``'s backend."""

    def __init__(self, problem: Problem):
        model, evaluator = problem.evaluator.model, problem.evaluator
        self.problem, self.scale = problem, model.output_scale
        self._forward = dispatch("onehidden.forward", evaluator.backend, model.omega.device)[1]
        self._gradient = dispatch("onehidden.gradient", evaluator.backend, model.omega.device)[1]
        self.ones = torch.ones_like(model.beta.detach())

    def outputs(self, w) -> torch.Tensor:
        problem = self.problem
        return problem.alpha * (self._forward(problem.x, *w, scale=self.scale) - problem.f0)

    def moments(self, w, F):
        """(u, ub, q) of the points active at F (gathered in index order, g_i = -y_i / (p alpha)), and their count."""
        problem = self.problem
        active = F * problem.y < 1
        n = int(active.sum())
        if n == 0:
            omega, b, _ = w
            return (torch.zeros_like(omega), torch.zeros_like(b), torch.zeros_like(b)), 0
        g = -problem.y[active] / (problem.x.shape[0] * problem.alpha)
        u, ub, q = self._gradient(problem.x[active].contiguous(), g, w[0], w[1], self.ones, scale=self.scale)
        return (u, ub, q), n


def _weight_error(w, w1, w2) -> float:
    diff = (w1[0] - w2[0]).abs().sum(dim=1) + (w1[1] - w2[1]).abs() + (w1[2] - w2[2]).abs()
    size = w[0].abs().sum(dim=1) + w[1].abs() + w[2].abs()
    return float(torch.where(size > 0, diff / torch.where(size > 0, size, 1), diff).max())


class ExactFlowStepper:
    """The exact method driven from Python: one accepted step per :meth:`step`, with any backend's kernels."""

    def __init__(self, problem: Problem, options: FlowOptions, limits: Limits):
        self.problem, self.options, self.max_time = problem, options, limits.max_time
        model = problem.evaluator.model
        self.params = [model.omega, model.b, model.beta]
        self.flow = _Flow(problem)
        self.moments = None  # (u, ub, q) at the current weights, recomputed after a resume

    def start(self, state: RunState) -> None:
        state.out = self.flow.outputs(self._weights())
        state.loss_value = self.problem.mean_loss(state.out, self.problem.y)

    def _weights(self):
        return tuple(p.detach() for p in self.params)

    def step(self, state: RunState) -> bool:
        """Accept one step (retrying with smaller tau); False at min_dt or NaN/Inf (stopped)."""
        options, flow, y = self.options, self.flow, self.problem.y
        w, F = self._weights(), state.out
        if self.moments is None:
            self.moments = flow.moments(w, F)[0]
        while True:
            step = min(state.dt, self.max_time - state.t)
            w1 = advance(*w, *self.moments, step)
            wh = advance(*w, *self.moments, step / 2)
            mh = flow.moments(wh, flow.outputs(wh))[0]
            w2 = advance(*wh, *mh, step / 2)
            F1, F2 = flow.outputs(w1), flow.outputs(w2)
            error = max(float((F1 - F2).abs().max()), _weight_error(w, w1, w2)) / options.tol
            ratio = max(error, float((F2 - F).abs().max()) / options.max_dout)
            finite = math.isfinite(ratio) and bool(torch.isfinite(F1).all() and torch.isfinite(F2).all())
            if finite and ratio <= 1:
                break
            state.counts["rejected"] += 1
            state.dt = step * (max(0.1, min(0.5, 0.9 / ratio)) if finite else 0.1)
            if state.dt < options.min_dt:
                return _underflow(state, finite, options)
        state.counts["hinge_events"] += int(((F * y < 1) != (F2 * y < 1)).sum())
        with torch.no_grad():
            for p, value in zip(self.params, w2):
                p.copy_(value)
        self.moments = flow.moments(w2, F2)[0]
        state.out, state.loss_value = F2, self.problem.mean_loss(F2, y)
        state.t += step
        state.dt_max = max(state.dt_max, step)
        state.dt = step * (min(2.0, 0.9 / ratio) if ratio > 0 else 2.0)
        state.step += 1
        return True

    def finish(self, state: RunState) -> None:
        """Nothing to settle: ``state.out`` is the last accepted step's."""


class NativeFlowStepper:
    """The exact method in the C++ loop: each :meth:`step` advances a chunk of up to ~CHUNK_SECONDS of accepted
    steps, ending at the next snapshot time, and at the step and time limits. Seconds inside the loop are counted
    in ``state.timings["loop"]``."""

    def __init__(self, problem: Problem, options: FlowOptions, limits: Limits, backend: str):
        self.problem, self.options, self.limits = problem, options, limits
        self.model = problem.evaluator.model
        self._flow = dispatch("flow.onehidden_hinge", backend, self.model.omega.device)[1]
        self.python = ExactFlowStepper(problem, options, limits)  # start(): the same initial outputs

    def start(self, state: RunState) -> None:
        self.python.start(state)

    def step(self, state: RunState) -> bool:
        problem, options, model = self.problem, self.options, self.model
        F = state.out.clone()
        start = time.perf_counter()
        with torch.no_grad():
            progress = self._flow(problem.x, problem.y, problem.f0, model.omega.data, model.b.data, model.beta.data,
                                  F, alpha=problem.alpha, scale=model.output_scale, t=state.t, dt=state.dt,
                                  dt_max=state.dt_max, tol=options.tol, max_dout=options.max_dout,
                                  min_dt=options.min_dt, max_time=self.limits.max_time,
                                  t_stop=state.schedule.next_time(), max_steps=self.limits.max_steps - state.step,
                                  max_seconds=CHUNK_SECONDS)
        state.timings["loop"] = state.timings.get("loop", 0.0) + time.perf_counter() - start
        state.step += progress["steps"]
        state.t, state.dt, state.dt_max = progress["t"], progress["dt"], progress["dt_max"]
        state.counts["rejected"] += progress["rejected"]
        state.counts["hinge_events"] += progress["hinge_events"]
        state.out, state.loss_value = F, problem.mean_loss(F, problem.y)
        if progress["stop"]:
            return _underflow(state, progress["stop"] == "dt_underflow", options)
        return True

    def finish(self, state: RunState) -> None:
        """Nothing to settle: ``state.out`` is the last accepted step's."""


def _underflow(state: RunState, finite: bool, options: FlowOptions) -> bool:
    what = f"no step >= min_dt = {options.min_dt:g} keeps the error below tol = {options.tol:g} and dout below " \
           f"{options.max_dout:g}" if finite else "the outputs became NaN/Inf for every step tried"
    state.stop("dt_underflow" if finite else "nonfinite",
               f"{what} at step {state.step}, t = {state.t:.4g}; the model holds the last good weights")
    return False
