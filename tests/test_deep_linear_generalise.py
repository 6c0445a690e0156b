"""Similarity-based generalisation (seed 001): the new item's hidden vector against gradient descent on its input
weights by torch autograd (fp64), and the deep-linear-generalise experiment's quick run: a new item, and a new
feature whose predictions are checked against kernel regression with the balanced theory's similarity V S V^T."""
from itertools import combinations

import numpy as np
import pytest
import torch

from fastdyn import deep_linear as dl
from fastdyn.data.hierarchical import correlation_svd, hierarchical
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

    # the new feature: the trained net's predictions are kernel regression with V S V^T (computed here on its own)
    assert summary["new feature: RSM max rel deviation from V S V^T"] < 1e-6
    data = hierarchical(3, 2, 2000, 0.15, 0)
    _, s, v = correlation_svd(data.inputs, data.targets)
    similarity = (v * s) @ v.T
    fish = np.where(np.isin(np.arange(8), [0, 1]), 1.0, -1.0)
    for k in (1, 2, 4):
        correct = []
        for trained in map(list, combinations(range(8), k)):
            rest = [i for i in range(8) if i not in trained]
            weights = np.linalg.lstsq(similarity[np.ix_(trained, trained)], fish[trained], rcond=None)[0]
            correct.append(np.mean(np.sign(similarity[rest][:, trained] @ weights) == fish[rest]))
        assert summary[f"new feature fish (level 2), K={k}"]["accuracy"] == pytest.approx(np.mean(correct), abs=1e-12)
    # it works for features that follow the tree and fails for those that do not
    assert summary["new feature animal (level 1), K=4"]["accuracy"] > 0.85
    assert summary["new feature one leaf per pair, K=6"]["accuracy"] < 0.1          # the sibling is predicted wrong
    assert summary["new feature tuna only, K=2"]["sibling_predicted_positive"] == 1.0
    # taught early, "fish" (on tuna +1, rose -1) spreads to the birds; taught at the end, it does not
    arrays = np.load(tmp_path / "new_feature.npz")
    early = np.argmin(np.abs(arrays["taught_times"] - 80))
    robin, shark = 2, 0
    assert arrays["taught"][early, robin] > 0.5 and arrays["taught"][-1, robin] < 0.2
    assert arrays["taught"][-1, shark] > arrays["taught"][-1, robin]
    assert (tmp_path / "new_feature.png").exists()


def test_deep_linear_generalise_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError):
        run_experiment("deep-linear-generalise", tmp_path, quick=True, progress=False, overrides={"sibling": 8})
    with pytest.raises(ValueError, match="teach_items"):
        run_experiment("deep-linear-generalise", tmp_path, quick=True, progress=False, overrides={"teach_items": [9]})
