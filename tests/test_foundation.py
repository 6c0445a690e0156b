"""Install, backend dispatch, array interop and input errors, proven on the fused OneHidden forward."""
import copy
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import onehidden as fused
from fastdyn._src import arrays, backends as _backends
from fastdyn.models import OneHidden
from fastdyn._src.backend_torch.onehidden import forward as torch_forward

from conftest import CPU_BACKENDS, HAS_CUDA, assert_close, require_backend, requires_cuda
from installed import REPO, run_installed

def make(d=5, h=37, p=11, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = OneHidden(d, h, dtype=dtype, generator=gen)
    x = torch.randn(p, d, dtype=dtype, generator=gen)
    return model, x


def reference_forward(model, x):
    """The plain torch model in fp64 on the CPU, from the (upcast) parameters and inputs."""
    return copy.deepcopy(model).cpu().double()(x.cpu().double()).detach()


def test_compiled_core_is_built():
    # CI has a compiler: the C++ extension must be there, and "cpu" available.
    assert fastdyn.build_status()["_core"] == "built"
    assert "cpu" in fastdyn.available_backends()
    info = _backends.module("cpu").build_info()
    assert "OpenBLAS" in info["blas"] and isinstance(info["native"], bool)
    assert info["openmp"] >= 201511 or (info["openmp"] == 0 and info["threads"] == 1)  # OpenMP is optional


def test_subprocesses_import_the_installed_package(tmp_path):
    """A subprocess gets this process's fastdyn and _core, both installed: _core never from the source tree, and
    the Python files only from it in an editable install."""
    assert run_installed("report()", cwd=tmp_path) == {}
    source = REPO / "src"
    assert not Path(_backends.module("cpu").__file__).resolve().is_relative_to(source)
    direct_url = json.loads(importlib.metadata.distribution("fastdyn").read_text("direct_url.json") or "{}")
    if not direct_url.get("dir_info", {}).get("editable"):
        assert not Path(fastdyn.__file__).resolve().is_relative_to(source), fastdyn.__file__


def test_available_backends_order_and_reasons(capsys):
    names = fastdyn.available_backends(verbose=True)
    assert names == [n for n in _backends.BACKENDS if n in names]
    assert names[-1] == "torch"
    status = fastdyn.backend_status()
    assert set(status) == set(_backends.BACKENDS)
    for name in _backends.BACKENDS:
        assert (status[name] is None) == (name in names)
        assert fastdyn.why_unavailable(name) == status[name]
    printed = capsys.readouterr().out
    assert all(name in printed for name in _backends.BACKENDS)


def test_cuda_module_reports_itself():
    status = fastdyn.build_status()["_cuda"]
    if status != "built":
        require_backend("cuda")  # fails under FASTDYN_REQUIRE_CUDA=1, else skips
    count, error = __import__("fastdyn._cuda", fromlist=["device_count"]).device_count()
    if torch.version.cuda is not None:  # a CUDA build of torch counts the same devices
        assert count == torch.cuda.device_count(), error
    assert HAS_CUDA == (count > 0 and torch.cuda.is_available())
    assert (fastdyn.why_unavailable("cuda") is None) == HAS_CUDA


@pytest.mark.parametrize("p,d,h", [(1, 1, 1), (11, 5, 37), (64, 30, 1025)])
def test_forward_matches_model(cpu_backend, dtype, p, d, h):
    model, x = make(d, h, p, dtype)
    out = fused.forward(model, x, backend=cpu_backend)
    assert out.dtype == dtype and out.shape == (p,)
    assert_close(out, reference_forward(model, x), dtype)


@requires_cuda
def test_forward_cuda(dtype):
    model, x = make(7, 1001, 33, dtype)
    expected = reference_forward(model, x)
    out = fused.forward(model.cuda(), x.cuda(), backend="cuda")
    assert out.is_cuda
    assert_close(out, expected, dtype)


def test_auto_prefers_compiled_cpu(monkeypatch):
    monkeypatch.delenv("FASTDYN_BACKEND", raising=False)
    assert _backends.resolve("auto", torch.device("cpu")) == CPU_BACKENDS[0]
    expected = "numba" if "numba" in CPU_BACKENDS else "torch"
    assert _backends.resolve("auto", torch.device("cpu"), ("numba", "torch")) == expected


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_environment_variable_sets_default(monkeypatch, name):
    monkeypatch.setenv("FASTDYN_BACKEND", name)
    assert _backends.resolve("auto", torch.device("cpu")) == name
    # an explicit argument still wins
    assert _backends.resolve("torch", torch.device("cpu")) == "torch"


def test_environment_variable_falls_back_where_unsupported(monkeypatch):
    monkeypatch.setenv("FASTDYN_BACKEND", "numba")
    assert _backends.resolve("auto", torch.device("cpu"), ("cpu", "torch")) in ("cpu", "torch")
    monkeypatch.setenv("FASTDYN_BACKEND", "fortran")
    with pytest.raises(ValueError, match="FASTDYN_BACKEND"):
        _backends.resolve("auto", torch.device("cpu"))


def test_explicit_backend_errors():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        _backends.resolve("gpu", cpu)
    with pytest.raises(ValueError, match="does not implement"):
        _backends.resolve("numba", cpu, ("cpu", "torch"), what="kernel k")
    with pytest.raises(ValueError, match="cannot run on cpu"):
        _backends.resolve("cuda", cpu)
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="not available"):
            _backends.resolve("cuda", torch.device("cuda"))


