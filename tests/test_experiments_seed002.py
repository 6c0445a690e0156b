"""Seed-002 experiments end to end in their quick configurations, plus the fitting helpers they rely on.

Each experiment runs once per session (module-scoped fixture) into a temporary directory, and one ``check_*``
function per experiment holds its science: thresholds that a wrong implementation fails, oracles computed
independently (numpy, torch.func) from the same seeds. Each family of experiments also gets a deliberately wrong
variant, monkeypatched in, against which the same check must fail. The quick configurations stop by step counts
only, so every number below is the same on any machine under any load (up to the rounding of the CPU kernels'
instruction-set path).
"""
from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import assert_close
from fastdyn import kinks
from fastdyn._src import kpca as kpca_module
from fastdyn._src.train import exact
from fastdyn.experiments import REGISTRY, _seed002 as common, flow_convergence, lazy_vs_feature, load, run_experiment
from oracles.ntk import ntk_jacobian_contraction

SEED002 = ("lazy-vs-feature", "learning-curves", "compression", "ntk-pca", "intrinsic-dimension", "kinks",
           "flow-convergence")
METHODS = ("feature", "lazy", "svc_ntk_init", "svc_ntk_end", "knn5")
# Test error a method must beat to count as learning: chance is 0.5, and with p_test >= 200 test points the
# binomial standard deviation of an error near chance is <= 0.035, so 0.4 is about 3 deviations below it.
LEARNS = 0.4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """name -> (output directory, summary), each quick experiment run once, lazily."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _run(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _run(name, out):
    return out, run_experiment(name, out, quick=True, progress=False)


def _config(out) -> dict:
    return json.loads((out / "config.json").read_text())["config"]


def _check_outputs(out, summary):
    meta = json.loads((out / "results.json").read_text())
    assert meta["quick"] is True and meta["summary"]["figures"] == summary["figures"]
    for figure in summary["figures"]:
        path = out / figure
        assert path.stat().st_size > 5_000, f"{figure} looks empty"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary.get("runs_stopped_by_wall", 0) == 0


def _gap(better, worse):
    """(mean of ``worse`` - mean of ``better``, the sum of their seed-to-seed standard deviations)."""
    return worse.mean() - better.mean(), better.std(ddof=1) + worse.std(ddof=1)


# ------------------------------------------------------------------------------------------------ the checks
def check_lazy_vs_feature(out, summary):
    config = _config(out)
    for name in ("function.png", "kinks.png", "dynamics.png"):
        assert (out / name).stat().st_size > 5_000, name
    feature, lazy = (summary[f"alpha={alpha:g}"] for alpha in sorted(config["alphas"]))
    # the binomial standard deviation of a difference of two test errors is at most sqrt(2 * 0.25 / p_test)
    assert lazy["test_err"] - feature["test_err"] > 3 * math.sqrt(0.5 / config["p_test"])
    assert feature["test_err"] < LEARNS
    assert lazy["relative_weight_change"] < 0.1 < 1 < feature["relative_weight_change"]
    assert {feature["stop"], lazy["stop"]} <= {"steps", "margins"}


def check_learning_curves(out, summary):
    _check_outputs(out, summary)
    data = np.load(out / "errors.npz")
    ps = data["ps"]
    errors = {(name, m): data[f"{name}_{m}"] for name in ("stripe", "sphere") for m in METHODS}
    for (name, method), error in errors.items():
        assert error.shape == (2, len(ps)) and np.isfinite(error).all()
        assert summary[f"{name}_err_{method}_largest_p"] == pytest.approx(error[:, -1].mean(), rel=1e-12)
        assert error[:, -1].mean() < LEARNS, (name, method)
        # with two sizes the fitted exponent is the slope between the seed-mean errors
        slope = -math.log(error[:, 1].mean() / error[:, 0].mean()) / math.log(ps[1] / ps[0])
        assert summary[f"{name}_beta_{method}"] == pytest.approx(slope, rel=1e-9)
        assert summary[f"{name}_beta_err_{method}"] > 0
        if method.startswith("svc"):  # the converged kernel methods' errors fall with p, beyond the seed spread
            assert summary[f"{name}_beta_{method}"] > 2 * summary[f"{name}_beta_err_{method}"], (name, method)
    # at the largest p, better than worse by more than the seeds' spread:
    for name, better, worse in (("stripe", "feature", "lazy"),         # compression of x_perp helps
                                ("stripe", "svc_ntk_end", "svc_ntk_init"),
                                ("stripe", "svc_ntk_end", "feature"),  # the end kernel is as good as the network
                                ("sphere", "lazy", "feature"),         # nothing to compress: feature learning hurts
                                ("sphere", "svc_ntk_init", "svc_ntk_end")):
        difference, spread = _gap(errors[name, better][:, -1], errors[name, worse][:, -1])
        assert difference > spread, (name, better, worse, difference, spread)
    assert summary["beta_theory_stripe_lazy"] == pytest.approx(5 / 13)


def check_compression(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    initial = [common.network(config["d"], config["h"], seed).omega.detach().numpy() for seed in range(config["seeds"])]
    lambda_init = np.mean([np.sqrt(np.mean(w[:, 0] ** 2) / np.mean(np.sum(w[:, 1:] ** 2, axis=1))) for w in initial])
    for p in config["ps"]:
        lazy, feature = summary[f"p{p}_lambda_lazy"], summary[f"p{p}_lambda_feature"]
        assert lazy == pytest.approx(lambda_init, rel=0.01)  # the lazy weights move by O(1/alpha)
        assert feature > 2.5 * lazy
        assert 1 / 3 < feature / math.sqrt(0.135 * p) < 3  # the paper's estimate, to its order of magnitude
    assert summary[f"p{config['ps'][1]}_lambda_feature"] > 1.5 * summary[f"p{config['ps'][0]}_lambda_feature"]
    assert summary["feature_beats_lazy_every_p"]
    runs = json.loads((out / "runs.json").read_text())
    for p in config["ps"]:
        feature, lazy = ([r["test_err"] for r in runs if r["p"] == p and r["regime"] == regime][0]
                         for regime in ("feature", "lazy"))
        assert feature < lazy < 0.5


def check_ntk_pca(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    split = common.dataset(config["dataset"], config["p"], config["d"], seed=config["seed"], p_test=config["p_test"])
    K = ntk_jacobian_contraction(common.network(config["d"], config["h"], config["seed"]), split.x).numpy()
    y, p = split.y.numpy(), config["p"]
    values, vectors = np.linalg.eigh(K)
    values, vectors = values[::-1], vectors[:, ::-1]
    projections = (vectors.T @ y) ** 2 / p
    data = np.load(out / "ntk_pca.npz")
    assert_close(data["init_eigenvalues"], values / values.sum())
    top = data["init_mutual_information"].shape[0]
    assert top == 10
    assert_close(data["init_projections"][:top], projections[:top])
    assert summary["init_label_power_top10"] == pytest.approx(projections[:top].sum(), rel=1e-9)
    assert summary["init_alignment"] == pytest.approx(y @ K @ y / (p * np.linalg.norm(K)), rel=1e-9)
    # the lazy NTK hardly changes; feature learning aligns it with the label, about fourfold
    assert summary["lazy_end_alignment"] == pytest.approx(summary["init_alignment"], rel=0.01)
    assert summary["lazy_end_label_power_top10"] == pytest.approx(summary["init_label_power_top10"], abs=0.01)
    assert 3 < summary["feature_end_alignment"] / summary["init_alignment"] < 6
    assert summary["feature_end_label_power_top10"] > summary["init_label_power_top10"] + 0.1
    assert summary["feature_end_mutual_information_top10_sum"] > 3 * summary["init_mutual_information_top10_sum"]
    rows = json.loads((out / "svc_vs_network.json").read_text())
    assert [row["p"] for row in rows] == config["ps_svc"]
    for row in rows:
        assert row["svc_ntk_end_feature"] <= row["network_feature"] < row["network_lazy"] < 0.5
        assert row["svc_ntk_end_feature"] < row["svc_ntk_init"] - 0.05 and row["svc_ntk_init"] < LEARNS


def check_intrinsic_dimension(out, summary):
    _check_outputs(out, summary)
    d = _config(out)["d"]
    for name in ("stripe", "sphere"):
        # TwoNN's standard deviation at N = 300 points of N(0, I_5) is 0.35 (40 samples): 1.0 is ~3 of them
        assert abs(summary[f"{name}_input_id"] - d) < 1.0
        # the initial representation is an affine map of rank d of the inputs, and the lazy one stays that map
        assert summary[f"{name}_lazy_id_init"] == pytest.approx(summary[f"{name}_input_id"], rel=0.03)
        assert summary[f"{name}_feature_id_init"] == summary[f"{name}_lazy_id_init"]
        assert summary[f"{name}_lazy_id_end"] == pytest.approx(summary[f"{name}_lazy_id_init"], rel=1e-3)
        assert summary[f"{name}_lazy_pc1_variance_end"] == pytest.approx(
            summary[f"{name}_lazy_pc1_variance_init"], abs=1e-3)
        assert summary[f"{name}_feature_test_err"] < LEARNS
    # compression: the stripe's feature representation collapses onto one direction (x_par), the sphere's does not
    assert summary["stripe_feature_pc1_variance_end"] > 0.9
    assert summary["stripe_feature_pc1_variance_end"] > summary["sphere_feature_pc1_variance_end"] + 0.3
    assert summary["stripe_feature_id_end"] < summary["stripe_feature_id_init"]


def _numpy_attractors(x, omega, b, beta, min_size, beta_rtol):
    """(distinct live patterns, attractors, fraction of the non-negligible live neurons inside an attractor) by plain
    numpy: patterns on x of the live neurons; attractors hold >= min_size neurons of |beta| > beta_rtol max|beta|."""
    active = (x @ omega.T / math.sqrt(x.shape[1]) + b > 0).T
    live = active.any(axis=1)
    weighty = live & (np.abs(beta) > beta_rtol * np.abs(beta).max())
    _, inverse, counts = np.unique(active[weighty], axis=0, return_inverse=True, return_counts=True)
    inside = counts[inverse.ravel()] >= min_size
    return len(np.unique(active[live], axis=0)), int((counts >= min_size).sum()), float(inside.mean())


def check_kinks(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    h, rule = config["h"], (config["attractor_min_size"], config["attractor_beta_rtol"])
    stages = np.load(out / "stages.npz")
    for name in config["datasets"]:
        x = common.dataset(name, config["p"], 2, seed=config["seed"], p_test=config["p_test"]).x.numpy()
        patterns, attractors, inside = {}, {}, {}
        for stage in "ABCD":
            weights = (stages[f"{name}_{stage}_{key}"] for key in ("omega", "b", "beta"))
            patterns[stage], attractors[stage], inside[stage] = _numpy_attractors(x, *weights, *rule)
            assert summary[f"{name}_{stage}_patterns"] == patterns[stage], (name, stage)
            assert summary[f"{name}_{stage}_attractors"] == attractors[stage], (name, stage)
        assert patterns["A"] > h / 2
        assert abs(patterns["B"] - patterns["A"]) <= 0.05 * patterns["A"]  # lazy: the neurons do not regroup
        assert patterns["D"] < patterns["C"] < patterns["A"]
        assert patterns["D"] <= h / 4  # feature training gathers the neurons into few patterns ...
        assert inside["D"] > 0.8 and inside["D"] > inside["A"] + 0.3  # ... most weighty neurons into attractors
        assert 2 <= attractors["D"] < patterns["D"]
        assert summary[f"{name}_feature_test_err"] < LEARNS and summary[f"{name}_lazy_test_err"] < LEARNS
    record = json.loads((out / "attractors.json").read_text())
    counts = record["counts"]
    by_p = sorted((row["p"], row["patterns"]) for row in counts if row["vary"] == "p")
    assert by_p[0][1] < by_p[-1][1]  # more points, more patterns
    for vary in ("p", "h"):
        rows = [row for row in counts if row["vary"] == vary]
        slope = np.polyfit(np.log([row[vary] for row in rows]), np.log([row["attractors"] for row in rows]), 1)[0]
        assert summary[f"attractor_exponent_{vary}"] == pytest.approx(slope, rel=1e-9)
        assert math.isnan(summary[f"attractor_exponent_{vary}_err"]) == (len(rows) < 3)
    assert all(1 <= row["attractors"] <= row["patterns"] <= row["h"] / 2 for row in counts)
    assert all(row["stop_reason"] in ("steps", "margins") for row in counts)
    assert all(row["converged"] == (row["stop_reason"] == "margins") for row in counts)
    distinct = {(row["p"], row["h"]): row for row in counts}.values()
    runs = record["runs"] + list(distinct)
    converged = sum(run["stop_reason"] == "margins" for run in runs)
    assert summary["runs_converged"] == f"{converged}/{len(runs)}"


def check_flow_convergence(out, summary):
    config = _config(out)
    runs = len(config["seeds"]) + len(config["tight_seeds"])
    for alpha in config["alphas"]:
        key = f"alpha{alpha:g}"
        assert summary[f"{key}_converged"] == f"{runs}/{runs}"
        assert summary[f"{key}_min_margin_mean"] >= 1  # zero hinge loss: every margin F y >= 1
        # faithful: tol and tol/10 reach the same end state, within the seed-to-seed spread
        assert summary[f"{key}_tol_pairs_converged"] == len(config["tight_seeds"])
        for name in ("test_err", "lambda"):
            assert summary[f"{key}_{name}_tol_shift_max"] <= summary[f"{key}_{name}_seed_spread"], name
        assert summary[f"{key}_feature_lazy_rule_stop"] == "steps"
    assert summary["python_vs_native_rel_diff"] < 1e-12 and summary["python_vs_native_same_counts"]


# ------------------------------------------------------------------------------------------------ the tests
def test_registered():
    assert set(SEED002) <= set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_quick_configurations_stop_by_steps(name):
    config = load(name).config(True)
    assert all(value is None for key, value in config.items() if key.startswith("max_wall")), config
    assert not any("seconds" in key for key in config)


def test_wall_clock_safety_net_is_reported_unconverged(tmp_path):
    summary = run_experiment("compression", tmp_path, quick=True, progress=False,
                             overrides={"ps": [16], "h": 8, "p_test": 20, "max_wall": 1e-9})
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert summary["runs_stopped_by_wall"] == len(runs) == 2
    assert all(run["stop_reason"] == "wall" and run["unsatisfied"] > 0 for run in runs)


@pytest.mark.parametrize("name, check", [
    ("lazy-vs-feature", check_lazy_vs_feature), ("learning-curves", check_learning_curves),
    ("compression", check_compression), ("ntk-pca", check_ntk_pca), ("intrinsic-dimension", check_intrinsic_dimension),
    ("kinks", check_kinks), ("flow-convergence", check_flow_convergence)])
def test_science(results, name, check):
    check(*results(name))


def _alpha_ignored(monkeypatch):
    """Bug: every run trains at alpha = 1, whatever its regime's alpha."""
    fit, train = common.fit, lazy_vs_feature.train
    monkeypatch.setattr(common, "fit", lambda model, split, alpha, config, **options: fit(model, split, 1.0, config,
                                                                                         **options))
    monkeypatch.setattr(lazy_vs_feature, "train", lambda *args, alpha, **options: train(*args, alpha=1.0, **options))


