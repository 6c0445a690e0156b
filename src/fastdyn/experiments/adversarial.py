"""Adversarial examples (seed 003, "Intriguing phenomena"; Szegedy et al. 2014, Goodfellow et al. 2015, Madry et
al. 2018): FGSM x' = x + epsilon sign(grad_x J(x, y)) and L_inf PGD against a digits MLP, a linear (softmax) model
and an adversarially trained MLP, accuracy against epsilon, and the perturbations drawn.

* data: :func:`fastdyn.data.digit_images` (``n_train`` images, 64 pixels standardised by the training set's overall
  s.d., so epsilon is in units of that s.d., about 6 grey levels of 16); no clipping to the pixel range, so FGSM is
  exactly the seed's x + epsilon sign(grad_x J);
* models: ``mlp`` :class:`fastdyn.FCNet` [64, width, width, 10]; ``linear`` [64, 10]; ``robust`` the same MLP
  trained on PGD examples at ``train_epsilon`` (Madry et al.'s min-max, ``pgd_steps`` steps); Adam (``lr``), batches
  of ``batch``, ``epochs`` epochs, cross-entropy J; one model of each per seed;
* attacks on the test images: FGSM, and PGD with ``pgd_steps`` signed-gradient steps of 2.5 epsilon / steps,
  projected onto the L_inf ball of radius epsilon around x, from x itself (deterministic).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data, plotting
from .._src import checks
from ..models import FCNet
from . import _seed003, mean_std

DESCRIPTION = "seed 003: FGSM and PGD on digits against an MLP, a linear model and an adversarially trained MLP"

MODELS = ("mlp", "linear", "robust")


def config(quick: bool) -> dict:
    if quick:
        return {"n_train": 400, "width": 128, "epochs": 30, "lr": 1e-3, "batch": 50,
                "epsilons": [0.0, 0.05, 0.1, 0.2, 0.4, 0.8], "pgd_steps": 5, "train_epsilon": 0.2, "seeds": [0],
                "threads": 1}
    return {"n_train": 1200, "width": 256, "epochs": 60, "lr": 1e-3, "batch": 64,
            "epsilons": [0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2], "pgd_steps": 10,
            "train_epsilon": 0.2, "seeds": [0, 1, 2], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    _seed003.check_image_count(config, "n_train", 20)
    for key in ("width", "epochs", "batch", "pgd_steps"):
        checks.integer(f"config {key!r}", config[key])
    checks.real("config 'lr'", config["lr"])
    checks.real("config 'train_epsilon'", config["train_epsilon"])
    eps = [float(e) for e in config["epsilons"]]
    if not eps or any(e < 0 for e in eps) or eps != sorted(eps):
        raise ValueError(f"config 'epsilons' must be a non-empty increasing list of values >= 0, got {eps}")
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x J for J the summed cross-entropy (so each row is that image's own loss gradient), (n, 64)."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """x + epsilon sign(grad_x J(x, y)), (n, 64)."""
    return (x + epsilon * input_gradient(model, x, y).sign()).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float, steps: int) -> torch.Tensor:
    """``steps`` steps x <- clip_{x0 +- epsilon}(x + 2.5 epsilon / steps sign(grad_x J)) from x0 = x, (n, 64)."""
    adversarial, step = x.detach().clone(), 2.5 * epsilon / steps
    for _ in range(steps):
        adversarial = adversarial + step * input_gradient(model, adversarial, y).sign()
        adversarial = torch.maximum(torch.minimum(adversarial, x + epsilon), x - epsilon).detach()
    return adversarial


def train_model(kind: str, config: dict, split, seed: int) -> nn.Module:
    """One model of ``kind`` trained by Adam on the cross-entropy; ``robust`` on PGD examples of each batch."""
    torch.manual_seed(int(seed))
    width = int(config["width"])
    model = FCNet([64, 10]) if kind == "linear" else FCNet([64, width, width, 10])
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    generator = torch.Generator().manual_seed(int(seed) + 1000)
    for _ in range(int(config["epochs"])):
        for index in torch.randperm(len(split.y), generator=generator).split(int(config["batch"])):
            xb, yb = split.x[index], split.y[index]
            if kind == "robust":
                xb = pgd(model, xb, yb, float(config["train_epsilon"]), int(config["pgd_steps"]))
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    split = data.digit_images(int(config["n_train"]), seed=0, as_torch=True)
    epsilons = [float(e) for e in config["epsilons"]]
    steps = int(config["pgd_steps"])
    curves = {(kind, attack): [] for kind in MODELS for attack in ("fgsm", "pgd")}
    train_accuracy = {kind: [] for kind in MODELS}
    first = {}
    for seed in config["seeds"]:
        for kind in MODELS:
            model = train_model(kind, config, split, int(seed))
            first.setdefault(kind, model)
            train_accuracy[kind].append(_seed003.accuracy(model, split.x, split.y))
            for attack, make in (("fgsm", lambda e: fgsm(model, split.x_test, split.y_test, e)),
                                 ("pgd", lambda e: pgd(model, split.x_test, split.y_test, e, steps))):
                curves[kind, attack].append([_seed003.accuracy(model, make(e), split.y_test) for e in epsilons])
            log(f"adversarial: seed {seed} {kind}: clean test accuracy {curves[kind, 'fgsm'][-1][0]:.3f}, "
                f"FGSM {np.round(curves[kind, 'fgsm'][-1], 3).tolist()}, PGD {np.round(curves[kind, 'pgd'][-1], 3).tolist()}")

    summary: dict = {"epsilons": epsilons, "seeds": len(config["seeds"])}
    for kind in MODELS:
        entry = {}
        entry["train_accuracy_mean"], entry["train_accuracy_std"] = mean_std(train_accuracy[kind])
        for attack in ("fgsm", "pgd"):
            values = np.array(curves[kind, attack])  # (seeds, epsilons)
            entry[f"{attack}_accuracy_mean"] = values.mean(axis=0).tolist()
            entry[f"{attack}_accuracy_std"] = values.std(axis=0).tolist()
            entry[f"{attack}_monotone_all_seeds"] = bool(np.all(np.diff(values, axis=1) <= 0))
            # the smallest epsilon that halves the clean accuracy (mean curve), None if none does
            mean = values.mean(axis=0)
            below = [e for e, a in zip(epsilons, mean) if a <= mean[0] / 2]
            entry[f"{attack}_half_accuracy_epsilon"] = below[0] if below else None
        summary[kind] = entry
    np.savez_compressed(out / "adversarial.npz", epsilons=np.array(epsilons),
                        **{f"{k}_{a}": np.array(v) for (k, a), v in curves.items()})
    plotting.save_figure(accuracy_figure(summary, epsilons), out, "accuracy.png")
    shown = float(config["train_epsilon"])
    plotting.save_figure(perturbation_figure(first, split, shown), out, "perturbations.png")
    return summary


def accuracy_figure(summary: dict, epsilons: list):
    """Test accuracy (mean +- s.d. over seeds) against epsilon, FGSM and PGD, per model."""
    fig, axes = plotting.new_figure(1, 1, width=5.2, height=3.8)
    ax = axes[0, 0]
    for kind, colour in zip(MODELS, ("C0", "C1", "C2")):
        for attack, style in (("fgsm", "o-"), ("pgd", "s--")):
            ax.errorbar(epsilons, summary[kind][f"{attack}_accuracy_mean"], summary[kind][f"{attack}_accuracy_std"],
                        fmt=style, color=colour, capsize=2, ms=4, label=f"{kind} {attack.upper()}")
    ax.axhline(0.1, color="grey", ls=":", label="chance")
    ax.set(xlabel="epsilon (L_inf, pixel s.d. units)", ylabel="test accuracy", title="accuracy under attack")
    ax.legend(fontsize=7, ncol=2)
    return fig


def perturbation_figure(models: dict, split, epsilon: float, images: int = 4):
    """Rows: test images. Columns: the clean image, then per model the FGSM perturbation sign(grad_x J) and the
    adversarial image at ``epsilon``, titled with the predicted digit."""
    fig, axes = plotting.new_figure(1 + 2 * len(models), images, width=1.25, height=1.35)
    x, y = split.x_test[:images], split.y_test[:images]
    for row in range(images):
        axes[row, 0].imshow(x[row].view(8, 8).numpy(), cmap="gray")
        axes[row, 0].set_title(f"clean, {int(y[row])}", fontsize=7)
    for column, (kind, model) in enumerate(models.items()):
        adversarial = fgsm(model, x, y, epsilon)
        with torch.no_grad():
            predicted = model(adversarial).argmax(dim=1)
        for row in range(images):
            axes[row, 1 + 2 * column].imshow(((adversarial - x)[row] / epsilon).view(8, 8).numpy(), cmap="bwr",
                                             vmin=-1, vmax=1)
            axes[row, 1 + 2 * column].set_title(f"{kind}: sign grad", fontsize=7)
            axes[row, 2 + 2 * column].imshow(adversarial[row].view(8, 8).numpy(), cmap="gray")
            axes[row, 2 + 2 * column].set_title(f"x+{epsilon:g}s -> {int(predicted[row])}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
