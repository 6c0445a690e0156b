"""Experiments: one module each, registered in ``REGISTRY`` for the command line.

An experiment module defines

* ``DESCRIPTION``: one line for ``fastdyn list``;
* ``config(quick: bool) -> dict``: its default configuration (JSON scalars and lists); ``quick`` is the
  minutes-on-a-laptop version the tests run. Quick configurations stop by step counts only (their ``max_wall*``
  keys are None, see :func:`wall_limit`), so their results do not depend on the machine's load; full ones may keep
  a wall-clock cap as a safety net, and report the runs it stopped as unconverged;
* ``run(config: dict, out: pathlib.Path, *, progress: bool = True) -> dict``: does the work, writes NPZ arrays and
  PNG figures into ``out`` and returns the summary (JSON-able scalars, flat or nested one level).

Every ``run`` has the same shape: check the config, do the work, save arrays, then draw with
:mod:`fastdyn.plotting` and write each figure with :func:`fastdyn.plotting.save_figure` (which holds the drawing
lock, so experiments never take it themselves).

:func:`run_experiment` merges overrides into the defaults (unknown keys and wrong types are errors), runs the
experiment with ``config["threads"]`` torch threads where the config has that key
(:func:`fastdyn._src.threads.limit_threads`), writes ``config.json`` and ``results.json`` beside the
experiment's own files, and returns the summary.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .._src.backends import cpu_isa
from .._src.threads import limit_threads

REGISTRY: dict[str, str] = {
    "lazy-vs-feature": "fastdyn.experiments.lazy_vs_feature",
    "deep-linear": "fastdyn.experiments.deep_linear",
    "deep-narrow": "fastdyn.experiments.deep_narrow",
    "deep-linear-init": "fastdyn.experiments.deep_linear_init",
    "deep-linear-generalise": "fastdyn.experiments.deep_linear_generalise",
    "deep-linear-depth3": "fastdyn.experiments.deep_linear_depth3",
    "deep-linear-rotation": "fastdyn.experiments.deep_linear_rotation",
    "learning-curves": "fastdyn.experiments.learning_curves",
    "compression": "fastdyn.experiments.compression",
    "ntk-pca": "fastdyn.experiments.ntk_pca",
    "intrinsic-dimension": "fastdyn.experiments.intrinsic_dimension",
    "kinks": "fastdyn.experiments.kinks",
    "alpha-sweep": "fastdyn.experiments.alpha_sweep",
    "flow-convergence": "fastdyn.experiments.flow_convergence",
    "min-norm": "fastdyn.experiments.min_norm",
    "marchenko-pastur": "fastdyn.experiments.marchenko_pastur",
    "double-descent": "fastdyn.experiments.double_descent",
    "deep-linear-lowrank": "fastdyn.experiments.deep_linear_lowrank",
    "parity-elimination": "fastdyn.experiments.parity_elimination",
    "parity-construction": "fastdyn.experiments.parity_construction",
    "parity-sgd": "fastdyn.experiments.parity_sgd",
    "parity-gradient": "fastdyn.experiments.parity_gradient",
    "layer-convergence": "fastdyn.experiments.layer_convergence",
    "specialisation": "fastdyn.experiments.specialisation",
    "lazy-is-kernel": "fastdyn.experiments.lazy_is_kernel",
    "ntk-convergence": "fastdyn.experiments.ntk_convergence",
    "mean-field-vs-ntk": "fastdyn.experiments.mean_field_vs_ntk",
    "mode-connectivity": "fastdyn.experiments.mode_connectivity",
    "simplicity-bias": "fastdyn.experiments.simplicity_bias",
    "simple-shortcut": "fastdyn.experiments.simple_shortcut",
    "hessian-spectrum": "fastdyn.experiments.hessian_spectrum",
    "weight-spectra": "fastdyn.experiments.weight_spectra",
    "loss-landscape": "fastdyn.experiments.loss_landscape",
    "random-labels": "fastdyn.experiments.random_labels",
    "adversarial": "fastdyn.experiments.adversarial",
    "remedies": "fastdyn.experiments.remedies",
    "double-descent-width": "fastdyn.experiments.double_descent_width",
    "first-layer-filters": "fastdyn.experiments.first_layer_filters",
    "transfer": "fastdyn.experiments.transfer",
}


def wall_limit(seconds: float | None) -> float:
    """``max_wall`` for :func:`fastdyn.train` from a config's wall-clock cap: None (the quick configurations, which
    stop by steps only so that their results do not depend on the machine's load) means no cap."""
    return math.inf if seconds is None else float(seconds)


def mean_std(values) -> tuple[float, float]:
    """(mean, standard deviation) of ``values`` (population s.d., 0 for one value): the spread over seeds that the
    experiments' summaries report."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std())


def load(name: str) -> ModuleType:
    """The module of experiment ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name])


