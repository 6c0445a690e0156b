"""Double descent in width (seed 003, "Intriguing phenomena"; Belkin et al. 2019, Nakkiran et al. 2020): the test
error of a two-layer ReLU network and of a random-features model on the 8x8 digits with label noise, against the
width, through the interpolation threshold; averaged over seeds, with and without a small weight decay; and the
test error against the training step at every width (epoch-wise double descent, if any).

* data: :func:`fastdyn.data.digit_images` (``n_train`` images, 64 standardised pixels, the other 1797 - n for
  testing, the split drawn from the seed); a fraction ``label_noise`` of the training labels redrawn uniformly
  (:func:`.random_labels.corrupt`, so about 0.9 of that fraction is wrong); the test labels stay true;
* targets: the one-hot vectors of the (noisy) labels, fitted by least squares; the prediction is the argmax;
* random features: phi(x) = relu(W x / 8), the N rows of W uniform on the sphere of radius 8
  (:func:`fastdyn.linear.sphere_weights`, :func:`~fastdyn.linear.relu_features`); the read-out A (N, 10) by
  minimum-norm least squares (``rf_ridge`` = 0) or ridge (X^T X / n + ridge I)^-1 X^T Y / n, the normalisation of
  :func:`fastdyn.linear.ridge_fit`, for all ten columns at once. Each class is an n x N linear system: interpolation
  threshold N = n;
* network: :class:`fastdyn.FCNet` [64, width, 10] (torch's default init), both layers trained by full-batch Adam
  (``lr``, ``steps``) on the mean over images of the squared error summed over the 10 outputs, with coupled L2
  weight decay (Adam's ``weight_decay``) for each of ``weight_decays``. P = 75 width + 10 parameters against n x 10
  fitted numbers: threshold width (10 n - 10) / 75;
* epoch-wise: train and test error at ``records`` log-spaced steps of every run, plus one longer run
  (``epochwise_steps``) per seed at ``epochwise_width`` with the first of ``weight_decays`` (0 by default).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data, linear, plotting
from .._src import checks
from . import _seed003, mean_std, random_labels

DESCRIPTION = "seed 003: test error vs width of a 2-layer net and random features on noisy digits, +- weight decay"

CLASSES = 10


def config(quick: bool) -> dict:
    if quick:
        return {"n_train": 200, "label_noise": 0.2, "seeds": [0], "rf_features": [50, 100, 200, 400, 1600],
                "rf_seeds": 2, "rf_ridge": 1e-3, "widths": [4, 160], "weight_decays": [0.0, 1e-3], "lr": 3e-3,
                "steps": 1500, "records": 8, "epochwise_width": 160, "epochwise_steps": 0, "threads": 1}
    return {"n_train": 500, "label_noise": 0.2, "seeds": [0, 1, 2],
            "rf_features": [25, 50, 100, 200, 300, 400, 450, 500, 550, 600, 700, 1000, 2000, 5000], "rf_seeds": 5,
            "rf_ridge": 1e-3, "widths": [4, 8, 16, 32, 48, 64, 80, 96, 128, 256, 512],
            "weight_decays": [0.0, 1e-3], "lr": 3e-3, "steps": 3000, "records": 25, "epochwise_width": 256,
            "epochwise_steps": 8000, "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    _seed003.check_image_count(config, "n_train", 20)
    if not 0.0 <= float(config["label_noise"]) <= 1.0:
        raise ValueError(f"config 'label_noise' must lie in [0, 1], got {config['label_noise']!r}")
    for key in ("seeds", "rf_features", "widths", "weight_decays"):
        if not config[key]:
            raise ValueError(f"config {key!r} must not be empty")
    for key in ("seeds", "rf_features", "widths"):
        for value in config[key]:
            checks.integer(f"config {key!r} entry", value, minimum=0 if key == "seeds" else 1)
    for value in config["weight_decays"]:
        checks.real("config 'weight_decays' entry", value, strict=False)
    checks.real("config 'rf_ridge'", config["rf_ridge"])
    checks.real("config 'lr'", config["lr"])
    for key in ("rf_seeds", "steps", "records", "epochwise_width"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'epochwise_steps'", config["epochwise_steps"], minimum=0)


def noisy_split(n: int, noise: float, seed: int):
    """(x, y, x_test, y_test) float32 / int64 torch tensors: ``n`` digits drawn from ``seed`` with a fraction
    ``noise`` of the training labels redrawn (:func:`.random_labels.corrupt`)."""
    return random_labels.corrupt(data.digit_images(n, seed=seed, as_torch=True), noise, seed)


def readout_fit(phi: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """(N, C) least-squares read-out of features phi (n, N) for targets (n, C): :func:`fastdyn.linear.ridge_fit`'s
    normalisation, all C columns through one factorisation (ridge = 0: the minimum-norm solution, LAPACK gelsd)."""
    n, features = phi.shape
    if ridge == 0:
        return np.linalg.lstsq(phi, targets, rcond=None)[0]
    if features <= n:
        return np.linalg.solve(phi.T @ phi / n + ridge * np.eye(features), phi.T @ targets / n)
    return phi.T @ np.linalg.solve(phi @ phi.T / n + ridge * np.eye(n), targets / n)


def random_features_part(config: dict) -> dict:
    """Train and test errors (features, seeds) of the min-norm and the ridge random-features fits."""
    n, ridge = int(config["n_train"]), float(config["rf_ridge"])
    errors = {f"{name}_{split}": np.zeros((len(config["rf_features"]), int(config["rf_seeds"])))
              for name in ("min-norm", "ridge") for split in ("train", "test")}
    for s in range(int(config["rf_seeds"])):
        x, y, x_test, y_test = (a.double().numpy() if a.is_floating_point() else a.numpy()
                                for a in noisy_split(n, float(config["label_noise"]), s))
        targets = np.eye(CLASSES)[y]
        rng = np.random.default_rng(np.random.SeedSequence([s, 3]))
        for i, features in enumerate(config["rf_features"]):
            weights = linear.sphere_weights(int(features), x.shape[1], rng)
            phi, phi_test = linear.relu_features(x, weights), linear.relu_features(x_test, weights)
            for name, lam in (("min-norm", 0.0), ("ridge", ridge)):
                a = readout_fit(phi, targets, lam)
                errors[f"{name}_train"][i, s] = np.mean(np.argmax(phi @ a, axis=1) != y)
                errors[f"{name}_test"][i, s] = np.mean(np.argmax(phi_test @ a, axis=1) != y_test)
    return errors


def first_minimum_and_peak(sizes, errors, threshold: float) -> tuple[int, int]:
    """(i, j): the index i of the smallest error among the sizes below ``threshold`` (the first descent's minimum;
    0 if none is below) and the index j >= i of the largest error from there on (the peak of a double descent, or
    i itself when the error only falls)."""
    errors = np.asarray(errors, dtype=float)
    below = [k for k, size in enumerate(sizes) if size < threshold]
    first = int(min(below, key=lambda k: errors[k])) if below else 0
    return first, int(first + np.argmax(errors[first:]))


def parameters(width: int) -> int:
    """Parameters of FCNet [64, width, 10]."""
    return 65 * width + (width + 1) * CLASSES


def network_run(split, width: int, weight_decay: float, *, lr: float, steps: int, record_steps, seed: int) -> dict:
    """FCNet [64, width, 10] by full-batch Adam on the squared error of the one-hot labels; errors and the
    training loss at ``record_steps``."""
    x, y, x_test, y_test = split
    targets = nn.functional.one_hot(y, CLASSES).to(x.dtype)
    model = _seed003.init_model([x.shape[1], width, CLASSES], seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    wanted = set(int(s) for s in record_steps)
    curve = {"train_loss": [], "train_error": [], "test_error": []}
    for step in range(steps + 1):
        if step in wanted:
            with torch.no_grad():
                out = model(x)
                curve["train_loss"].append(float(((out - targets) ** 2).sum(dim=1).mean()))
                curve["train_error"].append(float((out.argmax(dim=1) != y).double().mean()))
                curve["test_error"].append(_seed003.evaluate(model, x_test, y_test)[1])
        if step == steps:
            break
        loss = ((model(x) - targets) ** 2).sum(dim=1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return curve


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    n, noise = int(config["n_train"]), float(config["label_noise"])
    widths, decays, seeds = [int(w) for w in config["widths"]], [float(d) for d in config["weight_decays"]], \
        [int(s) for s in config["seeds"]]
    features = [int(f) for f in config["rf_features"]]
    summary: dict = {"n_train": n, "seeds": len(seeds), "rf_seeds": int(config["rf_seeds"]),
                     "rf_threshold_features": n, "network_threshold_width": (CLASSES * n - CLASSES) / 75}

    rf = random_features_part(config)
    for name in ("min-norm", "ridge"):
        test = rf[f"{name}_test"].mean(axis=1)
        first, peak = first_minimum_and_peak(features, test, n)
        summary[f"rf_{name}_first_minimum_features"] = features[first]
        summary[f"rf_{name}_first_minimum_test_error"] = float(test[first])
        summary[f"rf_{name}_peak_features"] = features[peak]
        summary[f"rf_{name}_peak_test_error"] = float(test[peak])
        summary[f"rf_{name}_test_error_at_largest"] = float(test[-1])
        interpolating = [f for f, e in zip(features, rf[f"{name}_train"].max(axis=1)) if e == 0]
        summary[f"rf_{name}_smallest_interpolating_features"] = min(interpolating) if interpolating else None
        for f, row, row_train in zip(features, rf[f"{name}_test"], rf[f"{name}_train"]):
            entry = summary.setdefault(f"rf_N{f}", {})
            entry[f"{name}_test_error_mean"], entry[f"{name}_test_error_std"] = mean_std(row)
            entry[f"{name}_train_error_mean"] = float(row_train.mean())
    log(f"double-descent-width: random features peak at N = {summary['rf_min-norm_peak_features']} "
        f"(test error {summary['rf_min-norm_peak_test_error']:.3f}; ridge {config['rf_ridge']:g}: "
        f"{summary['rf_ridge_peak_test_error']:.3f}), threshold N = n = {n}")

    record_steps = _seed003.log_steps(int(config["steps"]), int(config["records"]))
    splits = {s: noisy_split(n, noise, s) for s in seeds}
    curves = {}
    for decay in decays:
        for width in widths:
            curves[decay, width] = [network_run(splits[s], width, decay, lr=float(config["lr"]),
                                                steps=int(config["steps"]), record_steps=record_steps, seed=s)
                                    for s in seeds]
            c = curves[decay, width]
            log(f"double-descent-width: wd {decay:g} width {width}: train error "
                f"{np.mean([r['train_error'][-1] for r in c]):.3f}, test error "
                f"{np.mean([r['test_error'][-1] for r in c]):.3f}")
        final = np.array([[r["test_error"][-1] for r in curves[decay, w]] for w in widths])  # (widths, seeds)
        key = f"wd{decay:g}"
        first, peak = first_minimum_and_peak(widths, final.mean(axis=1), summary["network_threshold_width"])
        interpolating = [w for w in widths if max(r["train_error"][-1] for r in curves[decay, w]) == 0]
        summary[key] = {
            "first_minimum_width": widths[first], "first_minimum_test_error_mean": float(final[first].mean()),
            "first_minimum_test_error_std": float(final[first].std()),
            "peak_width": widths[peak], "peak_test_error_mean": float(final[peak].mean()),
            "peak_test_error_std": float(final[peak].std()),
            "smallest_interpolating_width": min(interpolating) if interpolating else None,
            "test_error_at_largest_mean": float(final[-1].mean()), "test_error_at_largest_std": float(final[-1].std()),
            # a peak above both the first minimum and the widest net by more than twice the seeds' spread
            "double_descent": bool(first < peak < len(widths) - 1 and final[peak].mean() - 2 * final[peak].std() >
                                   max(final[first].mean(), final[-1].mean())),
        }
        for w in widths:
            entry = summary[key][f"width{w}"] = {"parameters": parameters(w)}
            for name in ("train_error", "test_error", "train_loss"):
                entry[f"{name}_mean"], entry[f"{name}_std"] = mean_std([r[name][-1] for r in curves[decay, w]])
            entry["best_step_test_error_mean"] = float(np.mean([min(r["test_error"]) for r in curves[decay, w]]))

    long_curves, long_steps = [], np.zeros(0, dtype=np.int64)
    if int(config["epochwise_steps"]) > 0:
        long_steps = _seed003.log_steps(int(config["epochwise_steps"]), 2 * int(config["records"]))
        width = int(config["epochwise_width"])
        long_curves = [network_run(splits[s], width, decays[0], lr=float(config["lr"]),
                                   steps=int(config["epochwise_steps"]), record_steps=long_steps, seed=s)
                       for s in seeds]
        test = np.array([c["test_error"] for c in long_curves]).mean(axis=0)
        best = int(np.argmin(test))
        after = int(best + np.argmax(test[best:]))
        summary["epochwise"] = {
            "width": width, "steps": int(config["epochwise_steps"]),
            "best_step": int(long_steps[best]), "best_test_error": float(test[best]),
            "peak_step_after_best": int(long_steps[after]), "peak_test_error_after_best": float(test[after]),
            "final_test_error_mean": float(test[-1]),
            "final_test_error_std": float(np.std([c["test_error"][-1] for c in long_curves])),
            "final_train_error_mean": float(np.mean([c["train_error"][-1] for c in long_curves])),
            # a second descent: the error falls again after its post-minimum peak by more than the seeds' spread
            "second_descent": bool(after < len(test) - 1 and test[after] - test[-1] >
                                   2 * float(np.std([c["test_error"][-1] for c in long_curves])) + 0.005),
        }
        log(f"double-descent-width: epoch-wise at width {width}: best {test[best]:.3f} at step {long_steps[best]}, "
            f"then {test[after]:.3f} at {long_steps[after]}, final {test[-1]:.3f}")

    arrays = {"rf_features": np.array(features), "widths": np.array(widths), "steps": record_steps,
              "epochwise_steps": long_steps, **{f"rf_{k}": v for k, v in rf.items()}}
    for (decay, width), c in curves.items():
        for name in ("train_loss", "train_error", "test_error"):
            arrays[f"wd{decay:g}_width{width}_{name}"] = np.array([r[name] for r in c])
    for name in ("train_loss", "train_error", "test_error") if long_curves else ():
        arrays[f"epochwise_{name}"] = np.array([c[name] for c in long_curves])
    np.savez_compressed(out / "double_descent_width.npz", **arrays)
    plotting.save_figure(width_figure(rf, features, curves, widths, decays, config, summary), out, "width.png")
    plotting.save_figure(epoch_figure(curves, widths, decays, record_steps, long_curves, long_steps, config, summary),
                         out, "epochwise.png")
    return summary


def _band(ax, x, values, colour, label, marker="o"):
    """Mean over the rows of ``values`` (seeds, len(x)) with error bars of their s.d."""
    values = np.asarray(values)
    ax.errorbar(x, values.mean(axis=0), values.std(axis=0), marker=marker, ms=3, capsize=2, color=colour, label=label)


def width_figure(rf, features, curves, widths, decays, config, summary):
    """Random features' and the network's test error against N / width (mean +- s.d. over seeds), and the
    network's training error."""
    fig, axes = plotting.new_figure(3, 1, width=4.0, height=3.3)
    n = int(config["n_train"])
    for name, colour in (("min-norm", "C0"), ("ridge", "C1")):
        label = "min-norm" if name == "min-norm" else f"ridge {config['rf_ridge']:g}"
        _band(axes[0, 0], features, rf[f"{name}_test"].T, colour, f"{label} test")
        axes[0, 0].plot(features, rf[f"{name}_train"].mean(axis=1), "x--", color=colour, label=f"{label} train")
    axes[0, 0].axvline(n, color="grey", ls=":", label="N = n")
    axes[0, 0].set(xscale="log", xlabel="random features N", ylabel="error", ylim=(-0.02, 1.0),
                   title=f"random ReLU features, n = {n}")
    for decay, colour in zip(decays, ("C0", "C1", "C2", "C3")):
        label = "no weight decay" if decay == 0 else f"weight decay {decay:g}"
        _band(axes[0, 1], widths, [[curves[decay, w][i]["test_error"][-1] for w in widths]
                                   for i in range(len(curves[decay, widths[0]]))], colour, label)
        _band(axes[0, 2], widths, [[curves[decay, w][i]["train_error"][-1] for w in widths]
                                   for i in range(len(curves[decay, widths[0]]))], colour, label)
    for ax, what in zip(axes[0, 1:], ("test", "train")):
        ax.axvline(summary["network_threshold_width"], color="grey", ls=":", label="P = 10 n")
        ax.set(xscale="log", xlabel="hidden width", ylabel=f"{what} error",
               title=f"2-layer net, {what} error after {config['steps']} steps")
    for ax in axes[0]:
        ax.legend(fontsize=7)
    return fig


