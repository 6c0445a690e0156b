"""What every benchmark shares: its sizes (full or smoke) and the one timer of both sides of a comparison (fresh
interpreters of the installed package, for peak memory: tests/installed.py).

* ``FASTDYN_BENCH_SMOKE=1``: tiny sizes and one round without warm-up, so that ``tests/test_bench_smoke.py`` runs
  every benchmark's accuracy checks in seconds (its timings mean nothing).
* ``FASTDYN_BENCH_ROUNDS`` (default 3) and ``FASTDYN_BENCH_WARMUP`` (default 1): rounds and untimed warm-up calls of
  every side of every comparison; a ratio refuses timings taken with different rounds, warm-up, threads or sizes.
"""
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass

import pytest
import torch

SMOKE = os.environ.get("FASTDYN_BENCH_SMOKE", "0").strip() not in ("", "0")
ROUNDS = 1 if SMOKE else int(os.environ.get("FASTDYN_BENCH_ROUNDS", "3"))
WARMUP = 0 if SMOKE else int(os.environ.get("FASTDYN_BENCH_WARMUP", "1"))


def neural_tangents_python() -> str:
    """The python of the neural-tangents 0.6.5 venv named by FASTDYN_NT_PYTHON (bench/peers), else skip the test."""
    python = os.environ.get("FASTDYN_NT_PYTHON")
    if not python:
        pytest.skip("set FASTDYN_NT_PYTHON to the python of a venv with neural-tangents 0.6.5 (see bench/peers)")
    return python


def sized(full, smoke):
    """``full``, or ``smoke`` under FASTDYN_BENCH_SMOKE=1."""
    return smoke if SMOKE else full


@dataclass(frozen=True)
class Timing:
    """The best wall time and the best process CPU time (all threads) over the rounds of one side."""
    wall: float
    cpu: float
    size: str
    threads: int
    rounds: int
    warmup: int

    def __str__(self):
        return f"{self.wall:.3f} s wall ({self.cpu:.3f} s CPU)"


def _timed_rounds(fn, args, kwargs, walls, cpus):
    """fn wrapped so that each call appends its wall and CPU seconds."""
    def call():
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        return out
    return call


class Timer:
    """Times every side of a benchmark file's comparisons the same way: WARMUP untimed calls, then the best of
    ROUNDS calls, wall and CPU time, at torch's thread count. The first side timed in a test goes through
    ``benchmark.pedantic`` (pytest-benchmark's table and JSON), the others through the same loop here; either way
    the numbers kept are this module's own clock readings around each call."""

    def __init__(self):
        self.timings: dict[str, Timing] = {}
        self._benchmark = None

    def __call__(self, benchmark, key, fn, *args, size, **kwargs):
        """Time ``fn(*args, **kwargs)`` under ``key`` (``size`` names the problem, e.g. "N=2000"); its last result."""
        walls, cpus, threads = [], [], torch.get_num_threads()
        call = _timed_rounds(fn, args, kwargs, walls, cpus)
        rounds, warmup = (1, 0) if benchmark.disabled else (ROUNDS, WARMUP)
        if benchmark is not self._benchmark:  # the first side of this test
            self._benchmark = benchmark
            result = benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup, iterations=1)
        else:
            for _ in range(warmup + rounds):
                result = call()
        if torch.get_num_threads() != threads:
            raise AssertionError(f"{key!r} changed torch's thread count from {threads} to {torch.get_num_threads()}")
        walls, cpus = walls[-rounds:], cpus[-rounds:]
        self.timings[key] = Timing(min(walls), min(cpus), size, threads, rounds, warmup)
        benchmark.extra_info[key] = {"wall_s": min(walls), "cpu_s": min(cpus), "size": size, "threads": threads,
                                     "rounds": rounds, "warmup": warmup}
        return result

    def record(self, key, timing: Timing):
        """A timing measured elsewhere with the same settings (a peer's own process)."""
        self.timings[key] = timing

    def peer(self, benchmark, key, command: list[str], *, size: str) -> dict:
        """Run a peer script (``bench/peers``, its own venv; it times itself with ROUNDS and WARMUP and prints one
        JSON line with best_s, best_cpu_s and threads) once under pytest-benchmark; record its timing under ``key``
        and return the JSON."""
        def run():
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            return json.loads(done.stdout.strip().splitlines()[-1])

        result = benchmark.pedantic(run, rounds=1, warmup_rounds=0)
        benchmark.extra_info.update(result)
        self.record(key, Timing(result["best_s"], result["best_cpu_s"], size, result["threads"], ROUNDS, WARMUP))
        return result

    def __getitem__(self, key) -> Timing:
        return self.timings[key]

    def __contains__(self, key):
        return key in self.timings

    def ratio(self, slow, fast) -> str:
        """'Ax wall, Bx CPU time' of two sides timed alike (same size, threads, rounds and warm-up), measured."""
        a, b = self.timings[slow], self.timings[fast]
        same = ("size", "threads", "rounds", "warmup")
        differ = [f"{f} {getattr(a, f)} vs {getattr(b, f)}" for f in same if getattr(a, f) != getattr(b, f)]
        if differ:
            raise AssertionError(f"{slow!r} and {fast!r} were not timed alike: {', '.join(differ)}")
        cpu = f", {a.cpu / b.cpu:.1f}x CPU time" if math.isfinite(a.cpu) and b.cpu > 0 else ""
        return f"{a.wall / b.wall:.2f}x wall{cpu}"


def settled_neurons(x, omega, b):
    """(h,) mask of the neurons whose activations fp32 cannot flip: at every point |omega . x_i / sqrt(d) + b| (in
    fp64) exceeds (d + 4) eps32 (|omega| . |x_i| / sqrt(d) + |b|), a bound on the rounding error of that expression in
    fp32 in any summation order. There per-neuron fp32 results can be held to rtol."""
    x, omega, b = (t.detach().cpu().double() for t in (x, omega, b))
    scale = 1 / math.sqrt(x.shape[1])
    bound = (x.shape[1] + 4) * torch.finfo(torch.float32).eps * (x.abs() @ omega.abs().T * scale + b.abs())
    return ((x @ omega.T * scale + b).abs() > bound).all(0)


def best_of(fn, *args):
    """Best wall seconds of fn(*args) over ROUNDS calls after WARMUP: the loop of Timer, for yardsticks."""
    walls = []
    call = _timed_rounds(fn, args, {}, walls, [])
    for _ in range(WARMUP + ROUNDS):
        call()
    return min(walls[-ROUNDS:])
