"""Lazy vs feature training of the mean-field ReLU network on the stripe model (seed 002, science.md section 1).

The same initial OneHidden network is trained by gradient flow with the hinge loss at a small alpha (feature
learning: the neurons move and their kinks gather where the label changes, x_1 = -0.3 and x_1 = 1.18549) and at
a large alpha (lazy: the weights barely move, the kink cloud stays the Gaussian of the initialisation).
Outputs: test errors, the network function F on the (x_1, x_2) plane, the kink clouds, the dynamics.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from . import train_checkpoint, wall_limit
from .. import data, kinks, onehidden, plotting, train
from ..data.synthetic import STRIPE_BOUNDS
from ..models import OneHidden
from .._src.optional import require

DESCRIPTION = "stripe model, OneHidden + hinge + gradient flow at small and large alpha: test error, function, kinks"

DPI = 110


def config(quick: bool) -> dict:
    """Defaults: the paper's set-up scaled down (quick: well under a minute on 2 cores)."""
    if quick:
        return dict(p=128, p_test=1000, d=5, h=256, alphas=[0.01, 100.0], seed=0, dtype="float64",
                    max_steps=4000, max_wall=None, max_dgrad=0.1, max_dout=0.1, grid=61, device="cpu",
                    backend="auto", threads=1)
    return dict(p=1000, p_test=10000, d=10, h=10000, alphas=[1e-3, 1e3], seed=0, dtype="float64",
                max_steps=200000, max_wall=3600.0, max_dgrad=1e-4, max_dout=0.1, grid=121, device="cpu",
                backend="auto", threads=0)


def validate(config: dict) -> None:
    for key in ("p", "d", "h", "grid"):
        if config[key] < 1:
            raise ValueError(f"config {key!r} must be >= 1, got {config[key]}")
    if config["d"] < 2:
        raise ValueError(f"config 'd' must be >= 2 for the (x_1, x_2) pictures, got {config['d']}")
    if not config["alphas"] or any(not a > 0 for a in config["alphas"]):
        raise ValueError(f"config 'alphas' must be positive numbers, got {config['alphas']}")
    if str(config["device"]).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {config['device']!r} asked for but torch sees no CUDA GPU; use --device cpu")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"config 'dtype' must be 'float32' or 'float64', got {config['dtype']!r}")


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    validate(config)
    device = torch.device(config["device"])
    dtype = getattr(torch, config["dtype"])
    x, y, x_test, y_test = data.stripe(config["p"], config["d"], p_test=config["p_test"], seed=config["seed"],
                                       dtype=config["dtype"], as_torch=True, device=device)
    init = OneHidden(config["d"], config["h"], dtype=dtype, device=device,
                     generator=torch.Generator(device=device).manual_seed(config["seed"]))
    axis = np.linspace(-3, 3, config["grid"])
    plane = torch.zeros(config["grid"] ** 2, config["d"], dtype=dtype, device=device)
    grid_1, grid_2 = np.meshgrid(axis, axis)
    plane[:, 0] = torch.as_tensor(grid_1.ravel(), dtype=dtype)
    plane[:, 1] = torch.as_tensor(grid_2.ravel(), dtype=dtype)
    f0_plane = onehidden.forward(init, plane, backend=config["backend"])

    summary: dict = {}
    arrays: dict[str, np.ndarray] = {"z_init": kinks.positions(init).detach().cpu().numpy(), "axis": axis}
    results = {}
    for alpha in config["alphas"]:
        bar = _bar(progress, f"alpha={alpha:g}", config["max_steps"])
        result = train(init, x, y, alpha=alpha, loss="hinge", dynamics="flow", x_test=x_test, y_test=y_test,
                       max_steps=config["max_steps"], max_dgrad=config["max_dgrad"],
                       max_wall=wall_limit(config["max_wall"]),
                       max_dout=config["max_dout"], backend=config["backend"], record_weights=False,
                       callback=bar.update_state if bar else None, **train_checkpoint(f"alpha={alpha:g}"))
        if bar:
            bar.close()
        results[alpha] = result
        model = result.model
        tag = f"alpha={alpha:g}"
        weights_moved = math.sqrt(sum(float((p - q).detach().pow(2).sum()) for p, q in zip(model.parameters(), init.parameters())))
        weights_init = math.sqrt(sum(float(q.detach().pow(2).sum()) for q in init.parameters()))
        summary[tag] = {
            "test_err": result.final.test_err,
            "train_err": result.final.train_err,
            "unsatisfied_margins": result.final.unsatisfied,
            "steps": result.step,
            "t": result.t,
            "stop": result.stop_reason,
            "relative_weight_change": weights_moved / weights_init,
            "seconds": round(result.timings["total"], 2),
        }
        F_plane = alpha * (onehidden.forward(model, plane, backend=config["backend"]) - f0_plane)
        history = result.history()
        key = f"alpha_{alpha:g}"
        arrays[f"{key}_function"] = F_plane.cpu().numpy().reshape(config["grid"], config["grid"])
        arrays[f"{key}_z"] = kinks.positions(model).detach().cpu().numpy()
        for name in ("t", "train_err", "test_err", "train_loss", "unsatisfied"):
            arrays[f"{key}_{name}"] = history[name]
    np.savez_compressed(out / "arrays.npz", **arrays)
    _figures(config, arrays, out)
    return summary


