"""The seed's lemma measured (seed 000, "The contrapositive of simplicity"): gradients barely correlate with parities.

For g_i = d f / d x_i of a network f and the inner product <u, v> = E_x u(x) v(x) on x uniform in {-1, +1}^d, the
lemma bounds E_I <chi_I, g_i>^2 over uniform I by E_x g_i^2 / 2^d; by Parseval (the chi_I are an orthonormal basis)
it is an identity. Parts:

* **exact** (d in ``dims``, ``seeds`` initialisations of FCNet [d, ``width_factor`` d, 1], float64): every
  <chi_I, g_i> by the Walsh-Hadamard transform of g_i on all 2^d inputs. Reported: the identity signal / bound
  (1 to rounding); the log2 slope against d of the signal (about -1 minus the slope of the poly(d) factor
  E_x g_i^2, which is tracked separately); the average over the subsets of fixed size |I| = k (k = 0, 1, 2, d // 2,
  d), where the uniform average's mass sits; and the largest <chi_I, g_i>^2 over all I, with the |I| attaining it.
* **weights** (d in ``weight_dims``): the same for the derivative with respect to each first-layer weight,
  d f / d W_jk (the SGD update uses d/dw; Parseval applies per coordinate), from per-sample gradients
  (``torch.func``).
* **monte carlo** (d in ``mc_dims``, above enumeration): :func:`fastdyn.parity.gradient_signal` with
  ``mc_samples`` inputs. The bound 2^-d E g^2 is then far below the estimator's noise floor E g^2 / n_samples: the
  estimate equals the floor, which is what is reported, not a measurement of the bound. Low-order subsets
  (|I| = 1) stand far above the floor.
* **training** (d in ``train_dims``): SGD on the hinge loss of the full parity chi_[d] (fresh batches of
  ``train_batch``, learning rate ``train_lr``); every ``train_every`` steps the correlation <chi_[d], g_i>^2 of the
  target itself next to E_x g_i^2 / 2^d (exact for d <= 16, Monte Carlo with its floor above), and the test
  accuracy (all inputs, or ``mc_samples`` fresh ones).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .. import plotting
from .._src import checks
from ..models import FCNet
from ..parity import all_inputs, gradient_signal, input_gradients, parity_of, random_inputs, walsh_coefficients

DESCRIPTION = "seed 000: E_I <chi_I, df/dx_i>^2 = E (df/dx_i)^2 / 2^d measured, by subset size and during SGD"

EXACT_LIMIT = 16  # largest d enumerated (2^16 inputs)


def config(quick: bool) -> dict:
    return {"dims": [4, 6, 8, 10] if quick else list(range(4, 17)), "seeds": 2 if quick else 5, "width_factor": 10,
            "weight_dims": [4, 6] if quick else [4, 6, 8, 10, 12],
            "mc_dims": [20] if quick else [20, 24, 32], "mc_samples": 10_000 if quick else 100_000,
            "mc_subsets": 20 if quick else 100,
            "train_dims": [4, 12] if quick else [4, 8, 16, 24], "train_steps": 300 if quick else 4000,
            "train_every": 50 if quick else 100, "train_batch": 128, "train_lr": 0.01, "seed": 0, "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    for key in ("dims", "weight_dims", "train_dims", "mc_dims"):
        value = config[key]
        if not isinstance(value, list) or (key == "dims" and len(value) < 2):
            raise ValueError(f"config {key!r} must be a list of dimensions ('dims' at least two, for the slope), "
                             f"got {value!r}")
        for d in value:
            checks.integer(f"config {key!r} entry", d, minimum=2)
    for key in ("dims", "weight_dims"):
        if any(d > EXACT_LIMIT for d in config[key]):
            raise ValueError(f"config {key!r} entries must be <= {EXACT_LIMIT} (enumerated exactly), "
                             f"got {config[key]}")
    if any(d <= EXACT_LIMIT for d in config["mc_dims"]):
        raise ValueError(f"config 'mc_dims' entries must be > {EXACT_LIMIT} (below, the exact part measures it), "
                         f"got {config['mc_dims']}")
    for key in ("seeds", "width_factor", "mc_samples", "mc_subsets", "train_steps", "train_every", "train_batch"):
        checks.integer(f"config {key!r}", config[key], minimum=2 if key == "mc_subsets" else 1)
    checks.real("config 'train_lr'", config["train_lr"])
    checks.integer("config 'seed'", config["seed"], minimum=0)


def network(d: int, width_factor: int, seed: int) -> FCNet:
    """FCNet [d, width_factor d, 1] in float64 at torch's default initialisation from ``seed``."""
    torch.manual_seed(seed)
    return FCNet([d, width_factor * d, 1], dtype=torch.float64)


def first_layer_gradients(model: FCNet, x: torch.Tensor) -> torch.Tensor:
    """d f / d W_jk for the first-layer weights W (h, d) at every row of x (N, d), per sample: (N, h d)."""
    parameters = {name: p.detach() for name, p in model.named_parameters()}

    def output(weight, row):
        return torch.func.functional_call(model, {**parameters, "0.weight": weight}, (row[None, :],)).squeeze()

    return torch.func.vmap(torch.func.grad(output), in_dims=(None, 0))(parameters["0.weight"], x).reshape(len(x), -1)


