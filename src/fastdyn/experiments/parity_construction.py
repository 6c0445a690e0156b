"""The seed's ReLU network for a parity (seed 000, "The contrapositive of simplicity"), checked input by input.

For every d in ``dims`` and four subsets I per d (|I| = 1, |I| = max(1, d // 2), I = [d], and I with each
coordinate in it with probability 1/2, at least one), :func:`fastdyn.parity.relu_parity_network` builds
FCNet [d, 4 ceil(|I| / 2), 1] and its output is compared with chi_I on every x in {-1, +1}^d (2^d inputs,
enumerated in blocks of ``chunk`` rows), in float64 and float32. For d = ``large_d`` (100) the same four kinds of
subsets are checked on ``large_samples`` uniform random inputs. The network is a sum of step functions of
s(x) = sum_{i in I} (1 - x_i) / 2, so its values on the cube are sums of small dyadic numbers: the error is exactly
0 in both precisions, not merely small.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from ..parity import all_inputs, parity_of, random_inputs, relu_parity_network

DESCRIPTION = "seed 000: the 4d-ReLU parity network is exact on all of {-1,+1}^d (d <= 20) and on 1e6 inputs at d=100"

SUBSET_KINDS = ("one", "half", "full", "random")


def config(quick: bool) -> dict:
    return {"dims": list(range(1, 13 if quick else 21)), "chunk": 2 ** 16, "large_d": 100,
            "large_samples": 20_000 if quick else 1_000_000, "plot_d": 7, "seed": 0, "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    dims = config["dims"]
    if not isinstance(dims, list) or not dims:
        raise ValueError(f"config 'dims' must be a non-empty list of dimensions, got {dims!r}")
    for d in dims:
        checks.integer("config 'dims' entry", d)
        if d > 24:
            raise ValueError(f"config 'dims' entries must be <= 24 (2^d inputs are enumerated), got {d}")
    for key in ("chunk", "large_samples", "large_d", "plot_d"):
        checks.integer(f"config {key!r}", config[key])
    checks.integer("config 'seed'", config["seed"], minimum=0)


def subsets_for(d: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The four subsets checked at dimension d (sorted index arrays), keyed by :data:`SUBSET_KINDS`."""
    random = np.flatnonzero(rng.random(d) < 0.5)
    if random.size == 0:
        random = rng.choice(d, size=1)
    return {"one": np.sort(rng.choice(d, size=1, replace=False)),
            "half": np.sort(rng.choice(d, size=max(1, d // 2), replace=False)),
            "full": np.arange(d), "random": random}


def max_errors(networks: dict[torch.dtype, torch.nn.Module], subset: np.ndarray, blocks) -> dict[torch.dtype, float]:
    """max |f(x) - chi_I(x)| over the inputs of ``blocks`` (an iterable of (N, d) float64 tensors), per precision;
    ``networks`` maps a dtype to the same construction in that dtype."""
    worst = {dtype: 0.0 for dtype in networks}
    with torch.no_grad():
        for x in blocks:
            target = parity_of(x, subset)
            for dtype, net in networks.items():
                error = (net(x.to(dtype)).squeeze(1).to(torch.float64) - target).abs().max()
                worst[dtype] = max(worst[dtype], float(error))
    return worst


def random_blocks(d: int, n: int, chunk: int, generator: torch.Generator):
    """Uniform random inputs of {-1, +1}^d, n in all, as (<= chunk, d) float64 blocks."""
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        yield random_inputs(size, d, generator=generator)


def check_subset(d: int, subset: np.ndarray, blocks) -> dict:
    """One record: |I|, the hidden width and the float64 / float32 max errors of the construction over blocks."""
    networks = {dtype: relu_parity_network(d, subset, dtype=dtype) for dtype in (torch.float64, torch.float32)}
    errors = max_errors(networks, subset, blocks)
    return {"d": d, "size": int(subset.size), "width": int(networks[torch.float64].dims[1]),
            "max_error_float64": errors[torch.float64], "max_error_float32": errors[torch.float32]}


def step_profile(d: int, points: int = 801) -> dict[str, np.ndarray]:
    """The network for I = [d] along the line x = (1 - 2 s / d) (1, ..., 1), on which s(x) = s for s in [-0.5,
    d + 0.5]: s (points,), f(s) (points,), and the integers 0..d with chi_I = (-1)^s (d + 1,)."""
    net = relu_parity_network(d, np.arange(d))
    s = torch.linspace(-0.5, d + 0.5, points, dtype=torch.float64)
    with torch.no_grad():
        f = net((1.0 - 2.0 * s / d)[:, None].expand(points, d)).squeeze(1)
    integers = np.arange(d + 1)
    return {"s": s.numpy(), "f": f.numpy(), "integers": integers, "parity": (-1.0) ** integers}


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    rng = np.random.default_rng(config["seed"])
    chunk = int(config["chunk"])
    records = []
    for d in config["dims"]:
        d = int(d)
        for kind, subset in subsets_for(d, rng).items():
            blocks = (all_inputs(d, start=start, stop=min(start + chunk, 2 ** d)) for start in range(0, 2 ** d, chunk))
            records.append({"kind": kind, "inputs": 2 ** d, "enumerated": True, **check_subset(d, subset, blocks)})
        log(f"parity-construction: d = {d}: max error {max(r['max_error_float64'] for r in records[-4:]):g} "
            f"on all {2 ** d} inputs")
    large_d, n_large = int(config["large_d"]), int(config["large_samples"])
    generator = torch.Generator().manual_seed(int(config["seed"]))
    for kind, subset in subsets_for(large_d, rng).items():
        records.append({"kind": kind, "inputs": n_large, "enumerated": False,
                        **check_subset(large_d, subset, random_blocks(large_d, n_large, chunk, generator))})
    log(f"parity-construction: d = {large_d}: max error "
        f"{max(r['max_error_float64'] for r in records[-4:]):g} on {n_large} random inputs per subset")

    summary: dict = {}
    for name in ("max_error_float64", "max_error_float32"):
        summary[f"{name}_all"] = max(r[name] for r in records)
    summary["max_width_over_4d"] = max(r["width"] / (4 * r["d"]) for r in records)
    summary["inputs_checked_total"] = int(sum(r["inputs"] for r in records))
    summary["subsets_checked"] = len(records)
    for d in sorted({r["d"] for r in records}):
        rows = [r for r in records if r["d"] == d]
        summary[f"d={d}_max_error_float64"] = max(r["max_error_float64"] for r in rows)
        summary[f"d={d}_max_error_float32"] = max(r["max_error_float32"] for r in rows)
        summary[f"d={d}_widths"] = [r["width"] for r in rows]
        summary[f"d={d}_subset_sizes"] = [r["size"] for r in rows]
        summary[f"d={d}_inputs_per_subset"] = rows[0]["inputs"]

    profile = step_profile(int(config["plot_d"]))
    columns = {key: np.array([r[key] for r in records]) for key in records[0]}
    np.savez_compressed(out / "construction.npz", **columns, **{f"profile_{k}": v for k, v in profile.items()})
    plotting.save_figure(plotting.parity_construction_figure(profile, columns), out, "construction.png")
    return summary
