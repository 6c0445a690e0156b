"""Experiment double-descent-width (seed 003; Belkin et al. 2019, Nakkiran et al. 2020): on the quick configuration
(200 noisy digits) the min-norm random-features test error peaks at the interpolation threshold N = n and a small
ridge removes most of the peak; the two-layer network fits the noisy labels exactly above its threshold width and
not below it."""
import numpy as np
import pytest

from fastdyn import linear
from fastdyn.experiments import double_descent_width as ddw
from fastdyn.experiments import run_experiment
from fastdyn.models import FCNet

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("double-descent-width")
    return run_experiment("double-descent-width", out, quick=True, progress=False), out


def test_random_features_peak_at_the_interpolation_threshold(quick):
    summary, out = quick
    n = summary["n_train"]
    assert summary["rf_min-norm_peak_features"] == n == summary["rf_threshold_features"]
    assert summary["rf_min-norm_peak_test_error"] > 0.6  # near chance (0.9) at N = n
    assert summary["rf_min-norm_peak_test_error"] > 2 * summary["rf_min-norm_test_error_at_largest"]
    assert summary["rf_ridge_peak_test_error"] < summary["rf_min-norm_peak_test_error"] - 0.3
    # the min-norm fit interpolates exactly from N = n on, not below
    assert summary["rf_min-norm_smallest_interpolating_features"] == n
    assert (out / "width.png").exists() and (out / "epochwise.png").exists()


def test_network_interpolates_the_noisy_labels_above_its_threshold_only(quick):
    summary, _ = quick
    assert summary["network_threshold_width"] < 160
    for key in ("wd0", "wd0.001"):
        assert summary[key]["width160"]["train_error_mean"] == 0.0
        assert summary[key]["width4"]["train_error_mean"] > 0.3
        assert summary[key]["width160"]["test_error_mean"] < 0.25
        # early in training the wide net is better than after memorising the noise
        assert summary[key]["width160"]["best_step_test_error_mean"] < summary[key]["width160"]["test_error_mean"]


@pytest.mark.parametrize("features", [30, 80])
@pytest.mark.parametrize("ridge", [0.0, 1e-2])
def test_readout_fit_is_ridge_fit_column_by_column(features, ridge):
    rng = np.random.default_rng(0)
    phi, targets = rng.standard_normal((50, features)), rng.standard_normal((50, 3))
    expected = np.stack([linear.ridge_fit(phi, targets[:, c], ridge) for c in range(3)], axis=1)
    np.testing.assert_allclose(ddw.readout_fit(phi, targets, ridge), expected, rtol=1e-8, atol=1e-10)


def test_parameter_count_and_label_noise():
    assert ddw.parameters(17) == sum(p.numel() for p in FCNet([64, 17, 10]).parameters())
    x, y, _, y_test = ddw.noisy_split(1000, 0.5, seed=1)
    _, clean, _, clean_test = ddw.noisy_split(1000, 0.0, seed=1)
    assert abs(float((y != clean).double().mean()) - 0.45) < 0.05 and (y_test == clean_test).all()


@pytest.mark.parametrize("key, value", [("label_noise", 1.5), ("widths", []), ("n_train", 1797),
                                        ("rf_features", [0])])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("double-descent-width", tmp_path, quick=True, overrides={key: value}, progress=False)


def test_first_minimum_and_peak():
    sizes, errors = [4, 8, 16, 32, 64, 128], [0.6, 0.3, 0.4, 0.5, 0.3, 0.2]
    assert ddw.first_minimum_and_peak(sizes, errors, threshold=20) == (1, 3)  # the under-fitting 0.6 is no peak
    assert ddw.first_minimum_and_peak(sizes, [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], threshold=20) == (2, 2)
    assert ddw.first_minimum_and_peak(sizes, errors, threshold=2) == (0, 0)