def subset_orders(d: int) -> np.ndarray:
    """|I| for the rows of :func:`fastdyn.parity.walsh_coefficients` (row r: I = bits of r): (2^d,)."""
    return ((np.arange(2 ** d)[:, None] >> np.arange(d)[None, :]) & 1).sum(axis=1)


def fixed_orders(d: int) -> list[int]:
    """The subset sizes k reported at dimension d: 0, 1, 2, d // 2, d (distinct)."""
    return sorted({0, 1, 2, d // 2, d})


def spectrum_summary(values: torch.Tensor, d: int) -> dict:
    """Walsh analysis of m functions on all 2^d inputs, ``values`` (2^d, m): per function (m,) arrays of the
    uniform-I average of <chi_I, g>^2, the bound E g^2 / 2^d, the power E g^2, the average over |I| = k for each k
    of :func:`fixed_orders` (key ``k=...``), the largest <chi_I, g>^2 over I and the |I| attaining it."""
    squares = walsh_coefficients(values).numpy() ** 2                # (2^d, m)
    orders = subset_orders(d)
    power = (values ** 2).mean(dim=0).numpy()
    result = {"signal": squares.mean(axis=0), "bound": power / 2 ** d, "power": power,
              "max": squares.max(axis=0), "argmax_order": orders[squares.argmax(axis=0)]}
    for k in fixed_orders(d):
        result[f"k={k}"] = squares[orders == k].mean(axis=0)
    return result


def fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y against x (both (n,)) and its standard error."""
    design = np.stack([np.ones_like(x), x], axis=1)
    coefficients, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(x) - 2
    variance = float(residual[0]) / dof if dof > 0 and residual.size else 0.0
    return float(coefficients[1]), math.sqrt(variance * np.linalg.inv(design.T @ design)[1, 1])


def exact_part(config: dict, log) -> dict:
    """Per (d, seed): the library's exact lemma (signal, bound) and :func:`spectrum_summary` of g, means over i."""
    rows = []
    for d in config["dims"]:
        for seed in range(int(config["seeds"])):
            model = network(d, int(config["width_factor"]), seed)
            lemma = gradient_signal(model, d, exact=True)
            spectrum = spectrum_summary(input_gradients(model, all_inputs(d)), d)
            rows.append({"d": d, "seed": seed, "ratio_error": float(np.max(np.abs(lemma.signal / lemma.bound - 1))),
                         "signal": float(lemma.signal.mean()), "bound": float(lemma.bound.mean()),
                         "power": float(lemma.power.mean()), "max": float(spectrum["max"].mean()),
                         "argmax_orders": sorted(set(spectrum["argmax_order"].tolist())),
                         **{key: float(spectrum[key].mean()) for key in spectrum if key.startswith("k=")}})
        log(f"parity-gradient: d = {d}: E_I <chi_I, g>^2 = {rows[-1]['signal']:.3e}, bound {rows[-1]['bound']:.3e}")
    return rows


def weight_part(config: dict) -> list[dict]:
    """The same for the first-layer weight derivatives, seed ``seed``, means over the h d weights."""
    rows = []
    for d in config["weight_dims"]:
        model = network(d, int(config["width_factor"]), int(config["seed"]))
        spectrum = spectrum_summary(first_layer_gradients(model, all_inputs(d)), d)
        positive = spectrum["bound"] > 0                              # weights of units dead on the whole cube
        rows.append({"d": d, "ratio_error": float(np.max(np.abs(spectrum["signal"][positive] /
                                                                spectrum["bound"][positive] - 1))),
                     "dead_weights": int((~positive).sum()),
                     **{key: float(spectrum[key].mean()) for key in ("signal", "bound", "power", "max")},
                     **{key: float(spectrum[key].mean()) for key in spectrum if key.startswith("k=")}})
    return rows


def monte_carlo_part(config: dict) -> list[dict]:
    """Per d in ``mc_dims``: the Monte Carlo estimate over uniform I and over |I| = 1, its floor and the bound."""
    rows = []
    for d in config["mc_dims"]:
        model = network(d, int(config["width_factor"]), int(config["seed"]))
        options = {"exact": False, "n_samples": int(config["mc_samples"]), "n_subsets": int(config["mc_subsets"]),
                   "seed": int(config["seed"])}
        uniform = gradient_signal(model, d, **options)
        single = gradient_signal(model, d, subset_size=1, **options)
        rows.append({"d": d, "signal": float(uniform.signal.mean()), "signal_sem": float(uniform.signal_sem.mean()),
                     "floor": float(uniform.floor.mean()), "bound": float(uniform.bound.mean()),
                     "power": float(uniform.power.mean()), "k=1": float(single.signal.mean())})
    return rows


def target_correlation(model: torch.nn.Module, x: torch.Tensor, subset: np.ndarray) -> dict:
    """On inputs x (N, d) (all of the cube, or uniform samples): <chi_I, g_i>^2 and E g_i^2 per i (d,) arrays."""
    g = input_gradients(model, x)
    chi = parity_of(x, subset)
    return {"correlation": ((chi[:, None] * g).mean(dim=0) ** 2).numpy(), "power": (g ** 2).mean(dim=0).numpy()}


def train_part(config: dict, log) -> dict:
    """SGD on the hinge loss of chi_[d] per d in ``train_dims``: curves (measurements,) of steps, the target's
    correlation, the bound, the Monte Carlo floor (0 when exact), the test accuracy and the training loss."""
    curves = {}
    for d in config["train_dims"]:
        model = network(d, int(config["width_factor"]), int(config["seed"]))
        subset = np.arange(d)
        generator = torch.Generator().manual_seed(int(config["seed"]) + 1)
        exact = d <= EXACT_LIMIT
        x_eval = all_inputs(d) if exact else random_inputs(int(config["mc_samples"]), d, generator=generator)
        y_eval = parity_of(x_eval, subset)
        optimiser = torch.optim.SGD(model.parameters(), lr=float(config["train_lr"]))
        rows, loss_sum, loss_count = [], 0.0, 0
        for step in range(int(config["train_steps"]) + 1):
            if step % int(config["train_every"]) == 0:
                measured = target_correlation(model, x_eval, subset)
                with torch.no_grad():
                    accuracy = float((torch.sign(model(x_eval).squeeze(1)) == y_eval).double().mean())
                power = float(measured["power"].mean())
                rows.append([step, float(measured["correlation"].mean()), power / 2 ** d,
                             0.0 if exact else power / len(x_eval), accuracy,
                             loss_sum / loss_count if loss_count else math.nan])
                loss_sum, loss_count = 0.0, 0
            x = random_inputs(int(config["train_batch"]), d, generator=generator)
            loss = torch.relu(1.0 - parity_of(x, subset) * model(x).squeeze(1)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
        curves[d] = dict(zip(("steps", "correlation", "bound", "floor", "accuracy", "loss"), np.array(rows).T))
        log(f"parity-gradient: SGD on chi_[{d}]: test accuracy {rows[-1][4]:.3f} after {config['train_steps']} steps")
    return curves


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    exact, weights, monte_carlo = exact_part(config, log), weight_part(config), monte_carlo_part(config)
    curves = train_part(config, log)

    summary: dict = {"max_ratio_error_input": max(r["ratio_error"] for r in exact),
                     "max_ratio_error_weights": max((r["ratio_error"] for r in weights), default=math.nan)}
    dims = np.array([r["d"] for r in exact], dtype=float)
    for name in ("signal", "power"):
        slope, error = fit_slope(dims, np.log2([r[name] for r in exact]))
        summary[f"log2_slope_{name}"], summary[f"log2_slope_{name}_se"] = slope, error
    for d in config["dims"]:
        rows = [r for r in exact if r["d"] == d]
        for key in ["signal", "bound", "power", "max", *(f"k={k}" for k in fixed_orders(d))]:
            summary[f"d={d}_{key}"] = float(np.mean([r[key] for r in rows]))
        summary[f"d={d}_argmax_orders"] = sorted({k for r in rows for k in r["argmax_orders"]})
    for r in weights:
        for key, value in r.items():
            if key != "d":
                summary[f"weights_d={r['d']}_{key}"] = value
    for r in monte_carlo:
        for key, value in r.items():
            if key != "d":
                summary[f"mc_d={r['d']}_{key}"] = value
    for d, curve in curves.items():
        for key in ("correlation", "bound", "floor", "accuracy", "loss"):
            summary[f"train_d={d}_final_{key}"] = float(curve[key][-1])
        # above enumeration the estimate is sampling noise of the size of its floor: compare it with that
        reference = "floor" if np.any(curve["floor"] > 0) else "bound"
        ratio = curve["correlation"] / curve[reference]
        summary[f"train_d={d}_max_correlation_over_{reference}"] = float(np.max(ratio))
    log(f"parity-gradient: log2 slope of E_I <chi_I, g>^2 against d: {summary['log2_slope_signal']:.3f} "
        f"+- {summary['log2_slope_signal_se']:.3f} (of E g^2: {summary['log2_slope_power']:.3f})")

    columns = {key: np.array([r[key] for r in exact]) for key in ("d", "seed", "signal", "bound", "power", "max")}
    orders = {str(k): np.array([r[f"k={k}"] for r in exact]) for k in (0, 1, 2)}   # (len(exact),) each
    orders["d//2"] = np.array([r[f"k={r['d'] // 2}"] for r in exact])
    orders["d"] = np.array([r[f"k={r['d']}"] for r in exact])
    np.savez_compressed(out / "lemma.npz", **columns, **{f"order_{k}": v for k, v in orders.items()},
                        **{f"train_d={d}_{k}": v for d, c in curves.items() for k, v in c.items()})
    plotting.save_figure(plotting.parity_gradient_lemma(columns, orders, weights, monte_carlo), out, "lemma.png")
    plotting.save_figure(plotting.parity_gradient_training(curves), out, "training.png")
    return summary
