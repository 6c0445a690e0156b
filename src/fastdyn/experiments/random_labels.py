"""Random labels are memorised (seed 003, "Intriguing phenomena"; Zhang et al. 2017): an MLP and a small CNN fit the
8x8 digits with true, partly shuffled and fully shuffled labels, and random Gaussian pixels, to 100 % training
accuracy; the time to fit grows with the corruption and the test error goes to chance. Extra observable: the
alignment of the network's empirical NTK (initial and trained) with the training labels.

* data: :func:`fastdyn.data.digit_images` (``n_train`` images, 64 standardised pixels, x (n, 64)); condition
  ``noise`` = q replaces the labels of a fraction q of the training images (drawn per seed) by uniform random
  digits; ``"pixels"`` replaces every image (train and test) by N(0, 1) pixels and keeps the labels;
* networks: ``mlp`` :class:`fastdyn.FCNet` [64, width, width, 10]; ``cnn`` conv 3x3 (``channels``) - ReLU -
  conv 3x3 (2 ``channels``) - ReLU - max-pool 2 - linear to 10, on x viewed as (n, 1, 8, 8);
* training: Adam (``lr``) on the mean cross-entropy, minibatches of ``batch`` in epochs without replacement, until
  every training image is classified as its (possibly corrupted) label, checked after each epoch, or
  ``max_epochs`` (then the run is reported unconverged);
* NTK: :func:`fastdyn.ntk` (``out="trace"``, the sum over the 10 outputs, (m, m)) on the first ``ntk_points``
  training images at init and at the end; alignment = mean over the ten digits c of the centred
  :func:`fastdyn.observables.alignment` of K with the one-hot column 1[y = c] of the labels trained on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data, plotting
from .._src import checks
from .._src.ntk import ntk
from ..models import FCNet
from ..observables import alignment
from . import _seed003, mean_std

DESCRIPTION = "seed 003: MLP and CNN memorise shuffled labels and random pixels; time to fit, test error, NTK alignment"

ARCHITECTURES = ("mlp", "cnn")


def config(quick: bool) -> dict:
    if quick:
        return {"n_train": 200, "noise": [0.0, 1.0], "pixels": True, "architectures": ["mlp", "cnn"], "width": 256,
                "channels": 8, "lr": 3e-3, "batch": 50, "max_epochs": 300, "ntk_points": 60, "seeds": [0],
                "threads": 1}
    return {"n_train": 800, "noise": [0.0, 0.2, 0.5, 0.8, 1.0], "pixels": True, "architectures": ["mlp", "cnn"],
            "width": 512, "channels": 16, "lr": 1e-3, "batch": 64, "max_epochs": 2000, "ntk_points": 200,
            "seeds": [0, 1, 2], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    _seed003.check_image_count(config, "n_train", 20)
    for q in config["noise"]:
        if not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"config 'noise' entries must lie in [0, 1], got {q!r}")
    if not config["noise"] and not config["pixels"]:
        raise ValueError("config 'noise' is empty and 'pixels' is false: no condition to run")
    if not config["architectures"] or any(a not in ARCHITECTURES for a in config["architectures"]):
        raise ValueError(f"config 'architectures' must list some of {ARCHITECTURES}, got {config['architectures']!r}")
    for key in ("width", "channels", "batch", "max_epochs"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'ntk_points'", config["ntk_points"], minimum=10)
    if config["ntk_points"] > config["n_train"]:
        raise ValueError(f"config 'ntk_points' must be <= 'n_train', got {config['ntk_points']}")
    checks.real("config 'lr'", config["lr"])
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)


def make_model(architecture: str, config: dict, seed: int) -> nn.Module:
    """The network for x (n, 64) -> logits (n, 10), drawn from ``seed``."""
    torch.manual_seed(int(seed))
    if architecture == "mlp":
        return FCNet([64, int(config["width"]), int(config["width"]), 10])
    c = int(config["channels"])
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(2 * c * 16, 10))


def corrupt(split, condition, seed: int):
    """(x, y, x_test, y_test) of ``condition`` (a label-noise fraction or "pixels"): x (n, 64) float32, y (n,)
    int64; the test labels stay the true digits."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 22]))
    x, y, x_test, y_test = split.x, split.y.clone(), split.x_test, split.y_test
    if condition == "pixels":
        x = torch.tensor(rng.standard_normal(tuple(x.shape)), dtype=torch.float32)
        x_test = torch.tensor(rng.standard_normal(tuple(x_test.shape)), dtype=torch.float32)
    else:
        chosen = rng.random(len(y)) < float(condition)
        y[torch.from_numpy(chosen)] = torch.from_numpy(rng.integers(0, 10, int(chosen.sum())))
    return x, y, x_test, y_test


