"""Experiment remedies (seed 003): on the quick configuration (depth 20, width 32, 300 SGD steps) the plain deep MLP
does not train (its init gradients vanish towards the input), skip connections train it to zero training error and
batch norm far below the plain net; dropout 0.5 on top of the plain net does not rescue it (stated, not hoped)."""
import pytest
import torch

from fastdyn.experiments import remedies, run_experiment

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("remedies")
    return run_experiment("remedies", out, quick=True, progress=False), out


def test_skip_and_batchnorm_train_the_deep_net_where_plain_does_not(quick):
    summary, out = quick
    assert summary["plain"]["trained"] == 0 and summary["plain"]["final_train_error_mean"] > 0.8
    assert summary["skip"]["trained"] == 1 and summary["skip"]["final_test_error_mean"] < 0.15
    assert summary["batchnorm"]["final_train_error_mean"] < 0.2  # on its way down at 300 steps, not yet < 0.05
    assert summary["dropout"]["final_train_error_mean"] > 0.8  # dropout does not cure vanishing gradients
    assert (out / "remedies.png").exists()


def test_init_gradients_vanish_towards_the_input_only_without_a_remedy(quick):
    summary, _ = quick
    assert summary["plain"]["log10_init_gradient_first_over_last_mean"] < -4
    for variant in ("batchnorm", "skip"):
        assert abs(summary[variant]["log10_init_gradient_first_over_last_mean"]) < 2


def test_variants_share_the_weights_layout_and_skip_adds_the_identity():
    shapes = {v: [tuple(m.weight.shape) for m in remedies.linear_layers(remedies.make_model(v, 5, 16, 0))]
              for v in remedies.VARIANTS}
    assert all(s == shapes["plain"] for s in shapes.values()) and len(shapes["plain"]) == 7
    block = remedies.Residual(16)
    torch.nn.init.zeros_(block.layer.weight)
    torch.nn.init.zeros_(block.layer.bias)
    h = torch.randn(4, 16)
    assert torch.equal(block(h), h)


@pytest.mark.parametrize("key, value", [("depth", 0), ("n_train", 1797), ("seeds", [])])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("remedies", tmp_path, quick=True, overrides={key: value}, progress=False)
