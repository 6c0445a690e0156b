"""When to take snapshots."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SnapshotSchedule:
    """Snapshot times: the increasing ``times`` given, or ``per_decade`` log-spaced ones per decade from the first
    step's time t_1 on, t_k = t_1 10^(k / per_decade). ``next`` (index into ``times``, or the exponent k) and
    ``first_time`` (t_1) are the position, saved with the run."""

    times: list[float] | None = None
    per_decade: int = 5
    next: int = 0
    first_time: float | None = None

    def __post_init__(self):
        if self.times is not None:
            self.times = [float(t) for t in self.times]
            if any(b <= a for a, b in zip(self.times, self.times[1:])) or not all(t > 0 for t in self.times):  # NaN too
                raise ValueError("snapshot_times must be positive and increasing")
        if int(self.per_decade) < 1:
            raise ValueError(f"snapshots_per_decade must be >= 1, got {self.per_decade}")
        self.per_decade = int(self.per_decade)

    def peek(self, t: float) -> bool:
        """Whether t has reached the next snapshot time (true before the log grid has started); no advance."""
        if self.times is not None:
            return self.next < len(self.times) and t >= self.times[self.next]
        return self.first_time is None or t >= self.first_time * 10 ** (self.next / self.per_decade)

    def next_time(self) -> float:
        """The time of the next snapshot: 0 before the log grid has started (the first step's time starts it),
        inf after the last of ``times``."""
        if self.times is not None:
            return self.times[self.next] if self.next < len(self.times) else float("inf")
        return 0.0 if self.first_time is None else self.first_time * 10 ** (self.next / self.per_decade)

    def due(self, t: float) -> bool:
        """Whether t has reached the next snapshot time, advancing the schedule past t (the log grid starts at
        the first t > 0 seen)."""
        if self.times is None and self.first_time is None:
            self.first_time, self.next = (t if t > 0 else None), 1
            return self.first_time is not None
        due = False
        while self.peek(t):
            self.next, due = self.next + 1, True
        return due
