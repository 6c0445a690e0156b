"""fastdyn.sweep's resumability: a point's hash and directory (run_point), and the skip of finished points."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import fastdyn
from fastdyn.sweep import is_done, point_hash, points, run_point, sweep

NAME = "lazy-vs-feature"
TINY = {"p": 40, "p_test": 100, "h": 24, "max_steps": 60, "grid": 11}
CONFIG = {"alpha": 0.1, "h": 16, "dtype": "float64", "alphas": [0.01, 100.0], "seed": 0}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_point_hash_is_stable_across_processes_and_key_order(tmp_path):
    reordered = dict(reversed(list(CONFIG.items())))
    code = f"from fastdyn.sweep import point_hash; print(point_hash({NAME!r}, True, {reordered!r}))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout.strip()
    value = point_hash(NAME, True, CONFIG)
    assert other == value and len(value) == 16 and int(value, 16) >= 0


@pytest.mark.parametrize("change", [
    dict(config=dict(CONFIG, alpha=0.2)),
    dict(config=dict(CONFIG, alphas=[0.01, 10.0])),
    dict(config=dict(CONFIG, extra=None)),
    dict(quick=False),
    dict(name="deep-linear"),
], ids=["value", "list-value", "new-key", "quick", "experiment"])
def test_point_hash_changes_with_the_point(change):
    arguments = dict(name=NAME, quick=True, config=CONFIG)
    assert point_hash(**dict(arguments, **change)) != point_hash(**arguments)


def test_run_point_writes_the_run_and_clears_an_earlier_failure(tmp_path):
    directory = tmp_path / "point"
    directory.mkdir()
    with pytest.raises(ValueError, match="'p' must be >= 1"):
        run_point(NAME, str(directory), True, dict(TINY, p=0))
    assert "ValueError: " in (directory / "error.txt").read_text()
    assert not (directory / "results.json").exists()

    threads = torch.get_num_threads()
    summary = run_point(NAME, str(directory), True, TINY, threads=2)
    assert torch.get_num_threads() == threads
    assert not (directory / "error.txt").exists()
    results = json.loads((directory / "results.json").read_text())
    assert results["experiment"] == NAME and results["quick"] is True
    assert {key: results["config"][key] for key in TINY} == TINY
    assert results["summary"] == json.loads(json.dumps(summary, default=float))
    assert set(summary) == {"alpha=0.01", "alpha=100"}


def test_sweep_skips_points_whose_results_exist(tmp_path):
    """Every point has its results.json (as run_point leaves it): sweep runs nothing and gathers those results."""
    grid = {"h": [16, 24]}
    todo = points(NAME, grid, quick=True, overrides=TINY)
    assert [point["config"]["h"] for point in todo] == [16, 24]
    stamps = {}
    for error, point in zip((0.25, 0.5), todo):
        path = tmp_path / "points" / point["hash"] / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"summary": {"alpha=0.01": {"test_err": error}}}))
        stamps[point["hash"]] = path.stat().st_mtime_ns
    table, report = sweep(NAME, grid, tmp_path, quick=True, overrides=TINY, processes=False, progress=False)
    assert report == {"ran": [], "skipped": [point["hash"] for point in todo], "failed": {}}
    for point in todo:
        assert (tmp_path / "points" / point["hash"] / "results.json").stat().st_mtime_ns == stamps[point["hash"]]
    assert list(table["hash"]) == [point["hash"] for point in todo]
    assert list(table["status"]) == ["done", "done"] and list(table["h"]) == [16, 24]
    assert list(table["alpha=0.01/test_err"]) == [0.25, 0.5]


def test_a_truncated_results_file_is_not_done_and_its_point_is_run_again(tmp_path):
    """A results.json cut short (a writer killed mid-write, before writes were atomic) does not count as done."""
    grid = {"h": [16]}
    (point,) = points(NAME, grid, quick=True, overrides=TINY)
    directory = tmp_path / "points" / point["hash"]
    directory.mkdir(parents=True)
    (directory / "results.json").write_text('{"summary": {"alpha=0.01": {"test_err": 0.')
    assert not is_done(directory)
    table, report = sweep(NAME, grid, tmp_path, quick=True, overrides=TINY, processes=False, n_workers=1,
                          progress=False)
    assert report["ran"] == [point["hash"]] and is_done(directory) and list(table["status"]) == ["done"]
    results = json.loads((directory / "results.json").read_text())
    assert results["environment"]["fastdyn"] == fastdyn.__version__ and results["environment"]["device"] == "cpu"
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    events = [json.loads(line)["event"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "finish"]


def test_a_second_attempt_at_a_finished_point_is_discarded(tmp_path):
    directory = tmp_path / "points" / "0123456789abcdef"
    run_point(NAME, str(directory), True, TINY)
    first = (directory / "results.json").read_text()
    time.sleep(0.01)
    run_point(NAME, str(directory), True, TINY)  # a duplicate attempt (as dask may make) comes second
    assert (directory / "results.json").read_text() == first   # not replaced (its "seconds" and times differ)
    events = [json.loads(line)["event"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert events == ["start", "finish", "start", "discard"]
    assert not list((tmp_path / "points").glob(".*"))


def test_sweep_refuses_bad_retries(tmp_path):
    with pytest.raises(ValueError, match="retries"):
        sweep(NAME, {"h": [16]}, tmp_path, quick=True, overrides=TINY, retries=-1, progress=False)


def test_a_point_resumes_from_its_training_checkpoints(tmp_path, monkeypatch):
    """A run stopped part-way (here by a lower step cap, as a killed worker leaves its last checkpoint) continues
    from its checkpoints when run again with the same directory, and ends where an uninterrupted run ends."""
    from fastdyn.experiments import lazy_vs_feature, run_experiment

    steps = []

    def counting_train(*args, **kwargs):
        kwargs["callback"] = lambda state: steps.append(state["step"])
        return fastdyn.train(*args, **kwargs)

    monkeypatch.setattr(lazy_vs_feature, "train", counting_train)
    config = dict(TINY, max_steps=60)
    whole = run_experiment(NAME, tmp_path / "whole", quick=True, overrides=config, progress=False)
    run_experiment(NAME, tmp_path / "part", quick=True, overrides=dict(config, max_steps=30), progress=False,
                   checkpoints=tmp_path / "checkpoints")
    alphas = lazy_vs_feature.config(True)["alphas"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(f"alpha={a:g}.pt" for a in alphas)
    steps.clear()
    resumed = run_experiment(NAME, tmp_path / "part", quick=True, overrides=config, progress=False,
                             checkpoints=tmp_path / "checkpoints")
    assert steps and min(steps) > 30 and len(steps) <= len(alphas) * 30  # only the steps after the checkpoints

    def without_seconds(summary):
        return {tag: {k: v for k, v in values.items() if k != "seconds"} for tag, values in summary.items()}

    assert without_seconds(resumed) == without_seconds(whole)
