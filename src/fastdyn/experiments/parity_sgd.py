"""SGD on parities: a ReLU network fails to learn chi_I as d grows, but learns sparse and linear targets (seed 000).

The protocol of Shalev-Shwartz, Shamir & Shammah ("Failures of gradient-based deep learning", parity experiment),
scaled to this machine: x uniform in {-1, +1}^d, one ReLU hidden layer of width 10 d (:class:`fastdyn.FCNet`
[d, 10 d, 1], torch's default init), the hinge loss mean(relu(1 - y f(x))), plain SGD with lr ``lr`` and batches of
``batch`` fresh inputs every step (no sample is seen twice), for ``steps`` steps. Targets, for each d in ``dims``:

* ``parity-half``: chi_I with I the first max(1, d // 2) coordinates;
* ``parity-full``: chi_I with I = [d];
* ``parity-sparse``: chi_I with I the first ``sparse_k`` coordinates (the control: a parity of fixed small order);
* ``linear``: sign(x_1 + ... + x_m), m = ``linear_k`` odd (no ties), a linear threshold function (the control a
  linear function correlates with).

The inputs are i.i.d. and the default init is exchangeable across input coordinates, so taking I as the first |I|
coordinates loses nothing against a random subset. For one (d, seed) every target starts from the same network and
sees the same input stream; only the labels differ. Test accuracy (sign(f) = y; f = 0 counts as wrong) is measured
on all 2^d inputs when d <= ``exact_test_max_d``, else on ``n_test`` fixed random inputs; it and the mean training
loss since the previous log point are recorded at ``n_logs`` log-spaced steps. A run whose test accuracy never
reaches ``target_accuracy`` at a log point is "not learned within the budget": a cap, not a verdict.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from .._src.optional import require
from ..models import FCNet
from ..parity import all_inputs, parity_of

DESCRIPTION = "seed 000: SGD on width-10d ReLU nets fails on parities as d grows, learns sparse and linear targets"

TARGETS = ("parity-half", "parity-full", "parity-sparse", "linear")
CHANCE = 0.5


def config(quick: bool) -> dict:
    return {
        "dims": [5, 14] if quick else [5, 10, 20, 30], "width_factor": 10, "sparse_k": 2, "linear_k": 3,
        "lr": 0.01, "batch": 128, "steps": 3000 if quick else 25_000, "seeds": 1 if quick else 3, "seed": 0,
        "n_logs": 30 if quick else 60, "n_test": 2000, "exact_test_max_d": 16, "target_accuracy": 0.95,
        "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    dims = config["dims"]
    if not isinstance(dims, (list, tuple)) or not dims:
        raise ValueError(f"config 'dims' must be a non-empty list of input dimensions, got {dims!r}")
    for d in dims:
        checks.integer("config 'dims' entry", d)
    for key in ("width_factor", "batch", "steps", "seeds", "n_logs", "n_test"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'sparse_k'", config["sparse_k"])
    linear_k = checks.integer("config 'linear_k'", config["linear_k"])
    if linear_k % 2 == 0:
        raise ValueError(f"config 'linear_k' must be odd (so that sign(x_1 + ... + x_m) has no ties), got {linear_k}")
    for key in ("sparse_k", "linear_k"):
        if config[key] > min(dims):
            raise ValueError(f"config {key!r} must be <= the smallest of 'dims' ({min(dims)}), got {config[key]}")
    checks.real("config 'lr'", config["lr"])
    checks.integer("config 'exact_test_max_d'", config["exact_test_max_d"], minimum=0)
    if config["exact_test_max_d"] > 24:
        raise ValueError(f"config 'exact_test_max_d' must be <= 24 (2^d inputs are enumerated), "
                         f"got {config['exact_test_max_d']}")
    accuracy = checks.real("config 'target_accuracy'", config["target_accuracy"], minimum=CHANCE)
    if accuracy > 1:
        raise ValueError(f"config 'target_accuracy' must be in (0.5, 1], got {accuracy}")
    checks.integer("config 'seed'", config["seed"], minimum=0)


def target_order(d: int, target: str, config: dict) -> int:
    """|I| of a parity target, the number m of summed coordinates of the linear one."""
    return {"parity-half": max(1, d // 2), "parity-full": d, "parity-sparse": int(config["sparse_k"]),
            "linear": int(config["linear_k"])}[target]


def labels(x: torch.Tensor, target: str, config: dict) -> torch.Tensor:
    """The +-1 labels (N,) of ``target`` (one of :data:`TARGETS`) on inputs x (N, d)."""
    order = target_order(x.shape[1], target, config)
    if target == "linear":
        return torch.sign(x[:, :order].sum(dim=1))
    return parity_of(x, np.arange(order))


def random_inputs(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """(n, d) float32 inputs uniform in {-1, +1}^d drawn from ``generator``."""
    return torch.randint(0, 2, (n, d), generator=generator).to(torch.float32) * 2 - 1


def log_steps(steps: int, n_logs: int) -> np.ndarray:
    """Step 0 and about ``n_logs`` log-spaced steps in [1, steps], ending at ``steps`` (int64, increasing)."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, n_logs).round().astype(np.int64)]))


def run_seeds(config: dict, d: int, seed_index: int) -> tuple[int, int]:
    """(init seed, data seed) of one (d, seed): shared by every target so that they differ only in their labels."""
    init_seed, data_seed = np.random.SeedSequence([int(config["seed"]), d, seed_index]).generate_state(2)
    return int(init_seed), int(data_seed)


