"""Grids of experiment runs on dask.distributed, resumable point by point.

Each point (an experiment, ``quick``, and its full merged config) is stored under ``out/points/<hash>/`` where
the hash is of that config: a re-run finds finished points and skips them; a point that raises is reported
(``error.txt``) without losing the others. The finished points gather into one table ``out/results.csv`` (and
``results.parquet`` when pyarrow is installed) and a plot ``out/sweep.png``.

Crashes and concurrency. A point is done only when ``points/<hash>/results.json`` parses (run_experiment writes it
atomically, with the config and environment). Each attempt at a point runs into its own staging directory
``points/.<hash>.<host>.<pid>.<token>`` and is then renamed onto ``points/<hash>`` in one ``os.rename``: a worker
killed mid-point leaves only a staging directory (removed by the next sweep once its owner process is gone, or
when it is older than a day on another host) and the point is run again; two attempts at one point (two sweeps
into one directory, or dask re-running a task it thought lost) cannot mix their files: the first rename wins and
the later attempt, whose results are those of the same config, is discarded. ``out/log.jsonl`` is an append-only
record of every attempt's "start" and its "finish", "discard" (someone finished first) or "error".

Long points. Experiments that train through :func:`fastdyn.experiments.train_checkpoint` (lazy-vs-feature) keep
fastdyn.train checkpoints in ``out/checkpoints/<hash>/`` (every minute), outside the staging directories: the
attempt that re-runs a point after its worker died resumes from the last checkpoint instead of from the start.
They are kept when the point is done (removing them while another attempt at the same point, from a concurrent
sweep, still writes there would fail that attempt): delete ``out/checkpoints`` once no sweep runs into ``out``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import time
import traceback
import uuid
from pathlib import Path

from . import plotting
from ._src.optional import require
from ._src.threads import limit_threads
from .experiments import load, merge_config, parse_value, replace_atomic, run_experiment, write_json_atomic


def parse_grid(items: list[str], defaults: dict) -> dict[str, list]:
    """``["alpha=0.1,1,10", "h=100,1000"]`` -> ``{"alpha": [0.1, 1.0, 10.0], "h": [100, 1000]}`` (typed by defaults)."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid {item!r}: expected key=v1,v2,...")
        if key not in defaults:
            raise ValueError(f"--grid: unknown config key {key!r}; known keys: {sorted(defaults)}")
        if isinstance(defaults[key], (list, tuple)):
            raise ValueError(f"--grid: {key!r} is a list setting; sweep a scalar one")
        grid[key] = [parse_value(key, v, defaults[key]) for v in values.split(",") if v != ""]
    return grid


