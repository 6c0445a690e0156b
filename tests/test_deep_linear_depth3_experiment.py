"""The deep-linear-depth3 experiment's quick run: two hidden layers, every mode against the closed-form depth-3
balanced sigmoid (the closed form itself is tested in test_deep_linear_depth3.py)."""
import pytest

from fastdyn.experiments import run_experiment


def test_deep_linear_depth3_quick(tmp_path):
    summary = run_experiment("deep-linear-depth3", tmp_path, quick=True, progress=False)
    assert summary["stages"] == 8                      # one stage per mode, not one per tree level
    for k in (1, 2, 4):                                # well-separated modes follow the closed form's shape
        row = summary[f"mode {k}"]
        assert abs(row["rise_50_measured"] / row["rise_50_predicted"] - 1) < 0.15
    assert (tmp_path / "depth3.png").exists()
    # from the aligned balanced init every mode starts when the closed form says (RK4 at 2 steps per epoch)
    for hidden in (1, 2):
        assert summary[f"balanced, {hidden} hidden: max rel error t10, t50"] < 2e-3
    assert summary["balanced, 2 hidden: stages"] >= 7 > summary["balanced, 1 hidden: stages"]
    assert (tmp_path / "balanced.png").exists()


def test_deep_linear_depth3_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError):
        run_experiment("deep-linear-depth3", tmp_path, quick=True, progress=False, overrides={"gamma": 0.0})
