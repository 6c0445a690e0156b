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

from conftest import assert_close, requires_cuda
from fastdyn import kinks
from fastdyn._src import kpca as kpca_module
from fastdyn._src.train import exact
from fastdyn.experiments import (REGISTRY, _seed002 as common, alpha_sweep, flow_convergence, lazy_vs_feature, load,
                                 run_experiment)
from fastdyn.experiments._store import RunStore
from oracles.ntk import ntk_jacobian_contraction

SEED002 = ("lazy-vs-feature", "learning-curves", "compression", "ntk-pca", "intrinsic-dimension", "kinks",
           "flow-convergence", "alpha-sweep")
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


def _converged_fraction(runs, regimes=("feature", "lazy")):
    return np.mean([row[r]["converged"] for row in runs for r in regimes])


def check_learning_curves(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    data = np.load(out / "errors.npz")
    ps = data["ps"]
    curves = {"stripe": "stripe-d5", "sphere": "sphere-d5"}
    errors = {(name, m): data[f"{label}_{m}"] for name, label in curves.items() for m in METHODS}
    for (name, method), error in errors.items():
        label = curves[name]
        assert error.shape == (config["seeds"], len(ps)) and np.isfinite(error).all()
        assert summary[f"{label}_err_{method}_largest_p"] == pytest.approx(error[:, -1].mean(), rel=1e-12)
        assert error[:, -1].mean() < LEARNS, (name, method)
        # with two sizes the fitted exponent is the slope between the seed-mean errors
        slope = -math.log(error[:, 1].mean() / error[:, 0].mean()) / math.log(ps[1] / ps[0])
        assert summary[f"{label}_beta_{method}"] == pytest.approx(slope, rel=1e-9)
        assert summary[f"{label}_local_slopes_{method}"] == pytest.approx([slope], rel=1e-9)
        assert summary[f"{label}_beta_err_{method}"] > 0
        if method.startswith("svc"):  # the converged kernel methods' errors fall with p, beyond the seed spread
            assert summary[f"{label}_beta_{method}"] > 2 * summary[f"{label}_beta_err_{method}"], (name, method)
    # at the largest p, better than worse by more than the seeds' spread:
    for name, better, worse in (("stripe", "feature", "lazy"),         # compression of x_perp helps
                                ("stripe", "svc_ntk_end", "svc_ntk_init"),
                                ("stripe", "svc_ntk_end", "feature"),  # the end kernel is as good as the network
                                ("sphere", "lazy", "feature"),         # nothing to compress: feature learning hurts
                                ("sphere", "svc_ntk_init", "svc_ntk_end")):
        difference, spread = _gap(errors[name, better][:, -1], errors[name, worse][:, -1])
        assert difference > spread, (name, better, worse, difference, spread)
    assert summary["stripe-d5_beta_theory_lazy"] == pytest.approx(5 / 13)
    assert summary["stripe-d5_beta_theory_feature"] == pytest.approx(9 / 13)
    # the records: one per (curve, h, p, seed), the converged fractions counted from them
    runs = json.loads((out / "runs.json").read_text())
    grid = [row for row in runs if row["h"] == config["h"]]
    assert len(grid) == 2 * len(ps) * config["seeds"] and len(list((out / "runs").glob("curve=*.json"))) == len(runs)
    assert summary["converged_fraction"] == pytest.approx(_converged_fraction(runs))
    assert summary["stripe-d5_converged_fraction"] == pytest.approx(
        _converged_fraction([row for row in grid if row["curve"] == "stripe-d5"]))
    for row in grid:
        assert row["feature"]["lambda_coordinate"] > row["lazy"]["lambda_coordinate"] if row["curve"] == "stripe-d5" \
            else "lambda_norm" not in row["feature"]
    # the mean-field check: the wide runs are separate records and the narrow ones are the curve's own
    check = summary["h_check"]
    assert check["h_wide"] == 2 * config["h"] and sum(row["h"] == check["h_wide"] for row in runs) == check["seeds"]
    narrow = [row["feature"]["test_err"] for row in grid if row["curve"] == "stripe-d5" and row["p"] == check["p"]]
    assert check["feature_err_h"] == pytest.approx(np.mean(narrow), rel=1e-12)
    assert abs(check["feature_difference_in_standard_errors"]) < 3  # at 2x the width the same error, within noise


def check_compression(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    initial = [common.network(config["d"], config["h"], seed).omega.detach().numpy() for seed in range(config["seeds"])]
    init = {"lambda_norm": np.mean([np.sqrt(np.mean(w[:, 0] ** 2) / np.mean(np.sum(w[:, 1:] ** 2, axis=1)))
                                    for w in initial]),
            "lambda_coordinate": np.mean([np.sqrt(np.mean(w[:, 0] ** 2)) / np.mean(np.sqrt(np.mean(w[:, 1:] ** 2, 0)))
                                          for w in initial])}
    for p in config["ps"]:
        for name in init:
            lazy, feature = summary[f"p{p}_{name}_lazy"], summary[f"p{p}_{name}_feature"]
            assert lazy == pytest.approx(init[name], rel=0.01)  # the lazy weights move by O(1/alpha)
            assert feature > 2.5 * lazy
        # the paper's estimate, to its order of magnitude, for the definition that is 1 without compression
        assert 1 / 3 < summary[f"p{p}_lambda_coordinate_feature"] / math.sqrt(0.135 * p) < 5
    for name in init:
        assert summary[f"p{config['ps'][1]}_{name}_feature"] > 1.5 * summary[f"p{config['ps'][0]}_{name}_feature"]
        assert summary[f"{name}_feature_beats_lazy_every_p"]
    assert summary["theory_line_belongs_to"] == "lambda_coordinate"
    runs = json.loads((out / "runs.json").read_text())
    assert summary["converged_fraction"] == pytest.approx(np.mean([r["converged"] for r in runs]))
    for p in config["ps"]:
        feature, lazy = ([r["test_err"] for r in runs if r["p"] == p and r["regime"] == regime][0]
                         for regime in ("feature", "lazy"))
        assert feature < lazy < 0.5


def check_alpha_sweep(out, summary):
    _check_outputs(out, summary)
    config = _config(out)
    data = np.load(out / "sweep.npz")
    alphas = data["alphas"]
    assert data["test_err"].shape == (len(config["hs"]), config["seeds"], len(alphas))
    for i, h in enumerate(config["hs"]):
        part = summary[f"h{h}"]
        # the two ends: compression at small alpha, none at large alpha (the initial ratio, computed here)
        init = np.mean([common.compression_coordinate(common.network(config["d"], h, seed).omega)
                        for seed in range(config["seeds"])])
        assert part["lambda_coordinate_largest_alpha"] == pytest.approx(init, rel=0.01)
        assert part["lambda_coordinate_smallest_alpha"] > 3 * init
        # the stripe: the feature plateau generalises better than the lazy one, seed by seed (same data and
        # initialisation at both ends), the mean difference beyond 3 standard errors of it
        errors = data["test_err"][i]
        difference = errors[:, -2:].mean(1) - errors[:, :2].mean(1)
        assert (difference > 0).all() and difference.mean() > 3 * difference.std(ddof=1) / math.sqrt(len(difference))
        # both ends flat: the plateau points agree within noise
        for end in ("feature", "lazy"):
            assert abs(part[f"{end}_plateau_step_in_standard_errors"]) < 3, (h, end)
        # alpha* recomputed from the stored errors, inside the sweep
        assert part["alpha_star"] == pytest.approx(alpha_sweep.crossover(alphas, errors.mean(0), 2), rel=1e-12)
        assert alphas[0] < part["alpha_star"] < alphas[-1]
    logh = np.log(config["hs"])
    stars = np.log([summary[f"h{h}"]["alpha_star"] for h in config["hs"]])
    assert summary["alpha_star_exponent"] == pytest.approx((stars[1] - stars[0]) / (logh[1] - logh[0]), rel=1e-9)


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
    seeds = config["seeds_attractors"]
    for vary in ("p", "h"):
        rows = [row for row in counts if row["vary"] == vary]
        sizes = sorted({row[vary] for row in rows})
        assert len(rows) == len(sizes) * seeds
        mean = [np.mean([row["attractors"] for row in rows if row[vary] == size]) for size in sizes]
        slope = np.polyfit(np.log(sizes), np.log(mean), 1)[0]  # of the seed mean
        assert summary[f"attractor_exponent_{vary}"] == pytest.approx(slope, rel=1e-9)
        assert math.isnan(summary[f"attractor_exponent_{vary}_err"]) == (seeds == 1 and len(sizes) < 3)
    assert all(1 <= row["attractors"] <= row["patterns"] <= row["h"] / 2 for row in counts)
    assert all(row["stop_reason"] in ("steps", "margins") for row in counts)
    assert all(row["converged"] == (row["stop_reason"] == "margins") for row in counts)
    distinct = {(row["p"], row["h"], row["seed"]): row for row in counts}.values()
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
    ("kinks", check_kinks), ("flow-convergence", check_flow_convergence), ("alpha-sweep", check_alpha_sweep)])
