"""The 1-D deep chain (seed 001's deep narrow network): gradient and descent against torch autograd (fp64), and the
deep-narrow experiment's quick run."""
import json

import numpy as np
import pytest
import torch

from fastdyn import deep_linear as dl
from fastdyn.experiments import run_experiment


def test_chain_gradient_matches_autograd():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((5, 6))
    weights[2, 3] = 0.0                                    # exact where a factor is zero
    loss, grad = dl.chain_gradient(weights, 1.7)
    w = torch.tensor(weights, requires_grad=True)
    ref = 0.5 * (1.7 - w.prod(dim=1)) ** 2
    ref.sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_chain_descent_matches_torch_loop_and_flags_divergence():
    target, steps = 2.0, 200
    weights = np.full((3, 4), 0.9)
    bound = dl.chain_stability_bound(target, 4)
    lr = np.array([0.02, 0.9 * bound, 3.0 * bound])
    losses = dl.chain_descent(weights, target, lr, steps)
    w = torch.tensor(weights[:2], requires_grad=True)
    for k in range(steps + 1):
        loss = 0.5 * (target - w.prod(dim=1)) ** 2
        np.testing.assert_allclose(losses[k, :2], loss.detach().numpy(), rtol=1e-9, atol=1e-15)
        (grad,) = torch.autograd.grad(loss.sum(), w)
        with torch.no_grad():
            w = (w - torch.tensor(lr[:2, None]) * grad).requires_grad_(True)
    assert losses[-1, 1] < 1e-20 and np.isinf(losses[-1, 2])
    assert dl.steps_to(losses, 0.01)[1] < dl.steps_to(losses, 0.01)[0] and np.isnan(dl.steps_to(losses, 0.01)[2])


def test_chain_descent_rejects_bad_arguments():
    with pytest.raises(ValueError):
        dl.chain_descent(np.ones(3), 1.0, 0.1, 10)
    with pytest.raises(ValueError):
        dl.chain_descent(np.ones((1, 3)), 1.0, 0.1, -1)


def test_steps_to_counts_from_where_the_loss_stays_below():
    losses = np.array([[1.0, 1.0, 1.0], [0.005, 0.5, 0.5], [0.5, 0.005, 0.5], [0.001, 0.001, 0.5]])
    np.testing.assert_array_equal(dl.steps_to(losses, 0.01), [3.0, 2.0, np.nan])


def test_deep_narrow_quick(tmp_path):
    summary = run_experiment("deep-narrow", tmp_path, quick=True, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())["summary"]
    assert saved["bound_converged_below"] == saved["bound_depths"] == 4 and saved["bound_converged_above"] == 0
    for d in (1, 2, 3, 4):   # the grid's best rate is not above the bound (D = 2: 1.004 x, held below 1 % by a cycle)
        assert summary["best_lr_over_bound"][f"D={d}"] < 1.05
    assert (tmp_path / "deep_narrow.png").exists()


def test_deep_narrow_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError):
        run_experiment("deep-narrow", tmp_path, quick=True, progress=False, overrides={"fraction": 1.5})
