"""Seed-002 experiments end to end in their quick configurations, plus the fitting helpers they rely on.

Each experiment runs once per session (module-scoped fixture) into a temporary directory; the tests check the files
it writes and the physics that is cheap to see at this size.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import REGISTRY, _seed002 as common, run_experiment

SEED002 = ("learning-curves", "compression", "ntk-pca", "intrinsic-dimension", "kinks")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """name -> (output directory, summary), each quick experiment run once, lazily."""
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            cache[name] = (out, run_experiment(name, out, quick=True, progress=False))
        return cache[name]

    return get


def _check_outputs(out, summary):
    meta = json.loads((out / "results.json").read_text())
    assert meta["quick"] is True and meta["summary"]["figures"] == summary["figures"]
    for figure in summary["figures"]:
        path = out / figure
        assert path.stat().st_size > 5_000, f"{figure} looks empty"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_registered():
    assert set(SEED002) <= set(REGISTRY)


def test_learning_curves(results):
    out, summary = results("learning-curves")
    _check_outputs(out, summary)
    data = np.load(out / "errors.npz")
    for name in ("stripe", "sphere"):
        for method in ("feature", "lazy", "svc_ntk_init", "svc_ntk_end", "knn5"):
            errors = data[f"{name}_{method}"]
            assert errors.shape == (2, 2) and np.isfinite(errors).all() and (errors <= 0.6).all()
            assert np.isfinite(summary[f"{name}_beta_{method}"])
    # stripe: the feature network beats the lazy one at the largest p (compression of the x_perp directions)
    assert summary["stripe_err_feature_largest_p"] < summary["stripe_err_lazy_largest_p"]
    # sphere: nothing to compress, the lazy network is at least as good
    assert summary["sphere_err_lazy_largest_p"] <= summary["sphere_err_feature_largest_p"]
    assert summary["beta_theory_stripe_lazy"] == pytest.approx(5 / 13)


def test_compression(results):
    out, summary = results("compression")
    _check_outputs(out, summary)
    assert summary["feature_beats_lazy_every_p"]
    for p in (64, 128):
        assert summary[f"p{p}_lambda_feature"] > 1.5 * summary[f"p{p}_lambda_lazy"]
        # the lazy network barely moves: Lambda stays at its initial value 1/sqrt(d-1)
        assert summary[f"p{p}_lambda_lazy"] == pytest.approx(summary["lambda_init"], rel=0.25)
    assert summary["p128_lambda_feature"] > summary["p64_lambda_feature"]


def test_ntk_pca(results):
    out, summary = results("ntk-pca")
    _check_outputs(out, summary)
    # feature learning aligns the NTK with the label; the lazy NTK hardly changes
    assert summary["feature_end_alignment"] > summary["init_alignment"] + 0.05
    assert summary["lazy_end_alignment"] == pytest.approx(summary["init_alignment"], abs=0.02)
    assert summary["feature_end_label_power_top10"] > summary["init_label_power_top10"]
    data = np.load(out / "ntk_pca.npz")
    assert data["init_mutual_information"].shape == (10,)
    assert np.all(np.diff(data["init_eigenvalues"]) <= 1e-12)
    rows = json.loads((out / "svc_vs_network.json").read_text())
    assert [row["p"] for row in rows] == [64, 128]
    assert all(0 <= row["svc_ntk_end_feature"] <= 0.6 for row in rows)


def test_intrinsic_dimension(results):
    out, summary = results("intrinsic-dimension")
    _check_outputs(out, summary)
    for name in ("stripe", "sphere"):
        assert 3 < summary[f"{name}_input_id"] < 7  # Gaussian inputs in d = 5
        # the lazy representation keeps the input's dimension (it is nearly the initial linear map)
        assert summary[f"{name}_lazy_id_end"] == pytest.approx(summary[f"{name}_lazy_id_init"], rel=0.1)
    # compression: the stripe's feature representation concentrates its variance on one direction (x_par), which
    # the sphere's does not (TwoNN, blind to a linear squeeze at this small size, is only checked to stay <= d)
    assert summary["stripe_feature_id_end"] < 5.5
    assert summary["stripe_feature_pc1_variance_end"] > summary["stripe_feature_pc1_variance_init"] + 0.2
    assert summary["stripe_feature_pc1_variance_end"] > summary["sphere_feature_pc1_variance_end"] + 0.2


def test_kinks(results):
    out, summary = results("kinks")
    _check_outputs(out, summary)
    counts = json.loads((out / "attractors.json").read_text())["counts"]
    for row in counts:
        assert 1 <= row["attractors"] < row["h"]  # feature training groups neurons into fewer attractors
    for name in ("stripe", "sphere"):
        assert summary[f"{name}_D_attractors"] < summary[f"{name}_A_attractors"]


def test_power_law_recovers_exponent():
    p = np.array([64, 128, 256, 512, 1024])
    rng = np.random.default_rng(1)
    errors = 2.0 * p ** -0.6 * np.exp(0.05 * rng.standard_normal((4, p.size)))
    fit = common.power_law(p, errors)
    assert fit["beta"] == pytest.approx(0.6, abs=0.05)
    assert 0 < fit["beta_err"] < 0.05
    single = common.power_law(p, errors[:1])
    assert 0 < single["beta_err"] < 0.1  # standard error of the slope for one seed
    exact = common.power_law(p, 3.0 * p ** -0.5)
    assert exact["beta"] == pytest.approx(0.5, abs=1e-12) and exact["beta_err"] == pytest.approx(0, abs=1e-12)
    assert np.isnan(common.power_law(p, np.zeros(p.size))["beta"])


def test_compression_ratio():
    omega = torch.zeros(3, 4, dtype=torch.float64)
    omega[:, 0] = torch.tensor([3.0, 0.0, 4.0])
    omega[:, 1] = torch.tensor([1.0, 1.0, 1.0])
    expected = np.sqrt(25 / 3) / 1.0
    assert common.compression(omega) == pytest.approx(expected, rel=1e-12)
    assert common.beta_theory(10)["feature"] == pytest.approx(19 / 28)
