"""Run code in a fresh interpreter of the *installed* fastdyn, for tests and benchmarks that need a process of their
own (peak memory, the console script, import checks)."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import fastdyn
from fastdyn._src import backends

REPO = Path(__file__).resolve().parents[1]
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []  # no script or working directory on sys.path

# Prepended to every script: the installed package with its compiled extension, then tests/ and bench/ as plain
# module folders; report(**values) prints the values with where fastdyn came from;
# peak_growth_bytes(fn, *args, **kwargs) is the peak RSS during the call minus the RSS before it (VmHWM reset through /proc/self/clear_refs; getrusage's
# ru_maxrss would keep the peak of any thread that exited).
_PRELUDE = """
import json, sys
import fastdyn
from fastdyn._src.backends import module
sys.path[:0] = {paths!r}

def report(**values):
    imported = {{"fastdyn": fastdyn.__file__, "_core": module("cpu").__file__, "build": fastdyn.build_status()["_core"]}}
    print(json.dumps({{"imported": imported, **values}}))

def _kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

def peak_growth_bytes(fn, *args, **kwargs):
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _kib("VmRSS")
    fn(*args, **kwargs)
    return (_kib("VmHWM") - before) * 1024
"""


def start_installed(code: str, *args, cwd) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter as :func:`run_installed` does (in ``cwd``, outside the source tree),
    without waiting: the caller may kill it; stdout and stderr are pipes."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    prelude = _PRELUDE.format(paths=[str(REPO / "bench"), str(REPO / "tests")])
    cwd = Path(cwd).resolve()
    assert not cwd.is_relative_to(REPO), f"{cwd} is inside the source tree"
    return subprocess.Popen([sys.executable, *SAFE_PATH, "-c", prelude + code, *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_installed(code: str, *args, cwd=None, timeout: float = 600) -> dict:
    """Run ``code`` (ending with ``report(**values)``) in a fresh interpreter started in ``cwd`` (a temporary folder
    by default), outside the source tree and without PYTHONPATH; check that it imported this process's fastdyn and
    compiled ``_core``, and return the reported values."""
    with tempfile.TemporaryDirectory() as outside:
        process = start_installed(code, *args, cwd=cwd or outside)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, f"subprocess failed ({process.returncode}):\n{stderr[-4000:]}"
    values = json.loads(stdout.splitlines()[-1])
    here = {"fastdyn": fastdyn.__file__, "_core": backends.module("cpu").__file__, "build": "built"}
    assert values.pop("imported") == here, "the subprocess imported another fastdyn, or one without _core"
    return values
