"""Transfer of low layers (seed 003, "Intriguing phenomena"; Yosinski et al. 2014, "How transferable are features
in deep neural networks?", at small scale): the first k hidden layers of an MLP trained on digits 0-4 (task A)
reused for digits 5-9 (task B), frozen (AnB) or fine-tuned (AnB+), against training from scratch (k = 0) and
against Yosinski's "selffer" BnB (the first k layers of the scratch B network itself, frozen, the rest
re-initialised and retrained); and the per-layer linear CKA between the two tasks' networks.

* data: :func:`fastdyn.data.digit_images` (``n_pool`` training images, 64 standardised pixels, the other
  1797 - n_pool for testing); task A: the pool's digits 0-4 (all of them); task B: ``n_b`` images drawn per seed
  from the pool's digits 5-9 (labels digit - 5), tested on all test images of digits 5-9;
* network: :class:`fastdyn.FCNet` [64] + [width] * depth + [5], ReLU, torch's default init; "layer l" is the l-th
  hidden layer (its Linear and ReLU), l = 1..depth; the read-out is never transferred;
* training: Adam (``lr``), minibatches of min(``batch``, n) drawn epoch by epoch, ``steps`` steps for every B
  network (scratch, AnB, AnB+, BnB) and ``base_steps`` for the base A networks; fixed step counts, no early
  stopping; a frozen layer keeps its weights and biases (requires_grad off);
* k = 1..depth: AnB (k frozen layers of base A, the rest freshly drawn from the seed), AnB+ (the same, all layers
  trained), BnB (k frozen layers of the scratch B network of the same n_b); k = 0 is scratch for all three;
* CKA (:func:`fastdyn.observables.linear_cka` of :func:`fastdyn.observables.activations` after each hidden ReLU,
  on all test images of the ten digits) per layer between: base A and the scratch B network of the largest n_b
  ("A vs B"), base A and a second base A from another init ("A vs A'", same task), the two networks' inits
  ("init vs init"), and base A against its fully transferred fine-tuned AnB+ (k = depth, largest n_b).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data, plotting
from .._src import checks
from ..models import FCNet
from ..observables import activations, linear_cka
from . import _seed003, mean_std

DESCRIPTION = "seed 003: low layers of a digits 0-4 MLP transferred to 5-9, frozen / fine-tuned / scratch, and CKA"

MODES = ("frozen", "finetuned", "selffer")
CKA_PAIRS = ("a_vs_b", "a_vs_a", "init_vs_init", "a_vs_finetuned")


def config(quick: bool) -> dict:
    if quick:
        return {"n_pool": 1200, "width": 64, "depth": 3, "n_b": [20], "steps": 300, "base_steps": 600,
                "lr": 1e-3, "batch": 32, "seeds": [0, 1], "threads": 1}
    return {"n_pool": 1200, "width": 64, "depth": 4, "n_b": [25, 100, 400], "steps": 600, "base_steps": 1500,
            "lr": 1e-3, "batch": 32, "seeds": [0, 1, 2, 3, 4], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    _seed003.check_image_count(config, "n_pool", 100)
    for key in ("width", "depth", "steps", "base_steps", "batch"):
        checks.integer(f"config {key!r}", config[key])
    checks.real("config 'lr'", config["lr"])
    n_b = list(config["n_b"])
    if not n_b:
        raise ValueError("config 'n_b' must list at least one number of task-B training images")
    for n in n_b:
        checks.integer("config 'n_b' entry", n, minimum=5)
    if n_b != sorted(set(n_b)):
        raise ValueError(f"config 'n_b' must be increasing, got {n_b}")
    if max(n_b) > int(0.4 * config["n_pool"]):
        raise ValueError(f"config 'n_b' entries must be at most 0.4 n_pool (the pool's digits 5-9 are about half "
                         f"of it), got {max(n_b)} for n_pool {config['n_pool']}")
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)


def tasks(n_pool: int) -> dict:
    """{"a": (x, y, x_test, y_test), "b": (x, y, x_test, y_test), "x_all_test": ...}: digits 0-4 and 5-9 (labels
    0..4 each) of :func:`fastdyn.data.digit_images` with ``n_pool`` training images, and all its test images."""
    split = data.digit_images(n_pool, seed=0, as_torch=True)
    out = {"x_all_test": split.x_test}
    for name, low in (("a", 0), ("b", 5)):
        train, test = (split.y >= low) & (split.y < low + 5), (split.y_test >= low) & (split.y_test < low + 5)
        out[name] = (split.x[train], split.y[train] - low, split.x_test[test], split.y_test[test] - low)
    return out


def make_model(width: int, depth: int, seed: int) -> FCNet:
    torch.manual_seed(int(seed))
    return FCNet([64] + [int(width)] * int(depth) + [5])


def hidden_linears(model: FCNet) -> list[nn.Linear]:
    """The Linear of each hidden layer, input first (the read-out excluded)."""
    return [m for m in model if isinstance(m, nn.Linear)][:-1]


def hidden_names(model: FCNet) -> list[str]:
    """Module names of the ReLU after each hidden layer (for :func:`fastdyn.observables.activations`)."""
    return [name for name, m in model.named_children() if isinstance(m, nn.ReLU)]


def transplant(source: FCNet, target: FCNet, k: int, *, freeze: bool) -> FCNet:
    """``target`` with its first ``k`` hidden layers' weights and biases copied from ``source`` (frozen if asked)."""
    for src, dst in zip(hidden_linears(source)[:k], hidden_linears(target)[:k]):
        dst.load_state_dict(src.state_dict())
        if freeze:
            for p in dst.parameters():
                p.requires_grad_(False)
    return target


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float, batch: int,
        seed: int) -> nn.Module:
    """Adam on the mean cross-entropy of the trainable parameters, ``steps`` minibatch steps (in place)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    n, batch = len(y), min(int(batch), len(y))
    order, position = torch.arange(n), n
    for _ in range(int(steps)):
        if position + batch > n:
            order, position = torch.randperm(n, generator=generator), 0
        index = order[position:position + batch]
        position += batch
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


def layer_cka(first: FCNet, second: FCNet, x: torch.Tensor) -> list[float]:
    """Linear CKA of the two networks' activations after each hidden ReLU on ``x``, input layer first."""
    a, b = activations(first, x, hidden_names(first)), activations(second, x, hidden_names(second))
    return [float(linear_cka(a[name], b[name])) for name in a]


