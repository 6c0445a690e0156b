"""Experiment parity-sgd (seed 000): SGD on a width-10d ReLU net learns sparse and linear targets and the full parity
at d = 5, and stays near chance on parities of 7 and 14 bits at d = 14, at the quick budget."""
import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import parity_sgd, run_experiment

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity-sgd")
    return run_experiment("parity-sgd", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = parity_sgd.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)
    assert config["dims"] == [5, 14]


def test_summary_keys_and_files(quick_run):
    summary, out = quick_run
    assert summary["chance_accuracy"] == 0.5 and summary["step_budget"] == parity_sgd.config(True)["steps"]
    for d in (5, 14):
        for target in parity_sgd.TARGETS:
            key = f"d={d}_{target}"
            for suffix in ("order", "final_accuracy_mean", "final_accuracy_min", "final_accuracy_max", "learned_runs",
                           "steps_to_target_fastest", "steps_to_target_slowest"):
                assert f"{key}_{suffix}" in summary
    assert summary["d=14_parity-half_order"] == 7 and summary["d=14_parity-full_order"] == 14
    assert summary["d=5_parity-half_order"] == 2 and summary["d=5_linear_order"] == 3
    curves = np.load(out / "curves.npz")
    assert curves["accuracy"].shape == (2, 4, 1, curves["steps"].size) and curves["steps"][0] == 0
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 8 and {run["target"] for run in runs} == set(parity_sgd.TARGETS)
    assert (out / "curves.png").stat().st_size > 0 and (out / "summary.png").stat().st_size > 0


def test_controls_and_small_parity_are_learned_large_parity_is_not(quick_run):
    summary, _ = quick_run
    for d in (5, 14):
        for target in ("parity-sparse", "linear"):
            assert summary[f"d={d}_{target}_final_accuracy_min"] >= 0.95, (d, target)
            assert summary[f"d={d}_{target}_learned_runs"] == "1/1"
    assert summary["d=5_parity-full_final_accuracy_min"] >= 0.95
    # at the start every target is at chance, and the full parity of 5 bits takes longer than the linear target
    assert summary["d=5_parity-full_steps_to_target_fastest"] > summary["d=5_linear_steps_to_target_fastest"]
    for target in ("parity-half", "parity-full"):
        assert abs(summary[f"d=14_{target}_final_accuracy_mean"] - 0.5) < 0.1, target
        assert summary[f"d=14_{target}_learned_runs"] == "0/1"
        assert summary[f"d=14_{target}_steps_to_target_fastest"] is None


def test_labels_and_test_inputs():
    config = parity_sgd.config(True)
    x = parity_sgd.random_inputs(500, 7, torch.Generator().manual_seed(1))
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    assert torch.equal(parity_sgd.labels(x, "parity-full", config), torch.prod(x, dim=1))
    assert torch.equal(parity_sgd.labels(x, "parity-half", config), x[:, 0] * x[:, 1] * x[:, 2])
    assert torch.equal(parity_sgd.labels(x, "linear", config), torch.sign(x[:, 0] + x[:, 1] + x[:, 2]))
    assert parity_sgd.test_inputs(config, 5).shape == (32, 5)
    assert parity_sgd.test_inputs(config, 20).shape == (config["n_test"], 20)
    steps = parity_sgd.log_steps(1000, 20)
    assert steps[0] == 0 and steps[-1] == 1000 and np.all(np.diff(steps) > 0)


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"dims": [6], "steps": 300}
    first = run_experiment("parity-sgd", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("parity-sgd", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "curves.npz")["accuracy"],
                          np.load(tmp_path / "b" / "curves.npz")["accuracy"])
    other = run_experiment("parity-sgd", tmp_path / "c", quick=True, overrides={**overrides, "seed": 1},
                           progress=False)
    assert other != first


@pytest.mark.parametrize("key, value", [("dims", [0]), ("dims", []), ("lr", 0.0), ("lr", -0.01), ("batch", 0),
                                        ("steps", 0), ("linear_k", 2), ("sparse_k", 9), ("target_accuracy", 0.5),
                                        ("exact_test_max_d", 30)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("parity-sgd", tmp_path, quick=True, overrides={key: value}, progress=False)
