"""Experiment mean-field-vs-ntk (issue 20): under the 1/h scale the weights and the neurons' distribution move by
O(1) whatever the width; under 1/sqrt(h) they move less the wider the network."""
import numpy as np
import pytest
import scipy.stats
import torch

from fastdyn.experiments import mean_field_vs_ntk, run_experiment
from fastdyn.experiments import _kernel_regime as regime

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mean_field_vs_ntk")
    return run_experiment("mean-field-vs-ntk", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = mean_field_vs_ntk.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)


def test_files_and_shapes(quick_run):
    summary, out = quick_run
    config = mean_field_vs_ntk.config(True)
    arrays = np.load(out / "mean_field_vs_ntk.npz")
    for scale in ("mf", "ntk"):
        for key in ("relative_weight_change", "test_err", "moved_beta", "to_widest_alignment"):
            assert arrays[f"{scale}_{key}"].shape == (config["seeds"], len(config["hs"]))
        assert np.all(arrays[f"{scale}_to_widest_beta"][:, -1] == 0)  # the widest against itself
    for name in summary["figures"]:
        assert (out / name).stat().st_size > 0


def test_weights_move_at_the_mean_field_scale_only(quick_run):
    _, out = quick_run
    arrays = np.load(out / "mean_field_vs_ntk.npz")
    for key in ("relative_weight_change", "moved_beta"):
        ntk, mf = arrays[f"ntk_{key}"], arrays[f"mf_{key}"]
        assert np.all(ntk[:, -1] < 0.5 * ntk[:, 0]), key  # 16x the width: at least halved, every seed
        assert mf[:, -1].mean() > 0.5 * mf[:, 0].mean(), key  # not shrinking
        assert mf[:, -1].mean() > 3 * ntk[:, -1].mean(), key


def test_wasserstein_from_quantiles_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(20000), 0.5 + 2 * rng.standard_normal(20000)
    levels = mean_field_vs_ntk.quantile_levels(400)
    ours = mean_field_vs_ntk.wasserstein(np.quantile(a, levels), np.quantile(b, levels))
    assert ours == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=0.02)


def test_particles_lie_on_their_kinks():
    model = regime.network(3, 50, "mf", 0)
    values = mean_field_vs_ntk.particles(model)
    omega, b = model.omega.detach().numpy(), model.b.detach().numpy()
    assert np.allclose(values["alignment"], omega[:, 0] / np.linalg.norm(omega, axis=1))
    assert np.allclose(values["weight"], np.abs(model.beta.detach().numpy()) * np.linalg.norm(omega, axis=1))
    # the kink's x_1 is that of a point z on the hyperplane omega . z / sqrt(d) + b = 0 along omega
    z = values["kink_x1"][:, None] / omega[:, :1] * omega
    assert np.allclose((omega * z).sum(1) / np.sqrt(3) + b, 0, atol=1e-10)
    assert torch.equal(model.beta.detach(), torch.as_tensor(values["beta"]))


def test_rerun_reuses_records_and_seeds_reproduce(tmp_path):
    overrides = {"hs": [16, 32, 64], "seeds": 2, "steps": 20, "snapshots": 3, "p": 16, "p_test": 16, "quantiles": 10,
                 "particles_kept": 5}
    first = run_experiment("mean-field-vs-ntk", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    again = run_experiment("mean-field-vs-ntk", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    other = run_experiment("mean-field-vs-ntk", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first["runs_reused_from_records"] == 0 and again["runs_reused_from_records"] == 12
    for summary in (again, other):
        assert {k: v for k, v in summary.items() if k != "runs_reused_from_records"} == \
            {k: v for k, v in first.items() if k != "runs_reused_from_records"}


@pytest.mark.parametrize("key, value", [("hs", [8]), ("quantiles", 1), ("particles_kept", 0), ("seeds", 0),
                                        ("data_seed", -1)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("mean-field-vs-ntk", tmp_path, quick=True, overrides={key: value}, progress=False)
