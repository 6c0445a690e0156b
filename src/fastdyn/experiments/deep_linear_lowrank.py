"""Depth biases gradient flow toward low rank: matrix completion by deep linear factorisations (seed 000, "Deep
linear networks"; Arora, Cohen & Hazan 2018; Arora, Cohen, Hu & Luo 2019; Gunasekar et al. 2017).

Set-up: a PSD rank-r target B* = U diag(s) U^T (m x m) observed on a random symmetric mask (each pair {i, j} with
probability ``fraction``). Gradient flow on L(B) = 1/2 sum_Omega (B - B*)^2 over B = W_L ... W_1 (depth L, square
factors, balanced from B(0) = scale I) and over B = A^2 (one symmetric A, A(0) = sqrt(scale) I), integrated with
DOP853 in fp64 (:mod:`fastdyn.deep_linear`). The end points are compared with the minimum-Frobenius completion (where
depth 1 ends) and the minimum-nuclear-norm completion (cvxpy); the factorised flows are checked against their
end-to-end forms dB/dt = -psi_B(grad) (Arora et al. 2018) and, for A^2, against G B + 2 A G A + B G and the seed's
literal A G A.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import deep_linear as dl, plotting
from .._src import checks

DESCRIPTION = "seed 000: deep linear matrix completion, depth biases gradient flow toward low rank"

SQUARE = "A^2"   # the symmetric depth-2 flow's name beside the depths "L=1".."L=4"


def config(quick: bool) -> dict:
    """Default configuration; ``quick`` (seconds) is 8 x 8, two depths' worth of scales, one seed, short times."""
    return {
        "size": 8 if quick else 20,
        "rank": 2 if quick else 3,
        "singular_values": [3.0, 1.5] if quick else [6.0, 4.0, 2.0],
        # observed fraction of the symmetric pairs {i, j}: scarce (min-nuclear-norm fails) and ample (it recovers B*)
        "fractions": [0.5] if quick else [0.4, 0.6],
        "depths": [1, 2, 3] if quick else [1, 2, 3, 4],
        "symmetric_square": True,
        "scales": [1e-1, 1e-3] if quick else [1e-1, 1e-2, 1e-3, 1e-4],
        "seeds": [0] if quick else [0, 1, 2],
        "t_first": 1e-2,
        "t_end": 300.0 if quick else 3000.0,
        "n_times": 60 if quick else 120,
        # DOP853 tolerances (on the factors' entries) of the sweep; the flow/end-to-end checks use check_rtol
        "rtol": 1e-8,
        "atol": 1e-12,
        "check_scale": 1e-2,
        "check_t_end": 30.0 if quick else 300.0,
        "check_rtol": 1e-11,
    }


def _names(config: dict) -> list[str]:
    return [f"L={depth}" for depth in config["depths"]] + ([SQUARE] if config["symmetric_square"] else [])


def _flow(problem, name: str, scale: float, times, rng, rtol: float, atol: float) -> dl.FlowTrajectory:
    """The factorised flow ``name`` ("L=k" or A^2) from B(0) = scale I."""
    identity = np.eye(problem.size)
    if name == SQUARE:
        return dl.symmetric_square_flow(problem, np.sqrt(scale) * identity, times, rtol=rtol, atol=atol)
    factors = dl.balanced_factors(scale * identity, int(name[2:]), rng)
    return dl.factorised_flow(problem, factors, times, rtol=rtol, atol=atol)


