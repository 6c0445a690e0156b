"""Per-run records of an experiment, so that an interrupted experiment loses only the run it was in.

Each finished unit of work (one training run, one kernel fit) is a JSON file under ``out/runs/``, written to a
temporary file and renamed (a kill mid-write leaves no truncated record). Rerunning the same command into the same
``out`` skips every unit that has a record. The configuration keys that change a run's result (everything but the
keys that only choose *which* runs happen, e.g. the list of p, or how they are analysed) are kept in
``out/runs/settings.json``; a rerun whose settings differ refuses to mix its records with the old ones.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable


class RunStore:
    """Records of finished runs under ``out / "runs"``.

    Args:
        out: the experiment's output directory.
        config: the experiment's configuration.
        free_keys: config keys that change no run's result: which runs happen (lists of p, seeds, alphas, ...) and
            how they are analysed (fit ranges, bootstrap sizes); ``threads`` is always free. Every other key must
            match the records already there.
    """

    def __init__(self, out: Path, config: dict, free_keys: tuple[str, ...]):
        self.folder = Path(out) / "runs"
        self.folder.mkdir(parents=True, exist_ok=True)
        free = set(free_keys) | {"threads"}
        settings = {key: value for key, value in config.items() if key not in free}
        path = self.folder / "settings.json"
        if path.exists():
            previous = json.loads(path.read_text())
            changed = sorted(key for key in (set(previous) - free) | set(settings)
                             if previous.get(key) != settings.get(key))
            if changed:
                raise ValueError(f"{self.folder} holds runs made with other settings ({', '.join(changed)}); "
                                 "use a fresh --out directory or delete that folder")
        else:
            _write_json(path, settings)
        self.reused = 0

    def path(self, key: dict) -> Path:
        """The record file of the run named by ``key`` (a flat dict of scalars)."""
        name = "_".join(f"{field}={value}" for field, value in key.items())
        return self.folder / (re.sub(r"[^A-Za-z0-9=._-]", "-", name) + ".json")

    def get(self, key: dict, run: Callable[[], dict]) -> dict:
        """The record of run ``key``: read back if it exists, else ``run()`` (a JSON-able dict), saved first."""
        path = self.path(key)
        if path.exists():
            self.reused += 1
            return json.loads(path.read_text())["record"]
        record = run()
        _write_json(path, {"key": key, "record": record})
        return record


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, default=float))
    os.replace(tmp, path)  # atomic
