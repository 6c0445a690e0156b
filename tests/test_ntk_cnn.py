"""The structured NTK of convolutional, pooling, normalisation and residual models, NTK-vector products, and kernels
computed in blocks or onto disk, each against the torch.func Jacobian contraction in fp64 (tests/oracles/ntk.py)."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

import fastdyn
from conftest import assert_close, requires_cuda
from fastdyn._src import ntk_blocks, ntk_structured
from fastdyn._src.ntk_structured import ntvp_ntk, plan_structured, structured_ntk
from oracles.ntk import OUTS, ntk_fp64


def _from_full(full, out):
    if full.ndim == 2 or out == "full":
        return full
    diagonal = full.diagonal(dim1=-2, dim2=-1)
    return diagonal.sum(-1) if out == "trace" else diagonal


def _symmetric(kernel):
    perm = (1, 0, 3, 2) if kernel.ndim == 4 else (1, 0, *range(2, kernel.ndim))
    return torch.equal(kernel, kernel.permute(perm))


def _check(fn, model, x1, x2, dtype, outs=OUTS, **kw):
    """fn against the fp64 reference for the given outs, x2 given and None (then exactly symmetric)."""
    for second in (x2, None):
        full = ntk_fp64(model, x1, second, "full")
        for out in outs:
            actual = fn(model, x1, second, out, **kw)
            assert actual.dtype == dtype
            assert_close(actual, _from_full(full, out), dtype)
            if second is None:
                assert _symmetric(actual)


def _every_route(model, x1, x2, dtype):
    """The structured path with each layer's route forced to "gram" and to "gradient" (where it has both)."""
    for out in OUTS:
        plan = plan_structured(model, x1, out)
        assert plan is not None
        for route in ("gram", "gradient"):
            layers = tuple(dataclasses.replace(p, route=route) if isinstance(p.module, (nn.Linear, nn.Conv1d,
                                                                                         nn.Conv2d)) else p
                           for p in plan.layers)
            forced = dataclasses.replace(plan, layers=layers)
            _check(structured_ntk, model, x1, x2, dtype, outs=(out,), plan=forced)
            # a tiny budget: chunks of a point or two and row slices in the position Gram
            _check(structured_ntk, model, x1, x2, dtype, outs=(out,), plan=forced, block_bytes=2000)


def _images(shape, n1, n2, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n1, *shape, generator=gen, dtype=dtype), torch.randn(n2, *shape, generator=gen, dtype=dtype)


# Convolutions with odd sizes, strides, padding, dilation, groups, with and without bias, then a readout.
CONV_CASES = {
    "conv1d-stride-dilation": (lambda dt: nn.Sequential(
        nn.Conv1d(2, 4, 3, stride=2, padding=1, dilation=2, dtype=dt), nn.Tanh(), nn.Flatten(),
        nn.LazyLinear(3, dtype=dt)), (2, 11)),
    "conv1d-groups-same": (lambda dt: nn.Sequential(
        nn.Conv1d(4, 6, 3, padding="same", groups=2, bias=False, dtype=dt), nn.ReLU(), nn.AvgPool1d(2),
        nn.Flatten(), nn.LazyLinear(2, dtype=dt)), (4, 7)),
    "conv2d-stride-pad": (lambda dt: nn.Sequential(
        nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0), dtype=dt), nn.GELU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(3, dtype=dt)), (3, 7, 6)),
    "conv2d-groups-dilation": (lambda dt: nn.Sequential(
        nn.Conv2d(4, 6, 3, dilation=2, groups=2, padding="valid", dtype=dt), nn.Softplus(),
        nn.Conv2d(6, 3, 1, bias=False, dtype=dt), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LazyLinear(1, dtype=dt)),
        (4, 7, 7)),
    "batchnorm-layernorm": (lambda dt: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=dt), nn.BatchNorm2d(3, dtype=dt), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 5 * 4, 6, dtype=dt), nn.LayerNorm(6, dtype=dt), nn.Dropout(0.5), nn.Tanh(),
        nn.BatchNorm1d(6, dtype=dt), nn.Linear(6, 2, dtype=dt), nn.Identity()), (2, 5, 4)),
    "linear-over-positions": (lambda dt: nn.Sequential(
        nn.Linear(3, 5, dtype=dt), nn.Tanh(), nn.LayerNorm((4, 5), dtype=dt), nn.Flatten(), nn.Linear(20, 2, dtype=dt)),
        (4, 3)),
}


