"""Layer weight spectra at initialisation (Marchenko-Pastur) and after training (bulk, outliers, power-law tail),
against width (seed 003, "Deepnet spectra"; Martin & Mahoney 2021).

* data: the ten 8x8 digits as 64 standardised pixels (:func:`._seed003.digit_images`, ``n_train`` images, the
  rest for testing);
* network: :class:`fastdyn.FCNet` [64, w, w, 10] for w in ``widths``, ReLU, torch's default init (entries
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1 / (3 fan_in)); cross-entropy, minibatch SGD (``lr``, ``batch``,
  epochs without replacement) for ``steps`` steps (a plain loop, see :mod:`._seed003`), one run per seed;
* per layer, at init and at the end: :func:`fastdyn.curvature.weight_spectrum`, the eigenvalues of W^T W / N
  (W (N, M), N >= M) with the Marchenko-Pastur fit of their bulk, the outliers above its edge and the power-law
  exponent alpha of the tail (Clauset-Shalizi-Newman, as Martin & Mahoney use it). At init also the
  Kolmogorov-Smirnov distance to the Marchenko-Pastur law with the *known* entry variance 1 / (3 fan_in) and ratio
  M / N (:func:`fastdyn.theory.marchenko_pastur_cdf`), no fit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plotting, theory
from .._src import checks
from ..curvature import weight_spectrum
from . import _seed003
from ._store import RunStore

DESCRIPTION = "seed 003: layer weight spectra vs Marchenko-Pastur at init and after training (tail alpha) vs width"

FREE_KEYS = ("widths", "seeds")  # change no run's record (RunStore)
LAYERS = ("layer 1 (w x 64)", "layer 2 (w x w)", "layer 3 (10 x w)")


def config(quick: bool) -> dict:
    if quick:
        return {"widths": [16, 32], "n_train": 300, "lr": 0.1, "batch": 32, "steps": 150, "seeds": [0, 1],
                "threads": 1}
    return {"widths": [64, 128, 256, 512], "n_train": 1200, "lr": 0.1, "batch": 16, "steps": 15000,
            "seeds": [0, 1, 2], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    if not config["widths"]:
        raise ValueError("config 'widths' must list at least one width")
    for width in config["widths"]:
        checks.integer("config 'widths' entry", width, minimum=10)
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)
    _seed003.check_image_count(config, "n_train", 20)
    for key in ("batch", "steps"):
        checks.integer(f"config {key!r}", config[key])
    checks.real("config 'lr'", config["lr"])


def layer_record(layer) -> dict:
    """The JSON-able :func:`weight_spectrum` of ``layer`` with the largest eigenvalue over the bulk edge."""
    s = weight_spectrum(layer)
    return {"eigenvalues": s.eigenvalues.tolist(), "ratio": s.ratio, "sigma2": s.sigma2,
            "bulk_edges": list(s.bulk_edges), "ks": s.ks, "n_outliers": s.n_outliers, "alpha": s.alpha,
            "alpha_stderr": s.alpha_stderr, "xmin": s.xmin, "tail_ks": s.tail_ks,
            "top_over_edge": float(s.eigenvalues[-1] / s.bulk_edges[1])}


def linear_layers(model) -> list:
    return [module for module in model if hasattr(module, "weight")]


def train_run(config: dict, split, width: int, seed: int) -> dict:
    """One network: the spectra of its three layers at init and after training, train and test error."""
    model = _seed003.init_model([64, width, width, 10], seed)
    init = []
    for layer in linear_layers(model):
        record = layer_record(layer)
        fan_in = layer.weight.shape[1]
        record["known_sigma2"] = 1.0 / (3 * fan_in)
        record["known_ks"] = theory.marchenko_pastur_ks_distance(record["eigenvalues"], record["ratio"],
                                                                  record["known_sigma2"])
        init.append(record)
    _seed003.train(model, split.x, split.y, lr=float(config["lr"]), steps=int(config["steps"]),
                   batch=int(config["batch"]), order_seed=seed + 1000)
    loss, error = _seed003.evaluate(model, split.x, split.y)
    return {"init": init, "trained": [layer_record(layer) for layer in linear_layers(model)], "train_loss": loss,
            "train_error": error, "test_error": _seed003.evaluate(model, split.x_test, split.y_test)[1]}


def _stat(records: list[dict], stage: str, layer: int, key: str) -> tuple[float, float]:
    values = [r[stage][layer][key] for r in records]
    return _seed003.mean_std([np.nan if v is None else v for v in values])


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = _seed003.digit_images(int(config["n_train"]), seed=0)
    widths = [int(w) for w in config["widths"]]
    seeds = [int(s) for s in config["seeds"]]
    runs = {}
    for width in widths:
        runs[width] = [store.get({"width": width, "seed": seed}, lambda width=width, seed=seed:
                                 train_run(config, split, width, seed)) for seed in seeds]
        middle = [r["trained"][1] for r in runs[width]]
        log(f"weight-spectra: width {width}: test error {np.mean([r['test_error'] for r in runs[width]]):.3f}; "
            f"layer 2 alpha init {np.mean([r['init'][1]['alpha'] for r in runs[width]]):.2f} -> trained "
            f"{np.mean([m['alpha'] for m in middle]):.2f}, outliers {[m['n_outliers'] for m in middle]}")

    summary: dict = {"widths": widths, "seeds": len(seeds), "runs_reused": store.reused}
    for width, records in runs.items():
        entry = {}
        for key in ("train_error", "test_error", "train_loss"):
            entry[f"{key}_mean"], entry[f"{key}_std"] = _seed003.mean_std([r[key] for r in records])
        for index in range(len(LAYERS)):
            for stage, keys in (("init", ("known_ks", "ks", "n_outliers", "alpha", "top_over_edge")),
                                ("trained", ("ks", "n_outliers", "alpha", "alpha_stderr", "top_over_edge", "xmin"))):
                for key in keys:
                    mean, std = _stat(records, stage, index, key)
                    entry[f"layer{index + 1}_{stage}_{key}_mean"], entry[f"layer{index + 1}_{stage}_{key}_std"] = mean, std
            fitted = [r["init"][index]["sigma2"] / r["init"][index]["known_sigma2"] for r in records]
            entry[f"layer{index + 1}_init_sigma2_fit_over_known_mean"], \
                entry[f"layer{index + 1}_init_sigma2_fit_over_known_std"] = _seed003.mean_std(fitted)
        summary[f"width{width}"] = entry

    arrays = {}
    for width, records in runs.items():
        for stage in ("init", "trained"):
            for index in range(len(LAYERS)):
                arrays[f"w{width}_{stage}_layer{index + 1}"] = np.array([r[stage][index]["eigenvalues"]
                                                                         for r in records])
    np.savez_compressed(out / "weight_spectra.npz", **arrays)
    first = {width: records[0] for width, records in runs.items()}
    plotting.save_figure(plotting.weight_spectra_init(first), out, "init_vs_mp.png")
    plotting.save_figure(plotting.weight_spectra_trained(first), out, "trained.png")
    plotting.save_figure(plotting.weight_spectra_summary(widths, summary, LAYERS), out, "summary.png")
    return summary
