"""The compiled binding boundary (csrc/buffer.hpp): named arguments, one name per kernel for both float dtypes,
and the DLPack checks that name the argument at fault."""
import numpy as np
import pytest
import torch

from conftest import assert_close
from fastdyn._src import backends

pytestmark = pytest.mark.needs_backend("cpu")  # fails where fastdyn._core should be built but is not


def forward_args(dtype=torch.float64, p=5, d=3, h=4):
    gen = torch.Generator().manual_seed(0)
    x, omega = torch.randn(p, d, generator=gen, dtype=dtype), torch.randn(h, d, generator=gen, dtype=dtype)
    b, beta = torch.randn(h, generator=gen, dtype=dtype), torch.randn(h, generator=gen, dtype=dtype)
    return [x, omega, b, beta, torch.empty(p, dtype=dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_binding_serves_both_dtypes_and_numpy(dtype):
    core = backends.module("cpu")
    args = forward_args(dtype)
    core.onehidden_forward(*args, scale=0.5, threads=1)
    x, omega, b, beta, out = args
    expected = 0.5 * torch.relu(x.double() @ omega.double().T / 3 ** 0.5 + b.double()) @ beta.double()
    assert_close(out, expected, dtype)
    as_numpy = [a.numpy() for a in args[:4]] + [np.zeros(5, dtype=args[0].numpy().dtype)]
    core.onehidden_forward(*as_numpy, scale=0.5, threads=1)
    assert_close(as_numpy[4], expected, dtype)


def test_options_are_keywords():
    with pytest.raises(TypeError):
        backends.module("cpu").onehidden_forward(*forward_args(), 0.5, 1)


@pytest.mark.parametrize("change, error, words", [
    (lambda a: a.__setitem__(1, a[1].float()), TypeError, "omega has dtype float32 but x has float64"),
    (lambda a: a.__setitem__(0, a[0].int()), TypeError, "x must have dtype float32 or float64, got int32"),
    (lambda a: a.__setitem__(2, a[2][:3].clone()), ValueError, "b must have shape (h) with h = 4, got (3)"),
    (lambda a: a.__setitem__(1, a[1][:, :2].clone()), ValueError, "omega must have shape (h, d) with d = 3"),
    (lambda a: a.__setitem__(4, torch.empty(5, 1, dtype=torch.float64)), ValueError, "out must have shape (p)"),
    (lambda a: a.__setitem__(0, torch.randn(3, 5, dtype=torch.float64).T), ValueError, "x must be C-contiguous"),
    (lambda a: a.__setitem__(3, a[3].requires_grad_(True)), TypeError, "beta cannot be exported"),
    (lambda a: a.__setitem__(0, [[1.0]]), TypeError, "incompatible function arguments"),
])
def test_buffers_are_checked_by_name(change, error, words):
    args = forward_args()
    change(args)
    with pytest.raises(error) as raised:
        backends.module("cpu").onehidden_forward(*args, scale=1.0, threads=1)
    assert words in str(raised.value)


def test_fixed_dtype_outputs_and_empty_buffers():
    core = backends.module("cpu")
    x, omega, b = forward_args(p=0)[:3]  # no points: null data pointers are fine
    keys = np.empty((4, 3), dtype=np.uint64)
    core.onehidden_pattern_keys(x, omega, b, keys, threads=1)
    assert (keys[:, 2] == 0).all()
    with pytest.raises(TypeError, match="keys must have dtype uint64, got int64"):
        core.onehidden_pattern_keys(x, omega, b, keys.astype(np.int64), threads=1)