class _Bar:
    """tqdm over training steps (the total is the step limit; the flow usually stops earlier)."""

    def __init__(self, desc: str, total: int):
        tqdm = require("tqdm.auto", "experiments", "fastdyn run lazy-vs-feature (progress bars)").tqdm
        self.bar = tqdm(total=total, desc=desc, leave=False, unit="step")

    def update_state(self, state: dict) -> None:
        self.bar.update(state["step"] - self.bar.n)
        if state["step"] % 50 == 0:
            self.bar.set_postfix(t=f"{state['t']:.3g}", unsat=state["unsatisfied"])

    def close(self) -> None:
        self.bar.close()


def _bar(progress: bool, desc: str, total: int):
    return _Bar(desc, total) if progress else None


def _figures(config: dict, arrays: dict, out: Path) -> None:
    alphas = config["alphas"]
    fig, axes = plotting.new_figure(len(alphas), height=3.6, layout=None)
    for ax, alpha in zip(axes[0], alphas):
        F = arrays[f"alpha_{alpha:g}_function"]
        limit = float(np.abs(F).max()) or 1.0
        image = ax.imshow(F, origin="lower", extent=(-3, 3, -3, 3), cmap="RdBu", vmin=-limit, vmax=limit)
        ax.contour(arrays["axis"], arrays["axis"], F, levels=[0], colors="k", linewidths=1)
        for edge in STRIPE_BOUNDS:
            ax.axvline(edge, color="gray", ls=":", lw=1)
        ax.set(title=f"F(x) on the (x1, x2) plane, alpha={alpha:g}", xlabel="x1", ylabel="x2")
        fig.colorbar(image, ax=ax, shrink=0.8)
    plotting.save_figure(fig, out, "function.png", dpi=DPI, tight_layout=True)

    panels = [("init", arrays["z_init"])] + [(f"alpha={a:g}", arrays[f"alpha_{a:g}_z"]) for a in alphas]
    fig, axes = plotting.new_figure(len(panels), width=3.4, height=3.4, layout=None)
    for ax, (title, z) in zip(axes[0], panels):
        ax.scatter(z[:, 0], z[:, 1], s=3, alpha=0.5)
        for edge in STRIPE_BOUNDS:
            ax.axvline(edge, color="gray", ls=":", lw=1)
        ax.set(title=f"kinks, {title}", xlabel="z1", ylabel="z2", xlim=(-4, 4), ylim=(-4, 4), aspect="equal")
    plotting.save_figure(fig, out, "kinks.png", dpi=DPI, tight_layout=True)

    fig, axes = plotting.new_figure(width=5, height=3.6, layout=None)
    ax = axes[0, 0]
    for alpha in alphas:
        t = arrays[f"alpha_{alpha:g}_t"]
        ax.plot(t[1:], arrays[f"alpha_{alpha:g}_test_err"][1:], marker="o", ms=3, label=f"test, alpha={alpha:g}")
        ax.plot(t[1:], arrays[f"alpha_{alpha:g}_train_err"][1:], ls="--", label=f"train, alpha={alpha:g}")
    ax.set(xscale="log", xlabel="t", ylabel="error", title="dynamics")
    ax.legend(fontsize=8)
    plotting.save_figure(fig, out, "dynamics.png", dpi=DPI, tight_layout=True)
