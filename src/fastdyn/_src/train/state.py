"""The state of a run, which is also its checkpoint."""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from .records import Snapshot
from .schedule import SnapshotSchedule

CHECKPOINT_VERSION = 2
FINAL_STOPS = ("nonfinite", "dt_underflow")  # a resumed run stopped by these stays stopped


@dataclass
class RunState:
    """Everything of a run that changes as it goes, besides the weights; a checkpoint holds these fields.

    ``out`` is F on the training set, (p,) or (p, C); ``grads`` the gradient of L per parameter (flow);
    ``velocity`` the momentum buffers per parameter (SGD with momentum); ``generator`` samples the SGD batches;
    ``counts`` the rejected steps and hinge events (margins crossing 1) of the exact flow; ``wall`` and ``timings`` count
    the earlier sessions of a resumed run (saved: up to the save).
    """

    schedule: SnapshotSchedule
    step: int = 0
    t: float = 0.0
    dt: float = 1.0
    dt_max: float = 0.0                              # largest step accepted so far (flow)
    out: torch.Tensor | None = None
    grads: list[torch.Tensor] | None = None
    loss_value: float = math.nan
    velocity: list[torch.Tensor] | None = None
    generator: torch.Generator | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    stop_reason: str | None = None
    message: str = ""
    wall: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"evaluate": 0.0, "observables": 0.0, "checkpoint": 0.0})
    counts: dict[str, int] = field(default_factory=lambda: {"rejected": 0, "hinge_events": 0})  # flow, method "exact"

    def stop(self, reason: str, message: str) -> None:
        self.stop_reason, self.message = reason, message

    def save(self, path: Path, *, model: nn.Module, fingerprint: str) -> None:
        """Write the fields, the model's weights and the problem's fingerprint to ``path`` (atomically)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.generator is not None:
            values["generator"] = self.generator.get_state()
        # a name of this process and thread: two runs saving one checkpoint (a point's duplicate attempt in a
        # sweep) each replace it whole, neither renames the other's half-written file
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "model": model.state_dict(),
                    **values}, tmp)
        os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact

    @classmethod
    def load(cls, path: Path, *, model: nn.Module, fingerprint: str, device: torch.device,
             schedule: SnapshotSchedule) -> RunState:
        """The state saved at ``path``, its weights loaded into ``model``; ValueError for another version or
        another problem. A stop other than ``FINAL_STOPS`` is cleared (the limits are checked again: raising one
        continues). The schedule's times are ``schedule``'s, its position the saved one."""
        values = torch.load(path, map_location=device, weights_only=False)
        if values.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {path} has version {values.get('version')}, expected {CHECKPOINT_VERSION}")
        if values.pop("fingerprint") != fingerprint:
            raise ValueError(f"checkpoint {path} belongs to a different problem (data, initial model, "
                             "alpha, loss, or dynamics and its SGD settings differ); delete it or give another path")
        del values["version"]
        model.load_state_dict(values.pop("model"))
        if values["generator"] is not None:
            values["generator"] = torch.Generator().set_state(values["generator"])
        if values["stop_reason"] not in FINAL_STOPS:
            values.update(stop_reason=None, message="")
        saved = values["schedule"]
        values["schedule"] = SnapshotSchedule(schedule.times, schedule.per_decade, saved.next, saved.first_time)
        return cls(**values)