def epoch_figure(curves, widths, decays, steps, long_curves, long_steps, config, summary):
    """Test error (mean over seeds) against width and step without weight decay, and the test and train error
    against step at the epoch-wise width."""
    fig, axes = plotting.new_figure(2, 1, width=4.6, height=3.5)
    decay = decays[0]
    grid = np.array([np.mean([r["test_error"] for r in curves[decay, w]], axis=0) for w in widths])
    image = axes[0, 0].pcolormesh(np.maximum(steps, 1), np.arange(len(widths)), grid, shading="nearest",
                                  cmap="viridis")
    axes[0, 0].set_yticks(np.arange(len(widths)), [str(w) for w in widths], fontsize=7)
    axes[0, 0].axhline(np.interp(np.log(summary["network_threshold_width"]), np.log(widths), np.arange(len(widths))),
                       color="w", ls=":", label="P = 10 n")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[0, 0].set(xscale="log", xlabel="Adam step", ylabel="hidden width",
                   title=f"test error, weight decay {decay:g}")
    fig.colorbar(image, ax=axes[0, 0])
    ax = axes[0, 1]
    width = int(config["epochwise_width"])
    if width in widths:
        for name, colour in (("test_error", "C0"), ("train_error", "C1")):
            values = np.array([r[name] for r in curves[decay, width]])
            ax.errorbar(np.maximum(steps, 1), values.mean(axis=0), values.std(axis=0), fmt="o", ms=3, capsize=2,
                        color=colour, label=f"{name.replace('_', ' ')} (sweep)")
    if long_curves:
        x = np.maximum(long_steps, 1)
        for name, colour in (("test_error", "C0"), ("train_error", "C1")):
            values = np.array([c[name] for c in long_curves])
            ax.plot(x, values.mean(axis=0), color=colour, label=f"{name.replace('_', ' ')} (long run)")
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
    ax.axhline(float(config["label_noise"]) * 0.9, color="grey", ls=":", label="wrong-label fraction")
    ax.set(xscale="log", xlabel="Adam step", ylabel="error", title=f"width {width}, weight decay {decay:g}")
    ax.legend(fontsize=7)
    return fig
