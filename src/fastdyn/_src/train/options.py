"""Settings of a run, validated on construction: the dynamics (:class:`FlowOptions`, :class:`SGDOptions`), when to
stop (:class:`Limits`) and when to checkpoint (:class:`Checkpointing`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .losses import unsatisfied


def _positive(**values) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


METHODS = ("auto", "exact", "euler")
LOOPS = ("auto", "native", "python")


@dataclass
class FlowOptions:
    """Adaptive gradient flow (module docstring of :mod:`fastdyn._src.train`: the methods and their step rules).

    Attributes:
        method: "exact" (piecewise-exact steps with step-doubling error control, :mod:`fastdyn._src.train.exact`;
            ReLU OneHidden on the hinge loss only), "euler" (explicit Euler steps with feature_lazy's output and
            gradient tests; any model and loss), or "auto" (exact where it applies, else euler).
        dt: initial step, > 0.
        max_dout: bound on max_mu |dF_mu| per step, > 0.
        tol: exact: bound on the estimated error of a step (outputs in margin units, weights relative), > 0.
        max_dgrad: euler: bound on the gradient change |g' - g|^2 / (|g| |g'|) per step, > 0.
        min_dt: stop ("dt_underflow", or "nonfinite") when the step falls below this.
        waive_below: euler: the gradient test is waived for steps below this fraction of the largest step so far,
            [0, 1).
        loop: exact: "native" (the C++ loop, chunks of steps with no Python per step), "python" (one step per
            Python call, any backend), or "auto" (native where the fused kernels' backend has it).
    """

    method: str = "auto"
    dt: float = 1.0
    max_dout: float = 0.1
    tol: float = 1e-2
    max_dgrad: float = 1e-4
    min_dt: float = 1e-30
    waive_below: float = 1e-2
    loop: str = "auto"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}, got {self.loop!r}")
        _positive(dt=self.dt, max_dout=self.max_dout, tol=self.tol, max_dgrad=self.max_dgrad, min_dt=self.min_dt)
        if not 0 <= self.waive_below < 1:
            raise ValueError(f"waive_below must be in [0, 1), got {self.waive_below}")
        self.dt = float(self.dt)


@dataclass
class SGDOptions:
    """Minibatch SGD; time t = step * lr.

    Attributes:
        lr: learning rate, > 0.
        batch_size: points per step, in [1, p]; None = full batch.
        momentum: heavy-ball momentum, [0, 1).
        seed: seed of the batch sampling.
    """

    lr: float = 0.1
    batch_size: int | None = None
    momentum: float = 0.0
    seed: int = 0

    def __post_init__(self):
        _positive(lr=self.lr)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        self.lr, self.seed = float(self.lr), int(self.seed)

    def batch_for(self, p: int) -> int:
        """The batch size on p training points (None -> p); ValueError outside [1, p]."""
        batch_size = p if self.batch_size is None else self.batch_size
        if not 1 <= int(batch_size) <= p:
            raise ValueError(f"batch_size must be in [1, p={p}], got {batch_size}")
        return int(batch_size)


@dataclass
class Limits:
    """Stop at time t >= max_time, step >= max_steps, wall-clock seconds >= max_wall or training loss <= min_loss
    (hinge: also once every margin F y >= 1)."""

    max_time: float = math.inf
    max_steps: int = 1_000_000
    max_wall: float = math.inf
    min_loss: float = 0.0

    def __post_init__(self):
        if int(self.max_steps) < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        self.max_time, self.max_steps = float(self.max_time), int(self.max_steps)
        self.max_wall, self.min_loss = float(self.max_wall), float(self.min_loss)

    def reached(self, state, problem, wall: float) -> tuple[str, str] | None:
        """(stop reason, message) for the first limit that ``state`` has reached after ``wall`` seconds, else None."""
        step, t = state.step, state.t
        if problem.loss == "hinge" and unsatisfied(state.out, problem.y) == 0:
            return "margins", f"every training margin F y >= 1 at step {step}, t = {t:.4g}"
        if state.loss_value <= self.min_loss:
            return "loss", f"training loss {state.loss_value:.3e} <= min_loss = {self.min_loss:g} at step {step}"
        if t >= self.max_time:
            return "time", f"reached max_time = {self.max_time:g} at step {step}"
        if step >= self.max_steps:
            return "steps", f"reached max_steps = {self.max_steps} at t = {t:.4g}"
        if wall >= self.max_wall:
            return "wall", f"reached max_wall = {self.max_wall:g} s at step {step}, t = {t:.4g}"
        return None


@dataclass
class Checkpointing:
    """Save the run state to ``path`` every ``every`` steps and/or ``seconds`` seconds (None: never) and at the end."""

    path: Path
    every: int | None = None
    seconds: float | None = 300.0

    def __post_init__(self):
        self.path = Path(self.path)

    def due(self, steps_since: int, seconds_since: float) -> bool:
        return (self.every is not None and steps_since >= self.every) or \
            (self.seconds is not None and seconds_since >= self.seconds)
