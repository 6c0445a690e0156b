"""The mean-field (1/h) and the NTK (1/sqrt(h)) output scale give different limits as the width grows (seed 003
"Mean-field perspective"; Mei, Montanari & Nguyen 2018; Chizat, Oyallon & Bach 2019; Geiger et al. 2020).

* data: a seed-002 set (``dataset``, ``d``, ``p``, ``p_test``, seed ``data_seed``; the stripe's label depends on
  x_1 only);
* network: ReLU :class:`fastdyn.OneHidden` with ``scale`` "mf" or "ntk", alpha = 1 (the plain network, no
  alpha-trick rescaling), fp64, trained on MSE by full-batch gradient descent (:func:`._kernel_regime.descend`:
  ``steps`` steps of ``lr_fraction`` p / lambda_max of the analytic kernel at that scale, so both scales start at
  the same speed in function space: the mean-field step is h times larger, the usual t ~ h of the 1/h scale);
* per run: the relative weight change ||theta_T - theta_0|| / ||theta_0||, the median over neurons of each neuron's
  own ||(omega, b, beta)_n - init|| / ||init||, the test error, and the particle picture: each neuron n is a
  particle (omega_n, b_n, beta_n); its outgoing weight beta_n, its direction's alignment with the informative axis
  c_n = omega_n1 / ||omega_n||, and its kink's x_1 (:func:`fastdyn.kinks.positions`, the hyperplane's point
  closest to the origin) with weight |beta_n| ||omega_n||. The records keep ``quantiles`` quantiles of beta and c at
  init and at the end (the 1-D Wasserstein-1 distance between two such distributions is the mean absolute
  difference of their quantile functions) and ``particles_kept`` neurons for the pictures;
* distances: W1(end, init) per run (how far the distribution moved: O(1) in the mean-field limit, -> 0 at the NTK
  scale) and W1(end at h, end at the largest h) (does the distribution at the end converge as h grows).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import kinks, plotting
from .._src import checks
from . import _kernel_regime as regime
from ._store import RunStore

DESCRIPTION = "issue 20: 1/h vs 1/sqrt(h) output scale as h grows: weight change, test error, neurons as particles"

FREE_KEYS = ("hs", "seeds")  # change no run's record (RunStore)
FEATURES = ("beta", "alignment")


def config(quick: bool) -> dict:
    sizes = ({"p": 64, "p_test": 256, "hs": [32, 512], "seeds": 2, "steps": 300, "snapshots": 6, "quantiles": 50,
              "particles_kept": 100} if quick else
             {"p": 256, "p_test": 1000, "hs": [32, 128, 512, 2048, 8192], "seeds": 3, "steps": 3000,
              "snapshots": 15, "quantiles": 200, "particles_kept": 600})
    return {"dataset": "stripe", "d": 5, "data_seed": 0, **sizes, "lr_fraction": 0.2, "threads": 1}


def check_config(config: dict) -> None:
    regime.check_common(config)
    regime.check_widths(config, "hs")
    checks.integer("config 'quantiles'", config["quantiles"], minimum=2)
    checks.integer("config 'particles_kept'", config["particles_kept"])


def particles(model) -> dict:
    """Per neuron (numpy (h,)): beta, alignment omega_1 / ||omega||, kink_x1 (x_1 of the kink position) and
    weight |beta| ||omega|| (its contribution to the function's slope)."""
    omega, beta = model.omega.detach(), model.beta.detach()
    norm = omega.norm(dim=1)
    return {"beta": beta.numpy(), "alignment": (omega[:, 0] / norm).numpy(),
            "kink_x1": kinks.positions(model.omega.detach(), model.b.detach())[:, 0].numpy(),
            "weight": (beta.abs() * norm).numpy()}


def quantile_levels(n: int) -> np.ndarray:
    """The n mid-point levels (k + 1/2) / n of a quantile function."""
    return (np.arange(n) + 0.5) / n


def wasserstein(quantiles_a, quantiles_b) -> float:
    """1-D Wasserstein-1 distance from two quantile functions at the same mid-point levels."""
    return float(np.mean(np.abs(np.asarray(quantiles_a) - np.asarray(quantiles_b))))


def one_run(config: dict, split, scale: str, h: int, seed: int) -> dict:
    model = regime.network(int(config["d"]), h, scale, seed)
    lr = regime.learning_rate(split.x, scale, h, float(config["lr_fraction"]))
    result = regime.descend(model, split, alpha=1.0, loss="mse", lr=lr, steps=int(config["steps"]),
                            snapshots=int(config["snapshots"]))
    history = result.history()
    before, after = particles(model), particles(result.model)
    per_neuron = [torch.cat([m.omega.detach(), m.b.detach()[:, None], m.beta.detach()[:, None]], dim=1)
                  for m in (model, result.model)]
    levels, kept = quantile_levels(int(config["quantiles"])), int(config["particles_kept"])
    return {"test_err": float(history["test_err"][-1]), "train_loss": float(history["train_loss"][-1]),
            "time": (history["step"] * float(config["lr_fraction"])).tolist(),
            "test_err_curve": history["test_err"].tolist(),
            "relative_weight_change": regime.relative_change(regime.parameter_vector(result.model),
                                                             regime.parameter_vector(model)),
            "median_neuron_change": float(((per_neuron[1] - per_neuron[0]).norm(dim=1)
                                           / per_neuron[0].norm(dim=1)).median()),
            **{f"{stage}_quantiles_{name}": np.quantile(values[name], levels).tolist()
               for stage, values in (("init", before), ("end", after)) for name in FEATURES},
            **{f"{stage}_kept_{name}": values[name][:kept].tolist()
               for stage, values in (("init", before), ("end", after)) for name in values}}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = regime.dataset(config)
    hs, seeds = config["hs"], int(config["seeds"])
    records = {}
    for scale in regime.SCALES:
        records[scale] = []
        for h in hs:
            row = [store.get({"scale": scale, "h": h, "seed": seed}, lambda: one_run(config, split, scale, h, seed))
                   for seed in range(seeds)]
            records[scale].append(row)
            log(f"mean-field-vs-ntk: {scale} h={h}: test error {np.mean([r['test_err'] for r in row]):.3f}, "
                f"weight change {np.mean([r['relative_weight_change'] for r in row]):.3g}")

    def table(scale, value):  # (seeds, n_h)
        return np.array([[value(r) for r in row] for row in records[scale]]).T

    summary: dict = {"runs_reused_from_records": store.reused, "hs": hs,
                     "final_time": float(config["lr_fraction"]) * int(config["steps"])}
    arrays = {}
    for scale in regime.SCALES:
        widest = records[scale][-1]
        values = {"relative_weight_change": table(scale, lambda r: r["relative_weight_change"]),
                  "median_neuron_change": table(scale, lambda r: r["median_neuron_change"]),
                  "test_err": table(scale, lambda r: r["test_err"]),
                  "train_loss": table(scale, lambda r: r["train_loss"])}
        for name in FEATURES:
            values[f"moved_{name}"] = table(scale, lambda r: wasserstein(r[f"end_quantiles_{name}"],
                                                                         r[f"init_quantiles_{name}"]))
            values[f"to_widest_{name}"] = np.array([[wasserstein(r[f"end_quantiles_{name}"],
                                                                 widest[seed][f"end_quantiles_{name}"])
                                                     for seed, r in enumerate(row)] for row in records[scale]]).T
        for key, block in values.items():
            arrays[f"{scale}_{key}"] = block
            summary[f"{scale}_{key}"] = {f"h{h}": regime.mean_sd(block[:, i]) for i, h in enumerate(hs)}
        for key in ("relative_weight_change", "moved_beta", "moved_alignment"):
            fit = regime.width_slope(hs, values[key])
            summary[f"{scale}_{key}_slope"], summary[f"{scale}_{key}_slope_err"] = fit["slope"], fit["slope_err"]
        for name in FEATURES:  # the distance to the widest network's, over the widths below it
            fit = regime.width_slope(hs[:-1], values[f"to_widest_{name}"][:, :-1])
            summary[f"{scale}_to_widest_{name}_slope"] = fit["slope"]
            summary[f"{scale}_to_widest_{name}_slope_err"] = fit["slope_err"]

    np.savez(out / "mean_field_vs_ntk.npz", hs=np.asarray(hs), **arrays)
    (out / "runs.json").write_text(json.dumps({scale: {f"h{h}": [{k: v for k, v in r.items() if "kept" not in k}
                                                                   for r in row] for h, row in zip(hs, rows)}
                                               for scale, rows in records.items()}, indent=1))
    kept = {(scale, h): {key.removeprefix("end_kept_"): np.array(value)
                         for key, value in records[scale][i][0].items() if key.startswith("end_kept_")}
            for scale in regime.SCALES for i, h in enumerate(hs)}
    initial = {key.removeprefix("init_kept_"): np.array(value) for key, value in records["mf"][-1][0].items()
               if key.startswith("init_kept_")}
    plotting.save_figure(plotting.mean_field_vs_ntk_summary(hs, arrays, summary), out, "scaling.png")
    plotting.save_figure(plotting.mean_field_vs_ntk_particles(hs, kept, initial, config), out, "particles.png")
    summary["figures"] = ["scaling.png", "particles.png"]
    return summary