def _relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max_t ||a(t) - b(t)||_F / max_t ||b(t)||_F over trajectories (T, m, m)."""
    return float(np.linalg.norm(a - b, axis=(1, 2)).max() / np.linalg.norm(b, axis=(1, 2)).max())


def _checks(problem, config: dict, rng) -> dict:
    """Factorised flow against its end-to-end form, at check_scale and check_rtol: max relative gaps."""
    times = dl.log_times(config["t_first"], config["check_t_end"], 40)
    tolerances = {"rtol": config["check_rtol"], "atol": config["check_rtol"] * 1e-2}
    scale = config["check_scale"]
    gaps = {}
    for depth in config["depths"]:
        factors = dl.balanced_factors(scale * np.eye(problem.size), depth, rng)
        factorised = dl.factorised_flow(problem, factors, times, **tolerances)
        end_to_end = dl.end_to_end_flow(problem, dl.product(factors), times,
                                        lambda b, g, depth=depth: dl.end_to_end_operator(b, g, depth), **tolerances)
        gaps[f"check_L={depth}_factorised_vs_psi"] = _relative_gap(end_to_end.products, factorised.products)
    if config["symmetric_square"]:
        square = dl.symmetric_square_flow(problem, np.sqrt(scale) * np.eye(problem.size), times, **tolerances)
        b0 = square.products[0]
        for label, operator in (("exact", dl.symmetric_square_operator), ("seed_literal", dl.seed_literal_operator),
                                ("psi_L=2", lambda b, g: dl.end_to_end_operator(b, g, 2))):
            other = dl.end_to_end_flow(problem, b0, times, operator, **tolerances)
            gaps[f"check_{SQUARE}_vs_{label}"] = _relative_gap(other.products, square.products)
    return gaps


def _check_config(config: dict) -> None:
    """Scales, depths, times and tolerances that the library would only meet as a NaN matrix or an odd failure;
    size, rank, fraction and singular_values are checked by :func:`fastdyn.deep_linear.completion_problem`."""
    for key in ("scales", "depths", "fractions", "seeds"):
        if not isinstance(config[key], (list, tuple)) or not config[key]:
            raise TypeError(f"config {key!r} must be a non-empty list, got {config[key]!r}")
    for scale in config["scales"]:
        checks.real("config 'scales' entry", scale)
    for depth in config["depths"]:
        checks.integer("config 'depths' entry", depth)
    for key in ("t_first", "t_end", "rtol", "atol", "check_scale", "check_t_end", "check_rtol"):
        checks.real(f"config {key!r}", config[key])


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    _check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    names, times = _names(config), dl.log_times(config["t_first"], config["t_end"], config["n_times"])
    runs, references, summary = {}, {}, {}
    for fraction in config["fractions"]:
        for seed in config["seeds"]:
            rng = np.random.default_rng(seed)
            problem = dl.completion_problem(config["size"], config["rank"], fraction, config["singular_values"], rng)
            nuclear, gap = dl.min_nuclear_norm_completion(problem)
            references[(fraction, seed)] = {"problem": problem, "nuclear": nuclear, "nuclear_gap": gap,
                                            "frobenius": dl.min_frobenius_completion(problem)}
            log(f"deep-linear-lowrank: fraction {fraction}, seed {seed}: {problem.mask.mean():.3f} of entries "
                f"observed, min-nuclear-norm test error {problem.test_error(nuclear):.3g}")
            for name in names:
                for scale in config["scales"]:
                    runs[(fraction, seed, name, scale)] = run_ = _flow(problem, name, scale, times, rng,
                                                                       config["rtol"], config["atol"])
                    log(f"  {name}, scale {scale:g}: train loss {run_.train_loss[-1]:.2e}, test error "
                        f"{run_.test_error[-1]:.3g}, effective rank {run_.effective_rank[-1]:.2f}")
            if seed == config["seeds"][0]:
                gaps = _checks(problem, config, rng)
                summary.update({f"f={fraction:g}_{key}": value for key, value in gaps.items()})
                log("  checks: " + ", ".join(f"{key} {value:.2e}" for key, value in gaps.items()))

    end_points = _end_points(runs, references)
    _save_arrays(out, runs, references, config)
    first = (config["fractions"][0], config["seeds"][0])
    small = min(config["scales"])
    shown = {name: runs[(*first, name, small)] for name in names}
    target_s = np.asarray(config["singular_values"])
    # incremental learning: when sigma_k(B(t)) first reaches s*_k / 2 (depth 1 moves all at once, to the
    # min-Frobenius completion, whose sigma_k may stay below s*_k / 2: left out)
    half_times = {name: [dl.crossing_time(run_.times, run_.singular_values[:, k], s_k / 2)
                         for k, s_k in enumerate(target_s)] for name, run_ in shown.items() if name != "L=1"}
    for name, values in half_times.items():
        for k, value in enumerate(values):
            summary[f"f={first[0]:g}_seed={first[1]}_{name}_s={small:g}_t_half_{k + 1}"] = (
                value if np.isfinite(value) else None)
    plotting.save_figure(plotting.lowrank_singular_values(shown, target_s, small, first[0], half_times), out,
                         "singular_values.png")
    plotting.save_figure(plotting.lowrank_rank_and_error(shown, references[first]["problem"].test_error(
        references[first]["nuclear"]), small, first[0]), out, "rank_error.png")
    plotting.save_figure(plotting.lowrank_scale(end_points, names, config["scales"], config["fractions"]), out,
                         "scale.png")

    for fraction in config["fractions"]:
        nuclear_errors = [references[(fraction, seed)]["problem"].test_error(references[(fraction, seed)]["nuclear"])
                          for seed in config["seeds"]]
        summary[f"f={fraction:g}_min_nuclear_test_error"] = float(np.mean(nuclear_errors))
        summary[f"f={fraction:g}_min_nuclear_certified_gap_max"] = float(max(
            references[(fraction, seed)]["nuclear_gap"] for seed in config["seeds"]))
        summary[f"f={fraction:g}_min_frobenius_test_error"] = float(np.mean(
            [references[(fraction, seed)]["problem"].test_error(references[(fraction, seed)]["frobenius"])
             for seed in config["seeds"]]))
        summary[f"f={fraction:g}_check_L=1_vs_min_frobenius_from_b0_max"] = float(max(
            row["dist_frobenius_from_b0"] for key, row in end_points.items() if key[0] == fraction and key[2] == "L=1"))
        for name in names:
            for scale in config["scales"]:
                rows = [end_points[(fraction, seed, name, scale)] for seed in config["seeds"]]
                prefix = f"f={fraction:g}_{name}_s={scale:g}"
                summary[f"{prefix}_train_loss_rel_max"] = float(max(row["train_loss_rel"] for row in rows))
                for key in ("test_error", "effective_rank", "nuclear_norm_ratio", "dist_nuclear", "dist_frobenius"):
                    summary[f"{prefix}_{key}"] = float(np.mean([row[key] for row in rows]))
    return summary


def _end_points(runs: dict, references: dict) -> dict:
    """Per run: final train loss over L(0) = 1/2 ||P_Omega B*||^2, test error, effective rank,
    ||B||_* / ||B_nuc||_* and the relative Frobenius distances to the min-nuclear-norm and min-Frobenius (from 0,
    and from the run's own B(0)) completions."""
    rows = {}
    for key, run_ in runs.items():
        reference = references[key[:2]]
        b, nuclear, frobenius = run_.products[-1], reference["nuclear"], reference["frobenius"]
        own = dl.min_frobenius_completion(reference["problem"], run_.products[0])   # B(0) + P_Omega(B* - B(0))
        rows[key] = {
            "train_loss_rel": float(run_.train_loss[-1] / reference["problem"].train_loss(np.zeros_like(b))),
            "test_error": float(run_.test_error[-1]),
            "effective_rank": float(run_.effective_rank[-1]),
            "nuclear_norm_ratio": float(run_.singular_values[-1].sum() / np.linalg.svd(nuclear,
                                                                                      compute_uv=False).sum()),
            "dist_nuclear": float(np.linalg.norm(b - nuclear) / np.linalg.norm(nuclear)),
            "dist_frobenius": float(np.linalg.norm(b - frobenius) / np.linalg.norm(frobenius)),
            "dist_frobenius_from_b0": float(np.linalg.norm(b - own) / np.linalg.norm(own)),
        }
    return rows


def _save_arrays(out: Path, runs: dict, references: dict, config: dict) -> None:
    """Targets, masks, min-nuclear-norm completions; per run the curves and the end point B, and the singular
    values over time (float32) for the first seed only (all seeds would be ~3 MB)."""
    arrays = {"times": next(iter(runs.values())).times, "scales": np.asarray(config["scales"])}
    for (fraction, seed), reference in references.items():
        prefix = f"f={fraction:g}/seed={seed}"
        arrays.update({f"{prefix}/target": reference["problem"].target, f"{prefix}/mask": reference["problem"].mask,
                       f"{prefix}/min_nuclear": reference["nuclear"]})
    for (fraction, seed, name, scale), run_ in runs.items():
        prefix = f"f={fraction:g}/seed={seed}/{name}/scale={scale:g}"
        arrays.update({f"{prefix}/train_loss": run_.train_loss, f"{prefix}/test_error": run_.test_error,
                       f"{prefix}/effective_rank": run_.effective_rank, f"{prefix}/final": run_.products[-1]})
        if seed == config["seeds"][0]:
            arrays[f"{prefix}/singular_values"] = run_.singular_values.astype(np.float32)
    np.savez_compressed(out / "trajectories.npz", **arrays)