def _made(name, dtype):
    torch.manual_seed(7)
    make, shape = CONV_CASES[name]
    model = make(dtype)
    x1, x2 = _images(shape, 5, 3, dtype)
    model(x1[:2])  # materialise lazy layers
    for m in model.modules():  # batch norm with statistics of its own, then eval mode
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval(), x1, x2


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_layers_on_every_route(name, dtype):
    model, x1, x2 = _made(name, dtype)
    _every_route(model, x1, x2, dtype)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv-bn-relu-conv-bn plus the input (1x1 conv + bn when the shape changes),
    relu; in-place ReLUs as torchvision writes them."""

    def __init__(self, c_in, c_out, stride, dtype):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(c_out, dtype=dtype)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(c_out, dtype=dtype)
        self.downsample = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False, dtype=dtype), nn.BatchNorm2d(c_out, dtype=dtype))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def resnet(dtype, width=4, n_out=3):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(width, dtype=dtype),
                         nn.ReLU(), BasicBlock(width, width, 1, dtype), BasicBlock(width, 2 * width, 2, dtype),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_out, dtype=dtype))


def lenet(dtype, n_out=3):
    return nn.Sequential(nn.Conv2d(1, 3, 5, padding=2, dtype=dtype), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Conv2d(3, 4, 5, dtype=dtype), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 2 * 2, 7, dtype=dtype), nn.Tanh(), nn.Linear(7, 5, dtype=dtype), nn.Tanh(),
                         nn.Linear(5, n_out, dtype=dtype))


def vgg(dtype, n_out=2):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype=dtype), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * 2 * 2, 8, dtype=dtype), nn.ReLU(), nn.Dropout(),
                         nn.Linear(8, n_out, dtype=dtype))


MODELS = {"lenet": (lenet, (1, 16, 16)), "vgg": (vgg, (3, 9, 8)), "resnet": (resnet, (3, 7, 7))}


def _model(name, dtype, n_out):
    torch.manual_seed(8)
    make, shape = MODELS[name]
    model = make(dtype, n_out=n_out)
    x1, x2 = _images(shape, 6, 4, dtype, seed=1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval(), x1, x2


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_through_ntk(name, n_out, dtype):
    """fastdyn.ntk takes the structured path for LeNet-, VGG- and ResNet-like models and agrees with torch.func."""
    model, x1, x2 = _model(name, dtype, n_out)
    for second in (x2, None):
        full = ntk_fp64(model, x1, second, "full")
        for out in OUTS:
            kernel, info = fastdyn.ntk(model, x1, second, out=out, return_info=True)
            assert info.path == "structured"
            assert_close(kernel, _from_full(full, out), dtype)
    n_layers = sum(1 for m in model.modules() if next(m.parameters(recurse=False), None) is not None)
    assert len(info.layers) == n_layers
    assert {r.route for r in info.layers} <= {"gram", "gradient"}
    assert sum(r.parameters for r in info.layers) == sum(p.numel() for p in model.parameters())
    assert {r.kind for r in info.layers} >= {"Conv2d", "Linear"}


def test_resnet_on_every_route(dtype):
    model, x1, x2 = _model("resnet", dtype, 2)
    _every_route(model, x1[:4], x2[:3], dtype)


def test_routes_follow_the_flop_count():
    """A wide spatial convolution takes per-point gradients, a narrow-spatial wide one and a wide linear layer
    Grams; a scalar readout of 16 inputs costs 16 + 1 per pair as a gradient, 1 + 16 + 1 as a Gram."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(8), nn.Conv2d(8, 64, 2),
                          nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 1)).eval()
    routes = {r.name: r.route for r in plan_structured(model, torch.randn(2, 3, 16, 16)).routes}
    assert routes == {"0": "gradient", "3": "gram", "5": "gram", "7": "gradient"}


