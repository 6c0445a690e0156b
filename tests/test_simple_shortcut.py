"""Experiment simple-shortcut (seed 000): on the offset XOR with a 45-degree shortcut right on 90 % of the points,
SGD first fits the shortcut (test error plateaus near 10 %, wrong on the whole flipped region) and reaches a low error
later than on the centred XOR, which has no simple predictor and is the same function class."""
import json

import numpy as np
import pytest

from fastdyn.data import shortcut_xor
from fastdyn.experiments import run_experiment, simple_shortcut

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("simple-shortcut")
    return run_experiment("simple-shortcut", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = simple_shortcut.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)
    assert config["strengths"] == [0.5, 0.9]


def test_summary_keys_shapes_and_files(quick_run):
    summary, out = quick_run
    config = simple_shortcut.config(True)
    for key in ("s=0.5", "s=0.9"):
        for suffix in ("shortcut_test_accuracy", "best_halfplane_test_accuracy", "final_error_mean",
                       "steps_to_target", "steps_to_target_reached", "steps_to_target_log10_mean"):
            assert f"{key}_{suffix}" in summary, (key, suffix)
    for suffix in ("plateau_start", "plateau_end", "plateau_steps", "plateau_unconverged", "plateau_error_median"):
        assert f"s=0.9_{suffix}" in summary
    assert "s=0.5_plateau_start" not in summary
    curves = np.load(out / "curves.npz")
    assert curves["error"].shape == (2, config["seeds"], curves["steps"].size)
    assert curves["steps"][0] == 0 and curves["steps"][-1] == config["steps"]
    assert len(json.loads((out / "runs.json").read_text())) == 2 * config["seeds"]
    for name in ("curves.png", "summary.png", "data.png"):
        assert (out / name).stat().st_size > 0


def test_shortcut_is_the_best_half_plane_only_when_strong(quick_run):
    summary, _ = quick_run
    assert abs(summary["s=0.9_shortcut_test_accuracy"] - 0.9) < 0.015
    assert abs(summary["s=0.9_best_halfplane_test_accuracy"] - summary["s=0.9_shortcut_test_accuracy"]) < 0.01
    # centred XOR: half-planes through the origin get exactly half; the best off-centre one about 0.64
    assert summary["s=0.5_best_halfplane_test_accuracy"] < 0.67


def test_sgd_latches_onto_the_shortcut_then_learns_the_rest_later(quick_run):
    summary, _ = quick_run
    # a plateau at the shortcut's error ...
    assert all(start is not None for start in summary["s=0.9_plateau_start"])
    assert 0.07 < summary["s=0.9_plateau_error_median"] < 0.13
    # ... after which the low error comes later than on the no-shortcut XOR, seed by seed (same init, same inputs)
    for xor, shortcut in zip(summary["s=0.5_steps_to_target"], summary["s=0.9_steps_to_target"]):
        assert xor is not None and shortcut is not None and shortcut > 1.5 * xor
    assert summary["s=0.5_final_error_mean"] < 0.02 and summary["s=0.9_final_error_mean"] < 0.02


def test_best_halfplane_accuracy_and_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 2))
    assert simple_shortcut.best_halfplane_accuracy(x, np.where(x[:, 0] > 0.3, 1.0, -1.0)) == 1.0
    split = shortcut_xor(2000, strength=0.8, p_test=20_000, seed=1)
    u = (split.x_test[:, 0] + split.x_test[:, 1]) / np.sqrt(2)
    assert abs(np.mean(np.sign(u) == split.y_test) - 0.8) < 0.01
    assert np.array_equal(split.info["shortcut_test"], np.sign(u))
    assert np.array_equal(shortcut_xor(2000, strength=0.8, p_test=5, seed=1).x, split.x)
    with pytest.raises(ValueError, match="strength"):
        shortcut_xor(10, strength=1.0)


def test_plateau_reading():
    steps = np.array([0, 1, 10, 100, 1000])
    agreement = np.array([0.5, 0.9, 0.97, 0.96, 0.9])
    error = np.array([0.5, 0.2, 0.1, 0.1, 0.01])
    assert simple_shortcut.plateau(steps, agreement, error, 0.9, 0.95) == (10, 1000)
    assert simple_shortcut.plateau(steps, agreement, np.full(5, 0.1), 0.9, 0.95) == (10, None)
    assert simple_shortcut.plateau(steps, np.full(5, 0.5), error, 0.9, 0.95) == (None, None)


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"strengths": [0.9], "steps": 200, "seeds": 1, "p": 300, "p_test": 500, "n_logs": 10}
    first = run_experiment("simple-shortcut", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("simple-shortcut", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "curves.npz")["error"],
                          np.load(tmp_path / "b" / "curves.npz")["error"])
    other = run_experiment("simple-shortcut", tmp_path / "c", quick=True, overrides={**overrides, "seed": 1},
                           progress=False)
    assert other != first


@pytest.mark.parametrize("key, value", [("strengths", []), ("strengths", [1.0]), ("strengths", [0.4]),
                                        ("hidden", []), ("lr", 0.0), ("batch", 0), ("steps", 0),
                                        ("target_error", 0.06), ("plateau_agreement", 1.0), ("p", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("simple-shortcut", tmp_path, quick=True, overrides={key: value}, progress=False)