def one_seed(config: dict, sets: dict, seed: int, log) -> dict:
    width, depth, lr, batch = int(config["width"]), int(config["depth"]), float(config["lr"]), int(config["batch"])
    steps = int(config["steps"])
    xa, ya, xa_test, ya_test = sets["a"]
    xb_pool, yb_pool, xb_test, yb_test = sets["b"]
    init_a = make_model(width, depth, 10_000 + seed)
    base_a = fit(copy.deepcopy(init_a), xa, ya, steps=int(config["base_steps"]), lr=lr, batch=batch, seed=seed)
    other_a = fit(make_model(width, depth, 20_000 + seed), xa, ya, steps=int(config["base_steps"]), lr=lr,
                  batch=batch, seed=seed + 1)
    record = {"base_a_test_accuracy": _seed003.accuracy(base_a, xa_test, ya_test), "accuracy": {}}
    subset_order = torch.randperm(len(yb_pool), generator=torch.Generator().manual_seed(30_000 + seed))
    for n_b in config["n_b"]:
        index = subset_order[:int(n_b)]
        xb, yb = xb_pool[index], yb_pool[index]

        def train_b(source=None, k=0, freeze=False, init_seed=40_000 + seed):
            model = make_model(width, depth, init_seed)
            if source is not None:
                transplant(source, model, k, freeze=freeze)
            return fit(model, xb, yb, steps=steps, lr=lr, batch=batch, seed=50_000 + seed)

        init_b = make_model(width, depth, 40_000 + seed)
        scratch = train_b()
        table = {mode: [_seed003.accuracy(scratch, xb_test, yb_test)] for mode in MODES}
        finetuned_all = None
        for k in range(1, depth + 1):
            frozen = train_b(base_a, k, True)
            finetuned = train_b(base_a, k, False)
            selffer = train_b(scratch, k, True, init_seed=60_000 + seed)
            for mode, model in zip(MODES, (frozen, finetuned, selffer)):
                table[mode].append(_seed003.accuracy(model, xb_test, yb_test))
            finetuned_all = finetuned
        record["accuracy"][int(n_b)] = table
        log(f"transfer: seed {seed} n_b {n_b}: scratch {table['frozen'][0]:.3f}, frozen "
            f"{np.round(table['frozen'][1:], 3).tolist()}, fine-tuned {np.round(table['finetuned'][1:], 3).tolist()}, "
            f"selffer {np.round(table['selffer'][1:], 3).tolist()}")
    x = sets["x_all_test"]
    record["cka"] = {"a_vs_b": layer_cka(base_a, scratch, x), "a_vs_a": layer_cka(base_a, other_a, x),
                     "init_vs_init": layer_cka(init_a, init_b, x),
                     "a_vs_finetuned": layer_cka(base_a, finetuned_all, x)}
    log(f"transfer: seed {seed} CKA per layer " +
        ", ".join(f"{k} {np.round(v, 3).tolist()}" for k, v in record["cka"].items()))
    return record


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    sets = tasks(int(config["n_pool"]))
    records = [one_seed(config, sets, int(s), log) for s in config["seeds"]]
    depth, n_bs = int(config["depth"]), [int(n) for n in config["n_b"]]
    summary: dict = {"depth": depth, "seeds": len(records), "n_b": n_bs, "layers_transferred": list(range(depth + 1)),
                     "n_a_train": int(len(sets["a"][1])), "n_b_test": int(len(sets["b"][3]))}
    summary["base_a_test_accuracy_mean"], summary["base_a_test_accuracy_std"] = \
        mean_std([r["base_a_test_accuracy"] for r in records])
    arrays = {}
    for n_b in n_bs:
        for mode in MODES:
            values = np.array([r["accuracy"][n_b][mode] for r in records])  # (seeds, depth + 1)
            arrays[f"accuracy_{mode}_n{n_b}"] = values
            summary[f"n{n_b}_{mode}_accuracy_mean"] = values.mean(axis=0).tolist()
            summary[f"n{n_b}_{mode}_accuracy_std"] = values.std(axis=0).tolist()
        finetuned, scratch = arrays[f"accuracy_finetuned_n{n_b}"], arrays[f"accuracy_finetuned_n{n_b}"][:, :1]
        # per seed: the gain of fine-tuned transfer of k layers over scratch, averaged over k = 1..depth
        summary[f"n{n_b}_finetuned_gain_mean"], summary[f"n{n_b}_finetuned_gain_std"] = \
            mean_std((finetuned[:, 1:] - scratch).mean(axis=1))
        for mode in MODES:  # paired over seeds (same B images, same scratch network), k = 1..depth
            gain = arrays[f"accuracy_{mode}_n{n_b}"][:, 1:] - scratch
            summary[f"n{n_b}_{mode}_minus_scratch_mean"] = gain.mean(axis=0).tolist()
            summary[f"n{n_b}_{mode}_minus_scratch_std"] = gain.std(axis=0).tolist()
    for pair in CKA_PAIRS:
        values = np.array([r["cka"][pair] for r in records])  # (seeds, depth)
        arrays[f"cka_{pair}"] = values
        summary[f"cka_{pair}_mean"] = values.mean(axis=0).tolist()
        summary[f"cka_{pair}_std"] = values.std(axis=0).tolist()
    np.savez_compressed(out / "transfer.npz", n_b=np.array(n_bs), **arrays)
    plotting.save_figure(figure(summary, n_bs, depth), out, "transfer.png")
    return summary


