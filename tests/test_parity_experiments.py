"""Experiments parity-construction and parity-gradient (seed 000): the quick configurations' summaries, the
helpers against brute force, and checks that fail on a wrong construction or a wrong Walsh transform."""
import itertools
import math

import numpy as np
import pytest
import torch

from fastdyn import parity
from fastdyn.experiments import parity_construction, parity_gradient, run_experiment


@pytest.fixture(scope="module")
def construction(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity-construction")
    return run_experiment("parity-construction", out, quick=True, progress=False), out


@pytest.fixture(scope="module")
def gradient(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity-gradient")
    return run_experiment("parity-gradient", out, quick=True, progress=False), out


def test_construction_is_exact_with_width_at_most_4d(construction):
    summary, out = construction
    dims = parity_construction.config(True)["dims"]
    assert summary["max_error_float64_all"] == 0.0 and summary["max_error_float32_all"] == 0.0
    for d in dims:
        assert summary[f"d={d}_inputs_per_subset"] == 2 ** d
        assert summary[f"d={d}_widths"] == [4 * math.ceil(k / 2) for k in summary[f"d={d}_subset_sizes"]]
        assert max(summary[f"d={d}_widths"]) <= 4 * d
        assert d in summary[f"d={d}_subset_sizes"] and 1 in summary[f"d={d}_subset_sizes"]
    assert summary["d=100_inputs_per_subset"] == parity_construction.config(True)["large_samples"]
    assert summary["inputs_checked_total"] == 4 * (sum(2 ** d for d in dims) + summary["d=100_inputs_per_subset"])
    assert (out / "construction.png").stat().st_size > 10_000


def test_all_inputs_blocks_match_the_whole_enumeration():
    assert torch.equal(parity.all_inputs(5, start=7, stop=19), parity.all_inputs(5)[7:19])


def test_construction_check_sees_a_wrong_network(monkeypatch):
    """A network off by 1/2 on its output bias is reported with error 1/2, in both precisions."""
    correct = parity_construction.relu_parity_network

    def shifted(d, subset, dtype=torch.float64):
        net = correct(d, subset, dtype=dtype)
        with torch.no_grad():
            net[2].bias += 0.5
        return net

    monkeypatch.setattr(parity_construction, "relu_parity_network", shifted)
    record = parity_construction.check_subset(4, np.arange(4), [parity.all_inputs(4)])
    assert record["max_error_float64"] == 0.5 and record["max_error_float32"] == 0.5


def test_gradient_identity_slope_and_subset_sizes(gradient):
    summary, out = gradient
    cfg = parity_gradient.config(True)
    assert summary["max_ratio_error_input"] < 1e-10 and summary["max_ratio_error_weights"] < 1e-10
    # signal = power / 2^d for every seed, so the two fitted slopes differ by exactly -1
    assert summary["log2_slope_signal"] - summary["log2_slope_power"] == pytest.approx(-1.0, abs=1e-9)
    assert -1.6 < summary["log2_slope_signal"] < -0.9 and summary["log2_slope_signal_se"] > 0
    for d in cfg["dims"]:
        k = {key: summary[f"d={d}_k={key}"] for key in (0, 1, 2, d // 2, d)}
        assert summary[f"d={d}_signal"] == pytest.approx(summary[f"d={d}_bound"], rel=1e-10)
        assert k[0] > k[1] > k[2] and k[1] > k[d // 2] and k[1] > k[d]
        assert summary[f"d={d}_max"] >= k[0] > summary[f"d={d}_signal"]
        assert set(summary[f"d={d}_argmax_orders"]) <= {0, 1}
    for d in cfg["weight_dims"]:
        assert summary[f"weights_d={d}_signal"] == pytest.approx(summary[f"weights_d={d}_bound"], rel=1e-10)
        assert summary[f"weights_d={d}_k=1"] > summary[f"weights_d={d}_k={d}"]
    for d in cfg["mc_dims"]:
        # the Monte Carlo estimate sits on its floor, far above the bound; |I| = 1 stands out of the floor
        assert abs(summary[f"mc_d={d}_signal"] - summary[f"mc_d={d}_floor"]) < 4 * summary[f"mc_d={d}_signal_sem"]
        assert summary[f"mc_d={d}_bound"] < summary[f"mc_d={d}_floor"] / 50
        assert summary[f"mc_d={d}_k=1"] > 10 * summary[f"mc_d={d}_floor"]
    for d in cfg["train_dims"]:
        assert 0 <= summary[f"train_d={d}_final_accuracy"] <= 1
        assert 0 < summary[f"train_d={d}_final_correlation"] and summary[f"train_d={d}_final_floor"] == 0.0
    assert (out / "lemma.png").stat().st_size > 10_000 and (out / "training.png").stat().st_size > 10_000


def test_spectrum_summary_against_brute_force():
    """Averages over |I| = k and the largest coefficient, from explicit E_x chi_I(x) g(x) over every subset."""
    d = 4
    values = torch.as_tensor(np.random.default_rng(0).standard_normal((2 ** d, 3)))
    x = parity.all_inputs(d)
    coefficients = {I: (parity.parity_of(x, list(I))[:, None] * values).mean(dim=0).numpy() if I else
                    values.mean(dim=0).numpy() for k in range(d + 1) for I in itertools.combinations(range(d), k)}
    spectrum = parity_gradient.spectrum_summary(values, d)
    for k in parity_gradient.fixed_orders(d):
        expected = np.mean([c ** 2 for I, c in coefficients.items() if len(I) == k], axis=0)
        np.testing.assert_allclose(spectrum[f"k={k}"], expected, rtol=1e-12)
    np.testing.assert_allclose(spectrum["max"], np.max([c ** 2 for c in coefficients.values()], axis=0), rtol=1e-12)
    np.testing.assert_allclose(spectrum["signal"], spectrum["bound"], rtol=1e-12)


def test_first_layer_gradients_are_a_relu_prime_x():
    model = parity_gradient.network(3, 2, seed=1)
    x = parity.all_inputs(3)
    first, last = model[0], model[2]
    active = (x @ first.weight.T + first.bias > 0).double()                     # (8, 6)
    expected = (last.weight[0][None, :, None] * active[:, :, None] * x[:, None, :]).reshape(8, -1)
    torch.testing.assert_close(parity_gradient.first_layer_gradients(model, x), expected.detach())


def test_target_correlation_is_the_walsh_coefficient_of_the_target():
    d = 5
    model = parity_gradient.network(d, 3, seed=2)
    x = parity.all_inputs(d)
    measured = parity_gradient.target_correlation(model, x, np.array([0, 2, 3]))
    walsh = parity.walsh_coefficients(parity_gradient.input_gradients(model, x))
    np.testing.assert_allclose(measured["correlation"], walsh[0b01101].numpy() ** 2, rtol=1e-12)


def test_identity_fails_for_a_wrong_walsh_sign(monkeypatch):
    """A transform without the sign flip on x_j = -1 is not orthonormal: Parseval, hence the measured identity,
    breaks."""
    def no_sign(values):
        g = torch.as_tensor(values)
        return g.sum(dim=0, keepdim=True).expand_as(g) / g.shape[0]

    cfg = {**parity_gradient.config(True), "dims": [4, 6], "seeds": 1}
    assert max(r["ratio_error"] for r in parity_gradient.exact_part(cfg, lambda *a: None)) < 1e-10
    monkeypatch.setattr(parity, "walsh_coefficients", no_sign)
    assert max(r["ratio_error"] for r in parity_gradient.exact_part(cfg, lambda *a: None)) > 0.1


@pytest.mark.parametrize("name, key, value", [
    ("parity-construction", "dims", [30]), ("parity-construction", "dims", []),
    ("parity-construction", "large_samples", 0), ("parity-gradient", "dims", [4]),
    ("parity-gradient", "weight_dims", [20]), ("parity-gradient", "mc_dims", [10]),
    ("parity-gradient", "train_lr", -1.0), ("parity-gradient", "train_batch", 0)])
def test_bad_config_names_the_key(tmp_path, name, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment(name, tmp_path, quick=True, overrides={key: value}, progress=False)