def _eigenvectors_shuffled(monkeypatch):
    """Bug: the kPCA solvers return their eigenvectors in a shuffled order (eigenvalues still sorted)."""
    registry = kpca_module.registry

    def implementation(name, backend):
        solve = registry.implementation(name, backend)

        def shuffled(K, **options):
            values, vectors, iterations = solve(K, **options)
            order = torch.randperm(vectors.shape[-1], generator=torch.Generator().manual_seed(0))
            return values, vectors[..., order], iterations

        return shuffled

    monkeypatch.setattr(kpca_module, "registry", SimpleNamespace(dispatch=registry.dispatch,
                                                                 implementation=implementation))


def _pattern_bias_sign_flipped(monkeypatch):
    """Bug: attractors grouped by the patterns [omega . x / sqrt(d) - b > 0], the wrong sign of b."""
    attractors = kinks.attractors

    def flipped(model, x, **options):
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.b.neg_()
        return attractors(model, x, **options)

    monkeypatch.setattr(kinks, "attractors", flipped)


@pytest.mark.parametrize("name, check, bug", [
    ("lazy-vs-feature", check_lazy_vs_feature, _alpha_ignored),
    ("compression", check_compression, _alpha_ignored),
    ("intrinsic-dimension", check_intrinsic_dimension, _alpha_ignored),
    ("learning-curves", check_learning_curves, _alpha_ignored),
    ("ntk-pca", check_ntk_pca, _eigenvectors_shuffled),
    ("kinks", check_kinks, _pattern_bias_sign_flipped)])
