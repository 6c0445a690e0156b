"""fastdyn.ntk against the torch.func Jacobian-contraction reference, in every backend, plus its input checks."""

import numpy as np
import pytest
import torch
from torch import nn

from fastdyn.models import ACTIVATIONS, FCNet, OneHidden
from fastdyn import NTKInfo, ntk
from fastdyn._src import memory
from fastdyn._src import tiling as tiles
from oracles.ntk import ntk_fp64

from conftest import assert_close, requires_cuda

SERIAL_WORK = 1 << 22  # csrc/cpu/ntk.cpp kSerialWork: below this many multiply-adds the C++ kernel runs one thread
REPEATS = 30  # calls of a threaded case: a race between threads shows up in some calls only


def make_case(dtype, n1=7, n2=5, d=3, h=37, act="relu", scale="mf", seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    model = OneHidden(d, h, act=act, scale=scale, dtype=dtype, generator=gen).to(device)
    x1 = torch.randn(n1, d, dtype=dtype, generator=gen).to(device)
    x2 = torch.randn(n2, d, dtype=dtype, generator=gen).to(device)
    return model, x1, x2


@pytest.fixture(params=[False, True], ids=["one-tile", "many-tiles"])
def tiling(request, monkeypatch):
    """Run the closed form as one neuron tile, or force tiles of 5 neurons (37 = 7 x 5 + 2)."""
    if request.param:
        monkeypatch.setattr(tiles, "CPU_TILE", tiles.CPU_TILE._replace(low=5, high=5))
        monkeypatch.setattr(tiles, "CUDA_TILE", tiles.CUDA_TILE._replace(low=5, high=5))
        monkeypatch.setattr(tiles, "TORCH_TILE", 5)
    return request.param


@pytest.mark.parametrize("given_x2", [False, True], ids=["x2-None", "x2-given"])
@pytest.mark.parametrize("scale", ["mf", "ntk"])
def test_onehidden_closed_form_matches_torch_func(cpu_backend, dtype, given_x2, scale, tiling):
    model, x1, x2 = make_case(dtype, scale=scale)
    x2 = x2 if given_x2 else None
    kernel, info = ntk(model, x1, x2, backend=cpu_backend, return_info=True)
    expected = ntk_fp64(model, x1, x2)
    assert kernel.dtype == dtype and kernel.shape == expected.shape == (7, 5 if given_x2 else 7)
    assert_close(kernel, expected, dtype)
    assert info == NTKInfo("onehidden-closed-form", cpu_backend, str(dtype)[6:], info.seconds)
    assert info.seconds >= 0


@pytest.mark.parametrize("given_x2", [False, True], ids=["x2-None", "x2-given"])
def test_single_point(cpu_backend, dtype, given_x2):
    model, x1, x2 = make_case(dtype, n1=1, n2=1, d=4, h=9)
    x2 = x2 if given_x2 else None
    assert_close(ntk(model, x1, x2, backend=cpu_backend), ntk_fp64(model, x1, x2), dtype)


def test_symmetric_result_is_exactly_symmetric(cpu_backend, dtype):
    model, x1, _ = make_case(dtype, n1=33, d=6, h=101)
    kernel = ntk(model, x1, backend=cpu_backend)
    assert torch.equal(kernel, kernel.T)
    # and it agrees with the explicit Theta(x1, x1) computed as a GEMM
    assert_close(kernel, ntk(model, x1, x1.clone(), backend=cpu_backend), dtype)


@pytest.mark.parametrize("given_x2", [False, True], ids=["x2-None", "x2-given"])
def test_many_row_blocks_and_threads(cpu_backend, given_x2):
    """Past the C++ kernel's serial cut-off, on two threads, with more row blocks than threads, REPEATS times."""
    n1, n2, d, h = 300, 150, 4, 100
    model, x1, x2 = make_case(torch.float64, n1=n1, n2=n2, d=d, h=h, scale="ntk")
    x2 = x2 if given_x2 else None
    n2 = n2 if given_x2 else n1
    assert (n1 * n2 + (n1 + n2) * d) * h >= SERIAL_WORK  # the kernel's own test for "small"
    expected = ntk_fp64(model, x1, x2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        kernels = [ntk(model, x1, x2, backend=cpu_backend) for _ in range(REPEATS)]
    finally:
        torch.set_num_threads(threads)
    for kernel in kernels:
        assert_close(kernel, expected, torch.float64)
        if not given_x2:
            assert torch.equal(kernel, kernel.T)


@pytest.mark.parametrize("act", sorted(set(ACTIVATIONS) - {"relu"}))
def test_other_activations_use_the_torch_closed_form(act):
    model, x1, x2 = make_case(torch.float64, act=act, scale="ntk")
    for second in (None, x2):
        kernel, info = ntk(model, x1, second, return_info=True)
        assert info.path == "onehidden-closed-form" and info.backend == "torch"
        assert_close(kernel, ntk_fp64(model, x1, second), torch.float64)
    with pytest.raises(ValueError, match="does not implement"):
        ntk(model, x1, backend="cpu")


def test_numpy_in_numpy_out(cpu_backend):
    model, x1, x2 = make_case(torch.float64)
    kernel = ntk(model, x1.numpy(), x2.numpy(), backend=cpu_backend)
    assert isinstance(kernel, np.ndarray) and kernel.dtype == np.float64 and kernel.shape == (7, 5)
    assert_close(kernel, ntk_fp64(model, x1, x2), torch.float64)
    assert isinstance(ntk(model, x1.numpy(), x2), torch.Tensor)  # mixed numpy / torch answers in torch


def test_out_is_irrelevant_for_a_scalar_output():
    model, x1, x2 = make_case(torch.float64)
    full = ntk(model, x1, x2)
    for out in ("trace", "diagonal"):
        assert torch.equal(ntk(model, x1, x2, out=out), full)


def test_wide_network_with_few_points_tiles_the_neurons(cpu_backend):
    """Width 1e5: the tile (hence the memory besides the N1 x N2 result) stays bounded, the result stays exact."""
    model, x1, x2 = make_case(torch.float64, n1=4, n2=3, d=5, h=100_000, scale="ntk")
    for rule in (tiles.CPU_TILE, tiles.CUDA_TILE):
        sizes = [tiles.neuron_tile(7, h, 8, rule) for h in (model.h, 10 * model.h, 100 * model.h)]
        assert sizes[0] < model.h and len(set(sizes)) == 1  # the same tile, whatever the width
    assert_close(ntk(model, x1, x2, backend=cpu_backend), ntk_fp64(model, x1, x2), torch.float64)


# ---- input checks -----------------------------------------------------------------------------------------------

def test_errors_name_the_argument():
    model, x1, x2 = make_case(torch.float64)
    with pytest.raises(TypeError, match="model"):
        ntk(lambda x: x, x1)
    with pytest.raises(ValueError, match="out"):
        ntk(model, x1, out="sum")
    with pytest.raises(TypeError, match="return_info"):
        ntk(model, x1, return_info=1)
    with pytest.raises(ValueError, match="backend"):
        ntk(model, x1, backend="fortran")
    with pytest.raises(TypeError, match="x1"):
        ntk(model, [[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match="x1"):
        ntk(model, x1.to(torch.int64))
    with pytest.raises(ValueError, match="x1 must be 2-D"):
        ntk(model, x1[0])
    with pytest.raises(ValueError, match=r"x1 must have shape \(N, 3\)"):
        ntk(model, x1[:, :2])
    with pytest.raises(ValueError, match=r"x2 must have shape \(N, 3\)"):
        ntk(model, x1, torch.randn(4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="x1 is empty"):
        ntk(model, x1[:0])
    with pytest.raises(ValueError, match="x2 is empty"):
        ntk(model, x1, x2[:0])
    with pytest.raises(TypeError, match="x2 has dtype"):
        ntk(model, x1, x2.float())
    with pytest.raises(TypeError, match="model.omega"):
        ntk(model, x1.float())
    bad = x1.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x1 contains NaN"):
        ntk(model, bad)
    with pytest.raises(ValueError, match="x2 contains NaN"):
        ntk(model, x1, bad)
    with torch.no_grad():
        model.beta[0] = float("inf")
    with pytest.raises(ValueError, match="model.beta contains NaN or Inf"):
        ntk(model, x1)


def test_device_mismatch_is_refused():
    model, x1, _ = make_case(torch.float64)
    with pytest.raises(ValueError, match="x2 is on meta"):
        ntk(model, x1, torch.empty(4, 3, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match="model.omega is on meta"):
        ntk(model.to("meta"), x1)


def test_model_input_width_of_a_sequential_is_checked():
    net = FCNet([4, 8, 2], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x1 must have shape \(N, 4\) to match the model's input width"):
        ntk(net, torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="no parameters"):
        ntk(nn.Sequential(nn.ReLU()), torch.randn(3, 5))


def test_memory_guard_refuses_before_allocating(monkeypatch):
    model, x1, _ = make_case(torch.float32, n1=50, d=3)
    monkeypatch.setattr(memory, "available_memory", lambda device: 1000)
    with pytest.raises(MemoryError, match="GiB"):
        ntk(model, x1)


def test_available_memory_is_read_on_cpu():
    available = memory.available_memory(torch.device("cpu"))
    assert available is not None and available > 0


# ---- dispatch to the structured / generic paths (fastdyn/_ntk_structured.py) ------------------------------------

class TwoHeads(nn.Module):
    """A forward of its own with a skip from the input: still the structured path."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 6, dtype=torch.float64)
        self.head = nn.Linear(6, 2, dtype=torch.float64)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x))) + x[:, :1]


class TiedWeights(TwoHeads):
    """Uses body.weight outside body's forward: the check against autograd sends it to the generic path."""

    def forward(self, x):
        return self.head(torch.tanh(self.body(x))) + (x @ self.body.weight.T)[:, :2]


@pytest.mark.parametrize("out", ["full", "trace", "diagonal"])
def test_dispatch_to_structured_and_generic_paths(out):
    torch.manual_seed(0)
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    models = ((FCNet([3, 7, 2], act="tanh", dtype=torch.float64), "structured"), (TwoHeads(), "structured"),
              (TiedWeights(), "generic"))
    for model, path in models:
        for second in (None, x2):
            kernel, info = ntk(model, x1, second, out=out, return_info=True)
            assert (info.path, info.backend) == (path, "torch")
            assert_close(kernel, ntk_fp64(model, x1, second, out=out), torch.float64)


class DoubledOutput(OneHidden):
    def forward(self, x):
        return 2.0 * super().forward(x)


class ShiftedPreactivation(OneHidden):
    def preactivation(self, x):
        return super().preactivation(x) - 0.5


@pytest.mark.parametrize("subclass", [DoubledOutput, ShiftedPreactivation])
def test_subclass_changing_the_maths_is_not_taken_for_the_closed_form(subclass):
    """A OneHidden subclass overriding forward or preactivation goes to the generic path (the closed form would be
    4x off, or use the wrong biases)."""
    gen = torch.Generator().manual_seed(1)
    model = subclass(3, 5, dtype=torch.float64, generator=gen)
    x1, x2 = (torch.randn(n, 3, dtype=torch.float64, generator=gen) for n in (4, 3))
    for second in (None, x2):
        kernel, info = ntk(model, x1, second, return_info=True)
        assert (info.path, info.backend) == ("generic", "torch")
        assert_close(kernel, ntk_fp64(model, x1, second), torch.float64)


# ---- CUDA (skips without a GPU) ----------------------------------------------------------------------------------

@requires_cuda
@pytest.mark.parametrize("given_x2", [False, True], ids=["x2-None", "x2-given"])
@pytest.mark.parametrize("sizes", [(7, 5, 3, 37), (300, 131, 20, 1000), (1, 1, 2, 3)])
def test_cuda_closed_form_matches_torch_func(dtype, given_x2, sizes, tiling):
    n1, n2, d, h = sizes
    model, x1, x2 = make_case(dtype, n1=n1, n2=n2, d=d, h=h, device="cuda")
    x2 = x2 if given_x2 else None
    kernel, info = ntk(model, x1, x2, return_info=True)
    assert info.backend == "cuda" and kernel.device.type == "cuda" and kernel.dtype == dtype
    expected = ntk_fp64(model, x1, x2)
    assert_close(kernel, expected, dtype)
    if x2 is None:
        assert torch.equal(kernel, kernel.T)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "torch"])
def test_cuda_device_larger_case(backend):
    model, x1, x2 = make_case(torch.float64, n1=200, n2=150, d=10, h=700, device="cuda")
    for second in (None, x2):
        kernel = ntk(model, x1, second, backend=backend)
        assert kernel.is_cuda
        assert_close(kernel, ntk_fp64(model, x1, second), torch.float64)
