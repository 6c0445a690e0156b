"""Experiment loss-landscape (seed 003): filter-normalised slices at the end of training, the lines to a network from
another init and from another data order; checked against direct evaluation and reruns."""
import json

import numpy as np
import pytest
import torch

from fastdyn.experiments import _seed003, loss_landscape, run_experiment

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("loss-landscape")
    return run_experiment("loss-landscape", out, quick=True, progress=False), out


def test_summary_files_and_claims(quick_run):
    summary, out = quick_run
    for name in ("config.json", "results.json", "loss_landscape.npz", "slices.png", "lines.png"):
        assert (out / name).is_file(), name
    arrays = np.load(out / "loss_landscape.npz")
    config = loss_landscape.config(True)
    centre = config["steps_1d"] // 2
    for width in config["widths"]:
        entry = summary[f"width{width}"]
        curves = arrays[f"w{width}_curves"]                  # (replicates, directions, steps)
        # every slice and both lines pass through the same trained network A (at 0 and at t = 0)
        at_zero = int(np.argmin(np.abs(arrays["t"])))
        for name in ("init", "order"):
            assert np.allclose(curves[:, :, centre], arrays[f"w{width}_line_{name}_loss"][:, None, at_zero], rtol=1e-6)
        assert arrays["alphas"][centre] == 0.0 and arrays["t"][at_zero] == 0.0
        assert entry["hessian_bottom_mean"] < entry["hessian_top_mean"]
        assert 0.0 <= entry["convex_fraction_mean"] <= 1.0
        # the line to a network of another init rises above its ends more than the line to a data-order copy
        assert entry["init_loss_barrier_mean"] > entry["order_loss_barrier_mean"]
    assert json.loads((out / "results.json").read_text())["summary"] == summary


def test_the_surface_convexity_measure_on_known_surfaces():
    grid = np.linspace(-1, 1, 21)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    spacing = grid[1] - grid[0]
    assert loss_landscape.surface_convex_fraction(a ** 2 + 3 * b ** 2, spacing) == 1.0
    assert loss_landscape.surface_convex_fraction(a ** 2 - b ** 2, spacing) == 0.0


def test_flatness_of_a_known_parabola():
    alphas = np.linspace(-1, 1, 41)
    curves = np.stack([2.0 * alphas ** 2 + 0.3, 2.0 * alphas ** 2 + 0.3])
    result = loss_landscape.flatness(alphas, curves)
    assert result["curvature"] == pytest.approx(4.0, rel=1e-9)
    assert result["rise_at_1"] == pytest.approx(2.0, rel=1e-9)
    assert result["rise_at_0.5"] == pytest.approx(0.5, rel=1e-9)


def test_a_rerun_reuses_its_records(quick_run):
    summary, out = quick_run
    again = run_experiment("loss-landscape", out, quick=True, progress=False)
    assert again["runs_reused"] > 0
    assert {k: v for k, v in again.items() if k != "runs_reused"} == \
        {k: v for k, v in summary.items() if k != "runs_reused"}
    assert torch.get_num_threads() >= 1
    assert _seed003.mean_std([1.0, 3.0]) == (2.0, 1.0)
