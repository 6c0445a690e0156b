"""Kink clouds and attractors in d = 2 (seed 002, science.md 4).

* The kinks z_n = -sqrt(d) b_n omega_n / ||omega_n||^2 (in the units of x, beside the dashed label boundary) at
  the seed's four stages: (A) initialisation, (B) end of lazy training, (C) feature training at mid time (geometric
  middle of the run), (D) end of feature training, for the stripe and sphere models, coloured by attractor.
* Attractors (:func:`fastdyn.kinks.attractors`): groups of neurons active on the same training points that hold
  at least ``attractor_min_size`` neurons with |beta| > ``attractor_beta_rtol`` max|beta|; dead neurons,
  singletons and negligible-|beta| neurons are counted apart. The count A at the end of feature training against
  p (fixed h) and against h (fixed p); the seed reports A ~ p sqrt(h) until saturation A ~ h.
* The p = 1 kink velocity field z_dot = F(z) for b > 0 and b < 0 (the seed's field picture).

Every training run records whether it converged (all margins >= 1) or stopped at the step cap (unconverged).
Files: the figures, ``attractors.json`` (counts per stage and per (p, h)) and ``stages.npz`` (omega, b and beta of
every stage, "{dataset}_{A|B|C|D}_{omega|b|beta}", to recount the attractors independently).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from . import _seed002 as common
from .. import kinks, plotting
from ..data.synthetic import STRIPE_BOUNDS

DESCRIPTION = "seed 002: kink clouds at four stages (d=2), attractor count vs p and h, the p=1 kink field"

D = 2
KINK_LIMIT = 4.0  # axis range of the kink pictures: the data and the label boundaries, in units of x


def config(quick: bool) -> dict:
    sizes = ({"datasets": ["stripe", "sphere"], "p": 32, "h": 100, "ps_attractors": [8, 32], "hs_attractors": [50, 100],
              "attractor_dataset": "sphere", "p_test": 200, "seed": 0, "seeds_attractors": 1} if quick else
             {"datasets": ["stripe", "sphere"], "p": 128, "h": 1000, "ps_attractors": [8, 16, 32, 64, 128],
              "hs_attractors": [100, 300, 1000, 3000], "attractor_dataset": "sphere", "p_test": 500, "seed": 0,
              "seeds_attractors": 3})
    counting = {"attractor_min_size": 2, "attractor_beta_rtol": 1e-2}
    return {**sizes, **counting, **common.shared_config(quick, max_steps=250_000)}  # full runs: to zero hinge loss


def label_boundary(name: str, d: int = D) -> dict:
    """The label boundary of data set ``name`` in input units, as :func:`fastdyn.plotting.plot_kink_panels` draws
    it: the stripe's planes x_1 = -0.3, 1.185 ("lines") or the sphere's ||x|| = sqrt(d (1 - 2/(9d))^3)
    ("circles")."""
    if name == "stripe":
        return {"lines": STRIPE_BOUNDS}
    if name == "sphere":
        return {"circles": (math.sqrt(d * (1 - 2 / (9 * d)) ** 3),)}
    raise ValueError(f"name must be 'stripe' or 'sphere', got {name!r}")


def count_attractors(network, x, config: dict) -> kinks.Attractors:
    """:func:`fastdyn.kinks.attractors` with the experiment's counting rule."""
    return kinks.attractors(network, x, min_size=int(config["attractor_min_size"]),
                            beta_rtol=float(config["attractor_beta_rtol"]))


def stage_panel(title: str, network, groups: kinks.Attractors) -> tuple:
    """(title, z, labels, marker areas) of one stage: attractor members drawn with area 2 sqrt(their group's
    size), since the neurons of one attractor often share one point."""
    z = kinks.positions(network, eps=1e-12).detach()
    labels = groups.attractor_labels()
    area = np.full(labels.shape, 2.0)
    member = labels >= 0
    area[member] = 2.0 * np.sqrt(groups.sizes[groups.labels[member]])
    return title, z, labels, area


