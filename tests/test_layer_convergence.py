"""Experiment layer-convergence (seed 000): similarity of every layer to its final state over training. At the quick
budget the CNN's layers converge bottom-up (conv1 is at its final state from the start, the logits last), and the
first hidden layer of either network is closer to its final state than the logits throughout (CKA)."""
import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import layer_convergence, run_experiment

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("layer-convergence")
    return run_experiment("layer-convergence", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = layer_convergence.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)
    assert config["seeds"] == 1 and config["architectures"] == ["mlp", "cnn"]


def test_summary_keys_and_files(quick_run):
    summary, out = quick_run
    config = layer_convergence.config(True)
    assert summary["probe_images"] == 1797
    assert summary["mlp_layers"] == "fc1,fc2,fc3,fc4,fc5,logits"
    assert summary["cnn_layers"] == "conv1,conv2,conv3,fc,logits"
    assert summary["cnn_features"] == "512,256,128,64,10"  # conv layers flattened per image to C * H * W
    for arch, labels in (("mlp", ["fc1", "fc5", "logits"]), ("cnn", ["conv1", "fc", "logits"])):
        assert summary[f"{arch}_final_train_accuracy_min"] >= 0.99
        for measure in ("svcca", "cka"):
            for label in labels:
                assert f"{arch}_{measure}_{label}_epochs_to_0.9_mean" in summary
            for key in ("lower_layers_spearman_mean", "lower_layers_bottom_up_seeds",
                        "top_two_before_slowest_lower_seeds", "mean_similarity", "0.98_epochs_mean"):
                assert f"{arch}_{measure}_{key}" in summary
    arrays = np.load(out / "similarity.npz")
    steps = arrays["mlp_steps"]
    assert steps[0] == 0 and steps[-1] == summary["mlp_total_steps"] and np.all(np.diff(steps) > 0)
    assert steps.size <= config["n_snapshots"] + 1
    for arch, layers in (("mlp", 6), ("cnn", 5)):
        for measure in ("svcca", "cka"):
            sim = arrays[f"{arch}_{measure}"]
            assert sim.shape == (1, layers, steps.size)
            assert np.all(sim >= -1e-9) and np.all(sim <= 1 + 1e-6)
            assert np.allclose(sim[..., -1], 1.0, atol=1e-6)  # the final state against itself
            assert arrays[f"{arch}_{measure}_steps_to_0.9"].shape == (1, layers)
    assert json.loads((out / "layers.json").read_text())["cnn"][0] == "conv1"
    for name in ("matrices.png", "convergence.png", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "runs").glob("arch=*.json"))) == 2


def test_cnn_converges_bottom_up(quick_run):
    summary, _ = quick_run
    for measure in ("svcca", "cka"):
        assert summary[f"cnn_{measure}_conv1_epochs_to_0.9_mean"] < summary[f"cnn_{measure}_conv3_epochs_to_0.9_mean"]
        assert summary[f"cnn_{measure}_lower_layers_bottom_up_seeds"] == "1/1"
        assert summary[f"cnn_{measure}_lower_layers_spearman_mean"] > 0.5
        mean = [float(v) for v in summary[f"cnn_{measure}_mean_similarity"].split(",")]
        assert mean[0] > mean[2] > mean[3]
    mlp = [float(v) for v in summary["mlp_cka_mean_similarity"].split(",")]
    assert mlp[0] > mlp[-1] + 0.1


def test_models_and_helpers():
    config = layer_convergence.config(True)
    model, names, labels = layer_convergence.build("cnn", config)
    x = torch.zeros(3, 64)
    assert model(x).shape == (3, 10) and len(names) == len(labels) == 5
    mlp, names, labels = layer_convergence.build("mlp", config)
    assert [type(mlp[int(n)]).__name__ for n in names] == ["ReLU"] * 5 + ["Linear"]
    steps = np.array([0, 10, 20, 40])
    sim = np.array([[0.5, 0.95, 0.8, 1.0], [0.1, 0.2, 0.3, 1.0]])
    assert layer_convergence.convergence_step(steps, sim, 0.9).tolist() == [10, 40]
    assert layer_convergence.snapshot_steps(1000, 10, 10)[[0, -1]].tolist() == [0, 1000]


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"architectures": ["mlp"], "mlp_widths": [16, 16, 16], "epochs": 3, "n_snapshots": 5, "n_train": 300}
    first = run_experiment("layer-convergence", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("layer-convergence", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "similarity.npz")["mlp_cka"],
                          np.load(tmp_path / "b" / "similarity.npz")["mlp_cka"])
    other = run_experiment("layer-convergence", tmp_path / "c", quick=True, overrides={**overrides, "seed": 1},
                           progress=False)
    assert other != first


@pytest.mark.parametrize("key, value", [("architectures", ["resnet"]), ("architectures", []), ("mlp_widths", []),
                                        ("cnn_channels", [0]), ("n_train", 1797), ("probe", "val"), ("lr", 0.0),
                                        ("momentum", 1.0), ("keep", 1.5), ("thresholds", [1.2]),
                                        ("cka_threshold", 1.0), ("epochs", 0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("layer-convergence", tmp_path, quick=True, overrides={key: value}, progress=False)


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(TypeError, match="epochs"):
        run_experiment("layer-convergence", tmp_path, quick=True, overrides={"epochs": 2.5}, progress=False)
