"""The Hessian spectrum of a trained MLP: bulk, about C outliers, the edge of stability, Hessian against Gauss-Newton
(seed 003, "Deepnet spectra").

* data: ``classes`` C-class Gaussian mixtures (:func:`._seed003.class_mixture`: N(mu_c, I_d), |mu_c| =
  ``separation``, ``n_train`` points in d = ``d``) and, if ``digits``, the ten digits on d whitened principal
  components (:func:`._seed003.digit_classes`);
* network: :class:`fastdyn.FCNet` [d] + ``depth`` x [``width``] + [C], ReLU, torch's default init, cross-entropy;
  full-batch gradient descent with a fixed step ``lr`` for ``steps`` steps (a plain loop, see
  :mod:`._seed003`), one run per seed of ``seeds``;
* along training, at the steps of :func:`._seed003.log_steps`: the training loss, error and the top Hessian
  eigenvalue (the sharpness, :func:`fastdyn.curvature.hessian_eigs`, full data) against the gradient-descent
  stability bound 2 / lr (Cohen et al. 2021); also at the learning rates ``eos_lrs`` on the mixture with the most
  classes;
* at the end (runs at ``lr``): the ``top_k`` largest eigenvalues of the full-data Hessian and of the Gauss-Newton
  matrix (kind "ggn"; for cross-entropy also the Fisher of the model's own predictive distribution), the most
  negative Hessian eigenvalue, and both spectral densities by stochastic Lanczos quadrature
  (:func:`fastdyn.curvature.spectral_density`, ``slq_vectors`` probes x ``slq_steps`` steps). The number of
  outliers is the position of the largest ratio lambda_i / lambda_(i+1) among the top_k eigenvalues
  (:func:`outlier_count`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import plotting
from .._src import checks
from ..curvature import hessian_eigs, spectral_density
from . import _seed003
from ._store import RunStore

DESCRIPTION = "seed 003: Hessian spectrum of a trained MLP: bulk + ~C outliers, sharpness vs 2/lr, Hessian vs GGN"

# change no run's record (RunStore): which runs happen, and how the counts are summarised
FREE_KEYS = ("classes", "digits", "seeds", "eos_lrs", "converged_loss")


def config(quick: bool) -> dict:
    if quick:
        return {"classes": [2, 4], "digits": True, "d": 8, "n_train": 120, "n_test": 200, "separation": 3.0,
                "width": 12, "depth": 2, "lr": 0.5, "steps": 200, "eos_lrs": [2.0], "seeds": [0, 1], "top_k": 12,
                "slq_vectors": 3, "slq_steps": 25, "sharpness_points": 8, "dense_until": 0, "dense_every": 1,
                "converged_loss": 0.05, "threads": 1}
    return {"classes": [2, 5, 10], "digits": True, "d": 20, "n_train": 1000, "n_test": 1000, "separation": 2.0,
            "width": 64, "depth": 2, "lr": 0.3, "steps": 3000, "eos_lrs": [0.1, 1.0], "seeds": [0, 1, 2],
            "top_k": 30, "slq_vectors": 10, "slq_steps": 80, "sharpness_points": 40, "dense_until": 300,
            "dense_every": 5, "converged_loss": 0.01, "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    for key in ("d", "n_train", "n_test", "width", "depth", "top_k", "slq_vectors", "slq_steps",
                "sharpness_points", "dense_every"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'steps'", config["steps"])
    checks.integer("config 'dense_until'", config["dense_until"], minimum=0)
    if not config["classes"] and not config["digits"]:
        raise ValueError("config 'classes' is empty and 'digits' is off: nothing to run")
    for c in config["classes"]:
        checks.integer("config 'classes' entry", c, minimum=2)
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)
    most = max(list(config["classes"]) + ([10] if config["digits"] else []))
    if config["top_k"] <= most:
        raise ValueError(f"config 'top_k' must exceed the largest class count ({most}) to see the gap after the "
                         f"outliers, got {config['top_k']}")
    checks.real("config 'separation'", config["separation"], strict=False)
    checks.real("config 'lr'", config["lr"])
    for lr in config["eos_lrs"]:
        checks.real("config 'eos_lrs' entry", lr)
    checks.real("config 'converged_loss'", config["converged_loss"])


def datasets(config: dict) -> dict:
    """{label: Split}: "mixture_C<c>" per class count and "digits"."""
    sets = {f"mixture_C{c}": _seed003.class_mixture(int(config["n_train"]), int(config["d"]), int(c),
                                                     separation=float(config["separation"]),
                                                     n_test=int(config["n_test"]), seed=0)
            for c in config["classes"]}
    if config["digits"]:
        sets["digits"] = _seed003.digit_classes(int(config["n_train"]), int(config["d"]), seed=0)
    return sets


def outlier_count(values) -> int:
    """The number of outliers among eigenvalues ``values`` (largest first): the i (1 <= i < len) of the largest
    ratio lambda_i / lambda_(i+1), over the leading positive eigenvalues."""
    values = np.asarray(values, dtype=float)
    positive = values[values > 0]
    if positive.size < 2:
        return int(positive.size)
    return int(np.argmax(np.log(positive[:-1]) - np.log(positive[1:])) + 1)


def spectrum(model, x, y, config: dict, seed: int = 0) -> dict:
    """The end-of-training curvature record of ``model`` on (x, y): top_k Hessian and GGN eigenvalues with their
    residuals, the bottom Hessian eigenvalue, the SLQ densities ("grid", "density", "stderr", first two moments)."""
    record = {}
    k = int(config["top_k"])
    for kind in ("hessian", "ggn"):
        top = hessian_eigs(model, x, y, k=k, kind=kind, seed=seed)
        density = spectral_density(model, x, y, kind=kind, n_vectors=int(config["slq_vectors"]),
                                   n_steps=int(config["slq_steps"]), grid_points=400, seed=seed)
        record[kind] = {"top": top.values.tolist(), "residuals": top.residuals.tolist(),
                        "outliers": outlier_count(top.values), "grid": density.grid.tolist(),
                        "density": density.density.tolist(), "stderr": density.density_stderr.tolist(),
                        "sigma": density.sigma, "moment1": density.moment(1), "moment2": density.moment(2)}
    record["hessian"]["bottom"] = float(hessian_eigs(model, x, y, k=1, which="bottom", seed=seed).values[0])
    return record


def train_run(config: dict, split, lr: float, seed: int, analyse: bool) -> dict:
    """One gradient-descent run: loss, error and sharpness along training; the spectrum at the end if ``analyse``."""
    classes = int(split.info["classes"])
    model = _seed003.init_model([int(config["d"])] + [int(config["width"])] * int(config["depth"]) + [classes], seed)
    steps = _seed003.log_steps(int(config["steps"]), int(config["sharpness_points"]), int(config["dense_until"]),
                               int(config["dense_every"]))
    history = {"loss": [], "error": [], "sharpness": []}

    def record(step):
        loss, error = _seed003.evaluate(model, split.x, split.y)
        history["loss"].append(loss)
        history["error"].append(error)
        history["sharpness"].append(float(hessian_eigs(model, split.x, split.y, k=1, seed=seed).values[0]))

    _seed003.train(model, split.x, split.y, lr=lr, steps=int(config["steps"]), record_steps=steps, on_record=record)
    result = {**history, "steps": steps.tolist(), "test_error": _seed003.evaluate(model, split.x_test,
                                                                                  split.y_test)[1]}
    if analyse:
        result["spectrum"] = spectrum(model, split.x, split.y, config, seed)
    return result


def summarise_dataset(records: list[dict], classes: int, config: dict) -> dict:
    """Mean and s.d. over seeds of one data set's runs at the main lr."""
    summary = {"classes": classes, "seeds": len(records)}
    hessian = np.array([r["spectrum"]["hessian"]["top"] for r in records])  # (seeds, top_k)
    ggn = np.array([r["spectrum"]["ggn"]["top"] for r in records])
    for key, values in (("final_train_loss", [r["loss"][-1] for r in records]),
                        ("final_train_error", [r["error"][-1] for r in records]),
                        ("test_error", [r["test_error"] for r in records]),
                        ("hessian_top1", hessian[:, 0]), ("ggn_top1", ggn[:, 0]),
                        ("hessian_outliers", [r["spectrum"]["hessian"]["outliers"] for r in records]),
                        ("ggn_outliers", [r["spectrum"]["ggn"]["outliers"] for r in records]),
                        ("hessian_bottom", [r["spectrum"]["hessian"]["bottom"] for r in records]),
                        ("hessian_trace_per_parameter", [r["spectrum"]["hessian"]["moment1"][0] for r in records]),
                        ("hessian_bottom_over_top", [-r["spectrum"]["hessian"]["bottom"] / r["spectrum"]["hessian"]["top"][0]
                                                     for r in records]),
                        ("lambda_C_over_lambda_C+1", hessian[:, classes - 1] / hessian[:, classes]),
                        ("top_C_hessian_ggn_relative_gap",
                         (np.abs(hessian[:, :classes] - ggn[:, :classes]) / ggn[:, :classes]).max(axis=1))):
        summary[f"{key}_mean"], summary[f"{key}_std"] = _seed003.mean_std(values)
    summary["hessian_outliers_per_seed"] = [r["spectrum"]["hessian"]["outliers"] for r in records]
    summary["converged"] = (f"{sum(r['error'][-1] == 0 and r['loss'][-1] < float(config['converged_loss']) for r in records)}"
                            f"/{len(records)}")
    summary["max_eigen_residual"] = float(max(max(r["spectrum"][kind]["residuals"]) for r in records
                                              for kind in ("hessian", "ggn")))
    return summary


