"""Intrinsic dimension of the hidden representation over training, stripe vs sphere vs digits (seed 002).

The representation of an input is the vector of the h hidden pre-activations omega_n . x / sqrt(d) + b_n (the
seed's "last hidden-layer pre-activations"), evaluated on the test points; its TwoNN intrinsic dimension
(Facco et al. 2017, :func:`fastdyn.observables.intrinsic_dimension`) is tracked over training in the feature and
lazy regimes. In the stripe model compression should push it towards 1 (only x_par matters); the sphere model has
nothing to compress. The end-of-training representation is also drawn on its top two principal components.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import _seed002 as common
from .. import plotting
from ..observables import intrinsic_dimension

DESCRIPTION = "seed 002: TwoNN intrinsic dimension of the hidden representation over training (stripe/sphere/digits)"


def config(quick: bool) -> dict:
    sizes = ({"datasets": ["stripe", "sphere"], "d": 5, "d_digits": 10, "p": 128, "h": 100, "p_test": 300,
              "seed": 0} if quick else
             {"datasets": ["stripe", "sphere", "digits"], "d": 5, "d_digits": 10, "p": 512, "h": 100,
              "p_test": 1000, "seed": 0})
    return {**sizes, **common.shared_config(quick, max_steps=2_000_000, converged=True)}


def _representation(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.preactivation(x)


def _id_observable(model, context) -> float:
    return intrinsic_dimension(_representation(model, context.x_test))


def _pc1_observable(model, context) -> float:
    """Fraction of the representation's variance along its first principal component (a scale-aware companion
    of TwoNN, which is blind to a linear squeeze: a full-rank linear image of d-dimensional data stays d-dimensional
    at the nearest-neighbour scale)."""
    features = _representation(model, context.x_test)
    singular = torch.linalg.svdvals(features - features.mean(0))
    return float(singular[0] ** 2 / (singular ** 2).sum())


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    summary, curves, clouds, fits = {}, [], {}, []
    for name in config["datasets"]:
        d = int(config["d_digits"] if name == "digits" else config["d"])
        split = common.dataset(name, int(config["p"]), d, seed=int(config["seed"]), p_test=int(config["p_test"]))
        model = common.network(d, int(config["h"]), int(config["seed"]))
        summary[f"{name}_input_id"] = intrinsic_dimension(split.x_test)
        for regime in ("feature", "lazy"):
            result = common.fit(model, split, config[f"alpha_{regime}"], config, record_weights=False,
                                observables={"id": _id_observable, "pc1": _pc1_observable})
            fits.append(result)
            history = result.history()
            ids = history["obs_id"]
            pc1 = history["obs_pc1"]
            curves.append({"dataset": name, "regime": regime, "t": history["t"].tolist(), "id": ids.tolist(),
                           "pc1": pc1.tolist()})
            summary[f"{name}_{regime}_id_init"] = float(ids[0])
            summary[f"{name}_{regime}_id_end"] = float(ids[-1])
            summary[f"{name}_{regime}_pc1_variance_init"] = float(pc1[0])
            summary[f"{name}_{regime}_pc1_variance_end"] = float(pc1[-1])
            summary[f"{name}_{regime}_test_err"] = result.final.test_err
            summary[f"{name}_{regime}_stop_reason"] = result.stop_reason
            if regime == "feature":
                clouds[name] = (_top_components(_representation(result.model, split.x_test)), split.y_test.numpy())
            if progress:
                print(f"[intrinsic-dimension] {name} {regime}: ID {ids[0]:.2f} -> {ids[-1]:.2f} "
                      f"(input {summary[f'{name}_input_id']:.2f}), test_err={result.final.test_err:.3f}", flush=True)
    summary.update(common.convergence([common.run_record(result) for result in fits]))
    (out / "curves.json").write_text(json.dumps(curves, default=float))
    _plot(out, curves, clouds, summary, config)
    summary["figures"] = ["intrinsic_dimension.png", "representation_pca.png"]
    return summary


def _top_components(features: torch.Tensor) -> np.ndarray:
    """Projection of the (N, h) representation on its top two principal components, (N, 2)."""
    centred = features - features.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:2].T).numpy()


def _plot(out: Path, curves, clouds, summary, config) -> None:
    fig, axes = plotting.new_figure(2)
    colours = dict(zip(config["datasets"], ("C0", "C1", "C2")))
    for ax, key, ylabel in zip(axes[0], ("id", "pc1"), ("TwoNN intrinsic dimension", "variance fraction on PC 1")):
        for curve in curves:
            t = np.asarray(curve["t"])
            keep = t > 0
            ax.semilogx(t[keep], np.asarray(curve[key])[keep], "-" if curve["regime"] == "feature" else ":",
                        color=colours[curve["dataset"]], label=f"{curve['dataset']}, {curve['regime']}")
        ax.set_xlabel("time t")
        ax.set_ylabel(ylabel)
        ax.set_title(f"hidden pre-activations, p={config['p']}, h={config['h']}")
        ax.legend(fontsize=7)
    plotting.save_figure(fig, out, "intrinsic_dimension.png")

    fig, axes = plotting.new_figure(len(clouds), width=3.4, height=3.2)
    for ax, (name, (points, labels)) in zip(axes[0], clouds.items()):
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=3)
        ax.set_title(f"{name}, feature end (ID {summary[f'{name}_feature_id_end']:.1f})")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    plotting.save_figure(fig, out, "representation_pca.png")
