"""Training with the alpha-trick: adaptive gradient flow or minibatch SGD, with snapshots and checkpoints.

The network ``f_w`` is trained through the centred, rescaled output (Geiger, Spigler, Jacot, Wyart 2019)

    F(x) = alpha * (f_w(x) - f_w0(x)),        L(w) = 1 / (p * alpha^2) * sum_mu l(F(x_mu), y_mu)

with ``w0`` the initial weights, so F = 0 at t = 0 and, to first order, dF/dt = -(1/p) sum_mu Theta(x, x_mu)
l'(F_mu, y_mu) does not depend on alpha: large alpha -> lazy (kernel) regime, small alpha -> feature learning.
These are the paper's constants (feature_lazy's code divides by alpha instead of alpha^2 and rescales time). For
:class:`fastdyn.models.OneHidden` with ``scale="mf"`` (1/h) the NTK is O(1/h), so the relevant times are O(h).

Losses ``l(F, y)`` (``y`` = +-1 for the first three, class indices for cross-entropy):

* ``"hinge"``: max(0, 1 - F y)   (gradient flow stops once every margin F y >= 1)
* ``"mse"``: (F - y)^2 / 2
* ``"logistic"``: softplus(-F y) = log(1 + exp(-F y))
* ``"cross_entropy"``: -log softmax(F)_y for outputs (N, C)

Dynamics:

* ``"flow"``: gradient flow dw/dt = -grad L by explicit Euler steps with the adaptive step of feature_lazy: a
  step dt is accepted when the output moves little, max_mu |dF_mu| < max_dout, and the gradient turns little,
  |g' - g|^2 / (|g| |g'|) < max_dgrad; dt grows by 1.1 after a step with both below half their bound and is
  divided by 10 (the step retried) otherwise. The gradient of a ReLU network or of the hinge loss jumps when a
  point crosses a kink or the margin, and flow can slide along such a kink. A jump does not scale like dt^2: if
  the retried step's dgrad fell by less than half (the jump is crossed anyway) it is accepted (max_dout still
  bounds it), and after a retry whose dgrad did not fall like dt^2 (20x to 1000x) the step size is restored.
  Flow sliding along a kink still produces a jump at almost every step: below ``waive_below`` (1e-2) times the
  largest step accepted so far the gradient test is waived, so dt cannot shrink without end (Zeno); only
  max_dout, NaN/Inf and min_dt apply there. For ReLU networks of modest size (h, p ~ 1e2) feature_lazy's
  max_dgrad = 1e-4 makes every kink crossing a retry: max_dgrad ~ 1e-2..1e-1 runs many times faster.
* ``"sgd"``: minibatch SGD (``lr``, ``batch_size``, ``momentum``) on the same loss with the batch mean in place
  of 1/p; time t = step * lr. The stopping rules are checked on the full training set once per epoch and at
  snapshots.

A fast path for a ReLU :class:`~fastdyn.models.OneHidden` evaluates output and gradient with the fused kernels
(:func:`fastdyn.onehidden.forward` / :func:`fastdyn.onehidden.gradient`), never forming a points x neurons matrix;
every other ``nn.Module`` goes through torch autograd. Both give the same trajectory.

Precision: F = alpha (f - f0) cancels digits of f when alpha is large (lazy regime); use float64 there.
Example (any observable is a function of the model and a :class:`Context`)::

    result = fastdyn.train(model, x, y, alpha=1e-2, x_test=xt, y_test=yt,
                           observables={"kinks": lambda model, c: fastdyn.kinks.positions(model)})
    result.history()["test_err"], result.history()["obs_kinks"]   # (snapshots,), (snapshots, h, d)
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..models import OneHidden
from ..onehidden import parameters
from .arrays import as_tensor, check_finite
from .registry import dispatch

LOSSES = ("hinge", "mse", "logistic", "cross_entropy")
DYNAMICS = ("flow", "sgd")
CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------------------------------- losses
def loss_terms(loss: str, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point loss l(F_mu, y_mu), shape (N,)."""
    if loss == "hinge":
        return torch.relu(1 - F * y)
    if loss == "mse":
        return 0.5 * (F - y) ** 2
    if loss == "logistic":
        return nn.functional.softplus(-F * y)
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(F, y, reduction="none")
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def loss_derivative(loss: str, F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dl/dF per point, shape of F (hinge: -y where F y < 1, the subgradient 0 at the kink)."""
    if loss == "hinge":
        return -y * (F * y < 1).to(F.dtype)
    if loss == "mse":
        return F - y
    if loss == "logistic":
        return -y * torch.sigmoid(-F * y)
    if loss == "cross_entropy":
        return torch.softmax(F, dim=1) - nn.functional.one_hot(y, F.shape[1]).to(F.dtype)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def errors(F: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point classification error: F y <= 0 for one output, argmax F != y for several."""
    if F.ndim == 2:
        return (F.argmax(dim=1) != y).to(torch.float64)
    return (F * y <= 0).to(torch.float64)


# ------------------------------------------------------------------------------------------------- records
@dataclass
class Context:
    """What an observable sees besides the model: the data, the time and the current outputs F."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    alpha: float
    step: int
    t: float
    train_out: torch.Tensor
    test_out: torch.Tensor | None


@dataclass
class Snapshot:
    """The state of training at one time. Outputs are F = alpha (f - f0), on CPU."""

    step: int
    t: float
    dt: float
    wall: float
    train_loss: float
    train_err: float
    unsatisfied: int           # points with margin F y < 1 (scalar outputs), else points misclassified
    test_loss: float
    test_err: float
    train_out: torch.Tensor
    test_out: torch.Tensor | None
    weights: dict[str, torch.Tensor] | None
    observables: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained network (a copy; the caller's model is left at its initial weights).
        snapshots: log-spaced in time, the first at t = 0, the last at the end of training.
        stop_reason: "margins" (hinge: every F y >= 1), "loss" (<= min_loss), "time", "steps", "wall",
            "nonfinite" (NaN/Inf; the model holds the last finite weights) or "dt_underflow".
        message: one human sentence on why training stopped.
        step, t, dt: the final step count, time and step size.
        timings: seconds spent in "evaluate" (forward + gradient), "observables", "checkpoint", "total",
            and "steps_per_second".
        fused: whether the fused OneHidden kernels ran.
    """

    model: nn.Module
    snapshots: list[Snapshot]
    stop_reason: str
    message: str
    step: int
    t: float
    dt: float
    timings: dict[str, float]
    fused: bool

    @property
    def final(self) -> Snapshot:
        return self.snapshots[-1]

    def history(self) -> dict[str, np.ndarray]:
        """Snapshots stacked into numpy arrays (scalars, outputs, weights ``w_<name>``, observables ``obs_<name>``)."""
        out: dict[str, np.ndarray] = {}
        for key in ("step", "t", "dt", "wall", "train_loss", "train_err", "unsatisfied", "test_loss", "test_err"):
            out[key] = np.array([getattr(s, key) for s in self.snapshots])
        out["train_out"] = np.stack([s.train_out.numpy() for s in self.snapshots])
        if self.snapshots[0].test_out is not None:
            out["test_out"] = np.stack([s.test_out.numpy() for s in self.snapshots])
        if self.snapshots[0].weights is not None:
            for name in self.snapshots[0].weights:
                out[f"w_{name}"] = np.stack([s.weights[name].numpy() for s in self.snapshots])
        for name in self.snapshots[0].observables:
            try:
                out[f"obs_{name}"] = np.stack([np.asarray(s.observables[name]) for s in self.snapshots])
            except ValueError:  # observables of varying shape stay in the snapshots only
                pass
        return out


# ------------------------------------------------------------------------------------------- evaluation
class _Evaluator:
    """Outputs f(x) and gradients sum_mu g_mu df(x_mu)/dw: fused kernels for ReLU OneHidden, else autograd."""

    def __init__(self, model: nn.Module, fused: bool | str, backend: str):
        available = isinstance(model, OneHidden) and model.act == "relu"
        if fused == "auto":
            fused = available
        elif fused and not available:
            raise ValueError("fused=True needs a fastdyn.models.OneHidden with act='relu'; "
                             f"got {type(model).__name__}" + (f" act={model.act!r}" if isinstance(model, OneHidden) else ""))
        self.model, self.fused, self.backend = model, bool(fused), backend
        if self.fused:  # resolve once; x is checked once by train(), the weights at every evaluation
            self.backend, self._forward = dispatch("onehidden.forward", backend, model.omega.device,
                                                   what="fused training")
            self._gradient = dispatch("onehidden.gradient", self.backend, model.omega.device)[1]
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("model has no trainable parameters")
        self.seconds = 0.0

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) without autograd, (N,) or (N, C)."""
        if self.fused:
            omega, b, beta = parameters(self.model, x)
            return self._forward(x, omega, b, beta, scale=self.model.output_scale)
        with torch.no_grad():
            return _squeeze(self.model(x))

    def output_and_gradient(self, x: torch.Tensor, g_of_f: Callable[[torch.Tensor], torch.Tensor]):
        """(f(x), [sum_mu g_mu df(x_mu)/dw per parameter]) with g = g_of_f(f(x))."""
        start = time.perf_counter()
        if self.fused:
            omega, b, beta = parameters(self.model, x)
            f = self._forward(x, omega, b, beta, scale=self.model.output_scale)
            grads = list(self._gradient(x, g_of_f(f).contiguous(), omega, b, beta, scale=self.model.output_scale))
        else:
            with torch.enable_grad():
                f_graph = _squeeze(self.model(x))
                f = f_graph.detach()
                grads = torch.autograd.grad(f_graph, self.params, grad_outputs=g_of_f(f), allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        self.seconds += time.perf_counter() - start
        return f, grads


def _squeeze(f: torch.Tensor) -> torch.Tensor:
    return f[:, 0] if f.ndim == 2 and f.shape[1] == 1 else f


# ---------------------------------------------------------------------------------------------- problem
class _Problem:
    """Data, f0 and the alpha-trick objective of one run."""

    def __init__(self, evaluator, x, y, x_test, y_test, alpha, loss):
        self.evaluator, self.alpha, self.loss = evaluator, alpha, loss
        self.x, self.y, self.x_test, self.y_test = x, y, x_test, y_test
        self.f0 = evaluator.outputs(x)
        if loss == "cross_entropy" and (self.f0.ndim != 2 or self.f0.shape[1] < 2):
            raise ValueError(f"loss='cross_entropy' needs model outputs (N, C) with C >= 2, got {tuple(self.f0.shape)}")
        if loss != "cross_entropy" and self.f0.ndim != 1:
            raise ValueError(f"loss={loss!r} needs one output per point, (N,) or (N, 1); the model gives "
                             f"{tuple(self.f0.shape)} (use loss='cross_entropy' for several)")
        check_finite("model(x) at initialisation", self.f0)
        self.f0_test = evaluator.outputs(x_test) if x_test is not None else None

    def objective(self, x, y, f0):
        """(F, L, grads) on (x, y): L = sum l(F, y) / (N alpha^2), grads of L by w."""
        alpha, n = self.alpha, x.shape[0]

        def g_of_f(f):  # dL/df = alpha * l'(F) / (N alpha^2)
            return loss_derivative(self.loss, alpha * (f - f0), y) / (n * alpha)

        f, grads = self.evaluator.output_and_gradient(x, g_of_f)
        F = alpha * (f - f0)
        return F, float(loss_terms(self.loss, F, y).sum()) / (n * alpha ** 2), grads

    def test_outputs(self):
        if self.x_test is None:
            return None
        return self.alpha * (self.evaluator.outputs(self.x_test) - self.f0_test)

    def mean_loss(self, F, y):
        return float(loss_terms(self.loss, F, y).mean()) / self.alpha ** 2

    def fingerprint(self, dynamics) -> str:
        digest = hashlib.sha1()
        for tensor in (self.x, self.y, self.f0):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(f"{self.alpha!r}|{self.loss}|{dynamics}".encode())
        return digest.hexdigest()


def _flat_norm(tensors) -> float:
    return math.sqrt(sum(float(torch.linalg.vector_norm(t, dtype=torch.float64)) ** 2 for t in tensors))


def _unsatisfied(F: torch.Tensor, y: torch.Tensor) -> int:
    """Points with margin F y < 1 (one output), or misclassified (several outputs)."""
    if F.ndim == 2:
        return int((F.argmax(dim=1) != y).sum())
    return int((F * y < 1).sum())


# ------------------------------------------------------------------------------------------------- train
def train(
    model: nn.Module,
    x,
    y,
    *,
    alpha: float = 1.0,
    loss: str = "hinge",
    dynamics: str = "flow",
    x_test=None,
    y_test=None,
    max_time: float = math.inf,
    max_steps: int = 1_000_000,
    max_wall: float = math.inf,
    min_loss: float = 0.0,
    dt: float = 1.0,
    max_dout: float = 0.1,
    max_dgrad: float = 1e-4,
    min_dt: float = 1e-30,
    waive_below: float = 1e-2,
    lr: float = 0.1,
    batch_size: int | None = None,
    momentum: float = 0.0,
    seed: int = 0,
    snapshot_times=None,
    snapshots_per_decade: int = 5,
    record_weights: bool = True,
    observables: dict[str, Callable[[nn.Module, Context], Any]] | None = None,
    callback: Callable[[dict], None] | None = None,
    fused: bool | str = "auto",
    backend: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = 300.0,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` on (x, y) with the alpha-trick (see the module docstring for the maths).

    Args:
        model: any ``nn.Module`` mapping (N, d) to (N,), (N, 1) or, for cross-entropy, (N, C). Copied, not changed.
        x, y: training inputs (p, d) and labels (p,) (+-1 or real for mse; class indices for cross_entropy),
            numpy or torch, on the model's device and (x) in its dtype.
        alpha: output scale, > 0.
        loss: "hinge", "mse", "logistic" or "cross_entropy".
        dynamics: "flow" (adaptive gradient flow) or "sgd".
        x_test, y_test: optional test set, recorded in the snapshots.
        max_time, max_steps, max_wall: stop at this time t, number of accepted steps, or wall-clock seconds.
        min_loss: stop once the training loss L <= min_loss (hinge: also once every margin F y >= 1).
        dt, max_dout, max_dgrad, min_dt: flow: initial step, output and gradient-change bounds, smallest step.
        waive_below: flow: the gradient test is waived for steps below this fraction of the largest step so far.
        lr, batch_size, momentum, seed: sgd (batch_size None = full batch; seed drives batch sampling).
        snapshot_times: increasing times at which to snapshot; default log-spaced, ``snapshots_per_decade``
            per decade from the first step's time on. A snapshot is also taken at t = 0 and at the end.
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
    """
    # ---- validation
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    alpha = float(alpha)
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    for name, value in (("dt", dt), ("lr", lr), ("max_dout", max_dout), ("max_dgrad", max_dgrad)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if not 0 <= waive_below < 1:
        raise ValueError(f"waive_below must be in [0, 1), got {waive_below}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if int(max_steps) < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
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
    p = x.shape[0]
    if batch_size is None:
        batch_size = p
    if not 1 <= int(batch_size) <= p:
        raise ValueError(f"batch_size must be in [1, p={p}], got {batch_size}")
    param = next(model.parameters(), None)
    if param is not None and (param.dtype != x.dtype or param.device != x.device):
        raise TypeError(f"model parameters are {param.dtype} on {param.device} but x is {x.dtype} on {x.device}; "
                        "convert one of them (e.g. model.to(x.dtype))")

    model = copy.deepcopy(model)
    evaluator = _Evaluator(model, fused, backend)
    problem = _Problem(evaluator, x, y, x_test, y_test, alpha, loss)
    run = _Run(problem, dynamics=dynamics, observables=observables or {}, record_weights=record_weights,
               snapshot_times=snapshot_times, snapshots_per_decade=snapshots_per_decade,
               checkpoint=Path(checkpoint) if checkpoint is not None else None,
               checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds, seed=seed,
               momentum=momentum, dt=float(dt))
    if resume and run.checkpoint.exists():
        run.load()
    limits = dict(max_time=float(max_time), max_steps=int(max_steps), max_wall=float(max_wall),
                  min_loss=float(min_loss))
    if run.stop_reason is None:  # (a resumed NaN/Inf stop stays stopped)
        if dynamics == "flow":
            run.flow(**limits, max_dout=max_dout, max_dgrad=max_dgrad, min_dt=min_dt, waive_below=waive_below,
                     callback=callback)
        else:
            run.sgd(**limits, lr=float(lr), batch_size=int(batch_size), callback=callback)
    return run.result()


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


class _Run:
    """Mutable state of one training run (what a checkpoint holds)."""

    def __init__(self, problem: _Problem, *, dynamics, observables, record_weights, snapshot_times,
                 snapshots_per_decade, checkpoint, checkpoint_every, checkpoint_seconds, seed, momentum, dt):
        self.problem, self.dynamics = problem, dynamics
        self.model, self.params = problem.evaluator.model, problem.evaluator.params
        self.observables, self.record_weights = dict(observables), record_weights
        for name, fn in self.observables.items():
            if not callable(fn):
                raise TypeError(f"observables[{name!r}] must be callable fn(model, context), got {type(fn).__name__}")
        if snapshot_times is not None:
            snapshot_times = [float(t) for t in snapshot_times]
            if any(b <= a for a, b in zip(snapshot_times, snapshot_times[1:])) or min(snapshot_times, default=1) <= 0:
                raise ValueError("snapshot_times must be positive and increasing")
        if int(snapshots_per_decade) < 1:
            raise ValueError(f"snapshots_per_decade must be >= 1, got {snapshots_per_decade}")
        self.snapshot_times, self.per_decade = snapshot_times, int(snapshots_per_decade)
        self.checkpoint, self.checkpoint_every, self.checkpoint_seconds = checkpoint, checkpoint_every, checkpoint_seconds
        self.momentum = momentum
        self.generator = torch.Generator().manual_seed(int(seed))
        self.velocity = [torch.zeros_like(p) for p in self.params] if momentum else None
        self.step, self.t, self.dt, self.dt_max = 0, 0.0, dt, 0.0
        self.snapshots: list[Snapshot] = []
        self.next_snapshot = 0            # index into snapshot_times, or the log-grid exponent
        self.first_time: float | None = None
        self.stop_reason: str | None = None
        self.message = ""
        self.wall = 0.0                   # seconds of earlier sessions (resume)
        self.timings = {"evaluate": 0.0, "observables": 0.0, "checkpoint": 0.0}
        self.out = self.grads = None
        self.loss_value = math.nan
        self.session_start = time.perf_counter()
        self.last_checkpoint_step, self.last_checkpoint_time = 0, time.perf_counter()

    # ---- bookkeeping
    def elapsed(self) -> float:
        return self.wall + time.perf_counter() - self.session_start

    def due_snapshot(self) -> bool:
        """Whether t has reached the next scheduled snapshot time (advancing the schedule past t)."""
        if self.snapshot_times is not None:
            due = False
            while self.next_snapshot < len(self.snapshot_times) and self.t >= self.snapshot_times[self.next_snapshot]:
                self.next_snapshot, due = self.next_snapshot + 1, True
            return due
        if self.first_time is None:  # the log grid starts at the first step's time
            self.first_time = self.t if self.t > 0 else None
            self.next_snapshot = 1
            return self.first_time is not None
        due = False
        while self.t >= self.first_time * 10 ** (self.next_snapshot / self.per_decade):
            self.next_snapshot, due = self.next_snapshot + 1, True
        return due

    def snapshot(self, F_train: torch.Tensor) -> None:
        problem = self.problem
        F_test = problem.test_outputs()
        start = time.perf_counter()
        context = Context(problem.x, problem.y, problem.x_test, problem.y_test, problem.alpha, self.step, self.t,
                          F_train, F_test)
        values = {name: _to_cpu(fn(self.model, context)) for name, fn in self.observables.items()}
        self.timings["observables"] += time.perf_counter() - start
        self.snapshots.append(Snapshot(
            step=self.step, t=self.t, dt=self.dt, wall=self.elapsed(),
            train_loss=problem.mean_loss(F_train, problem.y),
            train_err=float(errors(F_train, problem.y).mean()),
            unsatisfied=_unsatisfied(F_train, problem.y),
            test_loss=problem.mean_loss(F_test, problem.y_test) if F_test is not None else math.nan,
            test_err=float(errors(F_test, problem.y_test).mean()) if F_test is not None else math.nan,
            train_out=F_train.detach().cpu().clone(),
            test_out=F_test.detach().cpu().clone() if F_test is not None else None,
            weights={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if self.record_weights else None,
            observables=values,
        ))

    def stop(self, reason: str, message: str) -> None:
        self.stop_reason, self.message = reason, message

    def check_limits(self, F, loss_value, max_time, max_steps, max_wall, min_loss) -> bool:
        problem = self.problem
        if problem.loss == "hinge" and _unsatisfied(F, problem.y) == 0:
            self.stop("margins", f"every training margin F y >= 1 at step {self.step}, t = {self.t:.4g}")
        elif loss_value <= min_loss:
            self.stop("loss", f"training loss {loss_value:.3e} <= min_loss = {min_loss:g} at step {self.step}")
        elif self.t >= max_time:
            self.stop("time", f"reached max_time = {max_time:g} at step {self.step}")
        elif self.step >= max_steps:
            self.stop("steps", f"reached max_steps = {max_steps} at t = {self.t:.4g}")
        elif self.elapsed() >= max_wall:
            self.stop("wall", f"reached max_wall = {max_wall:g} s at step {self.step}, t = {self.t:.4g}")
        return self.stop_reason is not None

    def maybe_checkpoint(self, final: bool = False) -> None:
        if self.checkpoint is None:
            return
        now = time.perf_counter()
        due = final or (self.checkpoint_every is not None and self.step - self.last_checkpoint_step >= self.checkpoint_every) \
            or (self.checkpoint_seconds is not None and now - self.last_checkpoint_time >= self.checkpoint_seconds)
        if due:
            self.save()
            self.last_checkpoint_step, self.last_checkpoint_time = self.step, time.perf_counter()
            self.timings["checkpoint"] += time.perf_counter() - now

    # ---- gradient flow
    def flow(self, *, max_time, max_steps, max_wall, min_loss, max_dout, max_dgrad, min_dt, waive_below, callback):
        problem = self.problem
        if self.out is None:
            self.out, self.loss_value, self.grads = problem.objective(problem.x, problem.y, problem.f0)
            self.snapshot(self.out)
        hinge = problem.loss == "hinge"
        while not self.check_limits(self.out, self.loss_value, max_time, max_steps, max_wall, min_loss):
            saved = [p.detach().clone() for p in self.params]
            grad_norm = _flat_norm(self.grads)
            rejected_dgrad, dt_tried = math.inf, self.dt
            while True:
                step = min(self.dt, max_time - self.t)
                with torch.no_grad():
                    for p, g in zip(self.params, self.grads):
                        p.sub_(g, alpha=step)
                F, loss_value, grads = problem.objective(problem.x, problem.y, problem.f0)
                dout = float((F - self.out).abs().max())
                new_norm = _flat_norm(grads)
                if grad_norm == 0 or new_norm == 0:
                    dgrad = 0.0
                else:
                    dgrad = _flat_norm([a - b for a, b in zip(grads, self.grads)]) ** 2 / (grad_norm * new_norm)
                finite = math.isfinite(loss_value) and math.isfinite(dout) and math.isfinite(dgrad)
                # A smooth gradient change falls like dt^2 (100x when dt falls 10x). A jump (a margin or a ReLU kink
                # crossed) does not shrink, or vanishes at once when the smaller step stops short of the kink: then
                # accept and keep the earlier step size, or flow sliding along a kink would shrink dt without end.
                crossed = dgrad > 0.5 * rejected_dgrad
                smooth = 1e-3 * rejected_dgrad <= dgrad <= 0.05 * rejected_dgrad
                waived = step <= waive_below * self.dt_max  # module docstring: no Zeno collapse of dt
                if finite and dout < max_dout and (dgrad < max_dgrad or crossed or waived):
                    if rejected_dgrad < math.inf and not smooth:
                        self.dt = dt_tried
                    elif dout < 0.5 * max_dout and dgrad < 0.5 * max_dgrad and step == self.dt:
                        self.dt *= 1.1
                    break
                if finite and dout < max_dout:
                    rejected_dgrad = dgrad
                with torch.no_grad():
                    for p, s in zip(self.params, saved):
                        p.copy_(s)
                self.dt /= 10
                if self.dt < min_dt:
                    reason = "dt_underflow" if finite else "nonfinite"
                    what = "the output or gradient became NaN/Inf for every step tried" if not finite else \
                        f"no step >= min_dt = {min_dt:g} keeps dout < {max_dout:g} and dgrad < {max_dgrad:g}"
                    self.stop(reason, f"{what} at step {self.step}, t = {self.t:.4g}; the model holds the last "
                                      "good weights")
                    break
            if self.stop_reason is not None:
                break
            self.out, self.loss_value, self.grads = F, loss_value, grads
            self.dt_max = max(self.dt_max, step)
            self.step += 1
            self.t += step
            self.after_step(callback)
        self.finish()

    # ---- SGD
    def sgd(self, *, max_time, max_steps, max_wall, min_loss, lr, batch_size, callback):
        problem = self.problem
        p = problem.x.shape[0]
        if self.out is None:
            self.out = self.full_outputs()
            self.loss_value = problem.mean_loss(self.out, problem.y)
            self.snapshot(self.out)
        steps_per_epoch = max(1, p // batch_size)
        previous = None
        while not self.check_limits(self.out, self.loss_value, max_time, max_steps, max_wall, min_loss):
            index = slice(None) if batch_size == p else \
                torch.randperm(p, generator=self.generator)[:batch_size].to(problem.x.device)
            _, batch_loss, grads = problem.objective(problem.x[index], problem.y[index], problem.f0[index])
            if not math.isfinite(batch_loss):
                self.restore_previous(previous, lr)
                break
            previous = [q.detach().clone() for q in self.params]
            with torch.no_grad():
                for i, (q, g) in enumerate(zip(self.params, grads)):
                    if self.velocity is not None:
                        g = self.velocity[i].mul_(self.momentum).add_(g)
                    q.sub_(g, alpha=lr)
            self.step += 1
            self.t = self.step * lr
            if self.step % steps_per_epoch == 0 or self.due_snapshot_peek():
                F = self.full_outputs()
                if not bool(torch.isfinite(F).all()):
                    self.restore_previous(previous, lr)
                    break
                self.out, self.loss_value = F, problem.mean_loss(F, problem.y)
            self.after_step(callback)
        self.finish()

    def full_outputs(self) -> torch.Tensor:
        problem = self.problem
        return problem.alpha * (problem.evaluator.outputs(problem.x) - problem.f0)

    def restore_previous(self, previous, lr) -> None:
        """SGD hit NaN/Inf: go back to the weights before the last update and stop."""
        if previous is not None:
            with torch.no_grad():
                for q, s in zip(self.params, previous):
                    q.copy_(s)
            self.step -= 1
            self.t = self.step * lr
        self.out = self.full_outputs()
        self.stop("nonfinite", f"the loss became NaN/Inf after step {self.step}, t = {self.t:.4g}; the model holds "
                               f"the weights of step {self.step} (the last finite ones)")

    def due_snapshot_peek(self) -> bool:
        """Whether the current t reaches the next snapshot time, without advancing the schedule."""
        if self.snapshot_times is not None:
            return self.next_snapshot < len(self.snapshot_times) and self.t >= self.snapshot_times[self.next_snapshot]
        return self.first_time is None or self.t >= self.first_time * 10 ** (self.next_snapshot / self.per_decade)

    def after_step(self, callback):
        if self.due_snapshot():
            self.snapshot(self.out)
        self.maybe_checkpoint()
        if callback is not None:
            callback({"step": self.step, "t": self.t, "dt": self.dt, "loss": self.loss_value,
                      "unsatisfied": _unsatisfied(self.out, self.problem.y)})

    def finish(self):
        if self.dynamics == "sgd" and self.stop_reason != "nonfinite":
            self.out = self.full_outputs()
            self.loss_value = self.problem.mean_loss(self.out, self.problem.y)
        if self.snapshots[-1].step != self.step:
            self.snapshot(self.out)
        self.maybe_checkpoint(final=True)

    def result(self) -> TrainResult:
        total = self.elapsed()
        timings = dict(self.session_timings(), total=total,
                       steps_per_second=self.step / total if total > 0 else math.nan)
        return TrainResult(model=self.model, snapshots=self.snapshots, stop_reason=self.stop_reason,
                           message=self.message, step=self.step, t=self.t, dt=self.dt, timings=timings,
                           fused=self.problem.evaluator.fused)

    # ---- checkpoints
    def session_timings(self) -> dict[str, float]:
        """Timings so far, earlier sessions included (``self.timings["evaluate"]`` holds only theirs)."""
        return dict(self.timings, evaluate=self.timings["evaluate"] + self.problem.evaluator.seconds)

    def save(self) -> None:
        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.problem.fingerprint(self.dynamics),
            "model": self.model.state_dict(),
            "step": self.step, "t": self.t, "dt": self.dt, "dt_max": self.dt_max,
            "out": self.out, "grads": self.grads, "loss_value": self.loss_value,
            "velocity": self.velocity,
            "generator": self.generator.get_state(),
            "snapshots": self.snapshots, "next_snapshot": self.next_snapshot, "first_time": self.first_time,
            "stop_reason": self.stop_reason, "message": self.message,
            "wall": self.elapsed(),
            "timings": self.session_timings(),
        }
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)  # atomic: a kill mid-write leaves the previous checkpoint intact

    def load(self) -> None:
        state = torch.load(self.checkpoint, map_location=self.problem.x.device, weights_only=False)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {self.checkpoint} has version {state.get('version')}, "
                             f"expected {CHECKPOINT_VERSION}")
        if state["fingerprint"] != self.problem.fingerprint(self.dynamics):
            raise ValueError(f"checkpoint {self.checkpoint} belongs to a different problem (data, initial model, "
                             "alpha, loss or dynamics differ); delete it or give another path")
        self.model.load_state_dict(state["model"])
        for key in ("step", "t", "dt", "dt_max", "out", "grads", "loss_value", "velocity", "snapshots", "next_snapshot",
                    "first_time", "stop_reason", "message", "wall", "timings"):
            setattr(self, key, state[key])
        self.generator.set_state(state["generator"])
        if self.stop_reason not in ("nonfinite", "dt_underflow"):
            self.stop_reason, self.message = None, ""  # the limits are checked again: raising one continues
        self.session_start = time.perf_counter()
        self.last_checkpoint_step, self.last_checkpoint_time = self.step, time.perf_counter()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
