"""Linear mode connectivity and instability to SGD noise on 8x8 digits (seed 000; Frankle, Dziugaite, Roy, Carbin 2020).

The protocol of Frankle et al. ("Linear mode connectivity and the lottery ticket hypothesis", instability
analysis), scaled to this machine. Data: scikit-learn's 8x8 digits, 10 classes, pixels / 16 standardised per pixel
on the training images (std + 0.1, so constant border pixels stay finite); ``n_train`` training images, the other
1797 - n_train images are the (clean) test set; optionally a fraction ``<setting>_label_noise`` of the *training*
labels is replaced by uniformly random classes (fixed per seed, shared by every run of that seed).

Networks: :class:`fastdyn.FCNet` [64, *widths, 10] (ReLU, torch's default init), cross-entropy, plain minibatch SGD
with a fixed lr, batches of ``batch`` drawn without replacement from a reshuffle of the training set every epoch
(the last incomplete batch of an epoch is dropped); the data order is a seeded torch.Generator, so "SGD noise" is
exactly the data order. Every network is trained for ``steps`` SGD steps in total.

For each setting (``easy``: one wide hidden layer, small lr, clean labels; ``hard``: three narrow layers, large lr,
label noise) and seed:

* instability at spawning step k, for k in ``spawn_steps`` (0 included): one network from the seed's init is trained
  to step k (parent data order), then copied into two children that continue with two fresh, different data orders
  to step ``steps``; the error barrier of the two children (max of the test error along the linear path minus the
  mean of the two ends, :func:`fastdyn.landscape.interpolate` at ``interp_steps`` points) is the instability. k = 0
  is "same init, different data order";
* independent inits: two networks from two different inits with different data orders, trained ``steps`` steps; their
  barrier, and the barrier after permuting the hidden units of one to match the other
  (:func:`fastdyn.landscape.align_neurons`, weight matching): how much of it is the permutation symmetry.

Frankle et al.'s claim: the barrier is large for k = 0 (or small k) and falls to ~0 from some k on (the network
becomes stable to SGD noise early in training), while independent inits always have a large barrier. The summary
gives, per setting, the barrier at each k (mean, std, min, max over seeds), and ``k_stable``: the first k of the grid
from which the seed-mean barrier stays below ``threshold`` (None: never within the grid).

Why not :func:`fastdyn.train`: it trains the centred output alpha (f_w - f_w0) (the alpha-trick), so a trained
module's own output is not the function that was fit, and restarting it at step k would re-centre on the step-k
network and change the objective; the experiment needs the plain network f_w trained by SGD and split mid-run with
a new data order, which a ten-line torch loop does exactly.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from .._src.optional import require
from ..models import FCNet
from ._store import RunStore

DESCRIPTION = ("seed 000: linear mode connectivity on digits: barrier between SGD-noise copies spawned at step k "
               "(Frankle et al. 2020) vs independent inits")

SETTINGS = ("easy", "hard")
N_CLASSES = 10
N_IMAGES = 1797


def config(quick: bool) -> dict:
    return {
        "steps": 500 if quick else 1500, "batch": 32, "n_train": 1200,
        "spawn_steps": [0, 10, 100] if quick else [0, 2, 10, 50, 200, 800],
        "seeds": 2 if quick else 6, "seed": 0, "interp_steps": 21, "threshold": 0.02,
        "easy_widths": [64], "easy_lr": 0.1, "easy_label_noise": 0.0,
        "hard_widths": [16, 16, 16], "hard_lr": 0.5, "hard_label_noise": 0.2,
        "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    steps = checks.integer("config 'steps'", config["steps"])
    for key in ("batch", "n_train", "seeds"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'seed'", config["seed"], minimum=0)
    checks.integer("config 'interp_steps'", config["interp_steps"], minimum=3)
    checks.integer("config 'threads'", config["threads"], minimum=0)
    if not config["n_train"] < N_IMAGES - 10:
        raise ValueError(f"config 'n_train' must leave at least 10 of the {N_IMAGES} images for the test set, "
                         f"got {config['n_train']}")
    if config["batch"] > config["n_train"]:
        raise ValueError(f"config 'batch' must be <= 'n_train' ({config['n_train']}), got {config['batch']}")
    spawn = config["spawn_steps"]
    if not isinstance(spawn, (list, tuple)) or not spawn:
        raise ValueError(f"config 'spawn_steps' must be a non-empty list of steps, got {spawn!r}")
    for k in spawn:
        checks.integer("config 'spawn_steps' entry", k, minimum=0)
        if k >= steps:
            raise ValueError(f"config 'spawn_steps' entries must be < 'steps' ({steps}), got {k}")
    if list(spawn) != sorted(set(spawn)):
        raise ValueError(f"config 'spawn_steps' must be strictly increasing, got {spawn!r}")
    threshold = checks.real("config 'threshold'", config["threshold"])
    if threshold >= 1:
        raise ValueError(f"config 'threshold' must be an error in (0, 1), got {threshold}")
    for name in SETTINGS:
        widths = config[f"{name}_widths"]
        if not isinstance(widths, (list, tuple)) or not widths:
            raise ValueError(f"config '{name}_widths' must be a non-empty list of hidden widths, got {widths!r}")
        for w in widths:
            checks.integer(f"config '{name}_widths' entry", w)
        checks.real(f"config '{name}_lr'", config[f"{name}_lr"])
        noise = checks.real(f"config '{name}_label_noise'", config[f"{name}_label_noise"], strict=False)
        if noise >= 1:
            raise ValueError(f"config '{name}_label_noise' must be in [0, 1), got {noise}")


def digits_split(config: dict, seed_index: int) -> dict:
    """Standardised float32 digits: x (n_train, 64), y (n_train,) (with label noise), y_clean, x_test, y_test.

    The train/test split is fixed by config 'seed' (the same for every seed index); the label noise of ``setting``
    is drawn per seed index by :func:`noisy_labels`."""
    load_digits = require("sklearn.datasets", "experiments", "fastdyn run mode-connectivity").load_digits
    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(np.random.SeedSequence([int(config["seed"]), 17])).permutation(len(labels))
    train, test = order[:int(config["n_train"])], order[int(config["n_train"]):]
    images = images.astype(np.float64) / 16.0
    mean, std = images[train].mean(axis=0), images[train].std(axis=0) + 0.1
    images = ((images - mean) / std).astype(np.float32)
    return {"x": torch.from_numpy(images[train]), "y": torch.from_numpy(labels[train].astype(np.int64)),
            "x_test": torch.from_numpy(images[test]), "y_test": torch.from_numpy(labels[test].astype(np.int64))}


def noisy_labels(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A copy of ``y`` with a ``fraction`` of the entries (chosen by ``seed``) replaced by uniform random classes
    (which may equal the true one)."""
    rng = np.random.default_rng(seed)
    flip = rng.random(y.shape[0]) < fraction
    y = y.clone()
    y[torch.from_numpy(flip)] = torch.from_numpy(rng.integers(0, N_CLASSES, int(flip.sum())))
    return y


