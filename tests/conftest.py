import numpy as np
import pytest
import torch

import fastdyn

CPU_BACKENDS = [name for name in ("cpu", "numba", "torch") if name in fastdyn.available_backends()]
HAS_CUDA = "cuda" in fastdyn.available_backends()

# Relative tolerances of a fast path against its fp64/fp32 reference.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


def assert_close(actual, expected, dtype, scale=None):
    """Max abs error within RTOL[dtype] * max(|expected|) (or ``scale``)."""
    actual = torch.as_tensor(actual).double().cpu()
    expected = torch.as_tensor(expected).double().cpu()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    ref = float(scale if scale is not None else expected.abs().max().clamp_min(1e-300))
    err = float((actual - expected).abs().max()) if actual.numel() else 0.0
    assert err <= RTOL[dtype] * ref, f"max abs error {err:.3e} > {RTOL[dtype]:.0e} * {ref:.3e}"


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


requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and fastdyn._cuda")
