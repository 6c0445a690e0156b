"""Gaussian elimination over GF(2) learns a parity from about d samples (seed 000: "given 2d samples we can recover
I"), with the sharp threshold at n = d that the rank of a random GF(2) matrix predicts.

For each d in ``dims`` and each number of samples n in d + ``excess`` (and at n = 2d), ``trials`` parity problems
(a fresh subset I of random size and fresh uniform samples each): the fraction that :func:`fastdyn.parity.solve_gf2`
recovers I uniquely (every recovered subset is checked against the true one), against
:func:`fastdyn.parity.full_rank_probability`, the exact probability that n uniform equations have rank d. Below
n = d the answer is never unique, and the solver says so (its nullity, d - rank >= d - n). The time of one solve
is recorded for each d up to ``time_dims`` at n = 2d.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import parity, plotting
from .._src import checks
from ..data import parity as parity_data

DESCRIPTION = "seed 000: GF(2) elimination recovers a parity from n ~ d samples, against the full-rank probability"


def config(quick: bool) -> dict:
    return {
        "dims": [16, 64] if quick else [16, 64, 256],
        "excess": [-2, 0, 1, 2, 4, 8] if quick else [-4, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16],
        "trials": 60 if quick else 400,
        "time_dims": [64, 256] if quick else [64, 256, 1024, 4096],
        "seed": 0,
    }


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    trials = checks.integer("config 'trials'", config["trials"])
    dims = [checks.integer("config 'dims' entry", d) for d in config["dims"]]
    rng = np.random.default_rng(config["seed"])
    summary: dict = {}
    curves = {}
    for d in dims:
        sizes = sorted({d + int(e) for e in config["excess"] if d + int(e) >= 1} | {2 * d})
        measured, wrong, nullity_ok = [], 0, True
        for n in sizes:
            successes = 0
            for _ in range(trials):
                k = int(rng.integers(1, d + 1))
                split = parity_data(n, d, k=k, p_test=1, seed=int(rng.integers(2 ** 31)))
                result = parity.solve_gf2(split.x, split.y)
                summary["backend"] = result.backend
                nullity_ok &= result.consistent and result.nullity >= d - n
                if result.unique:
                    successes += 1
                    wrong += result.subset.tolist() != split.info["subset"]
            measured.append(successes / trials)
        predicted = parity.full_rank_probability(np.array(sizes), d)
        sem = np.sqrt(np.maximum(predicted * (1 - predicted), 1.0 / trials) / trials)
        z = (np.array(measured) - predicted) / sem
        curves[d] = {"n": np.array(sizes), "measured": np.array(measured), "predicted": predicted}
        summary[f"d={d}_max_abs_z"] = float(np.max(np.abs(z)))
        summary[f"d={d}_wrong_subsets"] = int(wrong)
        summary[f"d={d}_nullity_at_least_d_minus_n"] = bool(nullity_ok)
        for n, m, p in zip(sizes, measured, predicted):
            summary[f"d={d}_n={n}_success"] = m
            summary[f"d={d}_n={n}_predicted"] = float(p)
        log(f"parity-elimination: d = {d}: success at n = d {measured[sizes.index(d)]:.3f} (predicted "
            f"{predicted[sizes.index(d)]:.3f}), max |z| {summary[f'd={d}_max_abs_z']:.2f}, {wrong} wrong subsets")

    timings = {}
    for d in config["time_dims"]:
        split = parity_data(2 * int(d), int(d), p_test=1, seed=int(d))
        start = time.perf_counter()
        result = parity.solve_gf2(split.x, split.y)
        timings[int(d)] = time.perf_counter() - start
        summary[f"time_d={d}_n={2 * d}"] = timings[int(d)]
        summary[f"time_d={d}_correct"] = bool(result.unique and result.subset.tolist() == split.info["subset"])
    # the limit d -> infinity at n = d + m: prod_{j > m} (1 - 2^-j)
    summary["limit_at_n=d"] = float(math.prod(1 - 2.0 ** -j for j in range(1, 200)))

    np.savez_compressed(out / "success.npz", **{f"d={d}/{key}": value for d, c in curves.items()
                                                 for key, value in c.items()})
    plotting.save_figure(plotting.parity_elimination_threshold(curves, trials, timings), out, "threshold.png")
    return summary