@pytest.mark.parametrize("name", ["lenet", "resnet"])
def test_ntvp(name, dtype):
    model, x1, x2 = _model(name, dtype, 3)
    _check(ntvp_ntk, model, x1, x2, dtype)
    _check(ntvp_ntk, model, x1, x2, dtype, outs=("trace",), block_bytes=20000)  # column chunks of one point
    kernel, info = fastdyn.ntk(model, x1, out="diagonal", implementation="ntvp", return_info=True)
    assert info.path == "ntvp" and {r.route for r in info.layers} == {"ntvp"}
    assert kernel.shape == (6, 6, 3)


def test_generic_path_takes_images(dtype):
    """A parameter outside the known layers: the generic path, on (N, C, H, W) inputs."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, dtype=dtype)
            self.gain = nn.Parameter(torch.tensor([1.3, 0.7], dtype=dtype))

        def forward(self, x):
            return self.conv(x).mean((2, 3))[:, :2] * self.gain

    torch.manual_seed(9)
    model = Scaled()
    x1, x2 = _images((2, 6, 5), 4, 3, dtype)
    for second in (x2, None):
        kernel, info = fastdyn.ntk(model, x1, second, out="trace", return_info=True)
        assert info.path == "generic" and {r.route for r in info.layers} == {"jacobian"}
        assert_close(kernel, _from_full(ntk_fp64(model, x1, second), "trace"), dtype)


def test_input_errors_name_the_expected_shape():
    model = lenet(torch.float64).eval()
    with pytest.raises(ValueError, match=r"x1 must have shape \(N, 1, H, W\) to match the model's first layer "
                                         r"Conv2d\(1, \.\.\.\), got \(4, 3, 16, 16\)"):
        fastdyn.ntk(model, torch.randn(4, 3, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x1 must have shape \(N, 1, H, W\)"):
        fastdyn.ntk(model, torch.randn(4, 256, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"model could not run on x1\[:1\] of shape \(1, 1, 5, 5\)"):
        fastdyn.ntk(model, torch.randn(4, 1, 5, 5, dtype=torch.float64))
    custom = _model("resnet", torch.float64, 2)[0]
    with pytest.raises(ValueError, match=r"x2 must have shape \(N, 3, 7, 7\) like x1"):
        fastdyn.ntk(nn.Sequential(nn.Identity(), custom), torch.randn(2, 3, 7, 7, dtype=torch.float64),
                    torch.randn(2, 3, 7, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"model.1 \(BatchNorm2d\) normalises by the statistics of the batch"):
        fastdyn.ntk(resnet(torch.float64).train(), torch.randn(2, 3, 7, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"model.11 \(Dropout\) is in training mode"):
        fastdyn.ntk(vgg(torch.float64).train(), torch.randn(2, 3, 9, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="implementation must be one of"):
        fastdyn.ntk(model, torch.randn(2, 1, 16, 16, dtype=torch.float64), implementation="fast")
    tied = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(4, 1)).eval()
    tied.register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(ValueError, match="implementation='structured' does not apply"):
        fastdyn.ntk(tied, torch.randn(2, 1, 2, 2), implementation="structured")


# ---- blocks and files -------------------------------------------------------------------------------------------

def test_blocks_match_one_call(dtype):
    model, x1, x2 = _model("lenet", dtype, 2)
    for second in (x2, None):
        for out in OUTS:
            whole = fastdyn.ntk(model, x1, second, out=out)
            blocked = fastdyn.ntk(model, x1, second, out=out, block=(4, 4) if second is None else (4, 3))
            assert_close(blocked, _from_full(ntk_fp64(model, x1, second), out), dtype)
            assert_close(blocked, whole, dtype)
            if second is None:
                assert _symmetric(blocked)
    with pytest.raises(ValueError, match=r"block must be square \(B, B\) when x2 is None"):
        fastdyn.ntk(model, x1, block=(2, 3))
    with pytest.raises(ValueError, match="block must be a positive int"):
        fastdyn.ntk(model, x1, block=(0, 2))


def test_blocks_of_the_closed_form(dtype):
    """OneHidden's closed form in blocks (each block through its backend), x2 given and None."""
    torch.manual_seed(11)
    model = fastdyn.OneHidden(4, 9, dtype=dtype)
    x1, x2 = torch.randn(7, 4, dtype=dtype), torch.randn(5, 4, dtype=dtype)
    for second, block in ((None, 3), (x2, (2, 4))):
        kernel, info = fastdyn.ntk(model, x1, second, block=block, return_info=True, progress=False)
        assert info.path == "onehidden-closed-form"
        assert_close(kernel, ntk_fp64(model, x1, second), dtype)
        if second is None:
            assert _symmetric(kernel)


