"""SGD learns functions of increasing complexity: first what a linear classifier knows, then more (seed 000).

The protocol of Nakkiran, Kaplun, Kalimeris, Yang, Edelman, Zhang & Barak (2019, "SGD on neural networks learns
functions of increasing complexity"), scaled to this machine. For each data set in ``datasets``:

* ``two-stripes``: :func:`fastdyn.data.two_stripes`, 2-D Gaussian inputs whose labels alternate across diagonal
  bands at u = -w, 0, w (u = (x_1 + x_2) / sqrt 2, w = ``stripes_width``): the best linear classifier sign(u) is
  right on 2 (1 - Phi(w)) of the points (0.80 by default; wrong in the two thin middle stripes), a three-boundary
  network on all of them;
* ``digits``: :func:`fastdyn.data.digits`, sklearn's 8x8 digits, ``digits_d`` whitened principal components, the
  binary task ``digits_task`` (even vs odd by default), ``digits_p`` training images, the rest as the test set.

L is the best linear classifier: sklearn's LogisticRegression (C = ``linear_C``) fitted on the training set. The
network F is a ReLU :class:`fastdyn.FCNet` [d, *hidden, 1] (torch's default init), trained by plain minibatch SGD
(lr ``lr``, ``batch`` points drawn with replacement each step) on the logistic loss mean(softplus(-y f(x))) for
``steps`` steps; ``seeds`` networks (init and batch order differ, the data set does not). At ``n_logs`` log-spaced
steps the predicted class sign(f) on the test set gives, via :func:`fastdyn.observables.simplicity_bias`
(plug-in, Miller-Madow), I(F;Y), I(F;Y|L), mu = I(F;Y) - I(F;Y|L) and the ceiling I(L;Y), plus the accuracies of F,
of L and the agreement of F with L.

Steps read off each run: the *reach* step, the first logged step with mu >= ``reach_fraction`` I(L;Y) (F holds
what L knows about Y); the *part* step, the first from which I(F;Y|L) >= ``part_fraction`` I(L;Y) holds at every
later logged step (F lastingly knows something L does not); the *first exceed* step, the first logged step with
I(F;Y|L) >= ``part_fraction`` I(L;Y) at all (an early transient counts); the *accuracy match* step, the first with
F's test accuracy >= L's - 0.01. Nakkiran's claim: I(F;Y|L) ~ 0 (so mu ~ I(F;Y)) until about the reach step; the two part
only near it (part / reach ~ 1) and never long before it.

Training: every condition's seeds are trained together as one stack of FCNets by :func:`stacked_sgd` (batched
matrix products; per network this is exactly torch.optim.SGD without momentum on its own minibatch loss). It is not
:func:`fastdyn.train`, whose alpha-trick output F = alpha (f - f_0) starts every prediction at 0, and whose one-model
loop runs ~600 SGD steps per second here: the stack trains 5 networks in about the time of one.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from ..models import FCNet
from ._store import RunStore

DESCRIPTION = "seed 000: SGD first learns what the best linear classifier knows (mu ~ I(F;Y)), then more (Nakkiran 2019)"

DATASETS = ("two-stripes", "digits")
CURVES = ("mi_fy", "mi_fy_given_l", "mu", "accuracy", "agreement")


def config(quick: bool) -> dict:
    return {
        "datasets": list(DATASETS), "hidden": [100, 100], "lr": 0.05, "batch": 128,
        "steps": 4000 if quick else 15_000, "seeds": 2 if quick else 5, "seed": 0, "n_logs": 30 if quick else 50,
        "stripes_p": 2000, "stripes_p_test": 4000, "stripes_width": 0.2533,
        "digits_p": 1000, "digits_d": 16, "digits_task": "parity", "linear_C": 1.0,
        "part_fraction": 0.1, "reach_fraction": 0.9, "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    datasets = config["datasets"]
    if not isinstance(datasets, (list, tuple)) or not datasets or any(d not in DATASETS for d in datasets):
        raise ValueError(f"config 'datasets' must be a non-empty list from {list(DATASETS)}, got {datasets!r}")
    hidden = config["hidden"]
    if not isinstance(hidden, (list, tuple)) or not hidden:
        raise ValueError(f"config 'hidden' must be a non-empty list of hidden widths, got {hidden!r}")
    for width in hidden:
        checks.integer("config 'hidden' entry", width)
    for key in ("batch", "steps", "seeds", "n_logs", "stripes_p", "stripes_p_test", "digits_p", "digits_d"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'seed'", config["seed"], minimum=0)
    for key in ("lr", "stripes_width", "linear_C"):
        checks.real(f"config {key!r}", config[key])
    for key in ("part_fraction", "reach_fraction"):
        if checks.real(f"config {key!r}", config[key]) >= 1:
            raise ValueError(f"config {key!r} must be in (0, 1), got {config[key]}")
    if config["digits_d"] > 64:
        raise ValueError(f"config 'digits_d' must be <= 64 (8x8 pixels), got {config['digits_d']}")
    if config["digits_p"] >= 1797:
        raise ValueError(f"config 'digits_p' must be < 1797 (the digits), got {config['digits_p']}")
    from ..data.digits import TASKS

    if config["digits_task"] not in TASKS:
        raise ValueError(f"config 'digits_task' must be one of {sorted(TASKS)}, got {config['digits_task']!r}")


def log_steps(steps: int, n_logs: int) -> np.ndarray:
    """Step 0 and about ``n_logs`` log-spaced steps in [1, steps], ending at ``steps`` (int64, increasing)."""
    return np.unique(np.concatenate([[0], np.geomspace(1, steps, n_logs).round().astype(np.int64)]))


# ---- a stack of FCNets trained by SGD together ----------------------------------------------------------------------
def stacked_sgd(models: list[FCNet], x, y, *, lr: float, batch: int, steps: int, logged, x_test,
                seeds: list[int]) -> np.ndarray:
    """Train each FCNet of ``models`` (same dims, ReLU) by plain SGD on the logistic loss, all in one batched stack.

    Args:
        models: M networks; trained in place (their weights at the end are the trained ones).
        x, y: training inputs (M, p, d) and +-1 labels (M, p), one set per network (float32 tensors).
        lr, batch, steps: step size, minibatch size (points drawn with replacement), number of steps.
        logged: the steps (increasing ints in [0, steps]) at which the test outputs are recorded (before that
            step's update; step 0 is the initial network).
        x_test: test inputs (M, n, d).
        seeds: one seed per network for its minibatch indices (so a network's run does not depend on its stack).

    Returns (len(logged), M, n) float32 test outputs f(x_test). Per network the update is exactly
    ``torch.optim.SGD(lr)`` on its own minibatch mean of softplus(-y f) (the stack's loss is the sum over networks).
    """
    linears = [[layer for layer in model if isinstance(layer, torch.nn.Linear)] for model in models]
    if len({tuple(model.dims) for model in models}) != 1 or any(model.act != "relu" for model in models):
        raise ValueError("stacked_sgd needs ReLU FCNets of one shape")
    weights = [torch.stack([ls[i].weight.detach().T for ls in linears]).clone().requires_grad_()
               for i in range(len(linears[0]))]
    biases = [torch.stack([ls[i].bias.detach()[None] for ls in linears]).clone().requires_grad_()
              for i in range(len(linears[0]))]
    params = weights + biases
    n_models, p, d = x.shape

    def forward(inputs):
        h = inputs
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)

    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    logged = sorted({int(s) for s in logged})
    outputs, chunk, index_chunk, rows = [], 1000, None, torch.arange(n_models)[:, None]
    for step in range(steps + 1):
        if logged and step == logged[0]:
            logged.pop(0)
            with torch.no_grad():
                outputs.append(forward(x_test).clone())
        if step == steps:
            break
        if step % chunk == 0:  # each network's indices from its own generator, drawn a chunk of steps at a time
            index_chunk = torch.stack([torch.randint(0, p, (chunk, batch), generator=g) for g in generators], dim=1)
        index = index_chunk[step % chunk]
        loss = torch.nn.functional.softplus(-y[rows, index] * forward(x[rows, index])).mean(dim=1).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for param, grad in zip(params, grads):
                param.sub_(lr * grad)
    with torch.no_grad():
        for m, ls in enumerate(linears):
            for i, layer in enumerate(ls):
                layer.weight.copy_(weights[i][m].T)
                layer.bias.copy_(biases[i][m, 0])
    return torch.stack(outputs).numpy()


def init_seed(config: dict, dataset: str, seed_index: int) -> tuple[int, int]:
    """(init seed, batch seed) of one network."""
    a, b = np.random.SeedSequence([int(config["seed"]), DATASETS.index(dataset), seed_index]).generate_state(2)
    return int(a), int(b)


# ---- data and the linear classifier ---------------------------------------------------------------------------------
def load_data(config: dict, dataset: str):
    """(x, y, x_test, y_test) float64 numpy, y = +-1."""
    from .. import data

    if dataset == "two-stripes":
        split = data.two_stripes(int(config["stripes_p"]), width=float(config["stripes_width"]),
                                 p_test=int(config["stripes_p_test"]), seed=int(config["seed"]))
    else:
        split = data.digits(int(config["digits_p"]), d=int(config["digits_d"]), task=config["digits_task"],
                            seed=int(config["seed"]))
    return tuple(np.asarray(a, dtype=np.float64) for a in split)


def linear_classifier(x, y, x_test, C: float) -> tuple[np.ndarray, np.ndarray]:
    """The best linear classifier L: LogisticRegression(C) fitted on (x, y); its +-1 predictions on x and x_test."""
    from .._src.optional import require

    LogisticRegression = require("sklearn.linear_model", "experiments", "simplicity-bias").LogisticRegression
    model = LogisticRegression(C=C, max_iter=5000).fit(x, y)
    return model.predict(x), model.predict(x_test)


def first_step(steps: np.ndarray, reached: np.ndarray) -> int | None:
    """The first logged step where ``reached`` (bool, per logged step) holds, None if none."""
    hits = np.flatnonzero(reached)
    return int(steps[hits[0]]) if hits.size else None


def sustained_step(steps: np.ndarray, reached: np.ndarray) -> int | None:
    """The first logged step from which ``reached`` holds at every later logged step, None if it fails at the end."""
    if not reached[-1]:
        return None
    misses = np.flatnonzero(~reached)
    return int(steps[misses[-1] + 1]) if misses.size else int(steps[0])


def analyse(steps: np.ndarray, predictions: np.ndarray, l_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Per-snapshot curves of one network's test predictions (T, N): the fields of :data:`CURVES` (T,) and I(L;Y)."""
    from ..observables import simplicity_bias

    sb = simplicity_bias(predictions, l_test, y_test)
    return {"mi_fy": sb.mi_fy, "mi_fy_given_l": sb.mi_fy_given_l, "mu": sb.mu, "mi_ly": float(sb.mi_ly[0]),
            "accuracy": np.mean(predictions == y_test, axis=1), "agreement": np.mean(predictions == l_test, axis=1)}


def pack_predictions(predictions: np.ndarray) -> dict:
    """A JSON-able record of +-1 predictions (any shape) as base64 bits (1 = +1; a tie f = 0 is stored as -1)."""
    bits = np.packbits((np.asarray(predictions) > 0).ravel())
    return {"shape": list(np.shape(predictions)), "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def unpack_predictions(record: dict) -> np.ndarray:
    """The float64 +-1 predictions of :func:`pack_predictions`'s record."""
    shape = [int(n) for n in record["shape"]]
    bits = np.frombuffer(base64.b64decode(record["bits"]), dtype=np.uint8)
    return np.where(np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape) > 0, 1.0, -1.0)


def _train_dataset(config: dict, dataset: str, x, y, x_test, steps: np.ndarray) -> np.ndarray:
    """(T, seeds, N) predicted classes (+-1; 0 where f = 0) of the ``seeds`` networks on x_test."""
    seeds = int(config["seeds"])
    models, batch_seeds = [], []
    for s in range(seeds):
        a, b = init_seed(config, dataset, s)
        torch.manual_seed(a)
        models.append(FCNet([x.shape[1], *[int(w) for w in config["hidden"]], 1]))
        batch_seeds.append(b)

    def stack(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None].expand(seeds, *a.shape).contiguous()

    outputs = stacked_sgd(models, stack(x), stack(y), lr=float(config["lr"]), batch=int(config["batch"]),
                          steps=int(config["steps"]), logged=steps, x_test=stack(x_test), seeds=batch_seeds)
    return np.sign(outputs)


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    steps = log_steps(int(config["steps"]), int(config["n_logs"]))
    store = RunStore(out, config, free_keys=("datasets", "part_fraction", "reach_fraction"))
    seeds = int(config["seeds"])
    summary: dict = {"step_budget": int(config["steps"]), "seeds": seeds}
    arrays: dict = {"steps": steps}
    panels = []
    for dataset in config["datasets"]:
        x, y, x_test, y_test = load_data(config, dataset)
        l_train, l_test = linear_classifier(x, y, x_test, float(config["linear_C"]))

        def work():
            return pack_predictions(_train_dataset(config, dataset, x, y, x_test, steps))

        record = store.get({"dataset": dataset}, work)
        predictions = unpack_predictions(record)  # (T, seeds, N)
        runs = [analyse(steps, predictions[:, s], l_test, y_test) for s in range(seeds)]
        curves = {name: np.stack([r[name] for r in runs]) for name in CURVES}  # (seeds, T)
        mi_ly = runs[0]["mi_ly"]
        linear_accuracy = float(np.mean(l_test == y_test))
        fraction_reach, fraction_part = float(config["reach_fraction"]), float(config["part_fraction"])
        reach = [first_step(steps, c >= fraction_reach * mi_ly) for c in curves["mu"]]
        part = [sustained_step(steps, c >= fraction_part * mi_ly) for c in curves["mi_fy_given_l"]]
        first_exceed = [first_step(steps, c >= fraction_part * mi_ly) for c in curves["mi_fy_given_l"]]
        match = [first_step(steps, c >= linear_accuracy - 0.01) for c in curves["accuracy"]]
        key = dataset
        summary[f"{key}_linear_test_accuracy"] = linear_accuracy
        summary[f"{key}_linear_train_accuracy"] = float(np.mean(l_train == y))
        summary[f"{key}_mi_ly"] = mi_ly
        summary[f"{key}_label_entropy"] = _entropy(y_test)
        final = {name: curves[name][:, -1] for name in CURVES}
        for name in ("accuracy", "mi_fy", "mi_fy_given_l", "mu", "agreement"):
            summary[f"{key}_final_{name}_mean"] = float(final[name].mean())
            summary[f"{key}_final_{name}_std"] = float(final[name].std(ddof=1)) if seeds > 1 else 0.0
        summary[f"{key}_reach_steps"] = reach
        summary[f"{key}_accuracy_match_steps"] = match
        summary[f"{key}_part_steps"] = part
        summary[f"{key}_first_exceed_steps"] = first_exceed
        ratios = [q / max(r, 1) for q, r in zip(part, reach) if q is not None and r is not None]
        summary[f"{key}_part_over_reach"] = ratios
        summary[f"{key}_part_over_reach_geomean"] = float(np.exp(np.mean(np.log(ratios)))) if ratios else None
        for name, values in (("reach", reach), ("part", part)):
            hit = [max(v, 1) for v in values if v is not None]  # step 0 (already at init) counted as step 1
            summary[f"{key}_{name}_step_median"] = float(np.median(hit)) if hit else None
            summary[f"{key}_{name}_step_log10_mean"] = float(np.mean(np.log10(hit))) if hit else None
            summary[f"{key}_{name}_step_log10_std"] = float(np.std(np.log10(hit), ddof=1)) if len(hit) > 1 else None
        # the linear phase, from the reach step to the sustained part: how much of F is L (medians over its logged steps)
        transient, phase_given, phase_agreement, at_part = [], [], [], []
        for s in range(seeds):
            end = part[s] if part[s] is not None else steps[-1] + 1
            before = steps < end
            transient.append(float(curves["mi_fy_given_l"][s, before].max() / mi_ly) if before.any() else None)
            phase = before & (steps >= (reach[s] if reach[s] is not None else end))
            phase_given.append(float(np.median(curves["mi_fy_given_l"][s, phase]) / mi_ly) if phase.any() else None)
            phase_agreement.append(float(np.median(curves["agreement"][s, phase])) if phase.any() else None)
            at_part.append(float(curves["accuracy"][s, steps == part[s]][0]) if part[s] is not None else None)
        summary[f"{key}_max_given_l_before_part_over_mi_ly"] = transient
        summary[f"{key}_linear_phase_given_l_over_mi_ly"] = phase_given
        summary[f"{key}_linear_phase_agreement"] = phase_agreement
        summary[f"{key}_accuracy_at_part"] = at_part
        summary[f"{key}_runs_reaching"] = f"{sum(r is not None for r in reach)}/{seeds}"
        for name in CURVES:
            arrays[f"{key}_{name}"] = curves[name]
        arrays[f"{key}_mi_ly"] = np.array(mi_ly)
        arrays[f"{key}_linear_accuracy"] = np.array(linear_accuracy)
        panels.append({"dataset": dataset, "curves": curves, "mi_ly": mi_ly, "linear_accuracy": linear_accuracy,
                       "reach": reach, "part": part, "first_exceed": first_exceed})
        log(f"simplicity-bias: {dataset}: L accuracy {linear_accuracy:.3f}, I(L;Y) {mi_ly:.3f}; F final accuracy "
            f"{final['accuracy'].mean():.3f}; reach steps {reach}, part steps {part}")

    np.savez_compressed(out / "curves.npz", **{k.replace("-", "_"): v for k, v in arrays.items()})
    (out / "summary_runs.json").write_text(json.dumps(
        [{"dataset": p["dataset"], "seed_index": s, "init_seed": init_seed(config, p["dataset"], s)[0],
          "batch_seed": init_seed(config, p["dataset"], s)[1], "reach_step": p["reach"][s], "part_step": p["part"][s],
          "first_exceed_step": p["first_exceed"][s],
          "final_accuracy": float(p["curves"]["accuracy"][s, -1])} for p in panels for s in range(seeds)], indent=1))
    plotting.save_figure(plotting.simplicity_bias_curves(steps, panels, float(config["part_fraction"]),
                                                         float(config["reach_fraction"])), out, "curves.png")
    if "two-stripes" in config["datasets"]:
        x, y, x_test, y_test = load_data(config, "two-stripes")
        plotting.save_figure(plotting.simplicity_bias_data(x, y, float(config["stripes_width"])), out, "data.png")
    return summary


def _entropy(y) -> float:
    """H(Y) in nats (plug-in), the largest I(F;Y) can be."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    q = counts / counts.sum()
    return float(-np.sum(q * np.log(q)))