def _counts(groups: kinks.Attractors) -> dict:
    return {"attractors": groups.n_attractors, "patterns": groups.n_patterns, "singletons": groups.n_singletons,
            "negligible": groups.n_negligible, "dead": groups.n_dead}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    seed, summary = int(config["seed"]), {}
    stage_rows, stage_weights, runs = [], {}, []
    for name in config["datasets"]:
        split = common.dataset(name, int(config["p"]), D, seed=seed, p_test=int(config["p_test"]))
        model = common.network(D, int(config["h"]), seed)
        lazy = common.fit(model, split, config["alpha_lazy"], config, record_weights=False)
        feature = common.fit(model, split, config["alpha_feature"], config, record_weights=True)
        runs += [{"dataset": name, "regime": regime, "p": int(config["p"]), "h": int(config["h"]),
                  **common.run_record(result)} for regime, result in (("lazy", lazy), ("feature", feature))]
        middle = _middle_snapshot(feature)
        stages = [("(A) init", model), ("(B) lazy end", lazy.model),
                  (f"(C) feature t={middle.t:.3g}", _with_weights(model, middle.weights)),
                  ("(D) feature end", feature.model)]
        panels = []
        for title, network in stages:
            groups = count_attractors(network, split.x, config)
            heading = f"{name} {title}\nA={groups.n_attractors} ({groups.n_patterns} patterns)"
            panels.append(stage_panel(heading, network, groups))
            stage_rows.append({"dataset": name, "stage": title, **_counts(groups)})
            stage = title.split()[0].strip("()")
            summary[f"{name}_{stage}_attractors"] = groups.n_attractors
            summary[f"{name}_{stage}_patterns"] = groups.n_patterns
            stage_weights.update({f"{name}_{stage}_{key}": getattr(network, key).detach().cpu().numpy()
                                  for key in ("omega", "b", "beta")})
        summary[f"{name}_feature_test_err"] = feature.final.test_err
        summary[f"{name}_lazy_test_err"] = lazy.final.test_err
        figure = plotting.plot_kink_panels(panels, limit=KINK_LIMIT, **label_boundary(name))
        plotting.save_figure(figure, out, f"kinks_{name}.png")
        if progress:
            print(f"[kinks] {name}: attractors " + ", ".join(f"{r['stage']}={r['attractors']}" for r in stage_rows
                                                             if r["dataset"] == name), flush=True)

    counts = _attractor_counts(config, progress)
    np.savez(out / "stages.npz", **stage_weights)
    (out / "attractors.json").write_text(json.dumps({"stages": stage_rows, "counts": counts, "runs": runs},
                                                    indent=1))
    _plot_counts(out, counts, config)
    _plot_field(out)
    for vary in ("p", "h"):
        rows = [c for c in counts if c["vary"] == vary]
        # the sizes where every seed converged
        converged = [c for c in rows if all(o["converged"] for o in rows if o[vary] == c[vary])]
        for key, used in ((f"attractor_exponent_{vary}", rows), (f"attractor_exponent_{vary}_converged", converged)):
            summary[key], summary[key + "_err"] = attractor_exponent(used, vary)
    summary["attractor_fraction_of_h_max"] = max(c["attractors"] / c["h"] for c in counts)
    distinct = list({(c["p"], c["h"], c["seed"]): c for c in counts}.values())
    every = [r["stop_reason"] for r in runs] + [c["stop_reason"] for c in distinct]
    summary["runs_converged"] = f"{sum(r in ('margins', 'loss') for r in every)}/{len(every)}"
    summary["runs_stopped_by_wall"] = sum(r == "wall" for r in every)
    summary["figures"] = [f"kinks_{name}.png" for name in config["datasets"]] + ["attractors.png", "field_p1.png"]
    return summary


def _middle_snapshot(result):
    """The snapshot nearest the geometric middle of the run's (positive) times."""
    times = np.array([s.t for s in result.snapshots])
    positive = times > 0
    if not positive.any():
        return result.snapshots[0]
    target = np.sqrt(times[positive].min() * times.max())
    return result.snapshots[int(np.argmin(np.abs(np.log(np.maximum(times, 1e-300)) - np.log(target))))]


def _with_weights(model, weights):
    copy = common.network(model.d, model.h, 0)
    copy.load_state_dict(weights)
    return copy


def _attractor_counts(config: dict, progress: bool) -> list[dict]:
    """A at the end of feature training, varying p at the largest h and h at the largest p, for
    ``seeds_attractors`` seeds from ``seed`` on."""
    name = config["attractor_dataset"]
    seeds = range(int(config["seed"]), int(config["seed"]) + int(config["seeds_attractors"]))
    grid = [("p", int(p), int(max(config["hs_attractors"])), seed) for p in config["ps_attractors"] for seed in seeds]
    grid += [("h", int(max(config["ps_attractors"])), int(h), seed) for h in config["hs_attractors"] for seed in seeds]
    rows, done = [], {}
    for vary, p, h, seed in grid:
        if (p, h, seed) not in done:
            split = common.dataset(name, p, D, seed=seed, p_test=int(config["p_test"]))
            result = common.fit(common.network(D, h, seed), split, config["alpha_feature"], config,
                                record_weights=False)
            groups = count_attractors(result.model, split.x, config)
            done[(p, h, seed)] = {**_counts(groups), "converged": result.converged,
                                  "unsatisfied": result.final.unsatisfied, "stop_reason": result.stop_reason,
                                  "steps": result.step}
            if progress:
                print(f"[kinks] {name} p={p} h={h} seed={seed}: A={groups.n_attractors} ({groups.n_patterns} patterns, "
                      f"{groups.n_singletons} singletons, {groups.n_negligible} negligible, {groups.n_dead} dead), "
                      f"{result.stop_reason}", flush=True)
        rows.append({"vary": vary, "p": p, "h": h, "seed": seed, **done[(p, h, seed)]})
    return rows