def test_file_resumes_after_an_interruption(tmp_path, monkeypatch):
    torch.manual_seed(10)
    model = fastdyn.FCNet([5, 9, 1], "tanh", dtype=torch.float64)
    x = torch.randn(11, 5, dtype=torch.float64)
    path = tmp_path / "kernel.npy"
    real, calls = ntk_structured.structured_ntk, []

    def interrupted(*args, **kwargs):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ntk_structured, "structured_ntk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastdyn.ntk(model, x, file=path, block=3, progress=False)
    state = json.loads((tmp_path / "kernel.npy.progress.json").read_text())
    assert len(state["done"]) == 4
    monkeypatch.setattr(ntk_structured, "structured_ntk", real)
    resumed = fastdyn.ntk(model, x, file=path, block=3, progress=False)
    assert isinstance(resumed, np.memmap) and resumed.shape == (11, 11)
    # 4 x 4 blocks, the 10 upper ones computed: 4 before the interruption, 6 after
    assert len(json.loads((tmp_path / "kernel.npy.progress.json").read_text())["done"]) == 10
    assert_close(torch.from_numpy(np.array(resumed)), ntk_fp64(model, x), torch.float64)
    assert np.array_equal(resumed, resumed.T)
    again = fastdyn.ntk(model, x, file=path, block=3, progress=False)  # finished: read back, nothing computed
    assert np.array_equal(again, resumed)
    with pytest.raises(ValueError, match="holds a different kernel"):
        fastdyn.ntk(model, x * 2, file=path, block=3, progress=False)
    (tmp_path / "other.npy").write_bytes(b"not mine")
    with pytest.raises(ValueError, match="exists without its other.npy.progress.json"):
        fastdyn.ntk(model, x, file=tmp_path / "other.npy", progress=False)
    with pytest.raises(ValueError, match="file must name a .npy file"):
        fastdyn.ntk(model, x, file=tmp_path / "kernel.bin", progress=False)


def test_memory_guard_names_a_block_that_fits(monkeypatch):
    from fastdyn._src import memory
    monkeypatch.setattr(memory, "available_memory", lambda device: 10**6)
    model = fastdyn.FCNet([3, 4, 1])
    with pytest.raises(MemoryError, match=r"file='kernel.npy', block=\(256, 256\)"):
        fastdyn.ntk(model, torch.randn(2000, 3))


def test_fingerprint_sees_parameters():
    a, b = torch.ones(3), torch.ones(3)
    assert ntk_blocks._fingerprint([a], {}) == ntk_blocks._fingerprint([b], {})
    b[1] = 2
    assert ntk_blocks._fingerprint([a], {}) != ntk_blocks._fingerprint([b], {})


@requires_cuda
@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_structured_cnn(name, dtype):
    model, x1, x2 = _model(name, dtype, 3)
    expected = {(s is None, out): _from_full(ntk_fp64(model, x1, s), out) for s in (x2, None) for out in OUTS}
    model.cuda()
    for second in (x2, None):
        for out in OUTS:
            kernel, info = fastdyn.ntk(model, x1.cuda(), None if second is None else second.cuda(), out=out,
                                       return_info=True)
            assert kernel.is_cuda and info.path == "structured"
            assert_close(kernel, expected[second is None, out], dtype)