def point_hash(name: str, quick: bool, config: dict) -> str:
    """Stable 16-hex-digit hash of one point's experiment and full config."""
    text = json.dumps({"experiment": name, "quick": quick, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def points(name: str, grid: dict[str, list], *, seeds: int | None = None, quick: bool = False,
           overrides: dict | None = None) -> list[dict]:
    """Every grid point: ``{"hash", "values" (the swept keys), "overrides", "config"}``."""
    defaults = load(name).config(quick)
    grid = dict(grid)
    if seeds is not None:
        if "seed" not in defaults:
            raise ValueError(f"experiment {name!r} has no 'seed' setting; drop --seeds")
        if seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {seeds}")
        grid["seed"] = list(range(seeds))
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        point_overrides = dict(overrides or {}, **values)
        config = merge_config(defaults, point_overrides)
        out.append({"hash": point_hash(name, quick, config), "values": values, "overrides": point_overrides,
                    "config": config})
    return out


def run_point(name: str, directory: str, quick: bool, overrides: dict, threads: int | None = None) -> dict:
    """Run one point into ``directory`` (on a worker) with ``threads`` torch threads (None or 0: the worker's
    setting), through a staging directory renamed into place (see the module's docstring); returns its summary or
    raises."""
    directory = Path(directory)
    log = directory.parent.parent / "log.jsonl"
    staging = directory.parent / f".{directory.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    checkpoints = directory.parent.parent / "checkpoints" / directory.name
    _log(log, "start", directory.name)
    try:
        with limit_threads(threads or 0):
            summary = run_experiment(name, staging, quick=quick, overrides=overrides, progress=False,
                                     checkpoints=checkpoints)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        directory.mkdir(exist_ok=True)
        (directory / "error.txt").write_text(traceback.format_exc())
        _log(log, "error", directory.name)
        raise
    _log(log, _install(staging, directory), directory.name)
    return summary


def is_done(directory: str | Path) -> bool:
    """Whether the point at ``directory`` finished: its results.json exists and parses with a summary."""
    try:
        return "summary" in json.loads((Path(directory) / "results.json").read_text())
    except (OSError, ValueError):
        return False


def _install(staging: Path, directory: Path) -> str:
    """Rename ``staging`` onto ``directory`` unless another attempt finished it first; "finish" or "discard"."""
    while True:
        try:
            os.rename(staging, directory)  # atomic; fails when directory exists and is not empty
            return "finish"
        except OSError:
            if is_done(directory):
                shutil.rmtree(staging, ignore_errors=True)
                return "discard"
            trash = directory.parent / f".{directory.name}.trash.{uuid.uuid4().hex[:8]}"
            try:  # an unfinished directory (an earlier error.txt): set it aside, then try again
                os.rename(directory, trash)
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)


def _log(path: Path, event: str, point: str) -> None:
    """Append one line to the sweep's log (one O_APPEND write: lines of concurrent writers do not interleave)."""
    line = json.dumps({"event": event, "point": point, "host": socket.gethostname(), "pid": os.getpid(),
                       "time": round(time.time(), 3)}) + "\n"
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode())
    finally:
        os.close(handle)


def _clean_staging(points_dir: Path, max_age: float = 86400.0) -> None:
    """Remove staging directories of attempts that are over: their process on this host is gone, or (other hosts)
    they are older than ``max_age`` seconds; and set-aside trash."""
    host = socket.gethostname()
    for path in points_dir.glob(".*"):
        match = _STAGING.fullmatch(path.name)
        if path.name.split(".")[2:3] == ["trash"]:
            over = True
        elif match and match["host"] == host:
            over = not _alive(int(match["pid"]))
        else:
            over = time.time() - path.stat().st_mtime > max_age
        if over:
            shutil.rmtree(path, ignore_errors=True)


_STAGING = re.compile(r"\.(?P<point>[0-9a-f]{16})\.(?P<host>.+)\.(?P<pid>[0-9]+)\.(?P<token>[0-9a-f]{8})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep(name: str, grid: dict[str, list], out: str | Path, *, seeds: int | None = None, quick: bool = False,
          overrides: dict | None = None, scheduler: str | None = None, n_workers: int = 2,
          processes: bool = True, threads_per_worker: int = 1, retries: int = 2, progress: bool = True):
    """Run the grid on dask (a LocalCluster, or the cluster at ``scheduler``) and gather the table.

    A point whose config has ``device`` "cuda..." asks for the worker resource ``GPU=1`` (start GPU workers with
    ``--resources GPU=1``); ``retries`` is dask's number of re-runs of a point that raised or whose worker died.
    Returns ``(table, report)``: a pandas DataFrame with one row per point (swept values, status, flattened
    summary) and ``{"ran": [...], "skipped": [...], "failed": {hash: message}}``.
    """
    distributed = require("dask.distributed", "sweep", "fastdyn.sweep")
    Client, LocalCluster, as_completed = distributed.Client, distributed.LocalCluster, distributed.as_completed
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")

    out = Path(out)
    todo = points(name, grid, seeds=seeds, quick=quick, overrides=overrides)
    (out / "points").mkdir(parents=True, exist_ok=True)
    _clean_staging(out / "points")
    report: dict = {"ran": [], "skipped": [], "failed": {}}
    pending = []
    for point in todo:
        directory = out / "points" / point["hash"]
        if is_done(directory):
            report["skipped"].append(point["hash"])
        else:
            pending.append((point, directory))
    write_json_atomic(out / "sweep.json", {"experiment": name, "quick": quick, "grid": grid, "seeds": seeds,
                                           "overrides": overrides or {}})
    if pending:
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            futures = {client.submit(run_point, name, str(directory), quick, point["overrides"],
                                     threads_per_worker, pure=False, key=f"point-{point['hash']}", retries=retries,
                                     resources={"GPU": 1} if _wants_gpu(point["config"]) else None): point
                       for point, directory in pending}
            bar = None
            if progress:
                tqdm = require("tqdm.auto", "experiments", "fastdyn.sweep (progress bars)").tqdm
                bar = tqdm(total=len(futures), desc=f"sweep {name}", unit="point")
            for future in as_completed(futures):
                point = futures[future]
                if future.status == "error":
                    error = future.exception()
                    report["failed"][point["hash"]] = f"{type(error).__name__}: {error}"
                else:
                    report["ran"].append(point["hash"])
                if bar:
                    keys = {future.key for future in futures} - {f"point-{h}" for h in report["ran"]}
                    running = sum(len(keys & set(k)) for k in client.processing().values())
                    bar.set_postfix(running=running, failed=len(report["failed"]), refresh=False)
                    bar.update(1)
            if bar:
                bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    table = gather(out, todo, report)
    return table, report


