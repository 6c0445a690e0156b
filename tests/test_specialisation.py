"""Experiment specialisation (seed 000): hidden neurons start as random mixtures of the vertical and horizontal edge
and become pure detectors; averaging two trained networks without matching their neurons gives a poor network,
after matching (align_neurons) a good one."""
import json

import numpy as np
import pytest
import torch

from fastdyn import FCNet
from fastdyn.data import edge_images, edge_patterns
from fastdyn.experiments import run_experiment, specialisation

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("specialisation")
    return run_experiment("specialisation", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = specialisation.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)
    assert config["pairs"] == 2


def test_summary_keys_and_files(quick_run):
    summary, out = quick_run
    config = specialisation.config(True)
    assert summary["networks"] == 4 and summary["pairs"] == 2
    for name in ("raw", "aligned"):
        for key in ("average_error", "error_barrier", "loss_barrier", "average_purity"):
            assert f"{name}_{key}_mean" in summary and f"{name}_{key}_std" in summary
    arrays = np.load(out / "specialisation.npz")
    snapshots = arrays["steps"].size
    assert arrays["steps"][0] == 0 and arrays["steps"][-1] == config["steps"]
    assert arrays["cos_v"].shape == (4, snapshots, config["width"]) == arrays["share"].shape
    assert np.allclose(arrays["share"].sum(axis=2), 1.0)
    assert arrays["raw_error"].shape == (2, config["interpolation_steps"]) == arrays["aligned_error"].shape
    assert arrays["type_counts"].shape == (4, 4)
    pairs = json.loads((out / "pairs.json").read_text())
    assert len(pairs) == 2 and set(pairs[0]) == {"raw", "aligned"}
    for name in ("dynamics.png", "weights.png", "interpolation.png"):
        assert (out / name).stat().st_size > 0


def test_neurons_specialise(quick_run):
    summary, _ = quick_run
    assert summary["final_test_error_mean"] < 0.06
    assert summary["final_purity_mean"] > 0.85
    assert summary["final_purity_mean"] > summary["init_purity_mean"] + 0.2
    assert summary["final_in_plane_mean"] > 5 * summary["init_in_plane_mean"]


def test_averaging_needs_matched_neurons(quick_run):
    summary, _ = quick_run
    assert summary["pairs_aligned_average_better"] == "2/2"
    assert summary["raw_average_error_mean"] > 2 * summary["aligned_average_error_mean"]
    assert summary["raw_error_barrier_mean"] > 0.1
    assert summary["raw_average_purity_mean"] < summary["aligned_average_purity_mean"]
    assert summary["aligned_function_error_gap_max"] == 0.0  # a permutation changes no prediction


def test_edge_data_and_overlaps():
    vertical, horizontal = edge_patterns(7)
    assert np.isclose(np.linalg.norm(vertical), 1) and np.isclose(np.linalg.norm(horizontal), 1)
    assert abs(vertical @ horizontal) < 1e-12
    assert np.array_equal(vertical.reshape(7, 7).T, horizontal.reshape(7, 7))
    split = edge_images(200, p_test=50, seed=3)
    again = edge_images(200, p_test=80, seed=3)
    assert np.array_equal(split.x, again.x) and np.array_equal(split.y, again.y)
    assert np.array_equal(split.y, np.sign(np.abs(split.info["a"]) - np.abs(split.info["b"])))
    model = FCNet([49, 3, 1])
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(np.stack([vertical, -horizontal, vertical + horizontal])))
        model[2].weight.fill_(1.0)
    overlaps = specialisation.neuron_overlaps(model, torch.tensor(vertical), torch.tensor(horizontal))
    assert np.allclose(overlaps["purity"], [1, 1, 0], atol=1e-6)
    assert np.allclose(overlaps["in_plane"], 1)
    assert specialisation.neuron_types(overlaps)[:2] == ["+V", "-H"]


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"steps": 40, "pairs": 1, "n_train": 300, "batch": 300, "n_test": 200, "n_snapshots": 5}
    first = run_experiment("specialisation", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("specialisation", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "specialisation.npz")["cos_v"],
                          np.load(tmp_path / "b" / "specialisation.npz")["cos_v"])
    other = run_experiment("specialisation", tmp_path / "c", quick=True, overrides={**overrides, "seed": 1},
                           progress=False)
    assert other != first


@pytest.mark.parametrize("key, value", [("size", 1), ("width", 0), ("batch", 5000), ("lr", 0.0), ("noise", -1.0),
                                        ("low", 2.0), ("interpolation_steps", 2), ("active_share", 1.0),
                                        ("pairs", 0), ("steps", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("specialisation", tmp_path, quick=True, overrides={key: value}, progress=False)