def label_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the digits of the centred alignment of the trace NTK (m, m) of ``model`` on x (m, 64) with
    1[y = c]."""
    K = ntk(model, x, out="trace").double()
    return float(np.mean([float(alignment(K, (y == c).double(), center=True)) for c in range(10)
                          if 0 < int((y == c).sum()) < len(y)]))


def fit(model: nn.Module, x, y, *, lr: float, batch: int, max_epochs: int, seed: int) -> dict:
    """Adam on the cross-entropy until 100 % training accuracy (checked after each epoch) or ``max_epochs``."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1000)
    n, accuracy = len(y), []
    for epoch in range(1, max_epochs + 1):
        for index in torch.randperm(n, generator=generator).split(batch):
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        accuracy.append(1.0 - _seed003.evaluate(model, x, y)[1])
        if accuracy[-1] == 1.0:
            break
    return {"train_accuracy": accuracy, "epochs": len(accuracy), "converged": accuracy[-1] == 1.0}


def one_run(config: dict, split, architecture: str, condition, seed: int) -> dict:
    x, y, x_test, y_test = corrupt(split, condition, seed)
    model = make_model(architecture, config, seed)
    m = int(config["ntk_points"])
    align_init = label_alignment(model, x[:m], y[:m])
    record = fit(model, x, y, lr=float(config["lr"]), batch=int(config["batch"]),
                 max_epochs=int(config["max_epochs"]), seed=seed)
    record.update(alignment_init=align_init, alignment_trained=label_alignment(model, x[:m], y[:m]),
                  test_error=_seed003.evaluate(model, x_test, y_test)[1],
                  label_changed=float((y != split.y).double().mean()))
    return record


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    split = data.digit_images(int(config["n_train"]), seed=0, as_torch=True)
    conditions = [float(q) for q in config["noise"]] + (["pixels"] if config["pixels"] else [])
    names = [f"noise{q:g}" if q != "pixels" else "pixels" for q in conditions]
    runs = {}
    for architecture in config["architectures"]:
        for condition, name in zip(conditions, names):
            runs[architecture, name] = [one_run(config, split, architecture, condition, int(s))
                                        for s in config["seeds"]]
            r = runs[architecture, name]
            log(f"random-labels: {architecture} {name}: epochs {[x['epochs'] for x in r]}, converged "
                f"{[x['converged'] for x in r]}, test error {np.mean([x['test_error'] for x in r]):.3f}, "
                f"alignment {np.mean([x['alignment_init'] for x in r]):.3f} -> "
                f"{np.mean([x['alignment_trained'] for x in r]):.3f}")

    summary: dict = {"conditions": names, "seeds": len(config["seeds"]), "chance_error": 0.9}
    for (architecture, name), records in runs.items():
        entry = {"converged": sum(r["converged"] for r in records), "runs": len(records),
                 "final_train_accuracy_min": min(r["train_accuracy"][-1] for r in records)}
        for key in ("epochs", "test_error", "alignment_init", "alignment_trained", "label_changed"):
            entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std([r[key] for r in records])
        summary[f"{architecture}_{name}"] = entry
    np.savez_compressed(out / "random_labels.npz", **{
        f"{a}_{n}_seed{i}": np.array(r["train_accuracy"]) for (a, n), rs in runs.items() for i, r in enumerate(rs)})
    plotting.save_figure(figure(runs, names, config["architectures"], summary), out, "random_labels.png")
    return summary


def figure(runs: dict, names: list, architectures: list, summary: dict):
    """Training accuracy per epoch (first seed) per architecture; epochs to fit, test error and NTK alignment
    against the condition (mean +- s.d. over seeds)."""
    fig, axes = plotting.new_figure(len(architectures) + 3, 1, width=3.6, height=3.2)
    colours = [plotting_colour(i, len(names)) for i in range(len(names))]
    for ax, architecture in zip(axes[0], architectures):
        for name, colour in zip(names, colours):
            curve = runs[architecture, name][0]["train_accuracy"]
            ax.plot(np.arange(1, len(curve) + 1), curve, color=colour, label=name)
        ax.set(xscale="log", xlabel="epoch", ylabel="train accuracy", title=f"{architecture}: fitting", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    positions = np.arange(len(names))
    for ax, key, label in zip(axes[0][len(architectures):], ("epochs", "test_error", "alignment_trained"),
                              ("epochs to 100 % train acc.", "test error", "NTK-label alignment")):
        for shift, architecture in zip((-0.1, 0.1), architectures):
            means = [summary[f"{architecture}_{n}"][f"{key}_mean"] for n in names]
            stds = [summary[f"{architecture}_{n}"][f"{key}_std"] for n in names]
            ax.errorbar(positions + shift, means, stds, marker="o", capsize=3, label=f"{architecture} trained"
                        if key == "alignment_trained" else architecture)
            if key == "alignment_trained":
                init = [summary[f"{architecture}_{n}"]["alignment_init_mean"] for n in names]
                ax.plot(positions + shift, init, "x--", label=f"{architecture} init")
        if key == "test_error":
            ax.axhline(0.9, color="grey", ls=":", label="chance")
        ax.set_xticks(positions, names, rotation=30, fontsize=7)
        ax.set(ylabel=label, title=label)
        ax.legend(fontsize=7)
    return fig


def plotting_colour(i: int, n: int):
    """Colour i of n from viridis."""
    from matplotlib import colormaps

    return colormaps["viridis"](i / max(n - 1, 1))
