"""One stepper per dynamics: ``start(state)`` evaluates the initial outputs, ``step(state) -> bool`` takes one
step (False: it stopped the run instead, ``state.stop_reason`` says why), ``finish(state)`` settles the final
outputs. The parameters are the evaluator's, updated in place."""
from __future__ import annotations

import math

import torch

from .evaluate import Problem
from .options import FlowOptions, SGDOptions
from .state import RunState


def _flat_norm(tensors) -> float:
    """Euclidean norm of all tensors together, accumulated in float64."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(t, dtype=torch.float64)) ** 2 for t in tensors))


class FlowStepper:
    """Gradient flow dw/dt = -grad L by adaptive explicit Euler steps, never beyond ``max_time``."""

    def __init__(self, problem: Problem, options: FlowOptions, max_time: float):
        self.problem, self.options, self.max_time = problem, options, max_time
        self.params = problem.evaluator.params

    def start(self, state: RunState) -> None:
        problem = self.problem
        state.out, state.loss_value, state.grads = problem.objective(problem.x, problem.y, problem.f0)

    def step(self, state: RunState) -> bool:
        """Accept one Euler step, retrying with dt / 10 until it passes the tests; False at min_dt (stopped)."""
        problem, options = self.problem, self.options
        saved = [p.detach().clone() for p in self.params]
        grad_norm = _flat_norm(state.grads)
        rejected_dgrad, dt_tried = math.inf, state.dt
        while True:
            step_size = min(state.dt, self.max_time - state.t)
            with torch.no_grad():
                for p, g in zip(self.params, state.grads):
                    p.sub_(g, alpha=step_size)
            F, loss_value, grads = problem.objective(problem.x, problem.y, problem.f0)
            dout = float((F - state.out).abs().max())
            new_norm = _flat_norm(grads)
            if grad_norm == 0 or new_norm == 0:
                dgrad = 0.0
            else:
                dgrad = _flat_norm([a - b for a, b in zip(grads, state.grads)]) ** 2 / (grad_norm * new_norm)
            finite = math.isfinite(loss_value) and math.isfinite(dout) and math.isfinite(dgrad)
            # A smooth gradient change falls like dt^2 (100x when dt falls 10x). A jump (a margin or a ReLU kink
            # crossed) does not shrink, or vanishes at once when the smaller step stops short of the kink: then
            # accept and keep the earlier step size, or flow sliding along a kink would shrink dt without end.
            crossed = dgrad > 0.5 * rejected_dgrad
            smooth = 1e-3 * rejected_dgrad <= dgrad <= 0.05 * rejected_dgrad
            waived = step_size <= options.waive_below * state.dt_max  # module docstring: no Zeno collapse of dt
            if finite and dout < options.max_dout and (dgrad < options.max_dgrad or crossed or waived):
                if rejected_dgrad < math.inf and not smooth:
                    state.dt = dt_tried
                elif dout < 0.5 * options.max_dout and dgrad < 0.5 * options.max_dgrad and step_size == state.dt:
                    state.dt *= 1.1
                break
            if finite and dout < options.max_dout:
                rejected_dgrad = dgrad
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)
            state.dt /= 10
            if state.dt < options.min_dt:
                what = "the output or gradient became NaN/Inf for every step tried" if not finite else \
                    f"no step >= min_dt = {options.min_dt:g} keeps dout < {options.max_dout:g} and dgrad < " \
                    f"{options.max_dgrad:g}"
                state.stop("dt_underflow" if finite else "nonfinite",
                           f"{what} at step {state.step}, t = {state.t:.4g}; the model holds the last good weights")
                return False
        state.out, state.loss_value, state.grads = F, loss_value, grads
        state.dt_max = max(state.dt_max, step_size)
        state.step += 1
        state.t += step_size
        return True

    def finish(self, state: RunState) -> None:
        """Nothing to settle: ``state.out`` is the last accepted step's."""


class SGDStepper:
    """Minibatch SGD with heavy-ball momentum (``state.velocity``) and batches drawn by ``state.generator``. The
    full training outputs ``state.out`` are evaluated once per epoch, when a snapshot is due and at the end."""

    def __init__(self, problem: Problem, options: SGDOptions, batch_size: int):
        self.problem, self.lr, self.momentum, self.batch_size = problem, options.lr, options.momentum, batch_size
        self.params = problem.evaluator.params
        self.steps_per_epoch = max(1, problem.x.shape[0] // batch_size)
        self.previous: list[torch.Tensor] | None = None  # the weights before the last update

    def start(self, state: RunState) -> None:
        state.out = self.problem.train_outputs()
        state.loss_value = self.problem.mean_loss(state.out, self.problem.y)

    def step(self, state: RunState) -> bool:
        """One update on a batch; False on NaN/Inf (the weights before the update restored, stopped)."""
        problem = self.problem
        p = problem.x.shape[0]
        index = slice(None) if self.batch_size == p else \
            torch.randperm(p, generator=state.generator)[:self.batch_size].to(problem.x.device)
        _, batch_loss, grads = problem.objective(problem.x[index], problem.y[index], problem.f0[index])
        if not math.isfinite(batch_loss):
            self._restore_previous(state)
            return False
        self.previous = [q.detach().clone() for q in self.params]
        with torch.no_grad():
            for i, (q, g) in enumerate(zip(self.params, grads)):
                if state.velocity is not None:
                    g = state.velocity[i].mul_(self.momentum).add_(g)
                q.sub_(g, alpha=self.lr)
        state.step += 1
        state.t = state.step * self.lr
        if state.step % self.steps_per_epoch == 0 or state.schedule.peek(state.t):
            F = problem.train_outputs()
            loss_value = problem.mean_loss(F, problem.y)
            if not (bool(torch.isfinite(F).all()) and math.isfinite(loss_value)):  # finite F can overflow l(F)
                self._restore_previous(state)
                return False
            state.out, state.loss_value = F, loss_value
        return True

    def finish(self, state: RunState) -> None:
        """The full training outputs and loss of the final weights (unless stopped by NaN/Inf)."""
        if state.stop_reason != "nonfinite":
            state.out = self.problem.train_outputs()
            state.loss_value = self.problem.mean_loss(state.out, self.problem.y)

    def _restore_previous(self, state: RunState) -> None:
        """NaN/Inf: go back to the weights before the last update and stop."""
        if self.previous is not None:
            with torch.no_grad():
                for q, s in zip(self.params, self.previous):
                    q.copy_(s)
            state.step -= 1
            state.t = state.step * self.lr
        state.out = self.problem.train_outputs()
        state.stop("nonfinite", f"the loss became NaN/Inf after step {state.step}, t = {state.t:.4g}; the model "
                                f"holds the weights of step {state.step} (the last finite ones)")