def test_science_check_catches_a_wrong_implementation(tmp_path, monkeypatch, name, check, bug):
    bug(monkeypatch)
    with pytest.raises(AssertionError):
        check(*_run(name, tmp_path))


def test_flow_check_catches_a_wrong_sign_in_the_step(results, monkeypatch):
    """Bug: the Python-driven exact step moves b against its gradient (the sign of the ub moment flipped)."""
    out, summary = results("flow-convergence")
    advance = exact.advance
    monkeypatch.setattr(exact, "advance", lambda omega, b, beta, u, ub, q, tau: advance(omega, b, beta, u, -ub, q,
                                                                                        tau))
    wrong = dict(summary, **flow_convergence._python_vs_native(_config(out)))
    with pytest.raises(AssertionError):
        check_flow_convergence(out, wrong)


def test_power_law_recovers_exponent():
    p = np.array([64, 128, 256, 512, 1024])
    rng = np.random.default_rng(1)
    errors = 2.0 * p ** -0.6 * np.exp(0.05 * rng.standard_normal((4, p.size)))
    fit = common.power_law(p, errors)
    assert fit["beta"] == pytest.approx(0.6, abs=0.05)
    assert 0 < fit["beta_err"] < 0.05
    single = common.power_law(p, errors[:1])
    assert 0 < single["beta_err"] < 0.1  # standard error of the slope for one seed
    exact_fit = common.power_law(p, 3.0 * p ** -0.5)
    assert exact_fit["beta"] == pytest.approx(0.5, abs=1e-12) and exact_fit["beta_err"] == pytest.approx(0, abs=1e-12)
    assert np.isnan(common.power_law(p, np.zeros(p.size))["beta"])


def test_compression_ratio():
    omega = torch.zeros(3, 4, dtype=torch.float64)
    omega[:, 0] = torch.tensor([3.0, 0.0, 4.0])
    omega[:, 1] = torch.tensor([1.0, 1.0, 1.0])
    expected = np.sqrt(25 / 3) / 1.0
    assert common.compression(omega) == pytest.approx(expected, rel=1e-12)
    assert common.beta_theory(10)["feature"] == pytest.approx(19 / 28)
