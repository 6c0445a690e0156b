"""Pitfall of simplicity bias: SGD latches onto a strong simple classifier and learns the rest late (seed 000).

The seed's pair of "equally easy" data sets, as one family (:func:`fastdyn.data.shortcut_xor`): x ~ N(0, I_2),
u = (x_1 + x_2) / sqrt 2, v = (x_1 - x_2) / sqrt 2, y = sign(u) sign(c - v) with c = Phi^-1(s). Every member is the
same function class, the product of two perpendicular half-plane indicators (the same small ReLU net represents
each; only the second boundary moves), but

* s = 0.5 (c = 0, the centred XOR): no simple predictor; every half-plane through the origin is right on exactly
  half of the points, and the best half-plane of all (measured on the test set) gains little;
* s > 0.5: the 45-degree half-plane sign(u), the *shortcut*, is right on a fraction s of the points (v < c); on the
  rest (v > c) the label is flipped, and only the second boundary gets it.

For each strength s in ``strengths`` (0.5 being the no-shortcut set), ``seeds`` ReLU :class:`fastdyn.FCNet`
[2, *hidden, 1] (torch's default init) are trained by plain minibatch SGD (lr ``lr``, ``batch`` points drawn with
replacement) on the logistic loss on ``p`` training points for at most ``steps`` steps, by
:func:`fastdyn.experiments.simplicity_bias.stacked_sgd` (one stack per strength, see there why not
:func:`fastdyn.train`). For one seed index every strength starts from the same network and draws the same minibatch
indices and inputs: only the labels differ. At ``n_logs`` log-spaced steps: the test error, the error on the
shortcut's region (v < c) and on the flipped region (v > c), and the agreement of F with the shortcut.

Read off each run: *time to target*, the first logged step with test error <= ``target_error`` (None: unconverged
within the step cap); the *plateau* at the shortcut (s > 0.5): it starts at the first logged step where F agrees
with sign(u) on >= ``plateau_agreement`` of the test points, and ends at the first later step with test error <=
(1 - s) / 2 (half of what the shortcut gets wrong has been learned); a run still on it at the cap is unconverged
and its plateau length is a lower bound.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from ..models import FCNet
from ._store import RunStore
from .simplicity_bias import first_step, log_steps, stacked_sgd

DESCRIPTION = "seed 000: SGD latches onto a strong 45-degree half-plane (shortcut), learns the rest later"

CURVES = ("error", "error_shortcut_region", "error_flipped_region", "shortcut_agreement")


def config(quick: bool) -> dict:
    return {
        "strengths": [0.5, 0.9] if quick else [0.5, 0.8, 0.9, 0.95], "hidden": [100, 100], "lr": 0.05,
        "batch": 128, "steps": 3000 if quick else 10_000, "seeds": 2 if quick else 5, "seed": 0,
        "n_logs": 30 if quick else 40, "p": 2000, "p_test": 4000, "target_error": 0.02, "plateau_agreement": 0.95,
        "threads": 1,
    }


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    strengths = config["strengths"]
    if not isinstance(strengths, (list, tuple)) or not strengths:
        raise ValueError(f"config 'strengths' must be a non-empty list of shortcut strengths, got {strengths!r}")
    for s in strengths:
        value = checks.real("config 'strengths' entry", s)
        if not 0.5 <= value < 1:
            raise ValueError(f"config 'strengths' entries must be in [0.5, 1), got {s!r}")
    hidden = config["hidden"]
    if not isinstance(hidden, (list, tuple)) or not hidden:
        raise ValueError(f"config 'hidden' must be a non-empty list of hidden widths, got {hidden!r}")
    for width in hidden:
        checks.integer("config 'hidden' entry", width)
    for key in ("batch", "steps", "seeds", "n_logs", "p", "p_test"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'seed'", config["seed"], minimum=0)
    checks.real("config 'lr'", config["lr"])
    for key in ("target_error", "plateau_agreement"):
        if checks.real(f"config {key!r}", config[key]) >= 1:
            raise ValueError(f"config {key!r} must be in (0, 1), got {config[key]}")
    if any(float(config["target_error"]) >= (1 - float(s)) / 2 for s in strengths if float(s) > 0.5):
        raise ValueError(f"config 'target_error' ({config['target_error']}) must be below half the shortcut's error "
                         f"(1 - s) / 2 of every strength s > 0.5, so that reaching it needs more than the shortcut")


def run_seeds(config: dict, seed_index: int) -> tuple[int, int]:
    """(init seed, batch seed) of one seed index: shared by every strength, so they differ only in their labels."""
    a, b = np.random.SeedSequence([int(config["seed"]), 17, seed_index]).generate_state(2)
    return int(a), int(b)


def best_halfplane_accuracy(x: np.ndarray, y: np.ndarray, n_angles: int = 360) -> float:
    """The largest accuracy of a half-plane classifier sign(w . x - t) on (x, y) (±1 labels), over ``n_angles``
    directions w and every threshold t (both orientations). The exact best up to the angle grid."""
    best = 0.0
    for angle in np.linspace(0.0, np.pi, n_angles, endpoint=False):
        projection = x @ np.array([np.cos(angle), np.sin(angle)])
        order = np.argsort(projection)
        labels = y[order] > 0
        # predict +1 above the threshold: correct = (negatives below) + (positives above)
        below_negative = np.concatenate([[0], np.cumsum(~labels)])
        above_positive = labels.sum() - np.concatenate([[0], np.cumsum(labels)])
        correct = (below_negative + above_positive) / len(y)
        best = max(best, float(correct.max()), float((1 - correct).max()))
    return best


def train_strength(config: dict, strength: float, steps: np.ndarray) -> dict:
    """The curves of :data:`CURVES`, each (seeds, T), of the ``seeds`` networks trained on strength s."""
    from ..data import shortcut_xor

    split = shortcut_xor(int(config["p"]), strength=float(strength), p_test=int(config["p_test"]),
                         seed=int(config["seed"]))
    x, y, x_test, y_test = (np.asarray(a, dtype=np.float32) for a in split)
    seeds = int(config["seeds"])
    models, batch_seeds = [], []
    for s in range(seeds):
        init, batch_seed = run_seeds(config, s)
        torch.manual_seed(init)
        models.append(FCNet([2, *[int(w) for w in config["hidden"]], 1]))
        batch_seeds.append(batch_seed)

    def stack(a):
        return torch.from_numpy(a)[None].expand(seeds, *a.shape).contiguous()

    outputs = stacked_sgd(models, stack(x), stack(y), lr=float(config["lr"]), batch=int(config["batch"]),
                          steps=int(config["steps"]), logged=steps, x_test=stack(x_test), seeds=batch_seeds)
    predictions = np.sign(outputs).transpose(1, 0, 2)  # (seeds, T, N)
    wrong = predictions != y_test
    flipped = np.asarray(split.info["shortcut_test"]) != y_test  # where the shortcut is wrong (v > c)
    curves = {"error": wrong.mean(axis=2),
              "error_shortcut_region": wrong[..., ~flipped].mean(axis=2),
              "error_flipped_region": wrong[..., flipped].mean(axis=2) if flipped.any()
              else np.zeros(wrong.shape[:2]),
              "shortcut_agreement": (predictions == np.asarray(split.info["shortcut_test"])).mean(axis=2)}
    return {name: value.tolist() for name, value in curves.items()}


def plateau(steps: np.ndarray, agreement: np.ndarray, error: np.ndarray, strength: float,
            level: float) -> tuple[int | None, int | None]:
    """(start, end) of the plateau at the shortcut: start, the first logged step with agreement >= level; end, the
    first logged step from start on with error <= (1 - strength) / 2; None where not reached."""
    start = first_step(steps, agreement >= level)
    if start is None:
        return None, None
    later = steps >= start
    end = first_step(steps[later], error[later] <= (1 - strength) / 2)
    return start, end


def _stats(values: list) -> dict:
    """mean and standard deviation of log10 of the reached values, and how many reached."""
    hit = np.array([v for v in values if v is not None], dtype=float)
    return {"reached": f"{hit.size}/{len(values)}",
            "median": float(np.median(hit)) if hit.size else None,
            "log10_mean": float(np.mean(np.log10(hit))) if hit.size else None,
            "log10_std": float(np.std(np.log10(hit), ddof=1)) if hit.size > 1 else None}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    from ..data import shortcut_xor

    log = print if progress else (lambda *args, **kw: None)
    steps = log_steps(int(config["steps"]), int(config["n_logs"]))
    strengths = [float(s) for s in config["strengths"]]
    store = RunStore(out, config, free_keys=("strengths", "target_error", "plateau_agreement"))
    seeds, budget = int(config["seeds"]), int(config["steps"])
    target, level = float(config["target_error"]), float(config["plateau_agreement"])
    summary: dict = {"step_budget": budget, "seeds": seeds, "target_error": target}
    curves = {name: np.zeros((len(strengths), seeds, steps.size)) for name in CURVES}
    reach_all, plateaus_all, runs = [], [], []
    for i, strength in enumerate(strengths):
        record = store.get({"strength": strength}, lambda: train_strength(config, strength, steps))
        for name in CURVES:
            curves[name][i] = np.asarray(record[name])
        error, agreement = curves["error"][i], curves["shortcut_agreement"][i]
        reach = [first_step(steps, e <= target) for e in error]
        spans = [plateau(steps, a, e, strength, level) if strength > 0.5 else (None, None)
                 for a, e in zip(agreement, error)]
        reach_all.append(reach)
        plateaus_all.append(spans)
        split = shortcut_xor(int(config["p"]), strength=strength, p_test=int(config["p_test"]),
                             seed=int(config["seed"]))
        key = f"s={strength:g}"
        summary[f"{key}_shortcut_test_accuracy"] = float(np.mean(split.info["shortcut_test"] == split.y_test))
        summary[f"{key}_best_halfplane_test_accuracy"] = best_halfplane_accuracy(split.x_test, split.y_test)
        final = error[:, -1]
        summary[f"{key}_final_error_mean"] = float(final.mean())
        summary[f"{key}_final_error_std"] = float(final.std(ddof=1)) if seeds > 1 else 0.0
        summary[f"{key}_final_error_flipped_region_mean"] = float(curves["error_flipped_region"][i][:, -1].mean())
        summary[f"{key}_steps_to_target"] = reach
        for stat, value in _stats(reach).items():
            summary[f"{key}_steps_to_target_{stat}"] = value
        if strength > 0.5:
            starts, ends = [s for s, _ in spans], [e for _, e in spans]
            # length of the plateau in steps; a run still on it at the cap gives the lower bound budget - start
            lengths = [(e - s) if e is not None else (budget - s) if s is not None else None for s, e in spans]
            summary[f"{key}_plateau_start"] = starts
            summary[f"{key}_plateau_end"] = ends
            summary[f"{key}_plateau_steps"] = lengths
            summary[f"{key}_plateau_unconverged"] = sum(s is not None and e is None for s, e in spans)
            finished = [e - s for s, e in spans if s is not None and e is not None]
            summary[f"{key}_plateau_steps_finished_mean"] = float(np.mean(finished)) if finished else None
            summary[f"{key}_plateau_steps_finished_std"] = float(np.std(finished, ddof=1)) if len(finished) > 1 \
                else None
            summary[f"{key}_plateau_start_median"] = _stats(starts)["median"]
            # the error on the plateau: median over seeds of the test error at the logged step mid-plateau (log)
            levels = []
            for s_index, (s, e) in enumerate(spans):
                if s is not None:
                    mid = np.sqrt(s * (e if e is not None else budget))
                    levels.append(float(error[s_index][np.argmin(np.abs(steps - mid))]))
            summary[f"{key}_plateau_error_median"] = float(np.median(levels)) if levels else None
        for s_index in range(seeds):
            runs.append({"strength": strength, "seed_index": s_index, "init_seed": run_seeds(config, s_index)[0],
                         "batch_seed": run_seeds(config, s_index)[1], "final_error": float(final[s_index]),
                         "steps_to_target": reach[s_index], "plateau_start": spans[s_index][0],
                         "plateau_end": spans[s_index][1]})
        log(f"simple-shortcut: s = {strength:g}: steps to error {target:g}: {reach}; plateaus {spans}; final error "
            f"{final.mean():.4f}")

    np.savez_compressed(out / "curves.npz", steps=steps, strengths=np.array(strengths), **curves)
    (out / "runs.json").write_text(json.dumps(runs, indent=1))
    plotting.save_figure(plotting.simple_shortcut_curves(steps, strengths, curves, target, budget), out,
                         "curves.png")
    plotting.save_figure(plotting.simple_shortcut_summary(strengths, reach_all, plateaus_all, budget, target), out,
                         "summary.png")
    data = {s: shortcut_xor(int(config["p"]), strength=s, seed=int(config["seed"])) for s in strengths}
    plotting.save_figure(plotting.simple_shortcut_data({s: (d.x, d.y) for s, d in data.items()}), out, "data.png")
    return summary
