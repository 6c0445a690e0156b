"""Which layers reach their final representation first (seed 000; Raghu, Gilmer, Yosinski, Sohl-Dickstein 2017).

The seed's figure (from the SVCCA paper): the similarity of every layer at every time of training to the same layer
at the end, layers x time, lighter = more similar; "earlier layers reach their final state earlier, with the
exception of the 2 layers closest to the output that also converge very early". Here, scaled to this machine:

* data: scikit-learn's 8x8 digits, all ten classes (:func:`fastdyn.data.digit_images`): ``n_train`` training
  images, the others held out; the probe set on which representations are compared is ``probe`` = "all" (all
  1797 images, training ones included), "train" or "test";
* networks: ``mlp``, :class:`fastdyn.FCNet` [64, ``mlp_widths``..., 10] with ReLU; ``cnn``, an ``nn.Sequential``
  Unflatten(1, 8, 8), then for each of ``cnn_channels`` a 3x3 Conv2d (padding 1; stride 1 for the first, 2 after)
  and ReLU, Flatten, Linear(., ``cnn_hidden``), ReLU, Linear(., 10); torch's default initialisation;
* training: cross-entropy, plain SGD (``lr``, ``momentum``), minibatches of ``batch`` drawn by shuffling the
  training set every epoch, ``epochs`` epochs (long enough that every run sits at 100 % training accuracy well
  before its end; the epoch at which it first got there is recorded). The loop is plain torch, not
  :func:`fastdyn.train`, which trains the centred output alpha (f - f0): the networks compared here are the
  ordinary ones, trained as Raghu et al. train theirs;
* layers: the output of every ReLU (hidden representations) and the logits (the output layer). A convolutional
  layer's output (C, H, W) is flattened per probe image to C * H * W features (as
  :func:`fastdyn.observables.activations` does), not treated with the SVCCA paper's per-position or DFT variant;
* snapshots: step 0 and ``n_snapshots`` log-spaced steps from ``first_snapshot_step`` to the last step (the final
  state);
* similarity of each layer at each snapshot to the same layer at the end: SVCCA (:func:`fastdyn.observables.svcca`,
  top directions keeping ``keep`` of the variance on each side, mean canonical correlation) and linear CKA
  (:func:`fastdyn.observables.linear_cka`).

The claim is quantified per layer by its convergence step: the first snapshot at which its similarity to the end
reaches a threshold (``thresholds``; the summary's headline uses ``cka_threshold`` and ``svcca_threshold``), as
mean and standard deviation over ``seeds`` seeds, and by two tests per seed: bottom-up order among the lower
layers (all but the last two: Spearman correlation of depth with convergence step, and whether the steps never
decrease with depth) and "the two layers next to the output converge early" (both converge before the slowest
lower layer). Also, threshold-free: the mean similarity over the snapshots (higher = converged earlier).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import plotting
from .._src import checks
from ..data.seed000 import digit_images
from ..models import FCNet
from ._store import RunStore

DESCRIPTION = "seed 000: SVCCA / CKA of every layer to its final state over training (MLP and CNN on 8x8 digits)"

ARCHITECTURES = ("mlp", "cnn")
MEASURES = ("svcca", "cka")
PROBES = ("all", "train", "test")
N_IMAGES = 1797
# change no run's record (RunStore): which runs happen and how they are analysed
FREE_KEYS = ("architectures", "seeds", "thresholds", "cka_threshold", "svcca_threshold")


def config(quick: bool) -> dict:
    return {
        "architectures": list(ARCHITECTURES), "mlp_widths": [64] * 5, "cnn_channels": [8, 16, 32], "cnn_hidden": 64,
        "n_train": 1200, "probe": "all", "lr": 0.05, "momentum": 0.0, "batch": 32,
        "epochs": 40 if quick else 100, "n_snapshots": 16 if quick else 30, "first_snapshot_step": 10,
        "keep": 0.99, "thresholds": [0.8, 0.9, 0.95, 0.98], "cka_threshold": 0.9, "svcca_threshold": 0.9,
        "seeds": 1 if quick else 5, "seed": 0, "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    archs = config["architectures"]
    if not isinstance(archs, (list, tuple)) or not archs or any(a not in ARCHITECTURES for a in archs):
        raise ValueError(f"config 'architectures' must be a non-empty list of {ARCHITECTURES}, got {archs!r}")
    for key in ("mlp_widths", "cnn_channels"):
        if not isinstance(config[key], (list, tuple)) or len(config[key]) < 1:
            raise ValueError(f"config {key!r} must be a non-empty list of widths, got {config[key]!r}")
        for width in config[key]:
            checks.integer(f"config {key!r} entry", width)
    for key in ("cnn_hidden", "batch", "epochs", "n_snapshots", "first_snapshot_step", "seeds"):
        checks.integer(f"config {key!r}", config[key])
    n_train = checks.integer("config 'n_train'", config["n_train"])
    if n_train >= N_IMAGES:
        raise ValueError(f"config 'n_train' must be < {N_IMAGES}, got {n_train}")
    if config["probe"] not in PROBES:
        raise ValueError(f"config 'probe' must be one of {PROBES}, got {config['probe']!r}")
    checks.real("config 'lr'", config["lr"])
    momentum = checks.real("config 'momentum'", config["momentum"], strict=False)
    if momentum >= 1:
        raise ValueError(f"config 'momentum' must be in [0, 1), got {momentum}")
    keep = checks.real("config 'keep'", config["keep"])
    if keep > 1:
        raise ValueError(f"config 'keep' must be in (0, 1], got {keep}")
    thresholds = config["thresholds"]
    if not isinstance(thresholds, (list, tuple)) or not thresholds:
        raise ValueError(f"config 'thresholds' must be a non-empty list, got {thresholds!r}")
    for key, values in (("thresholds", thresholds), ("cka_threshold", [config["cka_threshold"]]),
                        ("svcca_threshold", [config["svcca_threshold"]])):
        for value in values:
            if not 0 < checks.real(f"config {key!r}", value) < 1:
                raise ValueError(f"config {key!r} must be in (0, 1), got {value}")
    checks.integer("config 'seed'", config["seed"], minimum=0)


def build(arch: str, config: dict) -> tuple[nn.Sequential, list[str], list[str]]:
    """(model, recorded module names, display names) of architecture ``arch`` (inputs (N, 64), outputs (N, 10))."""
    if arch == "mlp":
        widths = [int(w) for w in config["mlp_widths"]]
        model = FCNet([64, *widths, 10])
        names = [str(2 * i + 1) for i in range(len(widths))] + [str(2 * len(widths))]
        return model, names, [f"fc{i + 1}" for i in range(len(widths))] + ["logits"]
    layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
    channels, size, names, labels = 1, 8, [], []
    for i, out_channels in enumerate(int(c) for c in config["cnn_channels"]):
        stride = 1 if i == 0 else 2
        layers += [nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1), nn.ReLU()]
        channels, size = out_channels, (size - 1) // stride + 1
        names.append(str(len(layers) - 1))
        labels.append(f"conv{i + 1}")
    hidden = int(config["cnn_hidden"])
    layers += [nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.ReLU()]
    names.append(str(len(layers) - 1))
    labels.append("fc")
    layers.append(nn.Linear(hidden, 10))
    names.append(str(len(layers) - 1))
    labels.append("logits")
    return nn.Sequential(*layers), names, labels


def snapshot_steps(total: int, n: int, first: int) -> np.ndarray:
    """Step 0 and about n log-spaced steps in [first, total], ending at total (int64, increasing)."""
    first = min(int(first), int(total))
    return np.unique(np.concatenate([[0], np.geomspace(first, total, n).round().astype(np.int64)]))


def run_seeds(config: dict, arch: str, seed_index: int) -> tuple[int, int]:
    """(init seed, shuffling seed) of one run."""
    init, order = np.random.SeedSequence([int(config["seed"]), ARCHITECTURES.index(arch), seed_index]).generate_state(2)
    return int(init), int(order)


def probe_inputs(config: dict, split) -> torch.Tensor:
    return {"all": lambda: torch.cat([split.x, split.x_test]), "train": lambda: split.x,
            "test": lambda: split.x_test}[config["probe"]]()


def train_run(config: dict, arch: str, seed_index: int, split) -> dict:
    """Train one network, snapshot it at :func:`snapshot_steps`, and compare every recorded layer at every snapshot
    with the same layer at the end. Returns a JSON-able record: svcca and cka (layers, snapshots), accuracies."""
    from ..observables import activations, linear_cka, svcca

    init_seed, order_seed = run_seeds(config, arch, seed_index)
    torch.manual_seed(init_seed)
    model, names, _ = build(arch, config)
    optimiser = torch.optim.SGD(model.parameters(), lr=float(config["lr"]), momentum=float(config["momentum"]))
    n, batch = split.x.shape[0], int(config["batch"])
    per_epoch = -(-n // batch)
    total = int(config["epochs"]) * per_epoch
    steps = snapshot_steps(total, int(config["n_snapshots"]), int(config["first_snapshot_step"]))
    wanted = set(steps.tolist())
    generator = torch.Generator().manual_seed(order_seed)
    states, train_acc, test_acc, perfect_epoch = [], [], [], None

    def accuracy(x, y):
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).float().mean())

    def snapshot():
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        train_acc.append(accuracy(split.x, split.y))
        test_acc.append(accuracy(split.x_test, split.y_test))

    step = 0
    if 0 in wanted:
        snapshot()
    for epoch in range(int(config["epochs"])):
        permutation = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            index = permutation[start:start + batch]
            loss = nn.functional.cross_entropy(model(split.x[index]), split.y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step in wanted:
                snapshot()
        if perfect_epoch is None and accuracy(split.x, split.y) == 1.0:
            perfect_epoch = epoch + 1

    probe = probe_inputs(config, split)
    acts = []
    for state in states:
        model.load_state_dict(state)
        model.eval()
        recorded = activations(model, probe, names)
        acts.append([recorded[name].double() for name in names])
    final = acts[-1]
    keep = float(config["keep"])
    similarity = {"svcca": [[float(svcca(snap[i], final[i], keep=keep)) for snap in acts] for i in range(len(names))],
                  "cka": [[float(linear_cka(snap[i], final[i])) for snap in acts] for i in range(len(names))]}
    return {**similarity, "steps": steps.tolist(), "steps_per_epoch": per_epoch, "train_accuracy": train_acc,
            "test_accuracy": test_acc, "epoch_train_accuracy_1": perfect_epoch, "init_seed": init_seed,
            "features": [int(a.shape[1]) for a in final], "n_probe": int(probe.shape[0])}


def convergence_step(steps: np.ndarray, similarity: np.ndarray, threshold: float) -> np.ndarray:
    """The first step at which each row of ``similarity`` (layers, snapshots) reaches ``threshold`` (the last
    snapshot is the final state itself, similarity 1, so every layer reaches it). (layers,) int64."""
    reached = similarity >= threshold - 1e-12
    reached[:, -1] = True
    return steps[np.argmax(reached, axis=1)]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan if either side is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def order_tests(steps_to: np.ndarray) -> dict:
    """Per seed, from convergence steps (seeds, layers): the lower layers' order and the top two layers' speed."""
    lower, top = steps_to[:, :-2], steps_to[:, -2:]
    rho = np.array([spearman(np.arange(lower.shape[1]), row) for row in lower]) if lower.shape[1] > 1 else None
    monotone = np.all(np.diff(lower, axis=1) >= 0, axis=1) if lower.shape[1] > 1 else None
    slowest_lower = lower.max(axis=1) if lower.shape[1] else None
    result = {}
    if rho is not None:
        result["lower_layers_spearman_mean"] = float(np.nanmean(rho)) if np.isfinite(rho).any() else None
        result["lower_layers_spearman_std"] = float(np.nanstd(rho)) if np.isfinite(rho).any() else None
        result["lower_layers_bottom_up_seeds"] = f"{int(monotone.sum())}/{len(monotone)}"
    if slowest_lower is not None:
        early = np.all(top < slowest_lower[:, None], axis=1)
        result["top_two_before_slowest_lower_seeds"] = f"{int(early.sum())}/{len(early)}"
    return result


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = digit_images(int(config["n_train"]), seed=int(config["seed"]), as_torch=True)
    seeds = int(config["seeds"])
    summary: dict = {"probe_images": None, "thresholds_headline": {"cka": float(config["cka_threshold"]),
                                                                   "svcca": float(config["svcca_threshold"])}}
    arrays, panels = {}, []
    for arch in config["architectures"]:
        records = []
        for s in range(seeds):
            records.append(store.get({"arch": arch, "seed": s}, lambda: train_run(config, arch, s, split)))
            log(f"layer-convergence: {arch} seed {s}: train acc {records[-1]['train_accuracy'][-1]:.3f}, "
                f"test acc {records[-1]['test_accuracy'][-1]:.3f}")
        labels = build(arch, config)[2]
        steps = np.array(records[0]["steps"])
        per_epoch = records[0]["steps_per_epoch"]
        summary["probe_images"] = records[0]["n_probe"]
        final_train = np.array([r["train_accuracy"][-1] for r in records])
        final_test = np.array([r["test_accuracy"][-1] for r in records])
        perfect = [r["epoch_train_accuracy_1"] for r in records]
        summary[f"{arch}_layers"] = ",".join(labels)
        summary[f"{arch}_features"] = ",".join(str(f) for f in records[0]["features"])
        summary[f"{arch}_final_train_accuracy_min"] = float(final_train.min())
        summary[f"{arch}_final_test_accuracy_mean"] = float(final_test.mean())
        summary[f"{arch}_final_test_accuracy_std"] = float(final_test.std())
        summary[f"{arch}_epoch_train_accuracy_1_max"] = (max(perfect) if all(p is not None for p in perfect)
                                                          else None)
        summary[f"{arch}_total_steps"] = int(steps[-1])
        arrays[f"{arch}_steps"] = steps
        arrays[f"{arch}_train_accuracy"] = np.array([r["train_accuracy"] for r in records])
        arrays[f"{arch}_test_accuracy"] = np.array([r["test_accuracy"] for r in records])
        for measure in MEASURES:
            sim = np.array([r[measure] for r in records])  # (seeds, layers, snapshots)
            arrays[f"{arch}_{measure}"] = sim
            headline = float(config[f"{measure}_threshold"])
            for threshold in sorted(set(float(t) for t in config["thresholds"]) | {headline}):
                steps_to = np.array([convergence_step(steps, row, threshold) for row in sim])  # (seeds, layers)
                arrays[f"{arch}_{measure}_steps_to_{threshold:g}"] = steps_to
                if threshold != headline:
                    summary[f"{arch}_{measure}_{threshold:g}_epochs_mean"] = ",".join(
                        f"{v:.3g}" for v in steps_to.mean(axis=0) / per_epoch)
                    continue
                key = f"{arch}_{measure}"
                epochs = steps_to / per_epoch
                for j, label in enumerate(labels):
                    summary[f"{key}_{label}_epochs_to_{threshold:g}_mean"] = float(epochs[:, j].mean())
                    summary[f"{key}_{label}_epochs_to_{threshold:g}_std"] = float(epochs[:, j].std())
                summary.update({f"{key}_{k}": v for k, v in order_tests(steps_to).items()})
                headline_epochs = epochs
            mean_similarity = sim[:, :, 1:].mean(axis=2)  # over the snapshots after init (log-spaced in time)
            summary[f"{arch}_{measure}_mean_similarity"] = ",".join(f"{v:.3f}" for v in mean_similarity.mean(axis=0))
            panels.append({"arch": arch, "measure": measure, "labels": labels, "steps": steps,
                           "per_epoch": per_epoch, "similarity": sim, "epochs_to": headline_epochs,
                           "threshold": headline})
        for measure in MEASURES:
            threshold = float(config[f"{measure}_threshold"])
            log(f"layer-convergence: {arch}: epochs to {measure} {threshold:g}: " + ", ".join(
                f"{label} {summary[f'{arch}_{measure}_{label}_epochs_to_{threshold:g}_mean']:.3g}" for label in labels))
    summary["runs_reused"] = store.reused
    np.savez_compressed(out / "similarity.npz", **arrays)
    (out / "layers.json").write_text(json.dumps({arch: build(arch, config)[2] for arch in config["architectures"]}))
    plotting.save_figure(plotting.layer_convergence_matrices(panels), out, "matrices.png")
    plotting.save_figure(plotting.layer_convergence_steps(panels), out, "convergence.png")
    plotting.save_figure(plotting.layer_convergence_curves(panels), out, "curves.png")
    return summary