def test_science(results, name, check):
    check(*results(name))


@requires_cuda
def test_alpha_sweep_on_cuda(tmp_path):
    """The sweep's science holds on the GPU too (``--device cuda``: the same weights, moved there)."""
    check_alpha_sweep(tmp_path, run_experiment("alpha-sweep", tmp_path, quick=True, progress=False, device="cuda"))


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
    ("alpha-sweep", check_alpha_sweep, _alpha_ignored),
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


def test_power_law_fit_range_and_local_slopes():
    p = np.array([16, 32, 64, 128, 256, 512], dtype=float)
    errors = np.where(p < 64, 0.2 * (p / 64) ** -0.2, 0.2 * (p / 64) ** -0.8)[None, :].repeat(3, 0)
    fit = common.power_law(p, errors, p_min=64)
    assert fit["beta"] == pytest.approx(0.8, rel=1e-9) and fit["n_points"] == 4
    assert fit["local_slopes"] == pytest.approx([0.2, 0.2, 0.8, 0.8, 0.8], rel=1e-9)
    assert common.power_law(p, errors)["beta"] < 0.7  # all sizes: the small-p bend pulls beta down


def test_power_law_bootstrap_carries_the_binomial_noise():
    """Seeds that agree exactly leave only the test set's binomial noise: the bootstrap's spread of beta must match
    the delta-method propagation of Var(mean eps_j) = eps_j (1 - eps_j) / (n_test n_seeds) through the OLS slope."""
    p = np.array([64, 128, 256, 512, 1024], dtype=float)
    eps = 0.3 * (p / 64) ** -0.5
    n_test, n_seeds = 2000, 4
    errors = np.tile(eps, (n_seeds, 1))
    fit = common.power_law(p, errors, n_test=n_test, n_boot=4000)
    x = np.log(p)
    weights = (x - x.mean()) / ((x - x.mean()) @ (x - x.mean()))
    predicted = np.sqrt(np.sum(weights ** 2 * (1 - eps) / (eps * n_test * n_seeds)))
    assert fit["beta"] == pytest.approx(0.5, rel=1e-9)
    assert fit["beta_err"] == pytest.approx(predicted, rel=0.1)
    assert common.power_law(p, errors)["beta_err"] == pytest.approx(0, abs=1e-12)  # without the test noise: none


