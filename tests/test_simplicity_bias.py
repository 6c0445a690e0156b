"""Experiment simplicity-bias (seed 000, Nakkiran et al. 2019): an MLP trained by SGD first learns what the best
linear classifier L knows (I(F;Y|L) ~ 0, mu ~ I(F;Y)) and only then more; on the digits the two part where F reaches
L's information, on the two-stripes toy F sits on L for a long plateau before learning the stripes."""
import json

import numpy as np
import pytest
import torch

from fastdyn import FCNet
from fastdyn.data import two_stripes
from fastdyn.experiments import run_experiment, simplicity_bias

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("simplicity-bias")
    return run_experiment("simplicity-bias", out, quick=True, progress=False), out


def test_quick_config_stops_by_steps_only():
    config = simplicity_bias.config(True)
    assert not any(key.startswith("max_wall") or "seconds" in key for key in config)


def test_summary_keys_shapes_and_files(quick_run):
    summary, out = quick_run
    config = simplicity_bias.config(True)
    for dataset in simplicity_bias.DATASETS:
        for suffix in ("linear_test_accuracy", "mi_ly", "final_accuracy_mean", "final_mu_mean", "reach_steps",
                       "part_steps", "first_exceed_steps", "part_over_reach_geomean", "linear_phase_agreement",
                       "max_given_l_before_part_over_mi_ly", "runs_reaching"):
            assert f"{dataset}_{suffix}" in summary, (dataset, suffix)
        assert len(summary[f"{dataset}_reach_steps"]) == config["seeds"]
    curves = np.load(out / "curves.npz")
    steps = curves["steps"]
    assert steps[0] == 0 and steps[-1] == config["steps"]
    assert curves["two_stripes_mu"].shape == (config["seeds"], steps.size)
    assert curves["digits_accuracy"].shape == (config["seeds"], steps.size)
    runs = json.loads((out / "summary_runs.json").read_text())
    assert len(runs) == 2 * config["seeds"]
    assert len(list((out / "runs").glob("dataset=*.json"))) == 2
    for name in ("curves.png", "data.png"):
        assert (out / name).stat().st_size > 0


def test_linear_classifier_saturates_below_the_network(quick_run):
    summary, _ = quick_run
    # two-stripes: L is the best half-plane sign(u), 80 % in the population; the network gets the stripes too
    assert 0.77 < summary["two-stripes_linear_test_accuracy"] < 0.84
    assert summary["two-stripes_final_accuracy_mean"] > 0.93
    assert summary["digits_final_accuracy_mean"] > summary["digits_linear_test_accuracy"] + 0.03
    for dataset in simplicity_bias.DATASETS:
        mi_ly = summary[f"{dataset}_mi_ly"]
        # at the end F holds (nearly) all of L's information, and more
        assert summary[f"{dataset}_final_mu_mean"] > 0.9 * mi_ly
        assert summary[f"{dataset}_final_mi_fy_given_l_mean"] > 0.3 * mi_ly
        assert summary[f"{dataset}_runs_reaching"] == "2/2"


def test_f_and_l_part_only_after_f_reaches_l(quick_run):
    summary, _ = quick_run
    # digits: they part close to where F reaches L's information, and I(F;Y|L) stays small before
    assert 0.5 < summary["digits_part_over_reach_geomean"] < 2.0
    assert max(summary["digits_max_given_l_before_part_over_mi_ly"]) < 0.2
    # two-stripes: F sits on L (agrees with it on > 90 % of the test points) for a long phase, parting much later
    for reach, part in zip(summary["two-stripes_reach_steps"], summary["two-stripes_part_steps"]):
        assert part is not None and part > 10 * max(reach, 1)
    assert min(summary["two-stripes_linear_phase_agreement"]) > 0.9


def test_two_stripes_data():
    split = two_stripes(3000, p_test=20_000, seed=3)
    u = (split.x_test[:, 0] + split.x_test[:, 1]) / np.sqrt(2)
    assert abs(np.mean(np.sign(u) == split.y_test) - split.info["linear_accuracy"]) < 0.01
    assert abs(split.info["linear_accuracy"] - 0.8) < 1e-3
    assert abs(split.y.mean()) < 0.05 and set(np.unique(split.y)) == {-1.0, 1.0}
    again = two_stripes(3000, p_test=10, seed=3)
    assert np.array_equal(again.x, split.x) and np.array_equal(again.y, split.y)
    with pytest.raises(ValueError, match="width"):
        two_stripes(10, width=0.0)


def test_stacked_sgd_is_sgd_on_each_network():
    torch.manual_seed(0)
    model = FCNet([3, 8, 5, 1])
    reference = FCNet([3, 8, 5, 1])
    reference.load_state_dict(model.state_dict())
    x, y = torch.randn(40, 3), torch.sign(torch.randn(40))
    x_test = torch.randn(7, 3)
    outputs = simplicity_bias.stacked_sgd([model], x[None], y[None], lr=0.1, batch=4, steps=25, logged=[0, 10, 25],
                                          x_test=x_test[None], seeds=[5])
    optimiser = torch.optim.SGD(reference.parameters(), lr=0.1)
    index = torch.randint(0, 40, (1000, 4), generator=torch.Generator().manual_seed(5))
    expected = []
    for step in range(26):
        if step in (0, 10, 25):
            with torch.no_grad():
                expected.append(reference(x_test).squeeze(1))
        if step == 25:
            break
        batch = index[step]
        loss = torch.nn.functional.softplus(-y[batch] * reference(x[batch]).squeeze(1)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert outputs.shape == (3, 1, 7)
    assert np.allclose(outputs[:, 0], torch.stack(expected).numpy(), atol=1e-5)
    assert torch.allclose(model(x_test), reference(x_test), atol=1e-5)  # trained weights are written back


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"datasets": ["two-stripes"], "steps": 200, "seeds": 1, "stripes_p": 300, "stripes_p_test": 500,
                 "n_logs": 10}
    first = run_experiment("simplicity-bias", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("simplicity-bias", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    assert np.array_equal(np.load(tmp_path / "a" / "curves.npz")["two_stripes_mu"],
                          np.load(tmp_path / "b" / "curves.npz")["two_stripes_mu"])
    other = run_experiment("simplicity-bias", tmp_path / "c", quick=True, overrides={**overrides, "seed": 1},
                           progress=False)
    assert other != first


@pytest.mark.parametrize("key, value", [("datasets", []), ("datasets", ["mnist"]), ("hidden", []), ("lr", 0.0),
                                        ("batch", 0), ("steps", 0), ("part_fraction", 1.5), ("reach_fraction", 0.0),
                                        ("digits_d", 65), ("digits_task", "colour"), ("stripes_width", -1.0)])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("simplicity-bias", tmp_path, quick=True, overrides={key: value}, progress=False)


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(TypeError, match="seeds"):
        run_experiment("simplicity-bias", tmp_path, quick=True, overrides={"seeds": 1.5}, progress=False)
