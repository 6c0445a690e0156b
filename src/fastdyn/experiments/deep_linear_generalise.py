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

The new feature (the same protocol with items and features exchanged): a new output (a new row of W_2, from 0) is
trained on K of the 8 items, W_1 fixed. The flow ends at the minimum-norm least-squares row, so the prediction for
every item is kernel regression with the hidden layer's similarity K = H H^T, y_hat = K[:, O] K[O, O]^{-1} y_O
(O: the trained items), and the balanced theory H H^T = V S V^T (one hidden layer from small weights) predicts it
from the SVD alone. Measured for every K and every set O of K items: the sign accuracy on the other items, for
features that follow the tree (a level-1 node, "animal"; a level-2 node, "fish"; new features drawn from the
tree's own diffusion) and for features that do not (one item only, "tuna"; one leaf of every sibling pair,
cutting across the tree); for "tuna only", how often the sibling (shark) is predicted to have it when tuna is
among the trained items; and the level-2 feature taught on ``teach_items`` (tuna +1, rose -1) at earlier epochs,
from the hidden layer of that epoch: its predicted value for every other item.
"""
from __future__ import annotations

from itertools import combinations
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
        "feature_items": [1, 2, 3, 4, 5, 6], "n_random_features": 20 if quick else 100, "teach_items": [1, 4],
        "teach_every": 10 if quick else 5,
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
    summary.update(_new_feature(config, data, run_, log, out))
    return summary


def _new_features(config: dict, data) -> dict:
    """The new features (P,) +-1 by name; "drawn" (n, P): new features from the tree's diffusion (seed + 1)."""
    def marking(items):
        feature = -np.ones(data.n_items)
        feature[items] = 1.0
        return feature

    names = data.node_names
    return {f"{names[1]} (level 1)": marking(data.items_under(1)),
            f"{names[3]} (level 2)": marking(data.items_under(3)),
            f"{data.item_names[1]} only": marking([1]),
            "one leaf per pair": marking(np.arange(0, data.n_items, data.branching)),
            "drawn": hierarchical(config["depth"], config["branching"], config["n_random_features"], config["flip"],
                                  config["seed"] + 1).targets.T}


def _accuracy(similar, features: np.ndarray, k: int, hidden: np.ndarray | None = None) -> float:
    """Mean sign accuracy on the untrained items over every set O of k trained items and every feature (n, P).
    hidden (P, h): the net's new row from :func:`fastdyn.deep_linear.new_item_representation` (items as its
    "features"); None: kernel regression K[:, O] K[O, O]^+ y_O with the similarity ``similar`` (P, P)."""
    n_items = features.shape[1]
    correct = []
    for trained in combinations(range(n_items), k):
        trained = np.array(trained)
        rest = np.setdiff1d(np.arange(n_items), trained)
        for y in features:
            if hidden is None:
                predicted = similar[:, trained] @ np.linalg.pinv(similar[np.ix_(trained, trained)]) @ y[trained]
            else:
                predicted = hidden @ dl.new_item_representation(hidden, trained, y[trained])
            correct.append(np.mean(np.sign(predicted[rest]) == y[rest]))
    return float(np.mean(correct))


def _new_feature(config: dict, data, run_, log, out: Path) -> dict:
    teach = np.asarray(config["teach_items"])
    if config["n_random_features"] < 1 or teach.size < 1 or teach.min() < 0 or teach.max() >= data.n_items:
        raise ValueError(f"need n_random_features >= 1 and teach_items item indices in [0, {data.n_items}), got "
                         f"{config['n_random_features']!r}, {config['teach_items']!r}")
    if not config["feature_items"] or min(config["feature_items"]) < 1 or max(config["feature_items"]) >= data.n_items:
        raise ValueError(f"feature_items must be item counts in [1, {data.n_items}), got {config['feature_items']!r}")
    _, s_yx, v = correlation_svd(data.inputs, data.targets)
    theory = (v * s_yx * data.n_items) @ v.T          # H H^T of the balanced solution, V S V^T
    hidden = run_.hidden[-1]
    rsm = hidden @ hidden.T
    features = _new_features(config, data)
    summary, table = {"new feature: RSM max rel deviation from V S V^T": float(np.abs(rsm - theory).max()
                                                                              / np.abs(theory).max())}, {}
    for name, feature in features.items():
        feature = np.atleast_2d(feature)
        net = [_accuracy(None, feature, k, hidden) for k in config["feature_items"]]
        predicted = [_accuracy(theory, feature, k) for k in config["feature_items"]]
        table[name] = (net, predicted)
        for k, a, b in zip(config["feature_items"], net, predicted):
            summary[f"new feature {name}, K={k}"] = {"accuracy": a, "accuracy_theory": b}
        log(f"  new feature {name}: accuracy {np.round(net, 3).tolist()} for K = {config['feature_items']} "
            f"(theory V S V^T {np.round(predicted, 3).tolist()})")
    only, sibling = features[f"{data.item_names[1]} only"], 0
    for k in config["feature_items"]:
        sets = [np.array(c) for c in combinations(range(data.n_items), k) if 1 in c and sibling not in c]
        if sets:
            summary[f"new feature {data.item_names[1]} only, K={k}"]["sibling_predicted_positive"] = float(np.mean(
                [hidden[sibling] @ dl.new_item_representation(hidden, c, only[c]) > 0 for c in sets]))
    level2 = features[f"{data.node_names[3]} (level 2)"]
    snapshots = np.arange(0, len(run_.times), config["teach_every"] * config["steps_per_epoch"])
    taught = np.array([run_.hidden[t] @ dl.new_item_representation(run_.hidden[t], teach, level2[teach])
                       for t in snapshots])                                   # (T, P)
    stage_times = dl.stages(run_.times, run_.loss)
    for i in np.setdiff1d(np.arange(data.n_items), teach):
        summary[f"taught {data.node_names[3]} at epoch: {data.item_names[i]}"] = ", ".join(
            f"{run_.times[t]:.0f}: {y:+.2f}" for t, y in zip(snapshots[::2], taught[::2, i]))
    np.savez_compressed(out / "new_feature.npz", feature_items=np.array(config["feature_items"]),
                        names=np.array(list(table)), net=np.array([t[0] for t in table.values()]),
                        theory=np.array([t[1] for t in table.values()]), taught_times=run_.times[snapshots],
                        taught=taught, teach_items=teach, stage_times=stage_times)
    plotting.save_figure(plotting.deep_linear_new_feature(config["feature_items"], table, run_.times[snapshots],
                                                          taught, teach, level2, data.item_names,
                                                          data.node_names[3], stage_times), out, "new_feature.png")
    return summary
