"""Experiment hessian-spectrum (seed 003): the full-data Hessian of a trained MLP, its top eigenvalues and outliers,
its SLQ density, the sharpness along gradient descent, and the Gauss-Newton matrix; checked against dense
Hessians from torch.autograd on tiny models."""
import numpy as np
import pytest
import torch
from torch.func import functional_call

from fastdyn.experiments import _seed003, hessian_spectrum, run_experiment

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hessian-spectrum")
    return run_experiment("hessian-spectrum", out, quick=True, progress=False), out


def dense_curvatures(model, x, y):
    """(Hessian, Gauss-Newton) of the mean cross-entropy as dense (P, P) float64 matrices, by torch.autograd."""
    model = model.double()
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def logits(flat):
        pieces = flat.split([int(np.prod(s)) for s in shapes])
        return functional_call(model, {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}, (x.double(),))

    hessian = torch.autograd.functional.hessian(lambda flat: torch.nn.functional.cross_entropy(logits(flat), y),
                                                theta)
    jacobian = torch.autograd.functional.jacobian(logits, theta)  # (N, C, P)
    p = torch.softmax(logits(theta), dim=1)
    curvature = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, C, C)
    ggn = torch.einsum("ncp,ncd,ndq->pq", jacobian, curvature, jacobian) / x.shape[0]
    return hessian.numpy(), ggn.numpy()


def tiny_problem(seed=0):
    split = _seed003.class_mixture(40, 3, 3, separation=3.0, n_test=10, seed=seed)
    model = _seed003.init_model([3, 5, 4, 3], seed).double()
    _seed003.train(model, split.x.double(), split.y, lr=0.5, steps=100)
    return model, split.x.double(), split.y


def test_spectrum_matches_dense_hessian_and_ggn():
    model, x, y = tiny_problem()
    config = {**hessian_spectrum.config(True), "top_k": 6, "slq_vectors": 4, "slq_steps": 30}
    record = hessian_spectrum.spectrum(model, x, y, config)
    hessian, ggn = dense_curvatures(model, x, y)
    exact_h, exact_g = np.linalg.eigvalsh(hessian)[::-1], np.linalg.eigvalsh(ggn)[::-1]
    assert np.allclose(record["hessian"]["top"], exact_h[:6], rtol=1e-7, atol=1e-10)
    assert np.allclose(record["ggn"]["top"], exact_g[:6], rtol=1e-7, atol=1e-10)
    assert np.isclose(record["hessian"]["bottom"], exact_h[-1], rtol=1e-6, atol=1e-10)
    assert exact_g[-1] > -1e-10  # the Gauss-Newton matrix is positive semi-definite; the Hessian need not be
    for kind, dense in (("hessian", hessian), ("ggn", ggn)):
        grid, density = np.array(record[kind]["grid"]), np.array(record[kind]["density"])
        assert np.isclose(np.trapezoid(density, grid), 1.0, atol=1e-3)
        estimate, stderr = record[kind]["moment1"]
        assert abs(estimate - np.trace(dense) / dense.shape[0]) < 4 * stderr
    assert record["hessian"]["outliers"] == hessian_spectrum.outlier_count(exact_h[:6])


def test_sharpness_along_training_is_the_dense_top_eigenvalue():
    split = _seed003.class_mixture(30, 3, 2, separation=3.0, n_test=10, seed=1)
    config = {**hessian_spectrum.config(True), "d": 3, "width": 4, "steps": 5, "sharpness_points": 3}
    record = hessian_spectrum.train_run(config, split, lr=0.5, seed=3, analyse=False)
    assert record["steps"][0] == 0 and record["steps"][-1] == 5
    init = _seed003.init_model([3, 4, 4, 2], 3)
    hessian, _ = dense_curvatures(init, split.x, split.y)
    assert np.isclose(record["sharpness"][0], np.linalg.eigvalsh(hessian).max(), rtol=1e-4)
    assert np.isclose(record["loss"][0], _seed003.evaluate(init.float(), split.x, split.y)[0], rtol=1e-6)


def test_outlier_count_is_the_largest_ratio_gap():
    assert hessian_spectrum.outlier_count([10.0, 9.0, 8.0, 1.0, 0.9, 0.8]) == 3
    assert hessian_spectrum.outlier_count([5.0, 0.5, 0.4, 0.01, -1.0]) == 3  # 0.4 / 0.01 is the largest ratio
    assert hessian_spectrum.outlier_count([3.0, 1.0]) == 1


def test_summary_keys_files_and_claims(quick_run):
    summary, out = quick_run
    config = hessian_spectrum.config(True)
    labels = [f"mixture_C{c}" for c in config["classes"]] + ["digits"]
    for label in labels:
        s = summary[label]
        assert s["seeds"] == len(config["seeds"])
        assert s["max_eigen_residual"] < 1e-4
        # at a near-zero cross-entropy the residual term l' d2f is small: the top of the spectrum is Gauss-Newton
        assert s["top_C_hessian_ggn_relative_gap_mean"] < 0.1
        assert s["hessian_bottom_mean"] < 0 < s["hessian_top1_mean"]
    arrays = np.load(out / "hessian_spectrum.npz")
    assert arrays["mixture_C2_hessian_top"].shape == (len(config["seeds"]), config["top_k"])
    assert np.all(arrays["mixture_C2_ggn_top"] > 0)
    assert arrays["sharpness_lr2"].shape == (len(config["seeds"]), arrays["steps"].size)
    # full-batch GD at lr = 2 on this toy: the sharpness reaches past 2 / lr = 1
    assert summary["sharpness_lr2"]["peak_over_bound_mean"] > 1
    for name in ("densities.png", "outliers.png", "sharpness.png"):
        assert (out / name).stat().st_size > 0


def test_rerun_into_the_same_folder_reuses_every_record(quick_run):
    summary, out = quick_run
    again = run_experiment("hessian-spectrum", out, quick=True, progress=False)
    config = hessian_spectrum.config(True)
    runs = len(config["seeds"]) * (len(config["classes"]) + 1 + len(config["eos_lrs"]))
    assert again["runs_reused"] == runs
    assert {k: v for k, v in again.items() if k != "runs_reused"} == {k: v for k, v in summary.items()
                                                                      if k != "runs_reused"}


def test_fixed_seed_reproduces_exactly(tmp_path):
    overrides = {"classes": [3], "digits": False, "seeds": [0], "steps": 30, "eos_lrs": [], "top_k": 5,
                 "n_train": 60}
    first = run_experiment("hessian-spectrum", tmp_path / "a", quick=True, overrides=overrides, progress=False)
    second = run_experiment("hessian-spectrum", tmp_path / "b", quick=True, overrides=overrides, progress=False)
    assert first == second
    other = run_experiment("hessian-spectrum", tmp_path / "c", quick=True, overrides={**overrides, "seeds": [1]},
                           progress=False)
    assert other["mixture_C3"]["hessian_top1_mean"] != first["mixture_C3"]["hessian_top1_mean"]


@pytest.mark.parametrize("key, value", [("top_k", 4), ("lr", 0.0), ("classes", [1]), ("seeds", []), ("steps", 0),
                                        ("separation", -1.0), ("width", 0), ("eos_lrs", [-0.1])])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("hessian-spectrum", tmp_path, quick=True, overrides={key: value}, progress=False)
