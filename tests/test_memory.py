"""The README's memory claim: the fused one-hidden kernels, the kink velocities and the closed-form NTK never form a
points x neurons matrix. Peak RSS of each call in a fresh interpreter running the installed package, at sizes where
that matrix would take 400 MB (fp32) and the claimed footprint (outputs, neuron tiles) a few MB."""
import functools
import sys

import pytest

from installed import run_installed

POINTS, NEURONS, DIM = 2000, 50_000, 10         # forward, gradient, kink velocities
NTK_POINTS, NTK_NEURONS = 100, 1_000_000        # the closed-form NTK (cost ~ points^2 x neurons)
ITEMSIZE = 4                                    # OneHidden's default dtype, float32
MATRIX = POINTS * NEURONS * ITEMSIZE            # the points x neurons matrix, 400 MB
assert NTK_POINTS * NTK_NEURONS * ITEMSIZE == MATRIX
CONTROL = "control"                             # torch's forward in one neuron chunk: holds the matrix

# Each call runs once on 8 rows (loading, compiling and starting threads), then on all rows after the peak RSS
# (VmHWM) is reset to the current RSS: its growth is the call's own extra memory. VmHWM rather than
# getrusage's ru_maxrss, which keeps the peak of any exited thread.
_PROBE = """
import torch
from fastdyn import OneHidden, kinks, ntk, onehidden
from fastdyn._src.backend_torch.onehidden import forward as torch_forward

backend, names = sys.argv[1], sys.argv[2].split(",")
points, neurons, dim, ntk_points, ntk_neurons = map(int, sys.argv[3:])
gen = torch.Generator().manual_seed(0)
model = OneHidden(dim, neurons, generator=gen)
x, g = torch.randn(points, dim, generator=gen), torch.randn(points, generator=gen)
wide = OneHidden(dim, ntk_neurons, generator=gen)
x_ntk = torch.randn(ntk_points, dim, generator=gen)
omega, b, beta = (p.detach() for p in (model.omega, model.b, model.beta))
calls = {
    "onehidden.forward": lambda rows: onehidden.forward(model, x[:rows], backend=backend),
    "onehidden.gradient": lambda rows: onehidden.gradient(model, x[:rows], g[:rows], backend=backend),
    "kinks.velocities": lambda rows: kinks.velocities(model, x[:rows], g[:rows], backend=backend),
    "ntk": lambda rows: ntk(wide, x_ntk[:rows], backend=backend),
    "control": lambda rows: torch_forward(x[:rows], omega, b, beta, scale=model.output_scale, chunk=neurons),
}

def extra_bytes(call):
    call(8)
    return peak_growth_bytes(call, None)

report(extra={name: extra_bytes(calls[name]) for name in names})
"""

OPERATIONS = ["onehidden.forward", "onehidden.gradient", "kinks.velocities", "ntk"]
MEASURED = {"cpu": OPERATIONS + [CONTROL],
            "numba": OPERATIONS[:3]}  # numba's NTK (the same neuron tiles) takes tens of seconds at this width

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")


@pytest.fixture(scope="module")
def extra_memory(tmp_path_factory):
    """backend -> {call: peak RSS growth in bytes}, one fresh interpreter per backend."""
    @functools.cache
    def measure(backend):
        sizes = map(str, (POINTS, NEURONS, DIM, NTK_POINTS, NTK_NEURONS))
        cwd = tmp_path_factory.mktemp(f"memory-{backend}")
        return run_installed(_PROBE, backend, ",".join(MEASURED[backend]), *sizes, cwd=cwd)["extra"]
    return measure


@pytest.mark.parametrize("backend, operation", [(b, op) for b, names in MEASURED.items() for op in names
                                                if op != CONTROL])
def test_no_points_by_neurons_matrix(extra_memory, backend, operation):
    extra = extra_memory(backend)[operation]
    assert extra < MATRIX / 8, f"{operation} on {backend}: {extra / 2**20:.0f} MB extra peak RSS"


@pytest.mark.needs_backend("cpu")
def test_the_probe_sees_a_points_by_neurons_matrix(extra_memory):
    """The control: torch's formulation with all neurons in one chunk holds the matrix, and the probe says so."""
    assert extra_memory("cpu")[CONTROL] > 0.9 * MATRIX
