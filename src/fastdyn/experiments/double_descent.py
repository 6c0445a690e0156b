"""Double descent: test risk against the number of parameters, through the interpolation threshold (seed 000).

* **ridgeless**: minimum-norm least squares on isotropic Gaussian features, n samples and d = gamma n features,
  beta uniform on the sphere of radius sqrt(signal), noise variance ``noise``; the excess risk ||beta_hat - beta||^2
  over ``seeds`` draws against :func:`fastdyn.theory.ridgeless_risk` (Hastie et al. 2019, the proportional limit,
  and the exact finite-n expectation) and, with ridge, against :func:`fastdyn.theory.ridge_risk`. The risk is
  heavy-tailed near gamma = 1 (its variance is infinite for |d - n| < 4), so the agreement is measured by z-scores
  only for |d - n| >= ``z_gap``.
* **random features** (Mei & Montanari 2019): ReLU features relu(W x / sqrt(d)) of Gaussian inputs, W uniform on the
  sphere, a linear target plus noise; the minimum-norm (and a small-ridge) fit's test error against N / n.
* **network**: a two-layer ReLU network (:class:`fastdyn.FCNet` [d, width, 1]), both layers trained full batch by
  Adam on the squared loss of the +-1 labels of the digits task with a fraction of the training labels flipped,
  test error against the number of parameters P = width (d + 2) + 1 around P = n. A run whose training loss is still
  above ``network_fit_tol`` at ``network_steps`` is reported as not interpolating.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .. import linear, plotting, theory
from .._src.optional import require
from ..data.digits import digits
from ..models import FCNet

DESCRIPTION = "seed 000: double descent of min-norm least squares (vs Hastie et al.), random features and a 2-layer net"


def config(quick: bool) -> dict:
    return {
        "n": 60 if quick else 200, "signal": 1.0, "noise": 0.25, "seeds": 20 if quick else 200, "seed": 0,
        "gammas": [0.2, 0.5, 0.8, 1.0, 1.25, 2.0, 5.0] if quick else
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0, 3.0, 4.0, 6.0, 10.0],
        "ridges": [0.05, 0.25], "z_gap": 5,
        "rf_d": 20, "rf_n": 50 if quick else 200, "rf_test": 500 if quick else 2000, "rf_seeds": 4 if quick else 20,
        "rf_ratios": [0.25, 0.5, 1.0, 2.0, 4.0] if quick else
        [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0],
        "rf_ridge": 1e-3,
        "network_n": 100 if quick else 200, "network_d": 10, "network_label_noise": 0.2,
        "network_widths": [2, 8, 32] if quick else [1, 2, 4, 8, 12, 16, 18, 20, 24, 32, 48, 64, 128, 256, 1024],
        "network_seeds": 1 if quick else 4, "network_steps": 500 if quick else 20_000, "network_lr": 3e-3,
        "network_fit_tol": 1e-3, "threads": 1,
    }


def ridgeless_part(config: dict, rng: np.random.Generator) -> dict:
    """Risks (seeds,) of the min-norm fit and of each ridge at every gamma."""
    n, signal, noise = int(config["n"]), float(config["signal"]), float(config["noise"])
    risks = {ridge: [] for ridge in [0.0, *config["ridges"]]}
    gammas = []
    for gamma in config["gammas"]:
        d = max(1, round(gamma * n))
        gammas.append(d / n)
        draws = {ridge: [] for ridge in risks}
        for _ in range(int(config["seeds"])):
            beta = rng.standard_normal(d)
            beta *= math.sqrt(signal) / np.linalg.norm(beta)
            x = rng.standard_normal((n, d))
            y = x @ beta + math.sqrt(noise) * rng.standard_normal(n)
            for ridge in risks:
                draws[ridge].append(float(np.sum((linear.ridge_fit(x, y, ridge) - beta) ** 2)))
        for ridge in risks:
            risks[ridge].append(draws[ridge])
    return {"gammas": np.array(gammas), "risks": {ridge: np.array(r) for ridge, r in risks.items()}}


def random_features_part(config: dict, rng: np.random.Generator) -> dict:
    """Test mean squared errors (ratios, seeds) of the min-norm and the small-ridge random-features fits."""
    d, n, n_test = int(config["rf_d"]), int(config["rf_n"]), int(config["rf_test"])
    errors = {"min-norm": [], "ridge": []}
    ratios = []
    for ratio in config["rf_ratios"]:
        n_features = max(1, round(ratio * n))
        ratios.append(n_features / n)
        rows = {name: [] for name in errors}
        for _ in range(int(config["rf_seeds"])):
            beta = rng.standard_normal(d) / math.sqrt(d)
            x, x_test = rng.standard_normal((n, d)), rng.standard_normal((n_test, d))
            y = x @ beta + math.sqrt(config["noise"]) * rng.standard_normal(n)
            weights = linear.sphere_weights(n_features, d, rng)
            phi, phi_test = linear.relu_features(x, weights), linear.relu_features(x_test, weights)
            for name, ridge in (("min-norm", 0.0), ("ridge", float(config["rf_ridge"]))):
                a = linear.ridge_fit(phi, y, ridge)
                rows[name].append(float(np.mean((phi_test @ a - x_test @ beta) ** 2)))
        for name in errors:
            errors[name].append(rows[name])
    return {"ratios": np.array(ratios), "errors": {name: np.array(e) for name, e in errors.items()}}


def network_run(split, width: int, config: dict, seed: int) -> dict:
    """Train FCNet [d, width, 1] on the split's (noisy) +-1 labels by full-batch Adam on the mean squared error."""
    torch.manual_seed(seed)
    x, y, x_test, y_test = (torch.as_tensor(a, dtype=torch.float32) for a in split)
    model = FCNet([x.shape[1], width, 1])
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["network_lr"]))
    for _ in range(int(config["network_steps"])):
        optimiser.zero_grad()
        loss = torch.mean((model(x).squeeze(1) - y) ** 2)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        train_loss = float(torch.mean((model(x).squeeze(1) - y) ** 2))
        out = model(x_test).squeeze(1)
        return {"train_loss": train_loss, "test_error": float(torch.mean((torch.sign(out) != y_test).float())),
                "test_mse": float(torch.mean((out - y_test) ** 2)),
                "parameters": sum(p.numel() for p in model.parameters())}