def figure(summary: dict, n_bs: list[int], depth: int):
    """Per n_b: test accuracy on digits 5-9 against the number of layers transferred (mean +- s.d. over seeds);
    then the per-layer CKA."""
    fig, axes = plotting.new_figure(len(n_bs) + 1, 1, width=3.6, height=3.3)
    ks = np.arange(depth + 1)
    styles = {"frozen": ("C0", "o-", "A->B frozen (AnB)"), "finetuned": ("C1", "s-", "A->B fine-tuned (AnB+)"),
              "selffer": ("C2", "^--", "B->B frozen (BnB)")}
    for ax, n_b in zip(axes[0], n_bs):
        for i, mode in enumerate(MODES):
            colour, fmt, label = styles[mode]
            ax.errorbar(ks + 0.06 * (i - 1), summary[f"n{n_b}_{mode}_accuracy_mean"],
                        yerr=summary[f"n{n_b}_{mode}_accuracy_std"], fmt=fmt, color=colour, ms=4, capsize=2,
                        label=label)
        ax.axhline(summary[f"n{n_b}_frozen_accuracy_mean"][0], color="grey", ls=":", label="scratch (k = 0)")
        ax.set(xticks=ks, xlabel="layers transferred k", ylabel="test accuracy, digits 5-9",
               title=f"{n_b} training images of 5-9")
        ax.legend(fontsize=6.5)
    ax = axes[0, -1]
    layers = np.arange(1, depth + 1)
    labels = {"a_vs_b": "A vs B (each trained on its task)", "a_vs_a": "A vs A' (same task, other init)",
              "init_vs_init": "init vs init", "a_vs_finetuned": f"A vs A->B fine-tuned (k = {depth})"}
    for pair, colour in zip(CKA_PAIRS, ("C3", "C4", "grey", "C1")):
        ax.errorbar(layers, summary[f"cka_{pair}_mean"], yerr=summary[f"cka_{pair}_std"], fmt="o-", ms=4,
                    capsize=2, color=colour, label=labels[pair])
    ax.set(xticks=layers, xlabel="hidden layer (input -> top)", ylabel="linear CKA on test images",
           title="CKA between networks", ylim=(0.0, 1.3), yticks=np.linspace(0, 1, 6))
    ax.legend(fontsize=6.5, loc="upper center")
    return fig
