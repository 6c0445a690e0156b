"""Neurons specialise into edge detectors, and averaging two networks needs their neurons matched (seed 000).

The seed ("How neural networks learn features?"): combining two edge detectors of different orientations hardly
gives an edge detector, so there is pressure on neurons to specialise; they start as random mixtures and, after
training, the symmetry between them breaks and each becomes a vertical or a horizontal edge detector. Hence
(Frankle, Dziugaite, Roy & Carbin) averaging the weights of two networks trained from different initialisations
gives a poor network. The toy, scaled to this machine:

* data (:func:`fastdyn.data.edge_images`): ``size`` x ``size`` images x = a V + b H + ``noise`` * eps with V, H
  the unit vertical and horizontal edges (:func:`fastdyn.data.edge_patterns`), one strong edge (contrast
  U(``low``, ``high``), random polarity) and a weak one of the other orientation (U(-``distractor``,
  ``distractor``)); y = +1 when the strong edge is vertical. y = sign(|a| - |b|): linear functions cannot predict it
  and a neuron mixing V and H responds alike to both classes; pure detectors relu(+-V . x), relu(+-H . x) solve it;
* network: :class:`fastdyn.FCNet` [size^2, ``width``, 1] with ReLU, torch's default init; logistic loss
  softplus(-y f(x)), plain SGD (``lr``, ``weight_decay``; minibatches of ``batch`` drawn with replacement, or the
  full batch when ``batch`` = ``n_train``) for ``steps`` steps. A plain torch loop rather than :func:`fastdyn.train`,
  which trains the centred output f - f0: here the network f itself is averaged and interpolated;
* per neuron k at ``n_snapshots`` log-spaced steps: c_V = cos(w_k, V), c_H = cos(w_k, H) of its incoming weight
  w_k; purity |c_V^2 - c_H^2| / (c_V^2 + c_H^2) (0 for a 45-degree mixture, 1 for a pure detector; a random
  direction gives 2/pi = 0.64 on average); in-plane fraction c_V^2 + c_H^2 (how much of w_k lies in span(V, H));
  its contribution |beta_k| ||w_k|| (beta: outgoing weight), whose share weights the network's purity (so dead or
  unused neurons do not count); its type (+V, -V, +H, -H: the larger of |c_V|, |c_H| and its sign);
* ``pairs`` pairs of networks, trained from different inits on the same data: the test error along the line
  (1 - t) w_a + t w_b (:func:`fastdyn.landscape.interpolate`, ``interpolation_steps`` points), as it is and after
  permuting b's neurons to match a's (:func:`fastdyn.landscape.align_neurons`, weight matching); the barrier (the
  maximum minus the mean of the ends), the error of the average (t = 0.5, :func:`fastdyn.landscape.blend`) and the
  purity of the averaged network's neurons.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import plotting
from .._src import checks
from ..data.seed000 import edge_images
from ..models import FCNet
from . import mean_std
from ._store import RunStore

DESCRIPTION = "seed 000: neurons specialise into vertical/horizontal edge detectors; averaging needs matched neurons"

TYPES = ("+V", "-V", "+H", "-H")
FREE_KEYS = ("pairs", "active_share")  # change no run's record (RunStore)


def config(quick: bool) -> dict:
    return {
        "size": 7, "noise": 0.2, "low": 0.6, "high": 1.4, "distractor": 0.5, "n_train": 2000, "n_test": 2000,
        "width": 8, "lr": 0.5, "weight_decay": 1e-3, "batch": 2000, "steps": 300 if quick else 2000,
        "n_snapshots": 15 if quick else 30, "pairs": 2 if quick else 8, "interpolation_steps": 21,
        "active_share": 0.05, "seed": 0, "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    for key in ("size", "n_train", "n_test", "width", "batch", "steps", "n_snapshots", "pairs"):
        checks.integer(f"config {key!r}", config[key])
    if config["size"] < 2:
        raise ValueError(f"config 'size' must be >= 2, got {config['size']}")
    if config["batch"] > config["n_train"]:
        raise ValueError(f"config 'batch' must be <= n_train ({config['n_train']}), got {config['batch']}")
    checks.integer("config 'interpolation_steps'", config["interpolation_steps"], minimum=3)
    for key in ("noise", "low", "distractor", "weight_decay"):
        checks.real(f"config {key!r}", config[key], strict=False)
    checks.real("config 'high'", config["high"])
    if config["low"] > config["high"]:
        raise ValueError(f"config 'low' must be <= 'high', got {config['low']} > {config['high']}")
    checks.real("config 'lr'", config["lr"])
    share = checks.real("config 'active_share'", config["active_share"], strict=False)
    if share >= 1:
        raise ValueError(f"config 'active_share' must be in [0, 1), got {share}")
    checks.integer("config 'seed'", config["seed"], minimum=0)


def dataset(config: dict):
    return edge_images(int(config["n_train"]), size=int(config["size"]), p_test=int(config["n_test"]),
                       noise=float(config["noise"]), low=float(config["low"]), high=float(config["high"]),
                       distractor=float(config["distractor"]), seed=int(config["seed"]), as_torch=True)


def snapshot_steps(steps: int, n: int) -> np.ndarray:
    """Step 0 and about n log-spaced steps in [1, steps], ending at steps (int64, increasing)."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, n).round().astype(np.int64)]))


