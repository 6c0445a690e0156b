"""Shared test helpers: the tolerance rule, the backend matrix (which fails loudly), and small fixtures.

Backends. Every test parametrised over a backend (a parameter named ``backend`` or ``cpu_backend``, or marked
``needs_backend(name)``) runs for each name; a backend that is missing *skips* only when it is not expected here:
"cpu" and "torch" are always expected, "numba" when numba is installed, "cuda" when ``FASTDYN_REQUIRE_CUDA=1``
(set it on machines with a GPU so that no CUDA case skips). ``FASTDYN_TEST_WITHOUT=cpu`` excuses a missing backend,
for a deliberately partial install.
"""
import importlib.util
import os

import numpy as np
import pytest
import torch

import fastdyn
from fastdyn._src.backends import BACKENDS

CPU_BACKENDS = ["cpu", "numba", "torch"]
AVAILABLE = fastdyn.available_backends()
HAS_CUDA = "cuda" in AVAILABLE
REQUIRE_CUDA = os.environ.get("FASTDYN_REQUIRE_CUDA", "0").strip() not in ("", "0")
_EXCUSED = {name.strip() for name in os.environ.get("FASTDYN_TEST_WITHOUT", "").split(",") if name.strip()}

# Relative tolerances of a fast path against its fp64 reference.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def expected_backends() -> list[str]:
    """The backends this machine must provide (see the module docstring)."""
    names = ["cpu", "torch"]
    if importlib.util.find_spec("numba") is not None:
        names.append("numba")
    if REQUIRE_CUDA:
        names.append("cuda")
    return [name for name in names if name not in _EXCUSED]


def require_backend(name: str) -> None:
    """Skip when ``name`` is missing and not expected; fail when it is missing but should be here."""
    if name in AVAILABLE:
        return
    reason = f"backend {name!r} unavailable: {fastdyn.why_unavailable(name)}"
    if name in expected_backends():
        pytest.fail(reason + " (expected on this machine; see tests/conftest.py)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_backend"):
        require_backend(mark.args[0])
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key in ("backend", "cpu_backend"):
        if isinstance(params.get(key), str) and params[key] in BACKENDS:
            require_backend(params[key])


requires_cuda = pytest.mark.needs_backend("cuda")


def _float64(values) -> torch.Tensor:
    """A float64 CPU tensor of a tensor, array (any strides) or Python number (never rounded through float32)."""
    if isinstance(values, np.ndarray):
        values = np.array(values)  # a copy: torch.as_tensor refuses negative strides
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu()


def assert_close(actual, expected, dtype=torch.float64, *, rtol=None, scale=None, rows=False):
    """Elementwise ``|actual - expected| <= rtol * (|expected| + scale)``, ``rtol = RTOL[dtype]`` by default.

    ``scale`` is the problem's magnitude, for entries that cancel to near zero: by default the RMS of ``expected``,
    or of each row (dim 0) when ``rows=True`` (per-neuron quantities, whose magnitudes differ by orders).
    ``expected`` should be an fp64 oracle, also for fp32 paths.
    """
    actual, expected = _float64(actual), _float64(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if not actual.numel():
        return
    rtol = RTOL[dtype] if rtol is None else rtol
    if scale is None:
        squares = expected.square().reshape(expected.shape[0], -1).mean(1) if rows and expected.dim() else None
        scale = (squares.sqrt().reshape((-1,) + (1,) * (expected.dim() - 1)) if squares is not None
                 else expected.square().mean().sqrt())
    scale = torch.as_tensor(scale, dtype=torch.float64).clamp_min(1e-300)
    bound = rtol * (expected.abs() + scale)
    excess = (actual - expected).abs() / bound
    worst = int(excess.argmax())
    if float(excess.flatten()[worst]) > 1 or not torch.isfinite(actual).all():
        index = np.unravel_index(worst, tuple(actual.shape))
        a, e = float(actual[index]), float(expected[index])
        raise AssertionError(f"{int((excess > 1).sum())}/{actual.numel()} entries off by more than rtol={rtol:.0e}: "
                             f"worst at {tuple(map(int, index))}: {a!r} vs {e!r} "
                             f"(|diff| {abs(a - e):.3e} > bound {float(bound[index]):.3e})")


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    return request.param


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture
def one_thread():
    """Tiny problems: one thread avoids OpenMP start-up and oversubscription costs per step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
