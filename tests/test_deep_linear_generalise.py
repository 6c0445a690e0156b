"""Similarity-based generalisation (seed 001): the new item's hidden vector against gradient descent on its input
weights by torch autograd (fp64), and the deep-linear-generalise experiment's quick run."""
import numpy as np
import pytest
import torch

from fastdyn import deep_linear as dl
from fastdyn.experiments import run_experiment


def test_new_item_representation_is_where_gradient_descent_from_zero_ends():
    rng = np.random.default_rng(0)
    w_out = rng.standard_normal((40, 4)) @ rng.standard_normal((4, 6))   # rank 4, so the minimum norm matters
    observed = np.array([1, 5, 7, 11, 20, 33, 39])
    values = rng.choice([-1.0, 1.0], observed.size)
    h = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    a, y = torch.tensor(w_out[observed]), torch.tensor(values)
    singular = np.linalg.svd(w_out[observed], compute_uv=False)
    lr = 1.0 / singular[0] ** 2                          # 20,000 steps shrink the slowest mode by ~e^-(20000 k^-1)
    assert singular[3] ** 2 * lr * 20_000 > 40            # the rank-4 part's slowest mode is converged
    for _ in range(20_000):
        loss = 0.5 * ((y - a @ h) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, h)
        with torch.no_grad():
            h -= lr * grad
    np.testing.assert_allclose(dl.new_item_representation(w_out, observed, values), h.detach().numpy(), atol=1e-9)
    with pytest.raises(ValueError):
        dl.new_item_representation(w_out, observed, values[:3])


def test_deep_linear_generalise_quick(tmp_path):
    summary = run_experiment("deep-linear-generalise", tmp_path, quick=True, progress=False)
    many = summary["K=64"]
    assert many["accuracy_agreeing"] > 0.8 and many["accuracy_exceptions"] < 0.3
    assert many["most_similar_item"] in ("shark", "tuna")


def test_deep_linear_generalise_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError):
        run_experiment("deep-linear-generalise", tmp_path, quick=True, progress=False, overrides={"sibling": 8})