def attractor_exponent(rows: list[dict], vary: str) -> tuple[float, float]:
    """Slope of log (seed-mean A) against log ``vary`` ("p" or "h") over ``rows`` (the counts), and its error: the
    bootstrap over seeds, resampled independently at each size (several seeds), or the slope's standard error from
    the residuals (one seed; NaN below 3 sizes)."""
    sizes = sorted({row[vary] for row in rows})
    seeds = sorted({row["seed"] for row in rows})
    if len(seeds) == 1 or not sizes:
        return _slope([row[vary] for row in rows], [row["attractors"] for row in rows])
    table = np.full((len(seeds), len(sizes)), np.nan)
    for row in rows:
        table[seeds.index(row["seed"]), sizes.index(row[vary])] = row["attractors"]
    fit = common.power_law(sizes, table)  # fits A ~ size^(-beta)
    return -fit["beta"], fit["beta_err"]


def _slope(x, y) -> tuple[float, float]:
    """Least-squares slope of log y against log x and its standard error from the residuals (NaN for fewer than
    2, resp. 3, points or a non-positive y)."""
    x, y = np.log(np.asarray(x, float)), np.asarray(y, float)
    if len(x) < 2 or (y <= 0).any():
        return float("nan"), float("nan")
    y = np.log(y)
    slope, intercept = np.polyfit(x, y, 1)
    if len(x) < 3:
        return float(slope), float("nan")
    residual = y - (slope * x + intercept)
    error = np.sqrt(residual @ residual / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
    return float(slope), float(error)


def _plot_counts(out: Path, counts, config) -> None:
    """A (seed mean +- standard deviation) and the number of distinct patterns against p and h; open markers: sizes
    where some seed's run stopped at the step cap."""
    fig, axes = plotting.new_figure(2)
    for ax, vary in zip(axes[0], ("p", "h")):
        rows = [c for c in counts if c["vary"] == vary]
        x = np.array(sorted({c[vary] for c in rows}), float)
        at = [[c for c in rows if c[vary] == value] for value in x]
        a = np.array([np.mean([c["attractors"] for c in group]) for group in at])
        spread = np.array([np.std([c["attractors"] for c in group]) for group in at])
        converged = np.array([all(c["converged"] for c in group) for group in at], bool)
        fixed = rows[0]["h" if vary == "p" else "p"]
        ax.errorbar(x, a, yerr=spread, fmt="-", color="C0", capsize=2,
                    label=f"A (attractors), feature end, mean +- sd of {len(at[0])} seed(s)")
        ax.plot(x[converged], a[converged], "o", color="C0", label="every seed converged (all margins >= 1)")
        ax.plot(x[~converged], a[~converged], "o", mfc="none", color="C0", label="a seed unconverged (step cap)")
        ax.plot(x, [np.mean([c["patterns"] for c in group]) for group in at], "s:", ms=3, color="C1",
                label="distinct patterns")
        anchor = a[0] / (x[0] if vary == "p" else np.sqrt(x[0]))
        ax.plot(x, anchor * (x if vary == "p" else np.sqrt(x)), "k--", lw=1,
                label="A ~ p" if vary == "p" else "A ~ sqrt(h)")
        ax.plot(x, np.full_like(x, fixed) if vary == "p" else x, "k:", lw=1, label="A = h")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(vary)
        ax.set_ylabel("number of attractors A")
        ax.set_title(f"{config['attractor_dataset']}, d=2, {'h' if vary == 'p' else 'p'}={fixed}")
        ax.legend(fontsize=7)
    plotting.save_figure(fig, out, "attractors.png")


def _plot_field(out: Path) -> None:
    """The p = 1 field for a point x = (1.5, 0) of label +1 below its margin (g = -y / p), b > 0 and b < 0."""
    x = torch.tensor([[1.5, 0.0]], dtype=torch.float64)
    g = torch.tensor([-1.0], dtype=torch.float64)
    fig, axes = plotting.new_figure(2, width=3.6, height=3.6)
    for ax, b in zip(axes[0], (1.0, -1.0)):
        plotting.plot_field(x, g, beta=1.0, b=b, limit=3.0, n=41, ax=ax)
        ax.set_xlim(-3.0, 3.0)
        ax.set_ylim(-3.0, 3.0)
        ax.set_title(f"p=1 field z_dot, beta=1, b={b:+g}")
    plotting.save_figure(fig, out, "field_p1.png")
