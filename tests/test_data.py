"""fastdyn.data: label rules, balance, determinism, splits, output kinds (errors: test_input_errors.py)."""
import numpy as np
import pytest
import torch

from fastdyn import data


@pytest.mark.parametrize("name", ["stripe", "sphere", "gaussian_mixture", "parity"])
def test_balanced_and_deterministic(name):
    make = data.GENERATORS[name]
    kwargs = dict(k=2) if name == "parity" else {}
    split = make(4000, 6, p_test=2000, seed=3, **kwargs)
    assert split.x.shape == (4000, 6) and split.x_test.shape == (2000, 6)
    assert set(np.unique(split.y)) == {-1.0, 1.0}
    # Balanced classes: within 4 standard deviations of 1/2 (exactly 1/2 for the mixture).
    for labels in (split.y, split.y_test):
        assert abs(np.mean(labels == 1) - 0.5) < 4 * 0.5 / np.sqrt(len(labels))
    again = make(4000, 6, p_test=2000, seed=3, **kwargs)
    other = make(4000, 6, p_test=2000, seed=4, **kwargs)
    assert np.array_equal(split.x, again.x) and np.array_equal(split.y_test, again.y_test)
    assert not np.array_equal(split.x, other.x)
    # The training set does not depend on the test size.
    assert np.array_equal(make(4000, 6, p_test=10, seed=3, **kwargs).x, split.x)
    assert not np.array_equal(split.x[:2000], split.x_test)


def test_label_rules():
    x, y, _, _ = data.stripe(2000, 3, p_test=0)
    inside = (x[:, 0] > -0.3) & (x[:, 0] < 1.18549)
    assert np.array_equal(y, np.where(inside, -1.0, 1.0))
    x, y, _, _ = data.sphere(2000, 4, p_test=0)
    assert np.array_equal(y > 0, (x ** 2).sum(1) > 4 * (1 - 2 / 36) ** 3)
    split = data.parity(500, 8, subset=[1, 4, 6], p_test=0)
    assert set(np.unique(split.x)) == {-1.0, 1.0}
    assert np.array_equal(split.y, split.x[:, 1] * split.x[:, 4] * split.x[:, 6])
    assert split.info["subset"] == [1, 4, 6]
    assert len(data.parity(10, 8, k=3).info["subset"]) == 3
    x, y, _, _ = data.gaussian_mixture(3000, 2, separation=4.0, p_test=0)
    assert np.mean(np.sign(x[:, 0]) == y) > 0.95


def test_torch_output_and_dtype():
    split = data.stripe(10, 3, p_test=5, dtype="float32", as_torch=True)
    assert all(isinstance(a, torch.Tensor) and a.dtype == torch.float32 for a in split)
    x, y, xt, yt = data.sphere(10, 3, p_test=5, dtype=torch.float64)
    assert x.dtype == np.float64 and yt.shape == (5,)
    assert np.array_equal(data.stripe(10, 3, as_torch=True).x.numpy(), data.stripe(10, 3).x)
    assert all(a.device.type == "meta" for a in data.parity(10, 3, as_torch=True, device="meta"))


def test_digits():
    split = data.digits(400, d=10, task="parity", seed=1)
    assert split.x.shape == (400, 10) and split.x_test.shape == (1797 - 400, 10)
    assert np.allclose(split.x.std(axis=0), 1.0, atol=0.01)  # whitened on the training set
    assert np.array_equal(split.y, np.where(split.info["digit"] % 2 == 0, 1.0, -1.0))
    assert abs(split.y.mean()) < 0.15
    assert np.array_equal(data.digits(400, seed=1).x, split.x)
    assert not np.array_equal(data.digits(400, seed=2).y, split.y)
    small = data.digits(300, d=5, task="small", p_test=100, whiten=False)
    assert small.x.shape == (300, 5) and small.x_test.shape == (100, 5)
    assert np.mean((small.x ** 2).sum(1)) == pytest.approx(5.0)
