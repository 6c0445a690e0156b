"""Structured-derivative and generic empirical NTK against the torch.func Jacobian contraction."""
import pytest
import torch
from torch import nn

from conftest import assert_close, requires_cuda
from fastdyn._src.ntk_structured import generic_ntk, is_structured, structured_ntk
from fastdyn.models import ACTIVATIONS, FCNet, OneHidden
from oracles.ntk import OUTS, ntk_fp64


def _inputs(d, n1, n2, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n1, d, generator=gen, dtype=dtype), torch.randn(n2, d, generator=gen, dtype=dtype))


def _from_full(full, out):
    """The reference's "trace"/"diagonal" from its "full" result (one torch.func call per case)."""
    if full.ndim == 2 or out == "full":
        return full
    diagonal = full.diagonal(dim1=-2, dim2=-1)
    return diagonal.sum(-1) if out == "trace" else diagonal


def _check_all(fn, model, x1, x2, dtype, **kw):
    """fn against the fp64 reference for every out, with x2 given and x2=None (then exactly symmetric)."""
    for second in (x2, None):
        full = ntk_fp64(model, x1, second, "full")
        for out in OUTS:
            expected = _from_full(full, out)
            actual = fn(model, x1, second, out, **kw)
            assert actual.dtype == dtype
            assert_close(actual, expected, dtype)
            if second is None:
                perm = (1, 0, 3, 2) if actual.ndim == 4 else (1, 0, *range(2, actual.ndim))
                assert torch.equal(actual, actual.permute(perm))


# Every activation with 1 and 3 hidden layers, bias on and off, 1 and 3 outputs (a covering subset of the product).
FCNET_CASES = [(act, hidden, bias, n_out) for act in sorted(ACTIVATIONS)
               for hidden, bias, n_out in ((1, True, 1), (1, False, 3), (3, True, 3), (3, False, 1))]
FCNET_CASES += [(act, 2, bias, 2) for act in ("relu", "softplus") for bias in (True, False)]
FCNET_CASES += [("relu", 0, True, 3), ("relu", 0, False, 1)]  # a single linear layer


@pytest.mark.parametrize("act,hidden,bias,n_out", FCNET_CASES)
def test_structured_fcnet(act, hidden, bias, n_out, dtype):
    torch.manual_seed(hidden)
    model = FCNet([5] + [7, 6, 9][:hidden] + [n_out], act, bias, dtype=dtype)
    x1, x2 = _inputs(5, 7, 4, dtype)
    _check_all(structured_ntk, model, x1, x2, dtype)


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_generic_fcnet(act, n_out, dtype):
    torch.manual_seed(1)
    model = FCNet([4, 6, 5, n_out], act, dtype=dtype)
    x1, x2 = _inputs(4, 5, 3, dtype)
    _check_all(generic_ntk, model, x1, x2, dtype)


def _odd_mlp(dtype, n_out):
    """Nested Sequential, non-default activation settings, an activation before the first and after the last
    linear layer, layers with and without bias."""
    return nn.Sequential(
        nn.Tanh(),
        nn.Linear(3, 8, dtype=dtype),
        nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(8, 5, bias=False, dtype=dtype), nn.Identity()),
        nn.GELU(approximate="tanh"),
        nn.Linear(5, 6, dtype=dtype),
        nn.Softplus(beta=2.0, threshold=1.0),
        nn.Sequential(nn.Linear(6, n_out, dtype=dtype), nn.Sigmoid()),
    )


@pytest.mark.parametrize("n_out", [1, 3])
def test_structured_odd_mlp(n_out, dtype):
    torch.manual_seed(2)
    model = _odd_mlp(dtype, n_out)
    assert is_structured(model)
    x1, x2 = _inputs(3, 9, 5, dtype)
    x1[0] *= 3  # some points beyond the softplus threshold
    _check_all(structured_ntk, model, x1, x2, dtype)


@pytest.mark.parametrize("fn", [structured_ntk, generic_ntk])
@pytest.mark.parametrize("n_out", [1, 2])
def test_small_blocks_match_one_block(fn, n_out, dtype):
    """A tiny block budget (chunks of a few points, features recomputed per block) gives the same kernel."""
    torch.manual_seed(3)
    model = FCNet([4, 5, 6, n_out], "tanh", dtype=dtype)
    x1, x2 = _inputs(4, 11, 7, dtype)
    _check_all(fn, model, x1, x2, dtype, block_bytes=300 if fn is structured_ntk else 3000)


@pytest.mark.parametrize("fn", [structured_ntk, generic_ntk])
def test_single_point(fn, dtype):
    model = FCNet([3, 4, 2], "relu", dtype=dtype)
    x1, x2 = _inputs(3, 1, 1, dtype)
    _check_all(fn, model, x1, x2, dtype)


class Residual(nn.Module):
    """x -> W2 tanh(W1 x) + x, then a scalar readout."""

    def __init__(self, d, h, dtype):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(d, h, dtype=dtype), nn.Tanh(), nn.Linear(h, d, dtype=dtype))
        self.readout = nn.Linear(d, 1, dtype=dtype)

    def forward(self, x):
        return self.readout(x + self.inner(x))