def sgd_run(config: dict, d: int, target: str, seed_index: int, x_test: torch.Tensor) -> dict:
    """Train FCNet [d, width_factor d, 1] by SGD on the hinge loss of ``target``, a fresh batch each step.

    Returns test accuracy (logs,) and mean training loss since the previous log point (logs,) at
    :func:`log_steps` (the loss at step 0 is the first batch's, before any update), on x_test (n_test, d).
    """
    init_seed, data_seed = run_seeds(config, d, seed_index)
    torch.manual_seed(init_seed)
    model = FCNet([d, int(config["width_factor"]) * d, 1])
    optimiser = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    generator = torch.Generator().manual_seed(data_seed)
    y_test = labels(x_test, target, config)
    logged = set(log_steps(int(config["steps"]), int(config["n_logs"])).tolist())
    accuracy, train_loss = [], []
    loss_sum, loss_count = torch.zeros(()), 0
    for step in range(int(config["steps"]) + 1):
        x = random_inputs(int(config["batch"]), d, generator)
        loss = torch.relu(1 - labels(x, target, config) * model(x).squeeze(1)).mean()
        loss_sum, loss_count = loss_sum + loss.detach(), loss_count + 1
        if step in logged:
            with torch.no_grad():
                accuracy.append(float(torch.mean((y_test * model(x_test).squeeze(1) > 0).float())))
            train_loss.append(float(loss_sum) / loss_count)
            loss_sum, loss_count = torch.zeros(()), 0
        if step == int(config["steps"]):
            break
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {"accuracy": np.array(accuracy), "train_loss": np.array(train_loss)}


def test_inputs(config: dict, d: int) -> torch.Tensor:
    """(n, d) float32 test inputs: all 2^d when d <= exact_test_max_d, else n_test random ones (fixed per d)."""
    if d <= int(config["exact_test_max_d"]):
        return all_inputs(d, dtype=torch.float32)
    test_seed = int(np.random.SeedSequence([int(config["seed"]), d]).generate_state(1)[0])
    return random_inputs(int(config["n_test"]), d, torch.Generator().manual_seed(test_seed))


def first_step_reaching(steps: np.ndarray, accuracy: np.ndarray, level: float) -> int | None:
    """The first logged step whose accuracy is >= level, None if none is."""
    reached = np.flatnonzero(accuracy >= level)
    return int(steps[reached[0]]) if reached.size else None


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    dims, seeds = [int(d) for d in config["dims"]], int(config["seeds"])
    steps = log_steps(int(config["steps"]), int(config["n_logs"]))
    bar = None
    if progress:
        tqdm = require("tqdm.auto", "experiments", "fastdyn run parity-sgd (progress bars)").tqdm
        bar = tqdm(total=len(dims) * len(TARGETS) * seeds, desc="SGD runs", unit="run")
    accuracy = np.zeros((len(dims), len(TARGETS), seeds, steps.size))
    train_loss = np.zeros_like(accuracy)
    for i, d in enumerate(dims):
        x_test = test_inputs(config, d)
        for j, target in enumerate(TARGETS):
            for s in range(seeds):
                result = sgd_run(config, d, target, s, x_test)
                accuracy[i, j, s], train_loss[i, j, s] = result["accuracy"], result["train_loss"]
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()

    level = float(config["target_accuracy"])
    reach = [[[first_step_reaching(steps, accuracy[i, j, s], level) for s in range(seeds)]
              for j in range(len(TARGETS))] for i in range(len(dims))]
    summary: dict = {"chance_accuracy": CHANCE, "step_budget": int(config["steps"]), "target_accuracy": level}
    for i, d in enumerate(dims):
        for j, target in enumerate(TARGETS):
            final = accuracy[i, j, :, -1]
            learned = [r for r in reach[i][j] if r is not None]
            key = f"d={d}_{target}"
            summary[f"{key}_order"] = target_order(d, target, config)
            summary[f"{key}_final_accuracy_mean"] = float(final.mean())
            summary[f"{key}_final_accuracy_min"] = float(final.min())
            summary[f"{key}_final_accuracy_max"] = float(final.max())
            summary[f"{key}_learned_runs"] = f"{len(learned)}/{seeds}"
            # None: not learned within the budget (by every seed, for the slowest; by any, for the fastest)
            summary[f"{key}_steps_to_target_fastest"] = min(learned) if learned else None
            summary[f"{key}_steps_to_target_slowest"] = max(learned) if len(learned) == seeds else None
        log(f"parity-sgd: d = {d}: final test accuracy " + ", ".join(
            f"{t} {summary[f'd={d}_{t}_final_accuracy_mean']:.3f}" for t in TARGETS))

    np.savez_compressed(out / "curves.npz", steps=steps, dims=np.array(dims), targets=np.array(TARGETS),
                        accuracy=accuracy, train_loss=train_loss)
    runs = [{"d": d, "target": target, "order": target_order(d, target, config), "seed_index": s,
             "init_seed": run_seeds(config, d, s)[0], "data_seed": run_seeds(config, d, s)[1],
             "final_accuracy": float(accuracy[i, j, s, -1]), "final_train_loss": float(train_loss[i, j, s, -1]),
             "steps_to_target": reach[i][j][s]}
            for i, d in enumerate(dims) for j, target in enumerate(TARGETS) for s in range(seeds)]
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    orders = [[target_order(d, target, config) for target in TARGETS] for d in dims]
    plotting.save_figure(plotting.parity_sgd_curves(steps, dims, TARGETS, orders, accuracy, level,
                                                    int(config["width_factor"])), out, "curves.png")
    plotting.save_figure(plotting.parity_sgd_summary(dims, TARGETS, accuracy[..., -1], reach, int(config["steps"]),
                                                     level), out, "summary.png")
    return summary

