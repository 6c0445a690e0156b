"""Similarity-based generalisation in a deep linear network on hierarchical data (seed 001's "similarity-based
reasoning"; Rogers & McClelland's new-item protocol).

A net 8 -> 30 -> n_features (one hidden layer, set-up of ``deep-linear``) is trained from small weights. A new item
is then made a sibling of item ``sibling``'s pair: its features are the values at that pair's parent node
(``data.node_values``), each flipped with probability ``flip`` (the tree's own diffusion). It gets a new one-hot
input whose weights (a new column of W_1, from 0) are the only ones trained, on K of its features; the flow ends at
the minimum-norm least-squares hidden vector (:func:`fastdyn.deep_linear.new_item_representation`). Measured for
each K: the sign accuracy of its predicted other features, split into those where it agrees with its parent node
(predictable from its siblings) and its own flips (exceptions, which similarity cannot predict); the cosine
similarity of its hidden vector to every known item's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting
from ..data.hierarchical import correlation_svd, hierarchical

DESCRIPTION = "deep linear net: a new item learned from K of its features, the rest predicted from its similarity"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` runs in seconds (2000 features, coarser steps)."""
    return {
        "depth": 3, "branching": 2, "n_features": 2000 if quick else 10_000, "flip": 0.15, "seed": 0,
        "hidden": 30, "lr": 45.0 if quick else 100.0, "epochs": 250, "steps_per_epoch": 2 if quick else 4,
        "gamma": 1e-12, "sibling": 0, "known": [1, 2, 4, 8, 16, 64, 256], "n_draws": 20,
    }


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    data = hierarchical(config["depth"], config["branching"], config["n_features"], config["flip"], config["seed"])
    if not 0 <= config["sibling"] < data.n_items:
        raise ValueError(f"sibling must be an item index in [0, {data.n_items}), got {config['sibling']!r}")
    if not config["known"] or min(config["known"]) < 1 or max(config["known"]) >= data.n_features:
        raise ValueError(f"known must be feature counts in [1, n_features), got {config['known']!r}")
    if config["n_draws"] < 1:
        raise ValueError(f"n_draws must be >= 1, got {config['n_draws']!r}")
    u, _, v = correlation_svd(data.inputs, data.targets)
    rng = np.random.default_rng(config["seed"])
    run_ = dl.train(dl.init_weights([data.n_items, config["hidden"], data.n_features], config["gamma"], rng), data,
                    lr=config["lr"], epochs=config["epochs"], dt=1.0 / config["steps_per_epoch"], method="rk4",
                    u=u, v=v, feature=0)
    w_in = run_.hidden[-1]                      # (P, h): the trained W_1^T (one-hot inputs)
    # (n_f, h): the trained W_2 on the span of the hidden vectors, Y^T pinv(H)^T (exact at zero loss; the part
    # outside that span is the 1e-12 init)
    w_out = data.targets.T @ np.linalg.pinv(w_in).T
    parent = int(data.node_parent[data.first_item_node + config["sibling"]])
    base = data.node_values[parent].astype(float)
    flips = rng.random(data.n_features) < config["flip"]
    new = np.where(flips, -base, base)
    log(f"deep-linear-generalise: new sibling of {data.item_names[config['sibling']]}, "
        f"{flips.sum()} own flips of {data.n_features} features; final loss {run_.loss[-1]:.2g}")

    summary, table = {"final_loss": float(run_.loss[-1]), "own_flips": int(flips.sum())}, []
    for k in config["known"]:
        agree, exc, sims = [], [], []
        for _ in range(config["n_draws"]):
            observed = rng.choice(data.n_features, k, replace=False)
            h = dl.new_item_representation(w_out, observed, new[observed])
            hidden_rest = np.ones(data.n_features, dtype=bool)
            hidden_rest[observed] = False
            correct = np.sign(w_out @ h) == new
            agree.append(correct[hidden_rest & ~flips].mean())
            exc.append(correct[hidden_rest & flips].mean())
            sims.append(w_in @ h / (np.linalg.norm(w_in, axis=1) * np.linalg.norm(h) + 1e-300))
        sims = np.mean(sims, axis=0)
        row = {"accuracy_agreeing": float(np.mean(agree)), "accuracy_exceptions": float(np.mean(exc)),
               "most_similar_item": data.item_names[int(np.argmax(sims))],
               **{f"cos_{name}": float(c) for name, c in zip(data.item_names, sims)}}
        summary[f"K={k}"] = row
        table.append((k, row["accuracy_agreeing"], row["accuracy_exceptions"], sims))
        log(f"  K={k}: accuracy {row['accuracy_agreeing']:.3f} (agreeing with the parent), "
            f"{row['accuracy_exceptions']:.3f} (own flips); most similar {row['most_similar_item']}")
    np.savez_compressed(out / "generalise.npz", known=np.array(config["known"]), table=np.array(
        [[k, a, e] for k, a, e, _ in table]), similarity=np.array([s for *_, s in table]))
    plotting.save_figure(plotting.deep_linear_generalise(table, data.item_names, data.item_names[config["sibling"]]),
                         out, "generalise.png")
    return summary
