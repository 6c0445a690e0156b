"""Experiment random-labels (seed 003, Zhang et al. 2017): the quick configuration fits true labels, fully shuffled
labels and random pixels to 100 % training accuracy with both networks, shuffled labels take longer, and the test
error of the memorising networks is near chance."""
import pytest
import torch

from fastdyn import data
from fastdyn.experiments import random_labels, run_experiment

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("random-labels")
    return run_experiment("random-labels", out, quick=True, progress=False), out


def test_every_condition_reaches_full_train_accuracy(quick):
    summary, out = quick
    for architecture in ("mlp", "cnn"):
        for name in ("noise0", "noise1", "pixels"):
            entry = summary[f"{architecture}_{name}"]
            assert entry["converged"] == entry["runs"] == 1
            assert entry["final_train_accuracy_min"] == 1.0
    assert (out / "random_labels.png").exists()


def test_shuffled_labels_fit_slower_and_generalise_at_chance(quick):
    summary, _ = quick
    for architecture in ("mlp", "cnn"):
        true, shuffled, pixels = (summary[f"{architecture}_{n}"] for n in ("noise0", "noise1", "pixels"))
        assert shuffled["epochs_mean"] > true["epochs_mean"]
        assert true["test_error_mean"] < 0.2
        assert shuffled["test_error_mean"] > 0.8 and pixels["test_error_mean"] > 0.8
        # the trained NTK aligns less with shuffled labels than with the true ones
        assert shuffled["alignment_trained_mean"] < true["alignment_trained_mean"]


def test_corruption_changes_the_expected_fraction_of_labels():
    split = data.digit_images(1000, seed=0, as_torch=True)
    _, y, _, y_test = random_labels.corrupt(split, 0.5, seed=3)
    changed = float((y != split.y).double().mean())
    assert abs(changed - 0.45) < 0.05  # half redrawn, a tenth of those to the same digit
    assert torch.equal(y_test, split.y_test)
    x, y, _, _ = random_labels.corrupt(split, "pixels", seed=3)
    assert torch.equal(y, split.y) and abs(float(x.std()) - 1.0) < 0.02


@pytest.mark.parametrize("key, value", [("noise", [1.5]), ("architectures", ["rnn"]), ("ntk_points", 5000),
                                        ("n_train", 1797)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("random-labels", tmp_path, quick=True, overrides={key: value}, progress=False)
