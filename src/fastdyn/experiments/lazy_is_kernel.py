"""A wide network in the lazy regime is kernel regression with its initial NTK, at every training time (seed 002,
seed 003 "Kernels"; Jacot, Gabriel & Hongler 2018, Lee et al. 2019, Chizat, Oyallon & Bach 2019).

* data: a seed-002 set (``dataset``, ``d``, ``p`` training and ``p_test`` test points, seed ``data_seed``);
* network: ReLU :class:`fastdyn.OneHidden`, fp64, trained with the alpha-trick F = alpha (f - f0) by full-batch
  gradient descent (:func:`._kernel_regime.descend`: ``steps`` steps of ``lr_fraction`` p / lambda_max, time in
  units of p / lambda_max is lr_fraction * step);
* MSE: the outputs F_net(t) on the training and test points against
  :func:`fastdyn.predict.gradient_descent_mse` with the network's initial empirical NTK (:func:`fastdyn.ntk`), with
  ``discrete=True`` at the same step counts (the function-space image of the same gradient descent: exact for the
  linearised network, checked by ``control``); the gap is max over t > 0 of ||F_net - F_kernel|| / ||F_kernel||.
  Three sweeps: the NTK scale (alpha = 1) against the width ``hs``; the mean-field scale at alpha = ``mf_alpha``
  against ``hs``; the mean-field scale at width ``alpha_width`` against ``alphas``;
* hinge: predict.gradient_descent refuses the hinge (its flow slides along the margin), so the kernel predictor is
  :func:`fastdyn.linearize` of the network trained by the same gradient descent, against h (``hinge_hs``: the
  linearised network's jvp makes a step ~10-100x slower than the network's, so fewer widths) at the NTK scale;
* ``control``: at the smallest width, the linearised network trained on MSE against the predictor (rounding
  only), and the discrete predictor against the gradient-flow predictor at t = lr * step (how far gradient descent
  at this step is from gradient flow, in function space).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import linearize, ntk, plotting, predict
from .._src import checks
from . import _kernel_regime as regime
from ._store import RunStore

DESCRIPTION = "issue 20: lazy networks (NTK scale, large alpha) follow kernel GD with their initial NTK; gap vs h, alpha"

FREE_KEYS = ("hs", "hinge_hs", "alphas", "seeds")  # change no run's record (RunStore)
TRACKED_POINTS = 3  # test points whose trajectories the records keep


def config(quick: bool) -> dict:
    sizes = ({"p": 64, "p_test": 128, "hs": [64, 1024], "hinge_hs": [64, 1024], "alphas": [10.0, 1000.0], "alpha_width": 256, "seeds": 2,
              "steps": 200, "snapshots": 10} if quick else
             {"p": 128, "p_test": 500, "hs": [64, 256, 1024, 4096, 16384], "hinge_hs": [64, 256, 1024],
              "alphas": [3.16, 10.0, 31.6, 100.0, 316.0, 1000.0, 1e4, 1e5], "alpha_width": 1024, "seeds": 4,
              "steps": 2000, "snapshots": 25})
    return {"dataset": "stripe", "d": 5, "data_seed": 0, **sizes, "mf_alpha": 100.0, "lr_fraction": 0.2,
            "threads": 1}


def check_config(config: dict) -> None:
    regime.check_common(config)
    regime.check_widths(config, "hs")
    regime.check_widths(config, "hinge_hs")
    checks.integer("config 'alpha_width'", config["alpha_width"])
    checks.real("config 'mf_alpha'", config["mf_alpha"])
    alphas = config["alphas"]
    if (not isinstance(alphas, list) or len(alphas) < 2 or alphas != sorted(set(alphas))
            or any(not isinstance(a, (int, float)) or isinstance(a, bool) or a <= 0 for a in alphas)):
        raise ValueError(f"config 'alphas' must be an increasing list of at least two values > 0, got {alphas}")


def relative_gap(net: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """||net - kernel|| / ||kernel|| per time of outputs (T, N); NaN where the kernel output is 0 (t = 0)."""
    norm = np.linalg.norm(kernel, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, np.linalg.norm(net - kernel, axis=1) / norm, np.nan)


def mse_run(config: dict, split, scale: str, h: int, alpha: float, seed: int, *, control: bool = False) -> dict:
    """One network on MSE against the kernel predictor with its initial empirical NTK (module docstring)."""
    model = regime.network(int(config["d"]), h, scale, seed)
    lr = regime.learning_rate(split.x, scale, h, float(config["lr_fraction"]))
    steps, snapshots = int(config["steps"]), int(config["snapshots"])
    result = regime.descend(model, split, alpha=alpha, loss="mse", lr=lr, steps=steps, snapshots=snapshots)
    history = result.history()
    K_train, K_test = ntk(model, split.x), ntk(model, split.x_test, split.x)
    kernel = predict.gradient_descent_mse(K_train, split.y, history["step"], K_test_train=K_test, lr=lr,
                                          discrete=True)
    gap_train = relative_gap(history["train_out"], kernel.train.numpy())
    gap_test = relative_gap(history["test_out"], kernel.test.numpy())
    y_test = split.y_test.numpy()
    record = {"steps": history["step"].tolist(), "time": (history["step"] * float(config["lr_fraction"])).tolist(),
              "lr": lr, "gap_train": gap_train.tolist(), "gap_test": gap_test.tolist(),
              "gap_train_max": float(np.nanmax(gap_train)), "gap_test_max": float(np.nanmax(gap_test)),
              "initial_output_max": float(np.abs(history["test_out"][0]).max()),
              "net_test_err": float(history["test_err"][-1]),
              "kernel_test_err": float(np.mean(np.sign(kernel.test.numpy()[-1]) != y_test)),
              "sign_disagreement": float(np.mean(np.sign(kernel.test.numpy()[-1]) != np.sign(history["test_out"][-1]))),
              "train_loss": float(history["train_loss"][-1]) * alpha ** 2,
              "relative_weight_change": regime.relative_change(regime.parameter_vector(result.model),
                                                               regime.parameter_vector(model)),
              "net_tracked": history["test_out"][:, :TRACKED_POINTS].tolist(),
              "kernel_tracked": kernel.test.numpy()[:, :TRACKED_POINTS].tolist()}
    if control:
        linear = regime.descend(linearize(model), split, alpha=alpha, loss="mse", lr=lr, steps=steps,
                                snapshots=snapshots).history()
        flow = predict.gradient_descent_mse(K_train, split.y, history["step"] * lr, K_test_train=K_test)
        record["linearized_gap_max"] = float(np.nanmax(relative_gap(linear["test_out"], kernel.test.numpy())))
        record["discrete_vs_flow_gap_max"] = float(np.nanmax(relative_gap(kernel.test.numpy(), flow.test.numpy())))
    return record


def hinge_run(config: dict, split, h: int, seed: int) -> dict:
    """One NTK-scaled network on the hinge loss against its linearisation trained the same way."""
    model = regime.network(int(config["d"]), h, "ntk", seed)
    lr = regime.learning_rate(split.x, "ntk", h, float(config["lr_fraction"]))
    runs = {name: regime.descend(net, split, alpha=1.0, loss="hinge", lr=lr, steps=int(config["steps"]),
                                 snapshots=int(config["snapshots"])).history()
            for name, net in (("net", model), ("linear", linearize(model)))}
    common = np.intersect1d(runs["net"]["step"], runs["linear"]["step"])
    outputs = {name: run["test_out"][np.searchsorted(run["step"], common)] for name, run in runs.items()}
    gap = relative_gap(outputs["net"], outputs["linear"])
    return {"steps": common.tolist(), "gap_test": gap.tolist(), "gap_test_max": float(np.nanmax(gap)),
            "net_steps": int(runs["net"]["step"][-1]), "linear_steps": int(runs["linear"]["step"][-1]),
            "net_test_err": float(runs["net"]["test_err"][-1]),
            "linear_test_err": float(runs["linear"]["test_err"][-1]),
            "net_unsatisfied": int(runs["net"]["unsatisfied"][-1]),
            "linear_unsatisfied": int(runs["linear"]["unsatisfied"][-1]),
            "sign_disagreement": float(np.mean(np.sign(runs["net"]["test_out"][-1])
                                               != np.sign(runs["linear"]["test_out"][-1])))}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    store = RunStore(out, config, FREE_KEYS)
    split = regime.dataset(config)
    hs, alphas, seeds = config["hs"], [float(a) for a in config["alphas"]], int(config["seeds"])
    sweeps = {"ntk_width": [("ntk", h, 1.0) for h in hs],
              "mf_width": [("mf", h, float(config["mf_alpha"])) for h in hs],
              "mf_alpha": [("mf", int(config["alpha_width"]), alpha) for alpha in alphas]}
    records: dict[str, list[list[dict]]] = {}
    for sweep, settings in sweeps.items():
        records[sweep] = []
        for scale, h, alpha in settings:
            row = []
            for seed in range(seeds):
                control = sweep == "ntk_width" and h == hs[0]
                key = {"loss": "mse", "scale": scale, "h": h, "alpha": f"{alpha:g}", "seed": seed,
                       **({"control": 1} if control else {})}
                row.append(store.get(key, lambda: mse_run(config, split, scale, h, alpha, seed, control=control)))
            records[sweep].append(row)
            log(f"lazy-is-kernel: {sweep} h={h} alpha={alpha:g}: gap (test) "
                f"{np.mean([r['gap_test_max'] for r in row]):.3g}")
    hinge_hs = config["hinge_hs"]
    records["hinge_width"] = []
    for h in hinge_hs:
        row = [store.get({"loss": "hinge", "scale": "ntk", "h": h, "seed": seed},
                         lambda: hinge_run(config, split, h, seed)) for seed in range(seeds)]
        records["hinge_width"].append(row)
        log(f"lazy-is-kernel: hinge h={h}: gap (test) {np.mean([r['gap_test_max'] for r in row]):.3g}")

    gaps = {sweep: np.array([[r["gap_test_max"] for r in row] for row in rows]).T  # (seeds, settings)
            for sweep, rows in records.items()}
    summary: dict = {"runs_reused_from_records": store.reused, "p": int(config["p"]), "hs": hs,
                     "hinge_hs": hinge_hs}
    for sweep, widths in (("ntk_width", hs), ("mf_width", hs), ("hinge_width", hinge_hs)):
        fit = regime.width_slope(widths, gaps[sweep])
        summary[f"{sweep}_gap_slope"], summary[f"{sweep}_gap_slope_err"] = fit["slope"], fit["slope_err"]
        summary[f"{sweep}_gap_local_slopes"] = fit["local_slopes"]
        summary[f"{sweep}_gap"] = {f"h{h}": regime.mean_sd(gaps[sweep][:, i]) for i, h in enumerate(widths)}
    alpha_fit = regime.width_slope(alphas, gaps["mf_alpha"])  # the same fit, against alpha
    summary.update(mf_alpha_gap_slope=alpha_fit["slope"], mf_alpha_gap_slope_err=alpha_fit["slope_err"],
                   mf_alpha_gap_local_slopes=alpha_fit["local_slopes"],
                   mf_alpha_gap={f"alpha{a:g}": regime.mean_sd(gaps["mf_alpha"][:, i]) for i, a in enumerate(alphas)})
    for sweep in ("ntk_width", "mf_width", "mf_alpha"):
        last = records[sweep][-1]
        summary[f"{sweep}_last"] = {key: regime.mean_sd([r[key] for r in last]) for key in
                                    ("net_test_err", "kernel_test_err", "sign_disagreement", "gap_train_max",
                                     "relative_weight_change", "train_loss")}
    hinge_last = records["hinge_width"][-1]
    summary["hinge_width_last"] = {key: regime.mean_sd([r[key] for r in hinge_last]) for key in
                                   ("net_test_err", "linear_test_err", "sign_disagreement", "net_steps",
                                    "linear_steps", "net_unsatisfied", "linear_unsatisfied")}
    summary["hinge_runs_stopped_by_steps"] = sum(r["net_steps"] >= int(config["steps"]) or r["linear_steps"] >=
                                                 int(config["steps"]) for row in records["hinge_width"] for r in row)
    controls = records["ntk_width"][0]
    summary["control_linearized_gap_max"] = max(r["linearized_gap_max"] for r in controls)
    summary["control_discrete_vs_flow_gap_max"] = max(r["discrete_vs_flow_gap_max"] for r in controls)
    summary["initial_output_max"] = max(r["initial_output_max"] for rows in
                                        (records[s] for s in ("ntk_width", "mf_width", "mf_alpha"))
                                        for row in rows for r in row)
    summary["final_time"] = float(config["lr_fraction"]) * int(config["steps"])

    np.savez(out / "lazy_is_kernel.npz", hs=np.asarray(hs), hinge_hs=np.asarray(hinge_hs), alphas=np.asarray(alphas),
             **{f"gap_{sweep}": values for sweep, values in gaps.items()})
    (out / "runs.json").write_text(json.dumps({sweep: [[{k: v for k, v in r.items() if not k.endswith("tracked")}
                                                         for r in row] for row in rows]
                                               for sweep, rows in records.items()}, indent=1, default=float))
    first = records["ntk_width"]
    trajectories = {h: (np.array(first[i][0]["time"]), np.array(first[i][0]["net_tracked"]),
                        np.array(first[i][0]["kernel_tracked"]),
                        np.array([r["gap_test"] for r in first[i]], dtype=float)) for i, h in enumerate(hs)}
    plotting.save_figure(plotting.lazy_is_kernel_trajectories(trajectories), out, "trajectories.png")
    plotting.save_figure(plotting.lazy_is_kernel_gaps(hs, hinge_hs, alphas, gaps, summary, config), out, "gaps.png")
    summary["figures"] = ["trajectories.png", "gaps.png"]
    return summary