def summarise_sharpness(records: list[dict], lr: float) -> dict:
    """Peak sharpness against 2 / lr, over seeds."""
    peak = np.array([max(r["sharpness"]) for r in records])
    at = [r["steps"][int(np.argmax(r["sharpness"]))] for r in records]
    bound = 2.0 / lr
    summary = {"lr": lr, "two_over_lr": bound}
    for key, values in (("peak_sharpness", peak), ("peak_over_bound", peak / bound), ("peak_step", at),
                        ("initial_sharpness", [r["sharpness"][0] for r in records]),
                        ("final_sharpness", [r["sharpness"][-1] for r in records]),
                        ("final_train_loss", [r["loss"][-1] for r in records]),
                        ("steps_above_bound_fraction",
                         [float(np.mean(np.array(r["sharpness"]) > bound)) for r in records])):
        summary[f"{key}_mean"], summary[f"{key}_std"] = _seed003.mean_std(values)
    return summary


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    sets = datasets(config)
    lr = float(config["lr"])
    seeds = [int(s) for s in config["seeds"]]
    main = {}
    for label, split in sets.items():
        main[label] = [store.get({"data": label, "lr": lr, "seed": seed},
                                 lambda split=split, seed=seed: train_run(config, split, lr, seed, analyse=True))
                       for seed in seeds]
        top = np.mean([r["spectrum"]["hessian"]["top"][:3] for r in main[label]], axis=0)
        log(f"hessian-spectrum: {label}: train error {np.mean([r['error'][-1] for r in main[label]]):.3f}, "
            f"top eigenvalues {np.round(top, 3).tolist()}, outliers "
            f"{[r['spectrum']['hessian']['outliers'] for r in main[label]]}")
    eos_label = f"mixture_C{max(config['classes'])}" if config["classes"] else "digits"
    eos = {lr: main[eos_label]}
    for other in config["eos_lrs"]:
        if float(other) != lr:
            eos[float(other)] = [store.get({"data": eos_label, "lr": float(other), "seed": seed},
                                           lambda seed=seed, other=other: train_run(config, sets[eos_label],
                                                                                    float(other), seed, False))
                                 for seed in seeds]
    eos = dict(sorted(eos.items()))

    summary: dict = {label: summarise_dataset(records, int(sets[label].info["classes"]), config)
                     for label, records in main.items()}
    summary["sharpness_data"] = eos_label
    for rate, records in eos.items():
        summary[f"sharpness_lr{rate:g}"] = summarise_sharpness(records, rate)
    summary["parameters"] = sum(p.numel() for p in _seed003.init_model(
        [int(config["d"])] + [int(config["width"])] * int(config["depth"]) + [10], 0).parameters())
    summary["runs_reused"] = store.reused
    for label in main:
        s = summary[label]
        log(f"hessian-spectrum: {label}: outliers {s['hessian_outliers_mean']:.1f} +- {s['hessian_outliers_std']:.1f}"
            f" (C = {s['classes']}), converged {s['converged']}")

    arrays = {}
    for label, records in main.items():
        arrays[f"{label}_hessian_top"] = np.array([r["spectrum"]["hessian"]["top"] for r in records])
        arrays[f"{label}_ggn_top"] = np.array([r["spectrum"]["ggn"]["top"] for r in records])
    for rate, records in eos.items():
        arrays[f"sharpness_lr{rate:g}"] = np.array([r["sharpness"] for r in records])
        arrays[f"loss_lr{rate:g}"] = np.array([r["loss"] for r in records])
    arrays["steps"] = np.array(main[next(iter(main))][0]["steps"])
    np.savez_compressed(out / "hessian_spectrum.npz", **arrays)
    (out / "densities.json").write_text(json.dumps(
        {label: {kind: {key: records[0]["spectrum"][kind][key] for key in ("grid", "density", "stderr", "sigma")}
                 for kind in ("hessian", "ggn")} for label, records in main.items()}))

    densities = {label: records[0]["spectrum"] for label, records in main.items()}
    classes = {label: int(sets[label].info["classes"]) for label in main}
    plotting.save_figure(plotting.hessian_spectrum_densities(densities, classes), out, "densities.png")
    plotting.save_figure(plotting.hessian_spectrum_outliers(
        {label: arrays[f"{label}_hessian_top"] for label in main},
        {label: arrays[f"{label}_ggn_top"] for label in main}, classes), out, "outliers.png")
    plotting.save_figure(plotting.hessian_spectrum_sharpness(
        np.array(eos[lr][0]["steps"]), {rate: np.array([r["sharpness"] for r in records]) for rate, records in eos.items()},
        {rate: np.array([r["loss"] for r in records]) for rate, records in eos.items()}, eos_label), out, "sharpness.png")
    return summary
