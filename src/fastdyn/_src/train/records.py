"""What a run records and returns: :class:`Context` (seen by observables), :class:`Snapshot`, :class:`TrainResult`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


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
    """What :func:`fastdyn.train` returns.

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
        engine: what integrated the run, in words (method, C++ loop or Python steps, kernels; CPU ISA path).
        counts: flow, exact method: "rejected" steps and "hinge_events" (a margin crossing 1 between steps).
        converged: (property) whether training ended at its goal ("margins" or "loss"), not at a cap.
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
    engine: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.stop_reason in ("margins", "loss")

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