def test_seeds_resampled_independently_at_each_p():
    """The bootstrap draws the seeds of each p independently (the runs at different p share no randomness that the
    fit should keep paired): its spread must match a direct simulation of that resampling."""
    p = np.array([64, 128, 256, 512], dtype=float)
    rng = np.random.default_rng(3)
    errors = 0.2 * (p / 64) ** -0.5 * np.exp(0.1 * rng.standard_normal((6, p.size)))
    fit = common.power_law(p, errors, n_boot=3000)
    independent = []
    for _ in range(3000):
        rows = errors[rng.integers(0, 6, (6, p.size)), np.arange(p.size)].mean(0)
        independent.append(-np.polyfit(np.log(p), np.log(rows), 1)[0])
    assert fit["beta_err"] == pytest.approx(np.std(independent), rel=0.1)


def test_crossover_of_a_known_curve():
    alphas = np.logspace(-4, 4, 17)
    errors = 0.1 + 0.2 / (1 + (alphas / 3.0) ** -1.0)  # plateaus 0.1 and 0.3, midpoint at alpha = 3
    assert alpha_sweep.crossover(alphas, errors, 2) == pytest.approx(3.0, rel=0.05)
    assert alpha_sweep.crossover(alphas, errors[::-1], 2) == pytest.approx(1 / 3.0 * 1e0, rel=0.05)  # mirrored
    steps = np.where(alphas < 1.0, 0.1, 0.3)
    steps[8] = 0.2  # the midpoint met exactly at a sweep point: that point
    assert alpha_sweep.crossover(alphas, steps, 2) == alphas[8]


