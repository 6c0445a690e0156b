"""Experiment weight-spectra (seed 003): layer spectra at init against the Marchenko-Pastur law with torch's known
init variance, and after training; checked against numpy's eigenvalues and reruns."""
import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import _seed003, run_experiment, weight_spectra

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("weight-spectra")
    return run_experiment("weight-spectra", out, quick=True, progress=False), out


def test_layer_record_against_numpy_and_the_known_init_variance():
    model = _seed003.init_model([64, 300, 300, 10], 3)
    layer = weight_spectra.linear_layers(model)[1]                        # (300, 300): ratio 1
    record = weight_spectra.layer_record(layer)
    W = layer.weight.detach().double().numpy()
    np.testing.assert_allclose(record["eigenvalues"], np.linalg.eigvalsh(W.T @ W / 300), rtol=1e-8, atol=1e-12)
    # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1 / (3 fan_in); the bulk fit finds it
    assert record["sigma2"] == pytest.approx(1 / (3 * 300), rel=0.05)
    assert record["n_outliers"] == 0


def test_summary_files_and_claims(quick_run):
    summary, out = quick_run
    for name in ("config.json", "results.json", "weight_spectra.npz", "init_vs_mp.png", "trained.png", "summary.png"):
        assert (out / name).is_file(), name
    for width in (16, 32):
        entry = summary[f"width{width}"]
        for layer in (1, 2):
            # at init the fitted variance is torch's 1 / (3 fan_in), and no eigenvalue leaves the bulk
            assert entry[f"layer{layer}_init_sigma2_fit_over_known_mean"] == pytest.approx(1.0, abs=0.15)
            assert entry[f"layer{layer}_init_n_outliers_mean"] == 0
    assert json.loads((out / "results.json").read_text())["summary"] == summary


def test_fixed_seed_reproduces_exactly_and_a_rerun_reuses_its_records(quick_run, tmp_path):
    summary, out = quick_run
    again = run_experiment("weight-spectra", out, quick=True, progress=False)
    assert again["runs_reused"] > 0
    assert {k: v for k, v in again.items() if k != "runs_reused"} == \
        {k: v for k, v in summary.items() if k != "runs_reused"}
    fresh = run_experiment("weight-spectra", tmp_path, quick=True, progress=False)
    assert fresh["width16"] == summary["width16"]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="widths"):
        weight_spectra.check_config({**weight_spectra.config(True), "widths": []})
    with pytest.raises(ValueError, match="n_train"):
        weight_spectra.check_config({**weight_spectra.config(True), "n_train": 1797})
    assert torch.get_num_threads() >= 1
