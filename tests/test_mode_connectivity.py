"""Experiment mode-connectivity (seed 000, Frankle et al. 2020): on digits, copies of one network trained with
different data orders are linearly connected (error barrier ~0, already from k = 0 on this easy task), independent
inits of the narrow deep net are not (barrier > 0.2), and aligning their hidden units removes most of it."""
import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import mode_connectivity, run_experiment

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mode-connectivity")
    return run_experiment("mode-connectivity", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = mode_connectivity.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)
    assert config["spawn_steps"][0] == 0


def test_summary_keys_shapes_and_files(quick_run):
    summary, out = quick_run
    config = mode_connectivity.config(True)
    seeds, spawn = config["seeds"], config["spawn_steps"]
    assert summary["spawn_steps"] == spawn and summary["n_test"] == 1797 - config["n_train"]
    for setting in mode_connectivity.SETTINGS:
        for k in spawn:
            for field in ("mean", "std", "min", "max"):
                assert f"{setting}_barrier_k={k}_{field}" in summary
        for key in ("independent_barrier_mean", "aligned_barrier_mean", "end_error_mean", "k_stable",
                    "loss_barrier_k=0_mean", "over_worse_end_k=0_mean"):
            assert f"{setting}_{key}" in summary
        assert len(summary[f"{setting}_k_stable_per_seed"]) == seeds
    paths = np.load(out / "paths.npz")
    n = config["interp_steps"]
    assert paths["t"].shape == (n,) and paths["t"][0] == 0 and paths["t"][-1] == 1
    assert paths["spawn_error"].shape == (2, seeds, len(spawn), n)
    assert paths["independent_error"].shape == paths["aligned_error"].shape == (2, seeds, n)
    assert paths["spawn_barrier"].shape == (2, seeds, len(spawn))
    # the barrier is the max along the path minus the mean of the two ends
    error = paths["spawn_error"]
    assert np.allclose(paths["spawn_barrier"], error.max(-1) - 0.5 * (error[..., 0] + error[..., -1]))
    assert len(list((out / "runs").glob("setting=*.json"))) == 2 * seeds * (len(spawn) + 1)
    assert set(json.loads((out / "settings.json").read_text())) == set(mode_connectivity.SETTINGS)
    for name in ("paths.png", "instability.png"):
        assert (out / name).stat().st_size > 0


def test_sgd_noise_copies_connected_independent_inits_not(quick_run):
    summary, _ = quick_run
    spawn = mode_connectivity.config(True)["spawn_steps"]
    # easy digits: stable to SGD noise from k = 0 on (the claim's "large barrier at k = 0" does not show here)
    for k in spawn:
        assert summary[f"easy_barrier_k={k}_max"] < 0.02, k
    assert summary["easy_k_stable"] == 0
    # narrow deep net: independent inits have a large barrier, SGD-noise copies spawned late do not
    assert summary["hard_independent_barrier_min"] > 0.2
    assert summary[f"hard_barrier_k={spawn[-1]}_mean"] < 0.03
    assert summary["hard_independent_barrier_mean"] > 5 * summary["hard_barrier_k=0_mean"]
    # most of the independent barrier is the permutation symmetry of the hidden units
    assert summary["hard_aligned_barrier_mean"] < 0.5 * summary["hard_independent_barrier_mean"]


def test_stable_from():
    grid = [0, 1, 10, 100]
    assert mode_connectivity.stable_from(grid, np.array([0.3, 0.01, 0.05, 0.0]), 0.02) == 100
    assert mode_connectivity.stable_from(grid, np.array([0.3, 0.01, 0.01, 0.0]), 0.02) == 1
    assert mode_connectivity.stable_from(grid, np.array([0.0, 0.0, 0.0, 0.0]), 0.02) == 0
    assert mode_connectivity.stable_from(grid, np.array([0.0, 0.0, 0.0, 0.1]), 0.02) is None


def test_sgd_is_seeded_and_data_order_matters():
    config = mode_connectivity.config(True)
    data = mode_connectivity.digits_split(config, 0)
    nets = [mode_connectivity.sgd(mode_connectivity.new_network(config, "hard", 3), data["x"], data["y"], 50,
                                  0.1, 32, order) for order in (7, 7, 8)]
    first, same, other = (torch.cat([p.detach().flatten() for p in net.parameters()]) for net in nets)
    assert torch.equal(first, same) and not torch.equal(first, other)
    noisy = mode_connectivity.noisy_labels(data["y"], 0.5, 0)
    changed = float((noisy != data["y"]).float().mean())
    assert 0.4 < changed < 0.5  # half are redrawn, a tenth of those land on the true class
    assert torch.equal(mode_connectivity.noisy_labels(data["y"], 0.0, 0), data["y"])


def test_fixed_seed_reproduces_exactly_and_resumes(tmp_path):
    overrides = {"steps": 40, "spawn_steps": [0, 5], "seeds": 1, "interp_steps": 5}
    first = run_experiment("mode-connectivity", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("mode-connectivity", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "paths.npz")["spawn_error"],
                          np.load(tmp_path / "b" / "paths.npz")["spawn_error"])
    again = run_experiment("mode-connectivity", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    assert again["reused_runs"] == 6 and {k: v for k, v in again.items() if k != "reused_runs"} == {
        k: v for k, v in first.items() if k != "reused_runs"}
    with pytest.raises(ValueError, match="other settings"):
        run_experiment("mode-connectivity", tmp_path / "a", quick=True, overrides={**overrides, "hard_lr": 0.2},
                       progress=False)


@pytest.mark.parametrize("key, value", [("steps", 0), ("spawn_steps", []), ("spawn_steps", [0, 600]),
                                        ("spawn_steps", [10, 0]), ("batch", 2000), ("n_train", 1790),
                                        ("threshold", 1.5), ("hard_widths", []), ("easy_lr", 0.0),
                                        ("hard_label_noise", 1.0), ("interp_steps", 2)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("mode-connectivity", tmp_path, quick=True, overrides={key: value}, progress=False)


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(TypeError, match="easy_widths"):
        run_experiment("mode-connectivity", tmp_path, quick=True, overrides={"easy_widths": [1.5]}, progress=False)