def network_part(config: dict, progress: bool) -> list[dict]:
    """One record per (seed, width): :func:`network_run` on the digits task with flipped training labels."""
    n, d = int(config["network_n"]), int(config["network_d"])
    rows = []
    bar = None
    if progress:
        tqdm = require("tqdm.auto", "experiments", "fastdyn run double-descent (progress bars)").tqdm
        bar = tqdm(total=int(config["network_seeds"]) * len(config["network_widths"]), desc="networks", unit="run")
    for seed in range(int(config["network_seeds"])):
        split = digits(n, d=d, seed=seed, p_test=1000)
        y = np.array(split.y, copy=True)
        flip = np.random.default_rng(seed).random(n) < float(config["network_label_noise"])
        y[flip] = -y[flip]
        for width in config["network_widths"]:
            rows.append({"seed": seed, "width": int(width),
                         **network_run((split.x, y, split.x_test, split.y_test), int(width), config, seed)})
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return rows


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    rng = np.random.default_rng(config["seed"])
    n, signal, noise = int(config["n"]), float(config["signal"]), float(config["noise"])
    summary: dict = {}

    ridgeless = ridgeless_part(config, rng)
    gammas = ridgeless["gammas"]
    min_norm = ridgeless["risks"][0.0]
    finite = theory.ridgeless_risk(gammas, signal=signal, noise=noise, n=n)
    limit = theory.ridgeless_risk(gammas, signal=signal, noise=noise)
    mean, sem = min_norm.mean(axis=1), min_norm.std(axis=1, ddof=1) / math.sqrt(min_norm.shape[1])
    away = np.abs(gammas * n - n) >= int(config["z_gap"])
    z = (mean - finite) / sem
    summary["ridgeless_max_abs_z"] = float(np.max(np.abs(z[away])))
    summary["ridgeless_max_rel_diff_finite_n"] = float(np.max(np.abs(mean[away] / finite[away] - 1)))
    summary["ridgeless_peak_gamma"] = float(gammas[np.argmax(np.median(min_norm, axis=1))])
    for gamma, m, s, f, lim, med in zip(gammas, mean, sem, finite, limit, np.median(min_norm, axis=1)):
        summary[f"gamma={gamma:g}_risk"] = float(m)
        summary[f"gamma={gamma:g}_risk_sem"] = float(s)
        summary[f"gamma={gamma:g}_risk_median"] = float(med)
        summary[f"gamma={gamma:g}_theory_finite_n"] = float(f)
        summary[f"gamma={gamma:g}_theory_limit"] = float(lim)
    for ridge in config["ridges"]:
        measured = ridgeless["risks"][ridge].mean(axis=1)
        predicted = theory.ridge_risk(gammas, ridge, signal=signal, noise=noise)
        summary[f"ridge={ridge:g}_max_rel_diff_limit"] = float(np.max(np.abs(measured / predicted - 1)))
        summary[f"ridge={ridge:g}_peak_risk"] = float(measured.max())
    log(f"double-descent: ridgeless risk against the finite-n theory: max |z| = {summary['ridgeless_max_abs_z']:.2f}"
        f" for |d - n| >= {config['z_gap']}")

    features = random_features_part(config, rng)
    median_rf = {name: np.median(e, axis=1) for name, e in features["errors"].items()}
    summary["rf_peak_ratio"] = float(features["ratios"][np.argmax(median_rf["min-norm"])])
    summary["rf_peak_error"] = float(median_rf["min-norm"].max())
    summary["rf_error_at_largest_ratio"] = float(median_rf["min-norm"][-1])
    summary["rf_ridge_peak_error"] = float(median_rf["ridge"].max())
    log(f"double-descent: random features peak at N/n = {summary['rf_peak_ratio']:g}")

    rows = network_part(config, progress) if config["network_seeds"] > 0 else []
    if rows:
        widths = sorted({row["width"] for row in rows})
        by_width = {w: [row for row in rows if row["width"] == w] for w in widths}
        test = {w: np.mean([row["test_error"] for row in r]) for w, r in by_width.items()}
        fitted = sum(row["train_loss"] <= config["network_fit_tol"] for row in rows)
        summary["network_interpolating_runs"] = f"{fitted}/{len(rows)}"
        summary["network_peak_width"] = int(max(test, key=test.get))
        summary["network_threshold_width"] = float((int(config["network_n"]) - 1) / (int(config["network_d"]) + 2))
        for w in widths:
            summary[f"width={w}_test_error"] = float(test[w])
            summary[f"width={w}_train_loss"] = float(np.mean([row["train_loss"] for row in by_width[w]]))
        log(f"double-descent: network test error peaks at width {summary['network_peak_width']} "
            f"(P = n at width {summary['network_threshold_width']:.1f})")

    np.savez_compressed(out / "risks.npz", gammas=gammas,
                        **{f"ridge={r:g}": v for r, v in ridgeless["risks"].items()},
                        rf_ratios=features["ratios"], **{f"rf/{k}": v for k, v in features["errors"].items()})
    (out / "network.json").write_text(json.dumps(rows, indent=1))
    plotting.save_figure(plotting.double_descent_ridgeless(gammas, ridgeless["risks"], n, signal, noise), out,
                         "ridgeless.png")
    plotting.save_figure(plotting.double_descent_features(features["ratios"], features["errors"], config["rf_ridge"],
                                                          rows, config), out, "features.png")
    return summary