def test_run_store_resumes_and_refuses_other_settings(tmp_path):
    config = {"ps": [1, 2], "tol": 0.1, "threads": 1}
    store = RunStore(tmp_path, config, ("ps",))
    calls = []
    record = store.get({"p": 1, "seed": 0}, lambda: calls.append(1) or {"err": 0.25})
    again = RunStore(tmp_path, {**config, "ps": [1, 2, 4], "threads": 2}, ("ps",))  # grid and threads may change
    assert again.get({"p": 1, "seed": 0}, lambda: calls.append(2) or {"err": 0.5}) == record == {"err": 0.25}
    assert calls == [1] and again.reused == 1
    assert not list((tmp_path / "runs").glob("*.tmp"))
    with pytest.raises(ValueError, match="tol"):
        RunStore(tmp_path, {**config, "tol": 0.2}, ("ps",))


def test_interrupted_experiment_reruns_only_what_is_missing(tmp_path):
    overrides = {"alphas": [1e-3, 1e-2, 1.0, 1e2, 1e3], "hs": [20], "seeds": 1, "p": 16, "p_test": 50}
    first = run_experiment("alpha-sweep", tmp_path, quick=True, progress=False, overrides=overrides)
    records = sorted((tmp_path / "runs").glob("h=*.json"))
    assert len(records) == 5 and first["runs_reused_from_records"] == 0
    records[2].unlink()  # as if the process had been killed during that run
    second = run_experiment("alpha-sweep", tmp_path, quick=True, progress=False, overrides=overrides)
    assert second["runs_reused_from_records"] == 4
    same = [json.dumps({k: v for k, v in summary.items() if k != "runs_reused_from_records"}, sort_keys=True)
            for summary in (first, second)]
    assert same[0] == same[1]  # the summary is computed from the records alone


def test_compression_ratios():
    omega = torch.zeros(3, 4, dtype=torch.float64)
    omega[:, 0] = torch.tensor([3.0, 0.0, 4.0])
    omega[:, 1] = torch.tensor([1.0, 1.0, 1.0])
    assert common.compression_norm(omega) == pytest.approx(np.sqrt(25 / 3) / 1.0, rel=1e-12)
    # per coordinate: RMS of the columns (sqrt(25/3), 1, 0, 0), the perpendicular ones averaged to 1/3
    assert common.compression_coordinate(omega) == pytest.approx(np.sqrt(25 / 3) * 3, rel=1e-12)
    # isotropic perpendicular weights: Lambda_coord = sqrt(d - 1) Lambda_norm; both 1-ish / 1/sqrt(d-1) at init
    w = torch.randn(200_000, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert common.compression_coordinate(w) == pytest.approx(math.sqrt(5) * common.compression_norm(w), rel=1e-2)
    assert common.compression_coordinate(w) == pytest.approx(1.0, rel=1e-2)
    assert common.beta_theory(10)["feature"] == pytest.approx(19 / 28)
