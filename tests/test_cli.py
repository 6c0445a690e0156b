"""The command line and fastdyn.sweep, end to end on tiny configurations."""
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import fastdyn
from fastdyn._src import registry
from fastdyn._src.backends import cpu_isa, module
from fastdyn.cli import main
from fastdyn.experiments import REGISTRY, run_experiment
from fastdyn.sweep import parse_grid, points, sweep

from conftest import expected_backends

TINY = ["p=40", "p_test=100", "h=24", "max_steps=60", "grid=11"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _set(items):
    return [arg for item in items for arg in ("--set", item)]


def _installed_command():
    """The ``fastdyn`` console script installed beside this interpreter."""
    script = shutil.which("fastdyn", path=str(Path(sys.executable).parent))
    assert script, f"no fastdyn console script next to {sys.executable}"
    return [script]


@pytest.mark.parametrize("command", [_installed_command, lambda: [sys.executable, "-m", "fastdyn"]],
                         ids=["console-script", "python-m"])
def test_info_of_the_installed_package(tmp_path, command):
    """`fastdyn info` run from outside the tree prints a working install: _core built, every expected backend
    available, how _core was built and which instruction-set path it takes, and what runs where."""
    printed = subprocess.run([*command(), "info"], cwd=tmp_path, capture_output=True, text=True, check=True,
                             timeout=120).stdout
    lines = {line.split(":")[0]: line for line in printed.splitlines()}
    available = ast.literal_eval(lines["backends"].partition(": ")[2])
    assert available == fastdyn.available_backends()
    assert set(expected_backends()) <= set(available)
    for name in available:
        assert re.search(rf"^{name} +available$", printed, re.M), name
    assert ast.literal_eval(lines["build"].partition(": ")[2])["_core"] == "built"
    core = module("cpu")
    info = core.build_info()
    if info["openmp"]:
        assert lines["openmp"].startswith(f"openmp: on (version {info['openmp']}, ")
    else:
        assert lines["openmp"].startswith("openmp: off")
    assert lines["native"].startswith(f"native: {'on' if info['native'] else 'off'} (")
    assert f"blas: {info['blas']}" in lines["compiler"] and "OpenBLAS" in info["blas"]
    assert lines["cpu isa"].startswith(f"cpu isa: {core.cpu_isa()} (") and ", ".join(core.cpu_isas()) in printed
    for operation in registry.OPERATIONS:
        row = re.search(rf"^  {re.escape(operation)} +(.*)$", printed, re.M)
        assert row, operation
        runs_here = {name for name in row.group(1).split() if not name.startswith("[")}
        assert runs_here == set(registry.supported(operation)) & set(available), operation


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out
    assert "stripe" in out


def test_run_writes_the_promised_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "lazy-vs-feature", "--quick", "--out", str(out), "--no-progress", *_set(TINY)]) == 0
    printed = capsys.readouterr().out
    assert "alpha=0.01" in printed and "test_err" in printed
    for name in ("config.json", "results.json", "arrays.npz", "function.png", "kinks.png", "dynamics.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["p"] == 40 and results["quick"] is True
    assert results["cpu_isa"] == cpu_isa()  # the CPU kernels' instruction-set path, None without _core
    summary = results["summary"]
    assert set(summary) == {"alpha=0.01", "alpha=100"}
    assert all(0 <= s["test_err"] <= 1 and s["steps"] <= 60 for s in summary.values())
    # the lazy run barely moves its weights, the feature run moves them a lot
    assert summary["alpha=100"]["relative_weight_change"] < 0.1 < summary["alpha=0.01"]["relative_weight_change"]


def test_summary_printout(capsys):
    """Scalars and lists one per line, groups as one table: a summary of many keys stays readable."""
    from fastdyn.cli import _print_summary

    _print_summary({"beta": 0.123456, "slopes": [0.25, 1.0], "figures": ["a.png"],
                    "h50": {"alpha_star": 15.9, "err": 0.2}, "h100": {"alpha_star": 9.4, "err": 0.1}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["beta     0.1235", "slopes   [0.25, 1]", "figures  [a.png]"]
    assert lines[4].split() == ["alpha_star", "err"] and lines[6].split() == ["h50", "15.9", "0.2"]
    assert lines[7].split() == ["h100", "9.4", "0.1"]


@pytest.mark.parametrize("args, message", [
    (["--set", "bogus=1"], "unknown config key 'bogus'"),
    (["--set", "p=many"], "expected int"),
    (["--set", "p=0"], "'p' must be >= 1"),
    (["--set", "alphas=0,1"], "'alphas' must be positive"),
    (["--set", "nokey"], "expected key=value"),
    *([(["--device", "cuda"], "no CUDA GPU")] if not torch.cuda.is_available() else []),
])
def test_bad_configs_are_clear_errors(tmp_path, capsys, args, message):
    assert main(["run", "lazy-vs-feature", "--quick", "--out", str(tmp_path), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_experiment_and_device(tmp_path, capsys):
    assert main(["run", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    with pytest.raises(TypeError, match="must be int"):
        run_experiment("lazy-vs-feature", tmp_path, quick=True, overrides={"p": 1.5})


def test_grid_parsing():
    from fastdyn.experiments import load

    defaults = load("lazy-vs-feature").config(True)
    assert parse_grid(["h=16,32", "max_dgrad=0.1,1"], defaults) == {"h": [16, 32], "max_dgrad": [0.1, 1.0]}
    with pytest.raises(ValueError, match="unknown config key"):
        parse_grid(["width=1,2"], defaults)
    with pytest.raises(ValueError, match="key=v1"):
        parse_grid(["h"], defaults)
    two = points("lazy-vs-feature", {"h": [16, 32]}, seeds=2, quick=True)
    assert len(two) == 4 and len({p["hash"] for p in two}) == 4
    assert points("lazy-vs-feature", {"h": [16]}, quick=True)[0]["hash"] == \
        points("lazy-vs-feature", {"h": [16]}, quick=True)[0]["hash"]


def test_sweep_skips_finished_points_and_isolates_failures(tmp_path):
    overrides = {k: v for k, v in (item.split("=") for item in TINY) if k != "p"}
    grid = {"p": [0, 30, 40]}  # p = 0 fails in the experiment's validation
    table, report = sweep("lazy-vs-feature", grid, tmp_path, quick=True, overrides=overrides, n_workers=2,
                          processes=False, progress=False)
    assert len(report["ran"]) == 2 and len(report["failed"]) == 1 and not report["skipped"]
    failed = next(iter(report["failed"]))
    assert "'p' must be >= 1" in report["failed"][failed]
    assert (tmp_path / "points" / failed / "error.txt").exists()
    assert list(table["status"]) == ["failed", "done", "done"]
    assert "alpha=0.01/test_err" in table.columns
    assert (tmp_path / "sweep.png").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "results.csv")
    assert len(csv) == 3

    finished = {h: (tmp_path / "points" / h / "results.json").stat().st_mtime_ns for h in report["ran"]}
    table, again = sweep("lazy-vs-feature", {"p": [30, 40, 50]}, tmp_path, quick=True, overrides=overrides,
                         n_workers=2, processes=False, progress=False)
    assert sorted(again["skipped"]) == sorted(finished) and len(again["ran"]) == 1
    for h, mtime in finished.items():  # finished points were not run again
        assert (tmp_path / "points" / h / "results.json").stat().st_mtime_ns == mtime
    assert list(table["status"]) == ["done"] * 3


def test_sweep_command_line(tmp_path, capsys):
    code = main(["sweep", "lazy-vs-feature", "--quick", "--grid", "h=16,24", "--seeds", "1", "--in-process",
                 "--out", str(tmp_path), "--no-progress", *_set([i for i in TINY if not i.startswith("h=")])])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 ran, 0 skipped" in printed
    assert (tmp_path / "results.csv").exists() and (tmp_path / "sweep.png").exists()