def seeds_of(config: dict, setting: str, seed_index: int) -> dict:
    """The integer seeds of one (setting, seed index): two inits, the label noise, the parent's and the independent
    pair's data orders, and a base from which each spawn's two children draw theirs (:func:`child_seed`)."""
    names = ("init", "init_other", "labels", "parent", "order_a", "order_b", "children")
    state = np.random.SeedSequence([int(config["seed"]), SETTINGS.index(setting), seed_index]).generate_state(
        len(names))
    return {name: int(value) for name, value in zip(names, state)}


def child_seed(base: int, k: int, child: int) -> int:
    """The data-order seed of child ``child`` (0 or 1) spawned at step ``k``."""
    return int(np.random.SeedSequence([base, k, child]).generate_state(1)[0])


def new_network(config: dict, setting: str, init_seed: int) -> FCNet:
    """FCNet [64, *widths, 10] with torch's default init drawn after torch.manual_seed(init_seed)."""
    torch.manual_seed(init_seed)
    return FCNet([64, *[int(w) for w in config[f"{setting}_widths"]], N_CLASSES])


def sgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, batch: int,
        order_seed: int) -> torch.nn.Module:
    """``steps`` steps of plain SGD (fixed lr) on the cross-entropy of ``model`` (changed in place, returned).

    Batches of ``batch`` points without replacement from a reshuffle (torch.Generator seeded by ``order_seed``) of
    the training set every epoch; the incomplete last batch of an epoch is dropped."""
    generator = torch.Generator().manual_seed(order_seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    per_epoch = x.shape[0] // batch
    perm = torch.randperm(x.shape[0], generator=generator)
    for step in range(steps):
        position = step % per_epoch
        if step and position == 0:
            perm = torch.randperm(x.shape[0], generator=generator)
        index = perm[position * batch:(position + 1) * batch]
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


def path_record(model_a, model_b, data: dict, interp_steps: int) -> dict:
    """Test error and loss along the linear path from model_a to model_b, and their barriers."""
    from ..landscape import interpolate  # lazy: keeps the import of this module light

    path = interpolate(model_a, model_b, data["x_test"], data["y_test"], steps=interp_steps, loss="cross_entropy")
    return {"error": [float(v) for v in path.error], "loss": [float(v) for v in path.loss],
            "error_barrier": float(path.error_barrier), "loss_barrier": float(path.loss_barrier)}


def spawn_run(config: dict, setting: str, seed_index: int, k: int, data: dict) -> dict:
    """Train the seed's init to step k, split into two children with different data orders, train both to
    ``steps``; the path between the children."""
    seeds = seeds_of(config, setting, seed_index)
    lr, batch, steps = float(config[f"{setting}_lr"]), int(config["batch"]), int(config["steps"])
    parent = sgd(new_network(config, setting, seeds["init"]), data["x"], data["y"], k, lr, batch, seeds["parent"])
    children = [sgd(copy.deepcopy(parent), data["x"], data["y"], steps - k, lr, batch,
                    child_seed(seeds["children"], k, child)) for child in (0, 1)]
    return path_record(*children, data, int(config["interp_steps"]))


def independent_run(config: dict, setting: str, seed_index: int, data: dict) -> dict:
    """Two inits, two data orders, ``steps`` steps each: the path between them, raw and after aligning the hidden
    units of the second to the first."""
    from ..landscape import align_neurons  # lazy: keeps the import of this module light

    seeds = seeds_of(config, setting, seed_index)
    lr, batch, steps = float(config[f"{setting}_lr"]), int(config["batch"]), int(config["steps"])
    a = sgd(new_network(config, setting, seeds["init"]), data["x"], data["y"], steps, lr, batch, seeds["order_a"])
    b = sgd(new_network(config, setting, seeds["init_other"]), data["x"], data["y"], steps, lr, batch,
            seeds["order_b"])
    record = path_record(a, b, data, int(config["interp_steps"]))
    record["aligned"] = path_record(a, align_neurons(a, b), data, int(config["interp_steps"]))
    return record


def stable_from(spawn_steps: list[int], mean_barrier: np.ndarray, threshold: float) -> int | None:
    """The first k of the grid from which the mean barrier stays below ``threshold``; None if the last one is not."""
    below = mean_barrier < threshold
    if not below[-1]:
        return None
    first = len(below) - int(np.argmin(below[::-1])) if not below.all() else 0
    return int(spawn_steps[first])


def _stats(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    spawn_steps, seeds = [int(k) for k in config["spawn_steps"]], int(config["seeds"])
    store = RunStore(out, config, free_keys=("spawn_steps", "seeds", "threshold"))
    bar = None
    if progress:
        tqdm = require("tqdm.auto", "experiments", "fastdyn run mode-connectivity (progress bars)").tqdm
        bar = tqdm(total=len(SETTINGS) * seeds * (len(spawn_steps) + 1), desc="runs", unit="run")
    base = digits_split(config, 0)
    n_points = int(config["interp_steps"])
    shape = (len(SETTINGS), seeds, len(spawn_steps))
    spawn_error, spawn_loss = np.zeros(shape + (n_points,)), np.zeros(shape + (n_points,))
    spawn_barrier, spawn_loss_barrier = np.zeros(shape), np.zeros(shape)
    indep_error, indep_loss = np.zeros(shape[:2] + (n_points,)), np.zeros(shape[:2] + (n_points,))
    aligned_error, aligned_loss = np.zeros_like(indep_error), np.zeros_like(indep_error)
    indep_barrier, aligned_barrier = np.zeros(shape[:2]), np.zeros(shape[:2])
    for i, setting in enumerate(SETTINGS):
        for s in range(seeds):
            data = dict(base, y=noisy_labels(base["y"], float(config[f"{setting}_label_noise"]),
                                             seeds_of(config, setting, s)["labels"]))
            for j, k in enumerate(spawn_steps):
                record = store.get({"setting": setting, "seed": s, "k": k},
                                   lambda: spawn_run(config, setting, s, k, data))
                spawn_error[i, s, j], spawn_loss[i, s, j] = record["error"], record["loss"]
                spawn_barrier[i, s, j], spawn_loss_barrier[i, s, j] = record["error_barrier"], record["loss_barrier"]
                if bar is not None:
                    bar.update()
            record = store.get({"setting": setting, "seed": s, "k": "independent"},
                               lambda: independent_run(config, setting, s, data))
            indep_error[i, s], indep_loss[i, s], indep_barrier[i, s] = (record["error"], record["loss"],
                                                                        record["error_barrier"])
            aligned = record["aligned"]
            aligned_error[i, s], aligned_loss[i, s], aligned_barrier[i, s] = (aligned["error"], aligned["loss"],
                                                                              aligned["error_barrier"])
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()

    threshold = float(config["threshold"])
    summary: dict = {"threshold": threshold, "steps": int(config["steps"]), "spawn_steps": spawn_steps,
                     "seeds": seeds, "n_test": int(base["y_test"].shape[0]), "reused_runs": store.reused}
    for i, setting in enumerate(SETTINGS):
        for j, k in enumerate(spawn_steps):
            for field, value in _stats(spawn_barrier[i, :, j]).items():
                summary[f"{setting}_barrier_k={k}_{field}"] = value
        summary[f"{setting}_loss_barrier_k=0_mean"] = float(spawn_loss_barrier[i, :, 0].mean())
        # stricter: the rise above the worse end (0 for a monotone path, which max minus mean-of-ends is not)
        over = spawn_error[i].max(axis=-1) - np.maximum(spawn_error[i, ..., 0], spawn_error[i, ..., -1])
        for j, k in enumerate(spawn_steps):
            summary[f"{setting}_over_worse_end_k={k}_mean"] = float(over[:, j].mean())
        summary[f"{setting}_independent_over_worse_end_mean"] = float(
            (indep_error[i].max(axis=-1) - np.maximum(indep_error[i, :, 0], indep_error[i, :, -1])).mean())
        ends = np.concatenate([spawn_error[i, :, :, 0], spawn_error[i, :, :, -1]], axis=1)
        summary[f"{setting}_end_error_mean"] = float(ends.mean())
        summary[f"{setting}_end_error_std"] = float(ends.std(ddof=1))
        for name, values in (("independent", indep_barrier[i]), ("aligned", aligned_barrier[i])):
            for field, value in _stats(values).items():
                summary[f"{setting}_{name}_barrier_{field}"] = value
        summary[f"{setting}_k_stable"] = stable_from(spawn_steps, spawn_barrier[i].mean(axis=0), threshold)
        summary[f"{setting}_k_stable_per_seed"] = [stable_from(spawn_steps, spawn_barrier[i, s], threshold)
                                                   for s in range(seeds)]
        log(f"mode-connectivity: {setting}: barrier at k = {spawn_steps[0]}: "
            f"{summary[f'{setting}_barrier_k={spawn_steps[0]}_mean']:.3f}, at k = {spawn_steps[-1]}: "
            f"{summary[f'{setting}_barrier_k={spawn_steps[-1]}_mean']:.3f}; independent "
            f"{summary[f'{setting}_independent_barrier_mean']:.3f} (aligned "
            f"{summary[f'{setting}_aligned_barrier_mean']:.3f}); end-point error "
            f"{summary[f'{setting}_end_error_mean']:.3f}; stable from k = {summary[f'{setting}_k_stable']}")

    t = np.linspace(0.0, 1.0, n_points)
    np.savez_compressed(out / "paths.npz", t=t, settings=np.array(SETTINGS), spawn_steps=np.array(spawn_steps),
                        spawn_error=spawn_error, spawn_loss=spawn_loss, spawn_barrier=spawn_barrier,
                        spawn_loss_barrier=spawn_loss_barrier, independent_error=indep_error,
                        independent_loss=indep_loss, independent_barrier=indep_barrier,
                        aligned_error=aligned_error, aligned_loss=aligned_loss, aligned_barrier=aligned_barrier)
    descriptions = {name: f"FCNet [64, {', '.join(str(w) for w in config[f'{name}_widths'])}, 10], lr "
                          f"{config[f'{name}_lr']:g}, label noise {config[f'{name}_label_noise']:g}"
                    for name in SETTINGS}
    (out / "settings.json").write_text(json.dumps(descriptions, indent=1))
    plotting.save_figure(plotting.mode_connectivity_paths(
        t, SETTINGS, descriptions, spawn_error[:, :, 0], spawn_loss[:, :, 0], indep_error, indep_loss,
        aligned_error, aligned_loss), out, "paths.png")
    plotting.save_figure(plotting.mode_connectivity_instability(
        spawn_steps, SETTINGS, descriptions, spawn_barrier, indep_barrier, aligned_barrier, threshold,
        int(config["steps"])), out, "instability.png")
    return summary
