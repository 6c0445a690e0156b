"""Every benchmark at tiny sizes (FASTDYN_BENCH_SMOKE=1, timing disabled), so that their accuracy checks run in CI."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The only reasons a benchmark may skip here: hardware or an optional peer that this machine lacks.
ALLOWED_SKIPS = ("needs a CUDA GPU", "FASTDYN_NT_PYTHON", "galois is not installed")


@pytest.mark.needs_backend("cpu")
def test_every_benchmark_passes_its_checks_at_smoke_sizes(tmp_path):
    """bench/ in a fresh ``python -m pytest`` started outside the checkout (the installed package): every benchmark
    passes or skips for a listed reason."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [sys.executable, "-m", "pytest", str(ROOT / "bench"), "-q", "-rs", "--benchmark-disable",
               "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]
    done = subprocess.run(command, cwd=tmp_path, env={**env, "FASTDYN_BENCH_SMOKE": "1"}, capture_output=True,
                          text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    skipped = re.findall(r"^SKIPPED \[\d+\] (.*)$", output, re.M)
    unexpected = [line for line in skipped if not any(reason in line for reason in ALLOWED_SKIPS)]
    assert not unexpected, unexpected
    assert re.search(r"\b\d+ passed", output), output[-2000:]