def neuron_overlaps(model: nn.Sequential, vertical: torch.Tensor, horizontal: torch.Tensor) -> dict:
    """Per hidden neuron: cos_v, cos_h (cosines of its incoming weight with V and H), purity, in_plane and
    share (its contribution |beta_k| ||w_k|| over the sum of all). numpy arrays (width,)."""
    weight = model[0].weight.detach().double()
    norm = weight.norm(dim=1).clamp_min(1e-300)
    cos_v, cos_h = (weight @ vertical.double()) / norm, (weight @ horizontal.double()) / norm
    plane = cos_v ** 2 + cos_h ** 2
    contribution = model[2].weight.detach().double().abs().reshape(-1) * norm
    return {"cos_v": cos_v.numpy(), "cos_h": cos_h.numpy(), "purity": ((cos_v ** 2 - cos_h ** 2).abs() /
                                                                       plane.clamp_min(1e-300)).numpy(),
            "in_plane": plane.numpy(), "share": (contribution / contribution.sum().clamp_min(1e-300)).numpy()}


def weighted_purity(overlaps: dict) -> float:
    """The network's purity: its neurons' purities weighted by their contribution shares."""
    return float(np.sum(overlaps["purity"] * overlaps["share"]))


def neuron_types(overlaps: dict) -> list[str]:
    """+V, -V, +H or -H per neuron: the detector its weight is closest to."""
    return [("+" if (cv if abs(cv) >= abs(ch) else ch) >= 0 else "-") + ("V" if abs(cv) >= abs(ch) else "H")
            for cv, ch in zip(overlaps["cos_v"], overlaps["cos_h"])]


def net_seeds(config: dict, pair: int, member: int) -> tuple[int, int]:
    """(init seed, batch seed) of network ``member`` (0 or 1) of ``pair``."""
    init, batches = np.random.SeedSequence([int(config["seed"]), pair, member]).generate_state(2)
    return int(init), int(batches)


def error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((y * model(x).reshape(-1) <= 0).float().mean())


def train_net(config: dict, pair: int, member: int, split) -> dict:
    """Train one network; the record holds the overlaps at every snapshot, test error, training loss and the final
    parameters (lists, JSON-able)."""
    init_seed, batch_seed = net_seeds(config, pair, member)
    torch.manual_seed(init_seed)
    size = int(config["size"])
    model = FCNet([size * size, int(config["width"]), 1])
    optimiser = torch.optim.SGD(model.parameters(), lr=float(config["lr"]),
                                weight_decay=float(config["weight_decay"]))
    vertical = torch.as_tensor(split.info["V"])
    horizontal = torch.as_tensor(split.info["H"])
    n, batch = split.x.shape[0], int(config["batch"])
    generator = torch.Generator().manual_seed(batch_seed)
    steps = snapshot_steps(int(config["steps"]), int(config["n_snapshots"]))
    wanted = set(steps.tolist())
    history: dict[str, list] = {"cos_v": [], "cos_h": [], "share": [], "test_error": [], "train_loss": []}

    def loss_on(x, y):
        return nn.functional.softplus(-y * model(x).reshape(-1)).mean()

    for step in range(int(config["steps"]) + 1):
        if step in wanted:
            overlaps = neuron_overlaps(model, vertical, horizontal)
            for key in ("cos_v", "cos_h", "share"):
                history[key].append(overlaps[key].tolist())
            history["test_error"].append(error(model, split.x_test, split.y_test))
            with torch.no_grad():
                history["train_loss"].append(float(loss_on(split.x, split.y)))
        if step == int(config["steps"]):
            break
        if batch < n:
            index = torch.randint(0, n, (batch,), generator=generator)
            loss = loss_on(split.x[index], split.y[index])
        else:
            loss = loss_on(split.x, split.y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {**history, "steps": steps.tolist(), "init_seed": init_seed,
            "state": {k: v.tolist() for k, v in model.state_dict().items()}}


def model_from(record: dict, config: dict) -> nn.Sequential:
    size = int(config["size"])
    model = FCNet([size * size, int(config["width"]), 1])
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in record["state"].items()})
    return model


