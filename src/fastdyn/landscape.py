"""The loss landscape between trained networks (seed 000: linear mode connectivity, neuron symmetry), for any torch model.

* :func:`interpolate` loss and error along the line (1 - t) w_a + t w_b between two networks of one architecture,
  and the barrier (Frankle, Dziugaite, Roy & Carbin 2020);
* :func:`blend` the network at one point t of that line;
* :func:`align_neurons` a copy of a network with its hidden units permuted to match another's (weight matching,
  Ainsworth, Hayase & Srinivasa 2023), the same function, so that blending measures more than the permutation;
* :func:`loss_slice` 1-D and 2-D loss surfaces around a network along random filter-normalised directions (Li, Xu,
  Taylor, Studer & Goldstein 2018), or along the line towards another network (seed 003, "Optimization landscape").

Buffers (BatchNorm running statistics) are not parameters: averaging them is not averaging the function. Every
function takes ``buffers``: "refuse" (the default: a ValueError when the two networks' float buffers differ),
"interpolate" (blend them like the weights) or "recompute" (BatchNorm statistics re-estimated on the data, the
usual repair; :func:`interpolate` only).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from ._src import checks
from ._src.arrays import labelled_data
from ._src.train.losses import check_loss, errors, point_losses

BUFFER_RULES = ("refuse", "interpolate", "recompute")

# Modules that act on each unit separately (or not at all), so a permutation of hidden units commutes with them.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Identity,
                nn.Dropout)


@dataclass(frozen=True)
class Interpolation:
    """Loss and error along the line between two networks.

    Attributes:
        t: (steps,) positions in [0, 1]; 0 is model_a, 1 is model_b.
        loss, error: (steps,) mean loss and misclassified fraction at each t.
        loss_barrier, error_barrier: the maximum along the line minus the mean of the two ends (Frankle et al.'s
            instability; 0 when the line is no worse than its ends, and it may be slightly negative).
    """

    t: np.ndarray
    loss: np.ndarray
    error: np.ndarray
    loss_barrier: float
    error_barrier: float


def interpolate(model_a: nn.Module, model_b: nn.Module, x, y, *, steps: int = 21,
                loss: str | Callable = "cross_entropy", batch_size: int | None = 4096,
                buffers: str = "refuse") -> Interpolation:
    """Loss and error of the networks (1 - t) w_a + t w_b for ``steps`` evenly spaced t in [0, 1].

    Args:
        model_a, model_b: two nn.Modules of one architecture (same parameter names and shapes).
        x: (N, ...) inputs; y: (N,) labels: class indices for "cross_entropy", +-1 for "hinge" and "logistic",
            targets for "mse" (outputs (N, 1) are read as (N,)).
        loss: one of "hinge", "mse", "logistic", "cross_entropy" on the raw output, or fn(output, y) -> (n,)
            per-point losses. The error is the misclassified fraction (argmax for several outputs, sign for one).
        batch_size: points per forward pass (None: all at once).
        buffers: "refuse", "interpolate" or "recompute" (see the module docstring).

    The networks are evaluated in eval mode on a copy of model_a; neither model is changed.
    """
    steps = checks.integer("steps", steps, minimum=2)
    check_loss(loss)
    if buffers not in BUFFER_RULES:
        raise ValueError(f"buffers must be one of {BUFFER_RULES}, got {buffers!r}")
    state_a, state_b = _matching_states(model_a, model_b, "interpolate" if buffers == "recompute" else buffers)
    inputs, labels = labelled_data(x, y)
    size = inputs.shape[0] if batch_size is None else checks.integer("batch_size", batch_size)
    work = copy.deepcopy(model_a)
    ts = np.linspace(0.0, 1.0, steps)
    losses, errs = np.empty(steps), np.empty(steps)
    for i, t in enumerate(ts):
        work.load_state_dict(_blend_states(state_a, state_b, float(t)))
        if buffers == "recompute":
            _recompute_batchnorm(work, inputs, size)
        losses[i], errs[i] = _evaluate(work, inputs, labels, loss, size)
    return Interpolation(ts, losses, errs, _barrier(losses), _barrier(errs))


def blend(model_a: nn.Module, model_b: nn.Module, t: float, *, buffers: str = "refuse") -> nn.Module:
    """A new network (a copy of model_a's module) with parameters (1 - t) w_a + t w_b (t = 0.5: the average).

    ``buffers``: "refuse" or "interpolate" (see the module docstring); integer buffers are model_a's.
    """
    t = checks.real("t", t, minimum=-np.inf)
    if buffers not in ("refuse", "interpolate"):
        raise ValueError(f"buffers must be 'refuse' or 'interpolate' for blend, got {buffers!r}")
    state_a, state_b = _matching_states(model_a, model_b, buffers)
    out = copy.deepcopy(model_a)
    out.load_state_dict(_blend_states(state_a, state_b, t))
    return out


def align_neurons(model_a: nn.Sequential, model_b: nn.Sequential, *, max_sweeps: int = 100) -> nn.Sequential:
    """A copy of model_b with the hidden units of each layer permuted to match model_a's; it computes model_b's
    function exactly.

    Weight matching (Ainsworth et al. 2023): the permutations P_l maximise sum_l <W_a^l, P_l W_b^l P_{l-1}^T> +
    <b_a^l, P_l b_b^l>, one layer at a time by the Hungarian algorithm (scipy's ``linear_sum_assignment``) with the
    neighbouring layers held fixed, sweeping until no permutation changes (one sweep is exact for one hidden layer).

    Args:
        model_a, model_b: nn.Sequential of nn.Linear layers and elementwise modules between them (activations,
            Identity, Dropout), of one architecture, e.g. :class:`fastdyn.FCNet`.
    """
    linears = _linear_layers(model_a, "model_a"), _linear_layers(model_b, "model_b")
    shapes = [[tuple(layer.weight.shape) for layer in side] for side in linears]
    if shapes[0] != shapes[1]:
        raise ValueError(f"model_a and model_b must have the same layers, got weight shapes {shapes[0]} and {shapes[1]}")
    max_sweeps = checks.integer("max_sweeps", max_sweeps)
    Wa = [layer.weight.detach().double() for layer in linears[0]]
    Wb = [layer.weight.detach().double() for layer in linears[1]]
    ba = [_bias(layer) for layer in linears[0]]
    bb = [_bias(layer) for layer in linears[1]]
    hidden = len(Wa) - 1
    perms = [torch.arange(W.shape[0]) for W in Wa[:-1]]
    for _ in range(max_sweeps):
        changed = False
        for l in range(hidden):
            incoming = Wb[l][:, perms[l - 1]] if l > 0 else Wb[l]
            outgoing = Wb[l + 1] if l + 1 == hidden else Wb[l + 1][perms[l + 1]]
            score = Wa[l] @ incoming.T + torch.outer(ba[l], bb[l]) + Wa[l + 1].T @ outgoing
            _, columns = linear_sum_assignment(score.numpy(), maximize=True)
            new = torch.as_tensor(columns)
            changed |= not torch.equal(new, perms[l])
            perms[l] = new
        if not changed:
            break
    out = copy.deepcopy(model_b)
    with torch.no_grad():
        for l, layer in enumerate(_linear_layers(out, "model_b")):
            weight = layer.weight
            if l < hidden:
                weight = weight[perms[l]]
            if l > 0:
                weight = weight[:, perms[l - 1]]
            layer.weight.copy_(weight)
            if layer.bias is not None and l < hidden:
                layer.bias.copy_(layer.bias[perms[l]])
    return out


NORMALISATIONS = ("filter", "layer", None)


@dataclass(frozen=True)
class LossSlice:
    """Loss and error of a network moved along one or two directions in parameter space.

    Attributes:
        alphas: (steps,) coordinates along the first direction; betas: (steps,) along the second, None for 1-D.
        loss, error: (steps,) for a 1-D slice; (steps, steps) for 2-D, [i, j] at theta + alphas[i] d1 + betas[j] d2.
        directions: the directions d1 (and d2), each a {parameter name: tensor} dict.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    error: np.ndarray
    directions: tuple[dict, ...]


def loss_slice(model: nn.Module, x, y, *, directions: int = 1, towards: nn.Module | None = None,
               span: tuple[float, float] = (-1.0, 1.0), steps: int = 25, normalise: str | None = "filter",
               loss: str | Callable = "cross_entropy", batch_size: int | None = 4096, seed: int = 0) -> LossSlice:
    """The loss surface of ``model`` on (x, y) along ``directions`` (1 or 2) directions, at ``steps`` evenly spaced
    coordinates in ``span`` each (steps^2 evaluations for 2-D).

    Random directions are Gaussian, then normalised (Li et al. 2018): "filter" scales each filter (each slice
    along the first axis of a weight: a Linear layer's output unit, a convolution's output channel) to the norm of
    the same filter of the network, "layer" each parameter tensor to the tensor's norm; both set the direction of
    1-D parameters (biases, BatchNorm's affine parameters) to 0, as Li et al. do. ``normalise=None``: the Gaussian
    direction scaled to unit norm over all parameters, so a coordinate is a Euclidean distance.

    ``towards``: a network of the same architecture; the first direction is then w_towards - w, unnormalised, so the
    coordinate 1 is that network (the line of :func:`interpolate`; use span=(-0.5, 1.5) to see past both ends).
    The network's buffers (BatchNorm statistics) are kept as they are; it is evaluated in eval mode and not changed.
    """
    directions = checks.integer("directions", directions)
    if directions not in (1, 2):
        raise ValueError(f"directions must be 1 or 2, got {directions}")
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    if not (isinstance(span, (tuple, list)) and len(span) == 2 and float(span[0]) < float(span[1])):
        raise ValueError(f"span must be (low, high) with low < high, got {span!r}")
    steps = checks.integer("steps", steps, minimum=2)
    check_loss(loss)
    if towards is not None:
        _matching_states(model, towards, "interpolate")
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    inputs, labels = labelled_data(x, y)
    size = inputs.shape[0] if batch_size is None else checks.integer("batch_size", batch_size)
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    if towards is not None:
        target = dict(towards.named_parameters())
        chosen.append({name: target[name].detach() - w for name, w in base.items()})
    while len(chosen) < directions:
        chosen.append(_random_direction(base, normalise, generator))
    coordinates = np.linspace(float(span[0]), float(span[1]), steps)
    grid = [(a, 0.0) for a in coordinates] if directions == 1 else [(a, b) for a in coordinates for b in coordinates]
    work = copy.deepcopy(model)
    params = dict(work.named_parameters())
    losses, errs = np.empty(len(grid)), np.empty(len(grid))
    for i, (a, b) in enumerate(grid):
        with torch.no_grad():
            for name, w in base.items():
                moved = w + a * chosen[0][name]
                params[name].copy_(moved + b * chosen[1][name] if directions == 2 else moved)
        losses[i], errs[i] = _evaluate(work, inputs, labels, loss, size)
    shape = (steps,) * directions
    return LossSlice(coordinates, coordinates.copy() if directions == 2 else None, losses.reshape(shape),
                     errs.reshape(shape), tuple(chosen))


def _random_direction(base: dict, normalise: str | None, generator: torch.Generator) -> dict:
    """A Gaussian direction with the parameters' shapes, normalised as :func:`loss_slice` says."""
    direction = {name: torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                 for name, w in base.items()}
    if normalise is None:
        total = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
        return {name: d / total.to(d.dtype) for name, d in direction.items()}
    for name, d in direction.items():
        w = base[name]
        if w.ndim <= 1:
            d.zero_()
        elif normalise == "filter":
            d.mul_((w.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(1e-30)).view(-1, *[1] * (w.ndim - 1)))
        else:
            d.mul_(w.norm() / d.norm().clamp_min(1e-30))
    return direction


def _matching_states(model_a, model_b, buffers: str) -> tuple[dict, dict]:
    """Both state dicts, checked to be of one architecture and, unless ``buffers="interpolate"``, equal buffers."""
    for name, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} must be a torch nn.Module, got {type(model).__name__}")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if list(state_a) != list(state_b) or any(state_a[k].shape != state_b[k].shape for k in state_a):
        diff = [k for k in state_a if k not in state_b or state_a[k].shape != state_b[k].shape][:5]
        raise ValueError(f"model_a and model_b must have one architecture (same parameter names and shapes); they "
                         f"differ at {diff or sorted(set(state_b) - set(state_a))[:5]}")
    if buffers == "refuse":
        for name, buffer in model_a.named_buffers():
            if buffer.is_floating_point() and not torch.equal(buffer, state_b[name]):
                raise ValueError(f"model_a and model_b differ in the buffer {name!r} (e.g. BatchNorm statistics), "
                                 "which is not a parameter; pass buffers='interpolate' to blend it like the weights "
                                 "or buffers='recompute' to re-estimate BatchNorm statistics on x")
    return state_a, state_b


def _blend_states(state_a: dict, state_b: dict, t: float) -> dict:
    return {k: torch.lerp(v, state_b[k], t) if v.is_floating_point() else v for k, v in state_a.items()}


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss, size: int) -> tuple[float, float]:
    """Mean loss and error of ``model`` (in eval mode) on (x, y) in batches."""
    total_loss = total_error = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], size):
            out = model(x[start:start + size])
            if out.ndim == 2 and out.shape[1] == 1:
                out = out[:, 0]
            target = y[start:start + size]
            total_loss += float(point_losses(loss, out, target).sum())
            total_error += float(errors(out, target).sum())
    model.train(was_training)
    return total_loss / x.shape[0], total_error / x.shape[0]


def _recompute_batchnorm(model: nn.Module, x: torch.Tensor, size: int) -> None:
    """Re-estimate every BatchNorm's running statistics on x (cumulative average over the batches)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, x.shape[0], size):
            model(x[start:start + size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def _barrier(values: np.ndarray) -> float:
    return float(values.max() - 0.5 * (values[0] + values[-1]))


def _linear_layers(model, name: str) -> list[nn.Linear]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"{name} must be an nn.Sequential of Linear layers and activations, got {type(model).__name__}")
    layers = []
    for child in model:
        if isinstance(child, nn.Linear):
            layers.append(child)
        elif not isinstance(child, _ELEMENTWISE):
            raise ValueError(f"{name} holds a {type(child).__name__}; align_neurons permutes units through "
                             "nn.Linear layers and elementwise modules only")
    if len(layers) < 2:
        raise ValueError(f"{name} has {len(layers)} Linear layer(s); there are no hidden units to align")
    return layers


def _bias(layer: nn.Linear) -> torch.Tensor:
    return layer.bias.detach().double() if layer.bias is not None else torch.zeros(layer.out_features, dtype=torch.float64)
