"""Filter-normalised loss slices of a narrow and a wide trained MLP, and the loss along the line between two
solutions (seed 003, "Optimization landscape"; Li, Xu, Taylor, Studer & Goldstein 2018).

* data: the ten 8x8 digits as 64 standardised pixels (:func:`._seed003.digit_images`, ``n_train`` images for
  training, on which every loss below is measured, the rest for the test error);
* networks: :class:`fastdyn.FCNet` [64, w, w, 10] for w in ``widths``, ReLU, torch's default init, cross-entropy,
  minibatch SGD (``lr``, ``batch``, ``steps``; a plain loop, see :mod:`._seed003`). Per width and replicate r
  (``replicates``): network A (init seed a, data order o), B (another init b, the same order o) and C (A's init a,
  another order o'), so A-B differ by their init and A-C only by the order of the minibatches;
* around A (:func:`fastdyn.landscape.loss_slice`, filter normalisation, biases not moved): ``directions`` 1-D
  slices over ``span`` at ``steps_1d`` points and one 2-D slice on a ``steps_2d`` x ``steps_2d`` grid. Flatness:
  the loss rise L(+-a) - L(0) at a = 0.5 and 1 (mean over directions and signs) and the curvature of a parabola
  fitted for |a| <= 0.25; convexity of the 2-D surface: the fraction of interior grid points whose finite-
  difference 2 x 2 Hessian has no eigenvalue below -1e-3 times its largest; of the full Hessian at A
  (:func:`fastdyn.curvature.hessian_eigs`): lambda_max, lambda_min and |lambda_min / lambda_max| (Li et al.'s
  measure of non-convexity);
* the lines A -> B and A -> C (``towards=``, unnormalised, coordinate 0 = A, 1 = the other, over
  ``line_span``): the barrier, the maximum over [0, 1] minus the mean of the two ends, of loss and error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plotting
from .._src import checks
from ..curvature import hessian_eigs
from ..landscape import loss_slice
from . import _seed003
from ._store import RunStore

DESCRIPTION = "seed 003: filter-normalised 1-D/2-D loss slices, narrow vs wide MLP; lines between two solutions"

FREE_KEYS = ("widths", "replicates")  # change no run's record (RunStore)
LINES = {"init": "A -> B (other init, same order)", "order": "A -> C (same init, other order)"}


def config(quick: bool) -> dict:
    if quick:
        return {"widths": [8, 32], "n_train": 200, "lr": 0.1, "batch": 25, "steps": 150, "replicates": 1,
                "directions": 2, "span": 1.0, "steps_1d": 11, "steps_2d": 7, "line_span": [-0.25, 1.25],
                "line_steps": 7, "hessian": True, "threads": 1}
    return {"widths": [16, 512], "n_train": 1000, "lr": 0.1, "batch": 32, "steps": 6000, "replicates": 3,
            "directions": 4, "span": 1.0, "steps_1d": 41, "steps_2d": 25, "line_span": [-0.25, 1.25],
            "line_steps": 31, "hessian": True, "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    if not config["widths"]:
        raise ValueError("config 'widths' must list at least one width")
    for width in config["widths"]:
        checks.integer("config 'widths' entry", width)
    _seed003.check_image_count(config, "n_train", 20)
    for key in ("batch", "steps", "replicates", "directions"):
        checks.integer(f"config {key!r}", config[key])
    for key in ("steps_1d", "steps_2d", "line_steps"):
        checks.integer(f"config {key!r}", config[key], minimum=5)
        if config[key] % 2 == 0:
            raise ValueError(f"config {key!r} must be odd (a grid point at the centre), got {config[key]}")
    checks.real("config 'lr'", config["lr"])
    checks.real("config 'span'", config["span"])
    span = config["line_span"]
    if len(span) != 2 or not span[0] <= 0 < 1 <= span[1]:
        raise ValueError(f"config 'line_span' must be [low, high] with low <= 0 and high >= 1, got {span}")


def network_seeds(replicate: int) -> dict:
    """{name: (init seed, order seed)} of networks A, B, C of ``replicate``."""
    base = 100 * replicate
    return {"A": (base, base), "B": (base + 1, base), "C": (base, base + 1)}


def train_network(config: dict, split, width: int, init_seed: int, order_seed: int) -> dict:
    model = _seed003.init_model([64, width, width, 10], init_seed)
    _seed003.train(model, split.x, split.y, lr=float(config["lr"]), steps=int(config["steps"]),
                   batch=int(config["batch"]), order_seed=order_seed)
    loss, error = _seed003.evaluate(model, split.x, split.y)
    return {"train_loss": loss, "train_error": error,
            "test_error": _seed003.evaluate(model, split.x_test, split.y_test)[1],
            "state": _seed003.state_record(model)}


def model_of(record: dict, width: int):
    return _seed003.load_state(_seed003.init_model([64, width, width, 10], 0), record["state"])


def surface_convex_fraction(loss: np.ndarray, spacing: float) -> float:
    """The fraction of interior points of a 2-D surface ``loss`` (n, n) whose central-difference 2 x 2 Hessian has
    no eigenvalue below -1e-3 times the largest eigenvalue magnitude over the surface."""
    dxx = (loss[2:, 1:-1] - 2 * loss[1:-1, 1:-1] + loss[:-2, 1:-1]) / spacing ** 2
    dyy = (loss[1:-1, 2:] - 2 * loss[1:-1, 1:-1] + loss[1:-1, :-2]) / spacing ** 2
    dxy = (loss[2:, 2:] - loss[2:, :-2] - loss[:-2, 2:] + loss[:-2, :-2]) / (4 * spacing ** 2)
    mean, radius = (dxx + dyy) / 2, np.sqrt(((dxx - dyy) / 2) ** 2 + dxy ** 2)
    smallest, largest = mean - radius, mean + radius
    scale = max(np.abs(smallest).max(), np.abs(largest).max(), 1e-300)
    return float(np.mean(smallest >= -1e-3 * scale))


def flatness(alphas: np.ndarray, curves: np.ndarray) -> dict:
    """From 1-D slices ``curves`` (directions, steps) at ``alphas``: the mean rise at |a| = 0.5 and 1 and the
    curvature 2 c of the parabola c a^2 + b a + L0 fitted to |a| <= 0.25 (means over the directions)."""
    centre = curves[:, np.argmin(np.abs(alphas))]
    result = {}
    for at in (0.5, 1.0):
        index = [int(np.argmin(np.abs(alphas - at))), int(np.argmin(np.abs(alphas + at)))]
        result[f"rise_at_{at:g}"] = float((curves[:, index].mean(axis=1) - centre).mean())
    near = np.abs(alphas) <= 0.25 + 1e-12
    result["curvature"] = float(np.mean([2 * np.polyfit(alphas[near], row[near], 2)[0] for row in curves]))
    return result


def analyse_width(config: dict, split, width: int, replicate: int, nets: dict) -> dict:
    """Slices and Hessian extremes at A, and the lines A -> B, A -> C of one replicate."""
    models = {name: model_of(record, width) for name, record in nets.items()}
    span = float(config["span"])
    seed = 1000 * replicate
    curves, curve_errors = [], []
    for k in range(int(config["directions"])):
        cut = loss_slice(models["A"], split.x, split.y, directions=1, span=(-span, span),
                         steps=int(config["steps_1d"]), seed=seed + k)
        curves.append(cut.loss.tolist())
        curve_errors.append(cut.error.tolist())
    alphas = np.linspace(-span, span, int(config["steps_1d"]))
    surface = loss_slice(models["A"], split.x, split.y, directions=2, span=(-span, span),
                         steps=int(config["steps_2d"]), seed=seed + 500)
    record = {"curves": curves, "curve_errors": curve_errors, "surface": surface.loss.tolist(),
              **flatness(alphas, np.array(curves)),
              "convex_fraction": surface_convex_fraction(surface.loss, float(surface.alphas[1] - surface.alphas[0]))}
    for name, other in (("init", "B"), ("order", "C")):
        line = loss_slice(models["A"], split.x, split.y, towards=models[other], span=tuple(config["line_span"]),
                          steps=int(config["line_steps"]))
        inside = (line.alphas >= -1e-12) & (line.alphas <= 1 + 1e-12)
        ends_loss = (nets["A"]["train_loss"] + nets[other]["train_loss"]) / 2
        ends_error = (nets["A"]["train_error"] + nets[other]["train_error"]) / 2
        record[f"line_{name}"] = {"t": line.alphas.tolist(), "loss": line.loss.tolist(), "error": line.error.tolist(),
                                  "loss_barrier": float(line.loss[inside].max() - ends_loss),
                                  "error_barrier": float(line.error[inside].max() - ends_error)}
    if config["hessian"]:
        top = hessian_eigs(models["A"], split.x, split.y, k=1, seed=seed).values[0]
        bottom = hessian_eigs(models["A"], split.x, split.y, k=1, which="bottom", seed=seed).values[0]
        record.update(hessian_top=float(top), hessian_bottom=float(bottom),
                      hessian_ratio=float(abs(bottom) / top))
    return record


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = _seed003.digit_images(int(config["n_train"]), seed=0)
    widths = [int(w) for w in config["widths"]]
    results, networks = {}, {}
    for width in widths:
        results[width], networks[width] = [], []
        for replicate in range(int(config["replicates"])):
            nets = {name: store.get({"width": width, "init": seeds[0], "order": seeds[1]},
                                    lambda seeds=seeds: train_network(config, split, width, *seeds))
                    for name, seeds in network_seeds(replicate).items()}
            networks[width].append(nets)
            results[width].append(store.get({"width": width, "replicate": replicate, "analysis": 1},
                                            lambda nets=nets, replicate=replicate:
                                            analyse_width(config, split, width, replicate, nets)))
        last = results[width][-1]
        log(f"loss-landscape: width {width}: train loss {nets['A']['train_loss']:.2e}, rise at 1 "
            f"{last['rise_at_1']:.3f}, convex {last['convex_fraction']:.2f}, barriers init "
            f"{last['line_init']['loss_barrier']:.3f} order {last['line_order']['loss_barrier']:.3f}")

    summary: dict = {"widths": widths, "replicates": int(config["replicates"]), "runs_reused": store.reused}
    for width in widths:
        entry = {"parameters": sum(p.numel() for p in model_of(networks[width][0]["A"], width).parameters())}
        every = [net for nets in networks[width] for net in nets.values()]
        for key in ("train_loss", "train_error", "test_error"):
            entry[f"{key}_mean"], entry[f"{key}_std"] = _seed003.mean_std([net[key] for net in every])
        keys = ["rise_at_0.5", "rise_at_1", "curvature", "convex_fraction"]
        keys += ["hessian_top", "hessian_bottom", "hessian_ratio"] if config["hessian"] else []
        for key in keys:
            entry[f"{key}_mean"], entry[f"{key}_std"] = _seed003.mean_std([r[key] for r in results[width]])
        for name in LINES:
            for key in ("loss_barrier", "error_barrier"):
                entry[f"{name}_{key}_mean"], entry[f"{name}_{key}_std"] = _seed003.mean_std(
                    [r[f"line_{name}"][key] for r in results[width]])
        summary[f"width{width}"] = entry
        log(f"loss-landscape: width {width}: rise at 1 {entry['rise_at_1_mean']:.3f} +- {entry['rise_at_1_std']:.3f}, "
            f"convex fraction {entry['convex_fraction_mean']:.2f}, barrier init {entry['init_loss_barrier_mean']:.3f} "
            f"order {entry['order_loss_barrier_mean']:.3f}")

    span = float(config["span"])
    alphas = np.linspace(-span, span, int(config["steps_1d"]))
    grid = np.linspace(-span, span, int(config["steps_2d"]))
    arrays = {"alphas": alphas, "grid": grid, "t": np.array(results[widths[0]][0]["line_init"]["t"])}
    for width in widths:
        arrays[f"w{width}_curves"] = np.array([r["curves"] for r in results[width]])  # (replicates, directions, steps)
        arrays[f"w{width}_surface"] = np.array([r["surface"] for r in results[width]])
        for name in LINES:
            arrays[f"w{width}_line_{name}_loss"] = np.array([r[f"line_{name}"]["loss"] for r in results[width]])
            arrays[f"w{width}_line_{name}_error"] = np.array([r[f"line_{name}"]["error"] for r in results[width]])
    np.savez_compressed(out / "loss_landscape.npz", **arrays)
    curves = {width: arrays[f"w{width}_curves"] for width in widths}
    surfaces = {width: arrays[f"w{width}_surface"][0] for width in widths}
    lines = {width: {name: arrays[f"w{width}_line_{name}_loss"] for name in LINES} for width in widths}
    plotting.save_figure(plotting.loss_landscape_slices(alphas, curves, grid, surfaces), out, "slices.png")
    plotting.save_figure(plotting.loss_landscape_lines(arrays["t"], lines, LINES), out, "lines.png")
    return summary
