"""fastdyn sweep against a real multi-process dask cluster on loopback (``dask scheduler`` / ``dask worker``
started as separate processes): a worker SIGKILLed mid-point, a client killed mid-sweep, two sweeps into one
directory. Each checks every point finished exactly once (the sweep's log.jsonl) with the results of a serial run."""
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastdyn.experiments import run_experiment
from fastdyn.sweep import is_done, points

pytest.importorskip("dask.distributed")
DASK = Path(sys.executable).with_name("dask")
pytestmark = [pytest.mark.skipif(not DASK.exists(), reason="dask's command line (dask scheduler/worker) missing"),
              pytest.mark.usefixtures("one_thread")]

NAME = "lazy-vs-feature"
TINY = {"p": 40, "p_test": 100, "h": 24, "max_steps": 120, "grid": 11}  # about 0.5 s a point on one core
SEEDS = 20
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
TIMEOUT = 120


def _sweep_command(out, *extra):
    command = [sys.executable, "-m", "fastdyn", "sweep", NAME, "--quick", "--seeds", str(SEEDS), "--grid", "h=24",
               "--out", str(out), "--retries", "3"]
    for key, value in TINY.items():
        command += ["--set", f"{key}={value}"]
    return command + list(extra)


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes (one thread each, no nanny, random ports)."""

    def __init__(self, directory: Path):
        self.directory, self.file = directory, directory / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.scheduler = self._start("scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.file))
        deadline = time.monotonic() + 60
        while not self.file.exists() or not self.file.read_text().strip():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, "dask scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]

    def _start(self, *arguments) -> subprocess.Popen:
        log = open(self.directory / f"dask-{len(self.processes)}.log", "w")
        process = subprocess.Popen([str(DASK), *arguments], stdout=log, stderr=subprocess.STDOUT, env=ENV,
                                   cwd=self.directory)
        log.close()
        self.processes.append(process)
        return process

    def worker(self) -> subprocess.Popen:
        return self._start("worker", "--scheduler-file", str(self.file), "--nthreads", "1", "--no-nanny",
                           "--no-dashboard", "--name", f"w{len(self.processes)}")

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """Each point's summary from run_experiment in this process, one after another."""
    root = tmp_path_factory.mktemp("serial")
    todo = points(NAME, {"h": [24]}, seeds=SEEDS, quick=True, overrides=TINY)
    return {point["hash"]: json.loads(json.dumps(run_experiment(NAME, root / point["hash"], quick=True,
                                                                overrides=point["overrides"], progress=False),
                                                 default=float))
            for point in todo}


def _events(out: Path) -> list[dict]:
    path = out / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(predicate, what, process=None):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert process is None or process.poll() is None, f"sweep exited before {what}"
        time.sleep(0.02)


def _running(out: Path, pid: int) -> bool:
    """Whether the worker ``pid`` has started a point it has not finished."""
    counts = collections.Counter((e["pid"], e["point"]) for e in _events(out) if e["event"] in ("start", "finish"))
    return any(count % 2 for (owner, _), count in counts.items() if owner == pid)


def _check(out: Path, serial: dict):
    """Every point done once (one "finish" each), with the serial run's summary; the gathered table complete."""
    finishes = collections.Counter(e["point"] for e in _events(out) if e["event"] == "finish")
    assert finishes == dict.fromkeys(serial, 1), finishes
    for key, summary in serial.items():
        assert is_done(out / "points" / key)
        assert _timeless(json.loads((out / "points" / key / "results.json").read_text())["summary"]) == \
            _timeless(summary)
    assert sorted(p.name for p in (out / "points").iterdir() if not p.name.startswith(".")) == sorted(serial)
    assert (out / "results.csv").read_text().count(",done,") == SEEDS


def _timeless(summary: dict) -> dict:
    """A summary without its wall-clock "seconds" entries (all else is bitwise the same from run to run)."""
    return {key: _timeless(value) if isinstance(value, dict) else value for key, value in summary.items()
            if key != "seconds"}


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    return output


def test_a_worker_killed_mid_point_loses_and_duplicates_nothing(cluster, serial, tmp_path):
    out = tmp_path / "sweep"
    victim = cluster.worker()
    cluster.worker()
    client = subprocess.Popen(_sweep_command(out, "--scheduler", cluster.address), env=ENV, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: _running(out, victim.pid) and len(_events(out)) >= 6, "a point running on the victim",
              client)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        cluster.worker()
        output = _finish(client)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert f"{SEEDS} ran, 0 skipped" in output
    lost = [e["point"] for e in _events(out) if e["pid"] == victim.pid and e["event"] == "start"
            and not any(f["pid"] == victim.pid and f["point"] == e["point"] and f["event"] == "finish"
                        for f in _events(out))]
    assert len(lost) == 1  # the point killed mid-run: started again elsewhere, finished once
    _check(out, serial)
    rerun = subprocess.run(_sweep_command(out, "--scheduler", cluster.address, "--no-progress"), env=ENV,
                           cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0 and f"0 ran, {SEEDS} skipped" in rerun.stdout, rerun.stdout + rerun.stderr
    assert not list((out / "points").glob(".*"))  # the killed attempt's staging directory is cleaned up


def test_a_client_killed_mid_sweep_then_rerun_finishes_only_the_rest(cluster, serial, tmp_path):
    out = tmp_path / "sweep"
    cluster.worker()
    cluster.worker()
    command = _sweep_command(out, "--scheduler", cluster.address, "--no-progress")
    client = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: sum(e["event"] == "finish" for e in _events(out)) >= 4, "four finished points", client)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    # the workers finish what they were running when the client went: wait until no point is in flight
    # (and a quiet second: a point handed to a worker just before the client died may start late)
    settled = lambda: all(not _running(out, e["pid"]) for e in _events(out))  # noqa: E731
    for _ in range(2):
        _wait(settled, "the workers' running points")
        time.sleep(1.5)
    assert settled()
    done_before = sum(is_done(out / "points" / key) for key in serial)
    assert 4 <= done_before < SEEDS
    output = _finish(subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    assert f"{SEEDS - done_before} ran, {done_before} skipped" in output
    _check(out, serial)


def test_two_concurrent_sweeps_into_one_directory(serial, tmp_path):
    """Two clients, each with its own in-process workers, on the same grid: every point is attempted by one or
    both, installed once (the other attempt is discarded) and not corrupted."""
    out = tmp_path / "sweep"
    command = _sweep_command(out, "--in-process", "--workers", "1", "--no-progress")
    clients = [subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]
    try:
        for client in clients:
            _finish(client)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    events = _events(out)
    starts = collections.Counter(e["point"] for e in events if e["event"] == "start")
    ends = collections.Counter(e["point"] for e in events if e["event"] in ("finish", "discard"))
    assert starts == ends and sum(starts.values()) >= SEEDS
    _check(out, serial)
    assert not list((out / "points").glob(".*"))
