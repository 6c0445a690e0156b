"""Remedies for deep networks (seed 003, "Remedy to optimization/generalization problems"): the same deep ReLU MLP
on the digits trained plain, with dropout 0.5, with batch norm and with skip connections; training curves, the
gradient norm of every layer at initialisation, and the test error.

* data: :func:`fastdyn.data.digit_images` (``n_train`` images, x (n, 64), labels 0..9, the rest for testing);
* networks, each with ``depth`` hidden layers of ``width`` units (torch's default init, U(+-1/sqrt(fan_in))), an
  input layer 64 -> width and a read-out width -> 10:
  ``plain`` h <- relu(W h + b); ``dropout`` h <- dropout_0.5(relu(W h + b)); ``batchnorm`` h <- relu(BN(W h + b));
  ``skip`` h <- h + W relu(h) + b (pre-activation residual blocks, one linear layer each);
* training: plain minibatch SGD (``lr``, ``batch``, ``steps``; :func:`._seed003.train`), the same data order for
  all four; train and test cross-entropy / error at log-spaced steps, in eval mode (dropout off, batch-norm running
  statistics);
* gradient norms at init: ||dJ/dW_l||_F of every linear layer for the full-batch training loss (train mode, so
  batch norm uses the batch statistics; dropout masks drawn from the seed).

A network "trains" when its final training error is below ``trained_below``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data, plotting
from .._src import checks
from . import _seed003, mean_std

DESCRIPTION = "seed 003: a deep MLP on digits plain, with dropout, batch norm, skip connections: curves, init gradients"

VARIANTS = ("plain", "dropout", "batchnorm", "skip")


def config(quick: bool) -> dict:
    if quick:
        return {"n_train": 300, "depth": 20, "width": 32, "lr": 0.05, "batch": 50, "steps": 300, "records": 12,
                "trained_below": 0.05, "seeds": [0], "threads": 1}
    return {"n_train": 1200, "depth": 20, "width": 64, "lr": 0.05, "batch": 64, "steps": 4000, "records": 30,
            "trained_below": 0.05, "seeds": [0, 1, 2], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    _seed003.check_image_count(config, "n_train", 20)
    for key in ("depth", "width", "batch", "steps", "records"):
        checks.integer(f"config {key!r}", config[key])
    checks.real("config 'lr'", config["lr"])
    checks.real("config 'trained_below'", config["trained_below"])
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)


class Residual(nn.Module):
    """h -> h + layer(relu(h)), (n, width) -> (n, width)."""

    def __init__(self, width: int):
        super().__init__()
        self.layer = nn.Linear(width, width)

    def forward(self, h):
        return h + self.layer(torch.relu(h))


def make_model(variant: str, depth: int, width: int, seed: int) -> nn.Sequential:
    """The deep MLP x (n, 64) -> logits (n, 10) of ``variant``, drawn from ``seed``."""
    torch.manual_seed(int(seed))
    layers: list[nn.Module] = [nn.Linear(64, width)]
    if variant == "skip":
        layers += [Residual(width) for _ in range(depth)] + [nn.ReLU()]
    else:
        layers.append(nn.ReLU())
        for _ in range(depth):
            layers.append(nn.Linear(width, width))
            if variant == "batchnorm":
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if variant == "dropout":
                layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.Linear(width, 10))


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def init_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """||dJ/dW_l||_F for the full-batch cross-entropy J, one per linear layer from input to read-out."""
    model.train()
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    norms = [float(layer.weight.grad.norm()) for layer in linear_layers(model)]
    model.zero_grad()
    return norms


def one_run(variant: str, config: dict, split, seed: int, steps: np.ndarray) -> dict:
    model = make_model(variant, int(config["depth"]), int(config["width"]), seed)
    gradients = init_gradient_norms(model, split.x, split.y)
    curve = {"train_loss": [], "train_error": [], "test_error": []}

    def record(step):
        model.eval()
        loss, error = _seed003.evaluate(model, split.x, split.y)
        curve["train_loss"].append(loss)
        curve["train_error"].append(error)
        curve["test_error"].append(_seed003.evaluate(model, split.x_test, split.y_test)[1])
        model.train()

    model.train()
    _seed003.train(model, split.x, split.y, lr=float(config["lr"]), steps=int(config["steps"]),
                   batch=int(config["batch"]), order_seed=seed + 1000, record_steps=steps, on_record=record)
    return {"gradient_norms": gradients, **curve,
            "trained": bool(curve["train_error"][-1] < float(config["trained_below"]))}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    split = data.digit_images(int(config["n_train"]), seed=0, as_torch=True)
    steps = _seed003.log_steps(int(config["steps"]), int(config["records"]))
    runs = {}
    for variant in VARIANTS:
        runs[variant] = [one_run(variant, config, split, int(s), steps) for s in config["seeds"]]
        log(f"remedies: {variant}: final train error {[round(r['train_error'][-1], 3) for r in runs[variant]]}, "
            f"test error {[round(r['test_error'][-1], 3) for r in runs[variant]]}, first/last layer init gradient "
            f"{runs[variant][0]['gradient_norms'][0]:.2e} / {runs[variant][0]['gradient_norms'][-1]:.2e}")

    summary: dict = {"depth": int(config["depth"]), "seeds": len(config["seeds"]), "steps": int(config["steps"])}
    for variant, records in runs.items():
        entry = {"trained": sum(r["trained"] for r in records), "runs": len(records)}
        for key in ("train_loss", "train_error", "test_error"):
            entry[f"final_{key}_mean"], entry[f"final_{key}_std"] = mean_std([r[key][-1] for r in records])
        ratio = [np.log10(r["gradient_norms"][0] / r["gradient_norms"][-1]) for r in records]
        entry["log10_init_gradient_first_over_last_mean"], entry["log10_init_gradient_first_over_last_std"] = \
            mean_std(ratio)
        summary[variant] = entry
    np.savez_compressed(out / "remedies.npz", steps=steps, **{
        f"{v}_{key}": np.array([r[key] for r in rs]) for v, rs in runs.items()
        for key in ("gradient_norms", "train_loss", "train_error", "test_error")})
    plotting.save_figure(figure(runs, steps), out, "remedies.png")
    return summary


def figure(runs: dict, steps: np.ndarray):
    """Training loss and test error against step (mean over seeds, the band their range), and the init gradient
    norm of each linear layer (first seed)."""
    fig, axes = plotting.new_figure(3, 1, width=4.0, height=3.3)
    x = np.maximum(steps, 1)
    for variant, colour in zip(VARIANTS, ("C0", "C1", "C2", "C3")):
        for ax, key in zip(axes[0][:2], ("train_loss", "test_error")):
            values = np.array([r[key] for r in runs[variant]])
            ax.plot(x, values.mean(axis=0), color=colour, label=variant)
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
        norms = runs[variant][0]["gradient_norms"]
        axes[0, 2].semilogy(np.arange(1, len(norms) + 1), norms, "o-", ms=3, color=colour, label=variant)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="SGD step", ylabel="train cross-entropy", title="training")
    axes[0, 1].axhline(0.9, color="grey", ls=":", label="chance")
    axes[0, 1].set(xscale="log", xlabel="SGD step", ylabel="test error", title="test error")
    axes[0, 2].set(xlabel="linear layer (input -> read-out)", ylabel="||dJ/dW|| at init", title="gradients at init")
    for ax in axes[0]:
        ax.legend(fontsize=7)
    return fig