def test_numpy_in_numpy_out_without_copy(cpu_backend):
    model, x = make()
    x_np = x.numpy()
    out = fused.forward(model, x_np, backend=cpu_backend)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert_close(out, model(x).detach(), torch.float64)
    tensors, kind = arrays.as_tensors(x=x_np)
    assert tensors[0].data_ptr() == x_np.ctypes.data  # a view, not a copy
    same, _ = arrays.as_tensors(x=x)
    assert same[0].data_ptr() == x.data_ptr()


def test_non_contiguous_input_is_accepted(cpu_backend):
    model, x = make(p=20)
    out = fused.forward(model, x[::2], backend=cpu_backend)
    assert_close(out, model(x[::2]).detach(), torch.float64)


def test_input_errors():
    model, x = make()
    with pytest.raises(TypeError, match="x must be a numpy array or a torch tensor"):
        fused.forward(model, x.tolist())
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        fused.forward(model, x.to(torch.int64))
    with pytest.raises(ValueError, match="x must be 2-D"):
        fused.forward(model, x[0])
    with pytest.raises(ValueError, match="x must have 5 columns"):
        fused.forward(model, x[:, :3])
    with pytest.raises(ValueError, match="x is empty"):
        fused.forward(model, x[:0])
    bad = x.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        fused.forward(model, bad)
    with pytest.raises(TypeError, match="model.omega is torch.float64 but the inputs are torch.float32"):
        fused.forward(model, x.float())
    with pytest.raises(TypeError, match="model must be a fastdyn.models.OneHidden"):
        fused.forward(torch.nn.Linear(5, 1).double(), x)
    with pytest.raises(ValueError, match="act='relu'"):
        fused.forward(OneHidden(5, 3, act="tanh", dtype=torch.float64), x)


def test_mixed_inputs_are_errors():
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="y has dtype torch.float64 but x has torch.float32"):
        arrays.as_tensors(x=x, y=x.double())
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="move both to one device"):
            arrays.as_tensors(x=x, y=x.cuda())


def test_models_validate():
    with pytest.raises(ValueError, match="scale must be one of"):
        OneHidden(3, 4, scale="xavier")
    with pytest.raises(ValueError, match="act must be one of"):
        OneHidden(3, 4, act="swish")
    with pytest.raises(ValueError, match="dims must list"):
        fastdyn.FCNet([3])
    net = fastdyn.FCNet([3, 8, 8, 2], act="tanh", bias=False)
    assert net(torch.zeros(4, 3)).shape == (4, 2)
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 3


def test_torch_backend_is_chunked():
    model, x = make(h=50)
    chunked = torch_forward(x, model.omega.detach(), model.b.detach(), model.beta.detach(), scale=model.output_scale,
                            chunk=7)
    assert_close(chunked, model(x).detach(), torch.float64)


def test_threads_follow_torch(cpu_backend):
    model, x = make(h=300, p=40)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused.forward(model, x, backend=cpu_backend)
    finally:
        torch.set_num_threads(before)
    expected = reference_forward(model, x)
    assert_close(one, expected)
    assert_close(fused.forward(model, x, backend=cpu_backend), expected)


@pytest.mark.needs_backend("numba")
def test_numba_kernels_leave_torch_threads_alone(monkeypatch):
    """Numba's OpenMP layer shares torch's libgomp; its first launch in a process used to move torch from the 1
    thread of OMP_NUM_THREADS=1 to NUMBA_NUM_THREADS. A fresh interpreter, since only the first launch did it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = """
import torch
import fastdyn
from fastdyn import onehidden
assert torch.get_num_threads() == 1
model = fastdyn.OneHidden(3, 5)
x = torch.randn(7, 3)
counts = []
for call in (lambda: onehidden.forward(model, x, backend="numba"),
             lambda: onehidden.gradient(model, x, torch.ones(7), backend="numba"),
             lambda: fastdyn.ntk(model, x, backend="numba")):
    call()
    counts.append(torch.get_num_threads())
report(counts=counts)
"""
    assert run_installed(code)["counts"] == [1, 1, 1]


@pytest.mark.needs_backend("cpu")
@pytest.mark.parametrize("call", ["forward", "gradient", "ntk", "kpca", "train-exact", "train-euler"])
def test_cpu_kernels_leave_torch_threads_alone(call):
    """A small call may run one thread inside, but torch's thread count (OpenMP's, shared) must be as it was."""
    model, x = make(d=3, h=5, p=7)
    y = torch.sign(x[:, 0])
    calls = {
        "forward": lambda: fused.forward(model, x, backend="cpu"),
        "gradient": lambda: fused.gradient(model, x, y, backend="cpu"),
        "ntk": lambda: fastdyn.ntk(model, x, backend="cpu"),
        "kpca": lambda: fastdyn.kpca(torch.eye(7, dtype=torch.float64), k=2, backend="cpu"),
        "train-exact": lambda: fastdyn.train(model, x, y, max_steps=3, backend="cpu"),
        "train-euler": lambda: fastdyn.train(model, x, y, max_steps=3, method="euler", backend="cpu"),
    }
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        calls[call]()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