def _wants_gpu(config: dict) -> bool:
    return str(config.get("device", "cpu")).startswith("cuda")


def gather(out: Path, todo: list[dict], report: dict):
    """Collect every point's results into ``results.csv`` (+ parquet) and ``sweep.png``."""
    pd = require("pandas", "experiments", "fastdyn.sweep")

    rows = []
    for point in todo:
        row = dict(point["values"], hash=point["hash"])
        directory = out / "points" / point["hash"]
        if is_done(directory):
            row["status"] = "done"
            row.update(_flatten(json.loads((directory / "results.json").read_text())["summary"]))
        else:
            row["status"] = "failed" if point["hash"] in report["failed"] else "missing"
            row["error"] = report["failed"].get(point["hash"], "")
        rows.append(row)
    table = pd.DataFrame(rows)
    with replace_atomic(out / "results.csv") as temporary:  # atomic: concurrent sweeps may gather at once
        table.to_csv(temporary, index=False)
    try:
        import pyarrow  # noqa: F401

        with replace_atomic(out / "results.parquet") as temporary:
            table.to_parquet(temporary, index=False)
    except ImportError:
        pass
    if todo:
        _plot(table, list(todo[0]["values"]), out)
    return table


def _flatten(summary: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plot(table, swept: list[str], out: Path) -> None:
    """``out/sweep.png``: each numeric result (up to 4) against the first swept key, one line per other combination
    (mean over seeds)."""
    from pandas.api.types import is_numeric_dtype

    done = table[table["status"] == "done"] if "status" in table else table
    x_key = next((k for k in swept if k != "seed"), swept[0] if swept else None)
    metrics = [c for c in done.columns if c not in swept and c not in ("hash", "status", "error")
               and is_numeric_dtype(done[c])][:4]
    fig, axes = plotting.new_figure(max(1, len(metrics)), layout=None)
    if x_key is None or done.empty or not metrics:
        axes[0][0].text(0.5, 0.5, "no finished numeric results", ha="center")
    else:
        others = [k for k in swept if k not in (x_key, "seed")]
        groups = done.groupby(others) if others else [((), done)]
        for ax, metric in zip(axes[0], metrics):
            for label, group in groups:
                series = group.groupby(x_key)[metric].mean()
                ax.plot(series.index, series.values, marker="o", label=str(label) if others else None)
            ax.set(xlabel=x_key, title=metric)
            if others:
                ax.legend(fontsize=7, title=",".join(others))
    plotting.save_figure(fig, out, "sweep.png", dpi=100, tight_layout=True)
