"""The lazy-feature crossover: test error and compression against alpha at fixed p, for two or three widths h.

Seed 002 / Geiger et al. 2020 ("Disentangling feature and lazy training in deep neural networks"): the output scale
alpha of the alpha-trick moves a network from the feature regime (small alpha: the weights travel far, x_perp is
compressed) to the lazy regime (large alpha: a kernel method with the initial NTK). Both ends are plateaus; the
crossover alpha* between them may depend on the width h. Geiger et al. (arXiv:1906.08034) put the output scale on an
NTK-scaled last layer, F = (a/sqrt(h)) sum_n beta_n relu(...), and find a* = 1/sqrt(h). fastdyn's network is
mean-field scaled, F = alpha (1/h) sum_n ..., so alpha = a sqrt(h) and their finding reads alpha* ~ h^0: a crossover
at alpha of order 1 whatever the width. The sweep measures the exponent and reports both readings. Every network is
trained to zero hinge loss (or its cap).

alpha* of one width is where the seed-mean test error, interpolated linearly in log alpha, crosses the midpoint of
its two plateaus (the means over the ``plateau_points`` smallest and largest alphas); ``alpha_star_lambda`` is the
same for log Lambda_coord (the compression: less noisy than a test error). Error bars: the bootstrap over seeds.
The exponent of alpha* against h is fitted with the same bootstrap. Each run's record is kept
under ``runs/`` (an interrupted sweep resumes there).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import _seed002 as common
from ._store import RunStore
from .. import plotting

DESCRIPTION = "seed 002: test error and Lambda vs alpha (1e-6..1e3) at two or three widths, the crossover alpha*(h)"

FREE_KEYS = ("alphas", "hs", "seeds", "plateau_points", "n_boot", "device")  # change no run (RunStore)


def config(quick: bool) -> dict:
    sizes = ({"dataset": "stripe", "d": 5, "p": 128, "hs": [50, 100], "alphas": [1e-4, 1e-2, 1.0, 1e2, 1e4],
              "seeds": 3, "p_test": 1000} if quick else
             {"dataset": "stripe", "d": 10, "p": 128, "hs": [50, 100, 200],
              "alphas": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 0.316, 1.0, 3.16, 10.0, 31.6, 100.0, 1e3],
              "seeds": 3, "p_test": 2000})
    shared = common.shared_config(quick, max_steps=2_000_000, converged=True)
    for key in common.PLATEAU_ALPHAS:  # the sweep sets alpha itself
        del shared[key]
    return {**sizes, "plateau_points": 2, "n_boot": 1000, "device": "cpu", **shared}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    alphas = [float(a) for a in config["alphas"]]
    if len(alphas) < 2 * int(config["plateau_points"]) + 1 or alphas != sorted(alphas) or min(alphas) <= 0:
        raise ValueError("alphas: expected increasing positive values, at least 2 * plateau_points + 1 of them, "
                         f"got {config['alphas']}")
    return _run(config, out, alphas, progress)


def _one_run(config: dict, h: int, alpha: float, seed: int) -> dict:
    device = config["device"]
    split = common.dataset(config["dataset"], int(config["p"]), int(config["d"]), seed=seed,
                           p_test=int(config["p_test"]), device=device)
    model = common.network(int(config["d"]), h, seed, device)
    result = common.fit(model, split, alpha, config, record_weights=False)
    omega, omega0 = result.model.omega.detach(), model.omega.detach()
    return {**common.run_record(result), "n_test": int(split.x_test.shape[0]),
            "lambda_norm": common.compression_norm(omega), "lambda_coordinate": common.compression_coordinate(omega),
            "relative_weight_change": float((omega - omega0).norm() / omega0.norm())}


def _run(config: dict, out: Path, alphas: list[float], progress: bool) -> dict:
    hs, seeds = [int(h) for h in config["hs"]], int(config["seeds"])
    store = RunStore(out, config, FREE_KEYS)
    shape = (len(hs), seeds, len(alphas))
    fields = ("test_err", "lambda_norm", "lambda_coordinate", "relative_weight_change")
    values = {field: np.full(shape, np.nan) for field in fields}
    rows = []
    for i, h in enumerate(hs):
        for k, alpha in enumerate(alphas):
            for seed in range(seeds):
                key = {"h": h, "alpha": f"{alpha:g}", "seed": seed}
                record = store.get(key, lambda: _one_run(config, h, alpha, seed))
                rows.append({**key, **record})
                for field in fields:
                    values[field][i, seed, k] = record[field]
                if progress:
                    print(f"[alpha-sweep] h={h} alpha={alpha:g} seed={seed}: test_err={record['test_err']:.4f} "
                          f"Lambda_coord={record['lambda_coordinate']:.2f} {record['stop_reason']}", flush=True)
    (out / "runs.json").write_text(json.dumps(rows, indent=1, default=float))
    np.savez(out / "sweep.npz", hs=np.asarray(hs), alphas=np.asarray(alphas), **values)

    n_plateau, rng = int(config["plateau_points"]), np.random.default_rng(0)
    n_test = rows[0]["n_test"]
    summary: dict = {**common.convergence(rows), "runs_reused_from_records": store.reused}
    # alpha* from two curves: the test error, and log Lambda_coord (the compression, which has less noise)
    curves = {"alpha_star": values["test_err"], "alpha_star_lambda": np.log(values["lambda_coordinate"])}
    crossovers = {name: [] for name in curves}
    for i, h in enumerate(hs):
        part = {}
        for name, curve in curves.items():
            star = crossover(alphas, curve[i].mean(0), n_plateau)
            boot = [crossover(alphas, curve[i][rng.integers(0, seeds, seeds)].mean(0), n_plateau)
                    for _ in range(int(config["n_boot"]))]
            crossovers[name].append((star, boot))
            part[name] = star
            part[f"log10_{name}_err"] = float(np.nanstd(np.log10(boot)))
        summary[f"h{h}"] = {**part, **plateau_values(values["test_err"][i], n_plateau, n_test),
                            **{f"lambda_coordinate_{end}": float(v) for end, v in zip(
                                ("smallest_alpha", "largest_alpha"), values["lambda_coordinate"][i].mean(0)[[0, -1]])}}
    exponents = {}
    for name, found in crossovers.items():
        exponents[name] = _exponent(hs, [star for star, _ in found], np.asarray([boot for _, boot in found]))
        summary[f"{name}_exponent"], summary[f"{name}_exponent_err"] = exponents[name]
    # Geiger et al.'s a* ~ h^(-1/2) in their NTK-scaled output is alpha* ~ h^0 here (alpha = a sqrt(h))
    summary.update(alpha_star_exponent_theory=0.0, ntk_scaled_a_star_exponent=exponents["alpha_star"][0] - 0.5,
                   ntk_scaled_a_star_exponent_theory=-0.5)
    _plot(out, hs, alphas, values, crossovers, exponents, config)
    summary["figures"] = ["alpha_sweep.png"]
    return summary


def crossover(alphas, errors, plateau_points: int) -> float:
    """alpha where ``errors`` (n_alpha,), linear in log alpha between the sweep's points, first crosses the midpoint
    of its plateaus (means of the ``plateau_points`` first and last values); NaN if it never does."""
    errors = np.asarray(errors, dtype=float)
    middle = 0.5 * (errors[:plateau_points].mean() + errors[-plateau_points:].mean())
    side = np.sign(errors - middle)
    log_alpha = np.log(np.asarray(alphas, dtype=float))
    for k in range(len(errors) - 1):
        if side[k] == 0:
            return float(alphas[k])
        if side[k] != side[k + 1]:
            fraction = (middle - errors[k]) / (errors[k + 1] - errors[k])
            return float(np.exp(log_alpha[k] + fraction * (log_alpha[k + 1] - log_alpha[k])))
    return math.nan


def plateau_values(errors, plateau_points: int, n_test: int) -> dict:
    """The feature (smallest alphas) and lazy (largest alphas) plateaus of ``errors`` (seeds, n_alpha): the seed-mean
    test error at each end, and how far apart the ``plateau_points`` points of one end are, in standard errors
    (seed spread and binomial noise; |value| <~ 2: flat)."""
    out = {}
    for end, block in (("feature", errors[:, :plateau_points]), ("lazy", errors[:, -plateau_points:])):
        mean = block.mean(0)
        variance = common.variance_of_mean(block, n_test)
        out[f"{end}_plateau_err"] = float(mean.mean())
        out[f"{end}_plateau_step_in_standard_errors"] = float((mean[-1] - mean[0]) / np.sqrt(np.sum(variance)))
    return out


def _exponent(hs, crossovers, draws) -> tuple[float, float]:
    """Slope of log alpha* against log h and its bootstrap standard deviation (NaN with < 2 finite widths)."""
    logh = np.log(np.asarray(hs, dtype=float))

    def slope(stars):
        stars = np.asarray(stars, dtype=float)
        used = np.isfinite(stars) & (stars > 0)
        return float(np.polyfit(logh[used], np.log(stars[used]), 1)[0]) if used.sum() >= 2 else math.nan

    boot = np.asarray([slope(draws[:, b]) for b in range(draws.shape[1])])
    return slope(crossovers), float(np.nanstd(boot)) if np.isfinite(boot).any() else math.nan


def _plot(out: Path, hs, alphas, values, crossovers, exponents, config) -> None:
    fig, axes = plotting.new_figure(3, width=4.3)
    colours = plotting.viridis_colours(len(hs))
    for i, h in enumerate(hs):
        for ax, field, name in zip(axes[0, :2], ("test_err", "lambda_coordinate"), ("alpha_star", "alpha_star_lambda")):
            block = values[field][i]
            ax.errorbar(alphas, block.mean(0), yerr=block.std(0), marker="o", ms=3, capsize=2, color=colours[i],
                        label=f"h={h}")
            star = crossovers[name][i][0]
            if np.isfinite(star):
                ax.axvline(star, color=colours[i], ls=":", lw=1)
    axes[0, 0].set_ylabel("test error")
    axes[0, 0].set_title(f"{config['dataset']}, d={config['d']}, p={config['p']}; dotted: alpha*")
    axes[0, 1].set_ylabel("Lambda_coord")
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_title("Lambda_coord = RMS(w_1) / mean_j RMS(w_j), end")
    for ax in axes[0, :2]:
        ax.set_xscale("log")
        ax.set_xlabel("alpha")
        ax.legend(fontsize=7)
    ax = axes[0, 2]
    for (name, label), marker in zip((("alpha_star", "from the test error"), ("alpha_star_lambda", "from Lambda_coord")),
                                     "os"):
        stars = [star for star, _ in crossovers[name]]
        errors = [np.nanstd(np.log10(boot)) for _, boot in crossovers[name]]
        slope, slope_err = exponents[name]
        ax.errorbar(hs, stars, yerr=[np.asarray(stars) * (1 - 10.0 ** -np.asarray(errors)),
                                     np.asarray(stars) * (10.0 ** np.asarray(errors) - 1)],
                    fmt=marker, capsize=2, label=f"{label}: h^({slope:.2f} +- {slope_err:.2f})")
    finite = [(h, star) for h, (star, _) in zip(hs, crossovers["alpha_star"]) if np.isfinite(star)]
    if finite:
        (h0, star0), h_line = finite[0], np.geomspace(min(hs), max(hs), 20)
        ax.plot(h_line, np.full_like(h_line, star0), "k--", lw=1,
                label="h^0: Geiger et al.'s a* = h^-1/2, a = alpha/sqrt(h)")
        ax.plot(h_line, star0 * (h_line / h0) ** -0.5, "k:", lw=1, label="h^-1/2 (for contrast)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plotting.log_ticks(ax, hs)
    ax.set_xlabel("width h")
    ax.set_ylabel("crossover alpha*")
    ax.set_title("crossover against width, +- bootstrap sd")
    ax.legend(fontsize=6)
    plotting.save_figure(fig, out, "alpha_sweep.png")
