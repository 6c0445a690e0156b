"""Experiment ntk-convergence (issue 20): the empirical NTK at init tends to the analytic kernel like h^-1/2, and
moves during training at the mean-field scale but less and less at the NTK scale."""
import numpy as np
import pytest
import torch

import fastdyn
from fastdyn.experiments import ntk_convergence, run_experiment
from fastdyn.experiments import _kernel_regime as regime

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ntk_convergence")
    return run_experiment("ntk-convergence", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = ntk_convergence.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)


def test_analytic_kernel_is_symmetric_psd_and_the_monte_carlo_mean(quick_run):
    summary, out = quick_run
    assert summary["analytic_symmetric"] and summary["analytic_min_eigenvalue_over_max"] > -1e-12
    # the seed mean of the empirical NTK is unbiased: z^2 per entry averages ~1 (4 seeds: a t distribution with 3
    # degrees of freedom, E z^2 = 3)
    assert summary["monte_carlo_mean_z2_expected"] == 3.0
    for value in summary["monte_carlo_mean_z2"].values():
        assert 0.2 < value < 6.0
    assert (out / "ntk_convergence.png").stat().st_size > 0


def test_init_error_falls_like_inverse_root_width(quick_run):
    summary, out = quick_run
    arrays = np.load(out / "ntk_convergence.npz")
    assert arrays["init_error"].shape == (4, 3)
    assert np.all(np.diff(arrays["init_error"].mean(0)) < 0)
    assert abs(summary["init_error_slope"] + 0.5) < 0.15


def test_ntk_moves_at_the_mean_field_scale_only(quick_run):
    summary, out = quick_run
    arrays = np.load(out / "ntk_convergence.npz")
    ntk_change, mf_change = arrays["ntk_change"][:, :, -1], arrays["mf_change"][:, :, -1]  # (h, seed)
    assert np.all(arrays["ntk_change"][:, :, 0] == 0)  # Theta_0 against itself
    assert np.all(ntk_change[-1] < ntk_change[0])  # shrinks with h in every seed
    assert mf_change[-1].mean() > 0.5 * mf_change[0].mean()  # does not shrink
    assert mf_change[-1].mean() > 10 * ntk_change[-1].mean()


def test_monte_carlo_z2_detects_a_bias():
    rng = np.random.default_rng(0)
    analytic = np.eye(3)
    samples = analytic + 0.1 * rng.standard_normal((50, 3, 3))
    assert ntk_convergence.monte_carlo_z2(samples, analytic) < 3
    assert ntk_convergence.monte_carlo_z2(samples + 0.1, analytic) > 20


def test_analytic_kernel_matches_a_wide_network_at_the_mean_field_scale():
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = regime.network(4, 40000, "mf", 1)
    empirical, analytic = fastdyn.ntk(model, x), regime.analytic_ntk(x, "mf", 40000)
    assert regime.relative_change(empirical, analytic) < 0.05
    assert regime.learning_rate(x, "mf", 40000, 0.5) == pytest.approx(40000 * regime.learning_rate(x, "ntk", 1, 0.5))


def test_rerun_reuses_records_and_seeds_reproduce(tmp_path):
    overrides = {"hs_init": [16, 64], "seeds_init": 4, "hs": [16, 32], "seeds": 2, "steps": 20, "snapshots": 3,
                 "p": 16, "p_test": 16}
    first = run_experiment("ntk-convergence", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    again = run_experiment("ntk-convergence", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    other = run_experiment("ntk-convergence", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first["runs_reused_from_records"] == 0 and again["runs_reused_from_records"] == 8 + 8
    for summary in (again, other):
        assert {k: v for k, v in summary.items() if k != "runs_reused_from_records"} == \
            {k: v for k, v in first.items() if k != "runs_reused_from_records"}


@pytest.mark.parametrize("key, value", [("hs_init", [16, 16]), ("hs", []), ("seeds_init", 3), ("monte_carlo_points", 1000), ("lr_fraction", 0.0),
                                        ("d", 0), ("snapshots", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("ntk-convergence", tmp_path, quick=True, overrides={key: value}, progress=False)