def compare_pair(config: dict, a: nn.Sequential, b: nn.Sequential, split) -> dict:
    """Test error along the line a -> b as it is and with b's neurons matched to a's; the averages' purities."""
    from ..landscape import align_neurons, blend, interpolate

    vertical, horizontal = torch.as_tensor(split.info["V"]), torch.as_tensor(split.info["H"])
    aligned = align_neurons(a, b)
    steps = int(config["interpolation_steps"])
    record = {}
    for name, other in (("raw", b), ("aligned", aligned)):
        line = interpolate(a, other, split.x_test, split.y_test, steps=steps, loss="logistic")
        average = blend(a, other, 0.5)
        overlaps = neuron_overlaps(average, vertical, horizontal)
        record[name] = {"t": line.t.tolist(), "error": line.error.tolist(), "loss": line.loss.tolist(),
                        "error_barrier": float(line.error_barrier), "loss_barrier": float(line.loss_barrier),
                        "average_error": error(average, split.x_test, split.y_test),
                        "average_purity": weighted_purity(overlaps),
                        "average_weights": average[0].weight.detach().tolist()}
    # aligning changes b's neuron order only, not its function
    record["aligned_function_error_gap"] = abs(error(aligned, split.x_test, split.y_test)
                                               - error(b, split.x_test, split.y_test))
    return record


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = dataset(config)
    pairs = int(config["pairs"])
    nets, comparisons = [], []
    for pair in range(pairs):
        members = [store.get({"pair": pair, "member": m}, lambda m=m: train_net(config, pair, m, split))
                   for m in (0, 1)]
        nets += members
        models = [model_from(r, config) for r in members]
        comparisons.append(store.get({"pair": pair, "compare": 1},
                                     lambda: compare_pair(config, models[0], models[1], split)))
        log(f"specialisation: pair {pair}: test error {members[0]['test_error'][-1]:.3f}, "
            f"{members[1]['test_error'][-1]:.3f}; average {comparisons[-1]['raw']['average_error']:.3f}, "
            f"aligned average {comparisons[-1]['aligned']['average_error']:.3f}")

    steps = np.array(nets[0]["steps"])
    cos_v = np.array([r["cos_v"] for r in nets])  # (nets, snapshots, width)
    cos_h = np.array([r["cos_h"] for r in nets])
    share = np.array([r["share"] for r in nets])
    plane = cos_v ** 2 + cos_h ** 2
    purity = np.abs(cos_v ** 2 - cos_h ** 2) / np.maximum(plane, 1e-300)
    net_purity = (purity * share).sum(axis=2)  # (nets, snapshots)
    test_error = np.array([r["test_error"] for r in nets])
    train_loss = np.array([r["train_loss"] for r in nets])
    final = [{"cos_v": cos_v[i, -1], "cos_h": cos_h[i, -1], "share": share[i, -1]} for i in range(len(nets))]
    active_share = float(config["active_share"])
    type_counts = np.array([[sum(1 for t, s in zip(neuron_types(f), f["share"]) if t == kind and s >= active_share)
                             for kind in TYPES] for f in final])  # (nets, 4)
    t = np.array(comparisons[0]["raw"]["t"])
    line_error = {name: np.array([c[name]["error"] for c in comparisons]) for name in ("raw", "aligned")}

    summary: dict = {"networks": len(nets), "pairs": pairs, "width": int(config["width"]),
                     "random_direction_purity": 2 / np.pi}
    for key, values in (("final_test_error", test_error[:, -1]), ("final_train_loss", train_loss[:, -1]),
                        ("init_purity", net_purity[:, 0]), ("final_purity", net_purity[:, -1]),
                        ("init_in_plane", (plane[:, 0] * share[:, 0]).sum(axis=1)),
                        ("final_in_plane", (plane[:, -1] * share[:, -1]).sum(axis=1)),
                        ("final_neuron_purity_min", purity[:, -1].min(axis=1))):
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(values)
    summary["final_neuron_purity_min_over_all"] = float(purity[:, -1].min())
    reached = [int(steps[np.argmax(row >= 0.95)]) if (row >= 0.95).any() else None for row in net_purity]
    summary["steps_to_purity_0.95_median"] = (float(np.median([r for r in reached if r is not None]))
                                              if any(r is not None for r in reached) else None)
    summary["networks_reaching_purity_0.95"] = f"{sum(r is not None for r in reached)}/{len(nets)}"
    summary["active_neurons_mean"] = float(type_counts.sum(axis=1).mean())
    summary["networks_with_all_four_detectors"] = f"{int((type_counts > 0).all(axis=1).sum())}/{len(nets)}"
    for name in ("raw", "aligned"):
        for key in ("average_error", "error_barrier", "loss_barrier", "average_purity"):
            summary[f"{name}_{key}_mean"], summary[f"{name}_{key}_std"] = mean_std([c[name][key] for c in comparisons])
    summary["ends_error_mean"] = mean_std(line_error["raw"][:, [0, -1]].mean(axis=1))[0]
    summary["pairs_aligned_average_better"] = (
        f"{sum(c['aligned']['average_error'] < c['raw']['average_error'] for c in comparisons)}/{pairs}")
    summary["aligned_function_error_gap_max"] = max(c["aligned_function_error_gap"] for c in comparisons)
    summary["runs_reused"] = store.reused
    log(f"specialisation: purity {summary['init_purity_mean']:.2f} -> {summary['final_purity_mean']:.3f}; "
        f"average error raw {summary['raw_average_error_mean']:.3f} vs aligned "
        f"{summary['aligned_average_error_mean']:.3f} (ends {summary['ends_error_mean']:.3f})")

    np.savez_compressed(out / "specialisation.npz", steps=steps, cos_v=cos_v, cos_h=cos_h, share=share,
                        purity=purity, net_purity=net_purity, test_error=test_error, train_loss=train_loss,
                        type_counts=type_counts, types=np.array(TYPES), t=t, raw_error=line_error["raw"],
                        aligned_error=line_error["aligned"],
                        first_weights=np.array(nets[0]["state"]["0.weight"]),
                        raw_average_weights=np.array(comparisons[0]["raw"]["average_weights"]),
                        aligned_average_weights=np.array(comparisons[0]["aligned"]["average_weights"]),
                        V=split.info["V"], H=split.info["H"])
    (out / "pairs.json").write_text(json.dumps([{name: {k: v for k, v in c[name].items() if k != "average_weights"}
                                                 for name in ("raw", "aligned")} for c in comparisons], indent=1))
    size = int(config["size"])
    torch.manual_seed(nets[0]["init_seed"])  # the first network's initial weights, as train_net drew them
    init_model = FCNet([size * size, int(config["width"]), 1])
    panels = {"init": init_model[0].weight.detach().numpy(), "trained": np.array(nets[0]["state"]["0.weight"]),
              "average": np.array(comparisons[0]["raw"]["average_weights"]),
              "aligned average": np.array(comparisons[0]["aligned"]["average_weights"])}
    plotting.save_figure(plotting.specialisation_dynamics(steps, cos_v, cos_h, share, net_purity, test_error),
                         out, "dynamics.png")
    plotting.save_figure(plotting.specialisation_weights(panels, size, share[0, -1]), out, "weights.png")
    plotting.save_figure(plotting.specialisation_interpolation(t, line_error, summary), out, "interpolation.png")
    return summary
