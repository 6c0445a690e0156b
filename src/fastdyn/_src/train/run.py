"""``train()``: validation, the parts of a run, and the loop around a stepper."""
from __future__ import annotations

import copy
import math
import os
import time
import dataclasses
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..arrays import as_tensor, check_finite
from .evaluate import Evaluator, Problem
from .losses import LOSSES, errors, unsatisfied
from .options import Checkpointing, FlowOptions, Limits, SGDOptions
from .records import Context, Snapshot, TrainResult
from .schedule import SnapshotSchedule
from .state import RunState
from .steppers import FlowStepper, SGDStepper
from . import exact
from ..backends import cpu_isa
from ..registry import supported

DYNAMICS = ("flow", "sgd")


def train(
    model: nn.Module,
    x,
    y,
    *,
    alpha: float = 1.0,
    loss: str = "hinge",
    dynamics: str | FlowOptions | SGDOptions = "flow",
    x_test=None,
    y_test=None,
    max_time: float = Limits.max_time,
    max_steps: int = Limits.max_steps,
    max_wall: float = Limits.max_wall,
    min_loss: float = Limits.min_loss,
    method: str = FlowOptions.method,
    dt: float = FlowOptions.dt,
    max_dout: float = FlowOptions.max_dout,
    tol: float = FlowOptions.tol,
    max_dgrad: float = FlowOptions.max_dgrad,
    min_dt: float = FlowOptions.min_dt,
    waive_below: float = FlowOptions.waive_below,
    loop: str = FlowOptions.loop,
    lr: float = SGDOptions.lr,
    batch_size: int | None = SGDOptions.batch_size,
    momentum: float = SGDOptions.momentum,
    seed: int = SGDOptions.seed,
    snapshot_times=None,
    snapshots_per_decade: int = SnapshotSchedule.per_decade,
    record_weights: bool = True,
    observables: dict[str, Callable[[nn.Module, Context], Any]] | None = None,
    callback: Callable[[dict], None] | None = None,
    fused: bool | str = "auto",
    backend: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = Checkpointing.every,
    checkpoint_seconds: float | None = Checkpointing.seconds,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` on (x, y) with the alpha-trick (see :mod:`fastdyn._src.train` for the maths).

    Args:
        model: any ``nn.Module`` mapping (N, d) to (N,), (N, 1) or, for cross-entropy, (N, C). Copied, not changed.
        x, y: training inputs (p, d) and labels (p,) (+-1 or real for mse; class indices for cross_entropy),
            numpy or torch, on the model's device and (x) in its dtype.
        alpha: output scale, > 0.
        loss: "hinge", "mse", "logistic" or "cross_entropy".
        dynamics: "flow" (adaptive gradient flow) or "sgd", set by the keywords below; or a :class:`FlowOptions`
            or :class:`SGDOptions` holding those settings (then the flat keywords dt ... seed must stay at their
            defaults, else TypeError).
        x_test, y_test: optional test set, recorded in the snapshots.
        max_time, max_steps, max_wall: stop at this time t, number of accepted steps, or wall-clock seconds.
        min_loss: stop once the training loss L <= min_loss (hinge: also once every margin F y >= 1).
        method: flow: "exact" (ReLU OneHidden + hinge), "euler", or "auto" (exact where it applies).
        dt, max_dout, min_dt: flow: initial step, bound on the output change per step, smallest step.
        tol: flow, exact: bound on the estimated error of a step.
        max_dgrad, waive_below: flow, euler: gradient-change bound; the gradient test is waived for steps below
            waive_below times the largest step so far.
        loop: flow, exact: "native" (C++ loop), "python" (one step per Python call) or "auto" (native where the
            fused kernels' backend has one).
        lr, batch_size, momentum, seed: sgd (batch_size None = full batch; seed drives batch sampling).
        snapshot_times: increasing times at which to snapshot; default log-spaced, ``snapshots_per_decade``
            per decade from the first step's time on. A snapshot is also taken at t = 0 and at the end. The
            snapshot for a time is taken at the first step that reaches it: sgd meets multiples of lr exactly
            (t = step * lr); flow does not shorten its steps to land on them (each snapshot records its own t).
        record_weights: keep a CPU copy of every parameter in each snapshot.
        observables: ``{"name": fn(model, context)}`` evaluated at each snapshot (``context``: :class:`Context`);
            tensors are stored detached on CPU.
        callback: called after every accepted step with ``{"step", "t", "dt", "loss", "unsatisfied"}``.
        fused: "auto" (fused kernels for a ReLU OneHidden), True (require them) or False (autograd).
        backend: backend of the fused kernels ("auto", "cpu", "numba", "torch", "cuda").
        checkpoint: file to save the full run state to every ``checkpoint_every`` steps and/or
            ``checkpoint_seconds`` seconds and at the end; with ``resume=True`` an existing checkpoint of the same
            problem is continued (one that stopped at a limit continues if the limit was raised, else it is
            returned as it is; one stopped by NaN/Inf is returned as it is).

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: an unknown ``loss``, ``dynamics``, ``method`` or ``backend``; ``alpha`` not positive and
            finite; x not (p, d) with p >= 1, NaN/Inf in x, labels of the wrong shape or kind for the loss;
            ``x_test`` without ``y_test``; ``resume=True`` without ``checkpoint``; ``method="exact"`` or
            ``fused=True`` for a model or loss they do not cover (they need a ReLU :class:`OneHidden`, exact: hinge).
        TypeError: ``model`` not an ``nn.Module``; flat dynamics keywords beside a :class:`FlowOptions` or
            :class:`SGDOptions`.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    name, flow, sgd = _dynamics(dynamics, dict(method=method, dt=dt, max_dout=max_dout, tol=tol, max_dgrad=max_dgrad,
                                               min_dt=min_dt, waive_below=waive_below, loop=loop, lr=lr,
                                               batch_size=batch_size, momentum=momentum, seed=seed))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    alpha = float(alpha)
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    limits = Limits(max_time, max_steps, max_wall, min_loss)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path>")

    x = as_tensor("x", x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (p, d) with p >= 1, got {tuple(x.shape)}")
    check_finite("x", x)
    y = _labels("y", y, loss, x)
    if (x_test is None) != (y_test is None):
        raise ValueError("give both x_test and y_test, or neither")
    if x_test is not None:
        x_test = as_tensor("x_test", x_test)
        if x_test.ndim != 2 or x_test.shape[1] != x.shape[1] or x_test.dtype != x.dtype or x_test.device != x.device:
            raise ValueError(f"x_test must be (N, {x.shape[1]}) {x.dtype} on {x.device}, got "
                             f"{tuple(x_test.shape)} {x_test.dtype} on {x_test.device}")
        check_finite("x_test", x_test)
        y_test = _labels("y_test", y_test, loss, x_test)
    batch_size = sgd.batch_for(x.shape[0])
    param = next(model.parameters(), None)
    if param is not None and (param.dtype != x.dtype or param.device != x.device):
        raise TypeError(f"model parameters are {param.dtype} on {param.device} but x is {x.dtype} on {x.device}; "
                        "convert one of them (e.g. model.to(x.dtype))")

    model = copy.deepcopy(model)
    evaluator = Evaluator(model, fused, backend)
    problem = Problem(evaluator, x, y, x_test, y_test, alpha, loss)
    observables = dict(observables or {})
    for key, fn in observables.items():
        if not callable(fn):
            raise TypeError(f"observables[{key!r}] must be callable fn(model, context), got {type(fn).__name__}")
    schedule = SnapshotSchedule(snapshot_times, snapshots_per_decade)
    checkpointing = Checkpointing(checkpoint, checkpoint_every, checkpoint_seconds) if checkpoint is not None else None

    method = _flow_method(flow, problem) if name == "flow" else "sgd"
    # SGD's settings define its trajectory (and t = steps * lr): a checkpoint resumes only under the same ones.
    dynamics_key = (f"sgd:lr={sgd.lr!r},batch={batch_size},momentum={sgd.momentum!r},seed={sgd.seed}"
                    if name == "sgd" else f"flow:{method}")
    fingerprint = problem.fingerprint(dynamics_key) if checkpointing is not None else None
    if resume and checkpointing.path.exists():
        state = RunState.load(checkpointing.path, model=model, fingerprint=fingerprint, device=x.device,
                              schedule=schedule)
    elif name == "sgd":
        state = RunState(schedule, dt=flow.dt, generator=torch.Generator().manual_seed(sgd.seed),
                         velocity=[torch.zeros_like(p) for p in evaluator.params] if sgd.momentum else None)
    else:
        state = RunState(schedule, dt=flow.dt)
    stepper = _flow_stepper(problem, flow, limits, method) if name == "flow" else SGDStepper(problem, sgd, batch_size)
    session = _Session(problem, stepper, state, limits=limits, observables=observables,
                       record_weights=record_weights, checkpointing=checkpointing, fingerprint=fingerprint,
                       callback=callback)
    if state.stop_reason is None:  # (a resumed NaN/Inf stop stays stopped)
        session.run()
    return session.result()


def _dynamics(dynamics, flat: dict[str, Any]) -> tuple[str, FlowOptions, SGDOptions]:
    """("flow" or "sgd", flow options, SGD options) from train()'s ``dynamics`` and its flat keywords ``flat``."""
    if isinstance(dynamics, (FlowOptions, SGDOptions)):
        defaults = {f.name: f.default for options in (FlowOptions, SGDOptions) for f in dataclasses.fields(options)}
        given = [key for key, value in flat.items() if value != defaults[key]]
        if given:
            raise TypeError(f"dynamics={type(dynamics).__name__}(...) holds the dynamics settings; do not also pass "
                            f"{', '.join(given)} to train()")
        if isinstance(dynamics, FlowOptions):
            return "flow", dynamics, SGDOptions()
        return "sgd", FlowOptions(), dynamics
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS} or a FlowOptions or SGDOptions, got {dynamics!r}")
    flow = FlowOptions(**{f.name: flat[f.name] for f in dataclasses.fields(FlowOptions)})
    sgd = SGDOptions(**{f.name: flat[f.name] for f in dataclasses.fields(SGDOptions)})
    return dynamics, flow, sgd


def _flow_method(flow: FlowOptions, problem: Problem) -> str:
    """The flow method that runs: "exact" or "euler" (ValueError for "exact" where it does not apply)."""
    if flow.method == "auto":
        return "exact" if exact.applies(problem) else "euler"
    if flow.method == "exact" and not exact.applies(problem):
        raise ValueError("method='exact' needs a ReLU fastdyn.models.OneHidden with the fused kernels and "
                         f"loss='hinge'; got {type(problem.evaluator.model).__name__} (fused="
                         f"{problem.evaluator.fused}) with loss={problem.loss!r}; use method='euler'")
    return flow.method


def _flow_stepper(problem: Problem, flow: FlowOptions, limits: Limits, method: str):
    if method == "euler":
        return FlowStepper(problem, flow, limits.max_time)
    native = exact.native_backend(problem) if flow.loop != "python" else None
    if flow.loop == "native" and native is None:
        raise ValueError(f"loop='native': the {problem.evaluator.backend!r} backend has no C++ flow loop; "
                         f"it runs on {supported('flow.onehidden_hinge')}; use loop='python' or 'auto'")
    if native is not None:
        return exact.NativeFlowStepper(problem, flow, limits, native)
    return exact.ExactFlowStepper(problem, flow, limits)


def _labels(name, y, loss, x):
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(np.ascontiguousarray(y))
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(y).__name__}")
    y = y.detach().to(x.device)
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if loss == "cross_entropy":
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer class indices for loss='cross_entropy', got {y.dtype}")
        return y.long()
    y = y.to(x.dtype)
    check_finite(name, y)
    return y


class _Session:
    """One call of train() on a run state: the loop of limit check, step, snapshot, checkpoint and callback; the
    clock of this session (``state.wall`` holds the earlier ones)."""

    def __init__(self, problem: Problem, stepper, state: RunState, *, limits: Limits,
                 observables, record_weights: bool, checkpointing: Checkpointing | None, fingerprint: str | None,
                 callback):
        self.problem, self.stepper, self.state, self.limits = problem, stepper, state, limits
        self.observables, self.record_weights, self.callback = observables, record_weights, callback
        self.checkpointing, self.fingerprint = checkpointing, fingerprint
        self.start = time.perf_counter()
        self.last_checkpoint_step, self.last_checkpoint_time = state.step, time.perf_counter()

    def elapsed(self) -> float:
        return self.state.wall + time.perf_counter() - self.start

    def run(self) -> None:
        state = self.state
        if state.out is None:
            self.stepper.start(state)
            self.snapshot()
        while True:
            reached = self.limits.reached(state, self.problem, self.elapsed())
            if reached is not None:
                state.stop(*reached)
                break
            if not self.stepper.step(state):
                break
            if state.schedule.due(state.t):
                self.snapshot()
            self.maybe_checkpoint()
            if self.callback is not None:
                self.callback({"step": state.step, "t": state.t, "dt": state.dt, "loss": state.loss_value,
                               "unsatisfied": unsatisfied(state.out, self.problem.y)})
        self.stepper.finish(state)
        if state.snapshots[-1].step != state.step:
            self.snapshot()
        self.maybe_checkpoint(final=True)

    def snapshot(self) -> None:
        problem, state = self.problem, self.state
        F_train, F_test = state.out, problem.test_outputs()
        start = time.perf_counter()
        context = Context(problem.x, problem.y, problem.x_test, problem.y_test, problem.alpha, state.step, state.t,
                          F_train, F_test)
        values = {key: _to_cpu(fn(problem.evaluator.model, context)) for key, fn in self.observables.items()}
        state.timings["observables"] += time.perf_counter() - start
        state.snapshots.append(Snapshot(
            step=state.step, t=state.t, dt=state.dt, wall=self.elapsed(),
            train_loss=problem.mean_loss(F_train, problem.y),
            train_err=float(errors(F_train, problem.y).mean()),
            unsatisfied=unsatisfied(F_train, problem.y),
            test_loss=problem.mean_loss(F_test, problem.y_test) if F_test is not None else math.nan,
            test_err=float(errors(F_test, problem.y_test).mean()) if F_test is not None else math.nan,
            train_out=F_train.detach().cpu().clone(),
            test_out=F_test.detach().cpu().clone() if F_test is not None else None,
            weights={k: v.detach().cpu().clone() for k, v in problem.evaluator.model.state_dict().items()}
            if self.record_weights else None,
            observables=values,
        ))

    def timings(self) -> dict[str, float]:
        """Timings so far, earlier sessions included (``state.timings["evaluate"]`` holds only theirs)."""
        timings = self.state.timings
        return dict(timings, evaluate=timings["evaluate"] + self.problem.evaluator.seconds)

    def maybe_checkpoint(self, final: bool = False) -> None:
        if self.checkpointing is None:
            return
        now = time.perf_counter()
        steps_since, seconds_since = self.state.step - self.last_checkpoint_step, now - self.last_checkpoint_time
        if final or self.checkpointing.due(steps_since, seconds_since):
            saved = dataclasses.replace(self.state, wall=self.elapsed(), timings=self.timings())
            saved.save(self.checkpointing.path, model=self.problem.evaluator.model, fingerprint=self.fingerprint)
            self.last_checkpoint_step, self.last_checkpoint_time = self.state.step, time.perf_counter()
            self.state.timings["checkpoint"] += time.perf_counter() - now

    def result(self) -> TrainResult:
        state, total = self.state, self.elapsed()
        timings = dict(self.timings(), total=total, steps_per_second=state.step / total if total > 0 else math.nan)
        return TrainResult(model=self.problem.evaluator.model, snapshots=state.snapshots,
                           stop_reason=state.stop_reason, message=state.message, step=state.step, t=state.t,
                           dt=state.dt, timings=timings, fused=self.problem.evaluator.fused,
                           engine=_engine(self.stepper, self.problem), counts=dict(state.counts))


def _engine(stepper, problem: Problem) -> str:
    """What integrated the run, in words (recorded in the result)."""
    evaluator = problem.evaluator
    backend = f"cpu, {cpu_isa()}" if evaluator.fused and evaluator.backend == "cpu" else evaluator.backend
    kernels = f"fused {backend} kernels" if evaluator.fused else "torch autograd"
    if isinstance(stepper, exact.NativeFlowStepper):
        return f"flow, exact method, C++ loop ({backend})"
    if isinstance(stepper, exact.ExactFlowStepper):
        return f"flow, exact method, Python steps ({kernels})"
    if isinstance(stepper, FlowStepper):
        return f"flow, euler method, Python steps ({kernels})"
    return f"sgd, Python steps ({kernels})"


def _to_cpu(value):
    """Tensors (also inside tuples, lists and dicts) detached and copied to CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
