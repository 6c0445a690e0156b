"""Experiment lazy-is-kernel (issue 20): a lazy network's outputs follow kernel gradient descent with its initial
empirical NTK, and less so the narrower it is or the smaller alpha."""
import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import predict
from fastdyn.experiments import lazy_is_kernel, run_experiment
from fastdyn.experiments import _kernel_regime as regime

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lazy_is_kernel")
    return run_experiment("lazy-is-kernel", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = lazy_is_kernel.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)


def test_files_and_shapes(quick_run):
    summary, out = quick_run
    config = lazy_is_kernel.config(True)
    arrays = np.load(out / "lazy_is_kernel.npz")
    assert arrays["gap_ntk_width"].shape == (config["seeds"], len(config["hs"])) == arrays["gap_mf_width"].shape
    assert arrays["gap_mf_alpha"].shape == (config["seeds"], len(config["alphas"]))
    assert arrays["gap_hinge_width"].shape == (config["seeds"], len(config["hinge_hs"]))
    for name in summary["figures"]:
        assert (out / name).stat().st_size > 0


def test_the_linearised_network_is_the_kernel_predictor(quick_run):
    summary, _ = quick_run
    # the control trains fastdyn.linearize(net) by the same gradient descent: the predictor to rounding
    assert summary["control_linearized_gap_max"] < 1e-10
    assert summary["initial_output_max"] == 0.0  # F = alpha (f - f0) starts at 0, as the predictor does
    assert 0 < summary["control_discrete_vs_flow_gap_max"] < 0.5  # gradient descent is not gradient flow


def test_lazy_gap_shrinks_with_width_and_alpha(quick_run):
    summary, out = quick_run
    arrays = np.load(out / "lazy_is_kernel.npz")
    for sweep in ("gap_ntk_width", "gap_mf_width", "gap_hinge_width", "gap_mf_alpha"):
        assert np.all(arrays[sweep][:, -1] < arrays[sweep][:, 0]), sweep  # in every seed
    assert summary["ntk_width_gap_slope"] < -0.25
    assert summary["ntk_width_last"]["sign_disagreement"][0] < 0.05


def test_first_step_matches_the_kernel_to_second_order():
    # one step of gradient descent on the network moves F by -(lr/p) Theta_0 (F - y) up to O(lr^2): halving lr
    # quarters the gap (for steps small enough that no ReLU kink is crossed), independently of the predictor module
    split = fastdyn.data.stripe(20, 3, p_test=5, seed=1, as_torch=True)
    model = regime.network(3, 256, "ntk", 0)
    K = fastdyn.ntk(model, split.x)
    gaps = []
    for lr in (2e-3, 1e-3):
        result = fastdyn.train(model, split.x, split.y, loss="mse", dynamics="sgd", lr=lr, max_steps=1,
                               record_weights=False)
        linear = (lr / 20) * (K @ split.y)
        gaps.append(float((result.final.train_out - linear).norm()))
        first = predict.gradient_descent_mse(K, split.y, [1], lr=lr, discrete=True).train[0]
        assert torch.allclose(first, linear, rtol=1e-12, atol=1e-14)
    assert 3.5 < gaps[0] / gaps[1] < 4.5


def test_mean_field_at_alpha_root_h_is_the_ntk_scale():
    # F = alpha (f_mf - f0) = (alpha / sqrt(h)) (f_ntk - f0) and the mean-field step is h times larger: the same
    # trajectory of the same weights, so the same gaps to rounding
    config = {**lazy_is_kernel.config(True), "p": 16, "p_test": 20, "steps": 40, "snapshots": 5}
    split = regime.dataset(config)
    mean_field = lazy_is_kernel.mse_run(config, split, "mf", 64, 8.0, 0)
    ntk_scale = lazy_is_kernel.mse_run(config, split, "ntk", 64, 1.0, 0)
    assert np.allclose(mean_field["gap_test"][1:], ntk_scale["gap_test"][1:], rtol=1e-6)
    assert mean_field["gap_test_max"] > 1e-4  # a real gap, not zero on both sides


def test_relative_gap():
    kernel = np.array([[0.0, 0.0], [3.0, 4.0]])
    net = np.array([[0.0, 0.0], [3.0, 5.0]])
    gap = lazy_is_kernel.relative_gap(net, kernel)
    assert np.isnan(gap[0]) and gap[1] == pytest.approx(0.2)


def test_rerun_reuses_records_and_seeds_reproduce(tmp_path):
    overrides = {"hs": [16, 64], "hinge_hs": [16, 32], "alphas": [10.0, 100.0], "alpha_width": 32, "steps": 30,
                 "snapshots": 4, "p": 24, "p_test": 30}
    first = run_experiment("lazy-is-kernel", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    again = run_experiment("lazy-is-kernel", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    other = run_experiment("lazy-is-kernel", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    runs = 2 * (2 * 2 + 2) + 2 * 2
    assert first["runs_reused_from_records"] == 0 and again["runs_reused_from_records"] == runs
    for summary in (again, other):
        assert {k: v for k, v in summary.items() if k != "runs_reused_from_records"} == \
            {k: v for k, v in first.items() if k != "runs_reused_from_records"}
    changed = run_experiment("lazy-is-kernel", tmp_path / "c", quick=True, overrides={**overrides, "data_seed": 1},
                             progress=False)
    assert changed["ntk_width_gap"] != first["ntk_width_gap"]


@pytest.mark.parametrize("key, value", [("hs", [64]), ("hinge_hs", [32, 16]), ("alphas", [10.0, -1.0]),
                                        ("lr_fraction", 1.5), ("p", 0), ("alpha_width", 0), ("mf_alpha", 0.0),
                                        ("dataset", "digits"), ("steps", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("lazy-is-kernel", tmp_path, quick=True, overrides={key: value}, progress=False)