def parse_value(key: str, text: str, default: Any) -> Any:
    """Convert ``text`` from the command line to the type of ``default``."""
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(float(text)) if float(text).is_integer() else int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (list, tuple)):
            item = default[0] if default else text
            return [parse_value(key, part, item) for part in text.split(",") if part != ""]
        if default is None:
            return json.loads(text) if text[:1] in "[{0123456789-" else text
        return type(default)(text)
    except ValueError:
        raise ValueError(f"--set {key}={text}: expected {type(default).__name__} like {default!r}") from None


def merge_config(defaults: dict, overrides: dict | None) -> dict:
    """Defaults updated by overrides; string values are parsed to the default's type."""
    config = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ValueError(f"unknown config key {key!r}; known keys: {sorted(defaults)}")
        default = defaults[key]
        if isinstance(value, str) and not isinstance(default, str):
            value = parse_value(key, value, default)
        elif default is not None and not isinstance(value, type(default)) and not (
            isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
        ):
            raise TypeError(f"config {key!r} must be {type(default).__name__}, got {value!r}")
        config[key] = value
    return config


def run_experiment(name: str, out: str | Path, *, quick: bool = False, overrides: dict | None = None,
                   progress: bool = True, device: str | None = None, checkpoints: str | Path | None = None) -> dict:
    """Run experiment ``name`` into directory ``out``; returns its summary (also in ``out/results.json``).

    ``device`` ("cpu", "cuda", "cuda:1") sets the config key "device" of experiments that have one.
    ``checkpoints``: a directory where experiments that train (through :func:`train_checkpoint`) keep
    fastdyn.train checkpoints and resume from them, so a run killed and started again with the same config and
    directory continues where its last checkpoint was; None: no checkpoints.
    """
    experiment = load(name)
    defaults = experiment.config(quick)
    overrides = dict(overrides or {})
    if device is not None:
        if "device" not in defaults:
            raise ValueError(f"experiment {name!r} has no 'device' setting; it runs where it runs")
        overrides["device"] = device
    config = merge_config(defaults, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"experiment": name, "quick": quick, "config": config, "environment": environment(config)}
    write_json_atomic(out / "config.json", meta)
    start = time.perf_counter()
    token = _CHECKPOINTS.set(None if checkpoints is None else Path(checkpoints))
    try:
        with limit_threads(int(config.get("threads", 0))):
            summary = experiment.run(config, out, progress=progress)
    finally:
        _CHECKPOINTS.reset(token)
    # the CPU kernels' instruction-set path: results of different paths agree to rounding, not bitwise
    meta.update(summary=summary, seconds=round(time.perf_counter() - start, 2), cpu_isa=meta["environment"]["cpu_isa"])
    write_json_atomic(out / "results.json", meta)
    return summary


_CHECKPOINTS: contextvars.ContextVar[Path | None] = contextvars.ContextVar("fastdyn_checkpoints", default=None)


def train_checkpoint(tag: str, seconds: float = 60.0) -> dict:
    """Keyword arguments for fastdyn.train that checkpoint one training run of the current experiment, ``tag``
    naming it among the experiment's runs, every ``seconds`` and resume it: ``{"checkpoint": DIR/<tag>.pt,
    "resume": True, ...}`` inside :func:`run_experiment` with ``checkpoints=DIR``, else ``{}``. train's fingerprint of
    the problem refuses a checkpoint of another problem, so a changed config never resumes a stale run."""
    directory = _CHECKPOINTS.get()
    if directory is None:
        return {}
    safe = "".join(c if c.isalnum() or c in "=-_.," else "_" for c in tag)
    return {"checkpoint": directory / f"{safe}.pt", "resume": True, "checkpoint_seconds": seconds}


def environment(config: dict) -> dict:
    """Where a run ran: fastdyn's version, the config's backend and device, the CPU kernels' ISA and, on CUDA, the
    GPU's name."""
    import torch

    from .. import __version__

    device = str(config.get("device", "cpu"))
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") and torch.cuda.is_available() \
        else None
    return {"fastdyn": __version__, "backend": config.get("backend"), "device": device, "cpu_isa": cpu_isa(),
            "gpu": gpu}


def write_json_atomic(path: str | Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`replace_atomic`)."""
    with replace_atomic(path) as temporary:
        temporary.write_text(json.dumps(obj, indent=2, default=float))


@contextlib.contextmanager
def replace_atomic(path: str | Path):
    """Yield a temporary path in ``path``'s directory to write; on success it is flushed to disk and
    moved onto ``path`` by ``os.replace``, so readers see the old file or the whole new one, never a truncated one."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