class TinyConv(nn.Module):
    """(N, 8) -> Conv1d over the 8 positions -> ReLU -> flatten -> Linear to 2 outputs."""

    def __init__(self, dtype):
        super().__init__()
        self.conv = nn.Conv1d(1, 3, kernel_size=3, dtype=dtype)
        self.head = nn.Linear(3 * 6, 2, dtype=dtype)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x.unsqueeze(1))).flatten(1))


@pytest.mark.parametrize("make", [lambda dt: Residual(4, 5, dt), lambda dt: TinyConv(dt),
                                  lambda dt: OneHidden(4, 6, "tanh", dtype=dt)], ids=["residual", "conv1d", "onehidden"])
def test_custom_modules(make, dtype):
    """A forward of their own: generic always; structured unless a parameter is not in a known layer."""
    torch.manual_seed(4)
    model = make(dtype)
    assert is_structured(model) == (not isinstance(model, OneHidden))
    d = 8 if isinstance(model, TinyConv) else 4
    x1, x2 = _inputs(d, 6, 5, dtype)
    _check_all(generic_ntk, model, x1, x2, dtype)
    _check_all(generic_ntk, model, x1, x2, dtype, block_bytes=3000)  # several parameter groups and chunks
    if is_structured(model):
        _check_all(structured_ntk, model, x1, x2, dtype)
        _check_all(structured_ntk, model, x1, x2, dtype, block_bytes=300)


def test_generic_without_parameters():
    x1, x2 = _inputs(3, 4, 2, torch.float64)
    assert torch.equal(generic_ntk(nn.Tanh(), x1, x2, "trace"), torch.zeros(4, 2, dtype=torch.float64))


class MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


def _hooked():
    model = FCNet([2, 3, 1])
    model[0].register_forward_hook(lambda m, i, o: o * 2)
    return model


def test_is_structured():
    shared = nn.Linear(3, 3)
    structured = [
        FCNet([2, 3, 1]),
        nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1))),
        nn.Linear(2, 1),
        nn.Sequential(nn.Linear(2, 3), nn.ELU(), nn.Linear(3, 1)),  # any parameter-free module between layers
        nn.Sequential(nn.Conv1d(1, 1, 1)),
        nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.BatchNorm2d(2).eval(), nn.LayerNorm(4)),
        Residual(2, 3, torch.float32),
    ]
    for model in structured:
        assert is_structured(model), model
    not_structured = [
        OneHidden(2, 3),  # parameters of its own
        nn.Sequential(nn.ReLU(), nn.Tanh()),  # no parameters
        nn.Sequential(shared, nn.ReLU(), shared),  # shared weights
        nn.Sequential(MyLinear(2, 3)),  # forward overridden
        _hooked(),
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)),  # batch norm in training mode
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")),
        nn.Sequential(nn.Conv2d(1, 2, 2, padding="same")),  # asymmetric "same" padding
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2)),  # a layer not listed
    ]
    for model in not_structured:
        assert not is_structured(model), model


def test_bad_arguments():
    model = FCNet([2, 3, 1], dtype=torch.float64)
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="model"):
        structured_ntk(OneHidden(2, 3, dtype=torch.float64), x, None, "full")
    for fn in (structured_ntk, generic_ntk):
        with pytest.raises(ValueError, match="out"):
            fn(model, x, None, "sum")


@requires_cuda
@pytest.mark.parametrize("fn", [structured_ntk, generic_ntk])
@pytest.mark.parametrize("n_out", [1, 3])
def test_cuda_matches_reference(fn, n_out, dtype):
    torch.manual_seed(5)
    model = FCNet([5, 9, 7, n_out], "gelu", dtype=dtype)
    x1, x2 = _inputs(5, 13, 6, dtype)
    expected = {(second is None, out): _from_full(ntk_fp64(model, x1, second, "full"), out)
                for second in (x2, None) for out in OUTS}
    model.cuda()
    for second in (x2, None):
        for out in OUTS:
            actual = fn(model, x1.cuda(), None if second is None else second.cuda(), out)
            assert actual.is_cuda
            assert_close(actual, expected[second is None, out], dtype)
            if second is None and actual.ndim == 2:
                assert torch.equal(actual, actual.T)


def test_structured_inplace_activations_leave_inputs_alone(dtype):
    torch.manual_seed(6)
    plain = nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(3, 5, dtype=dtype), nn.ReLU(), nn.Linear(5, 2, dtype=dtype))
    inplace = nn.Sequential(nn.LeakyReLU(0.1, inplace=True), plain[1], nn.ReLU(inplace=True), plain[3])
    x1, _ = _inputs(3, 6, 1, dtype)
    before = x1.clone()
    actual = structured_ntk(inplace, x1, None, "full")
    assert torch.equal(x1, before)
    assert_close(actual, ntk_fp64(plain, x1, None, "full"), dtype)
