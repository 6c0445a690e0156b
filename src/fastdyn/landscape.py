"""The loss landscape between trained networks (seed 000: linear mode connectivity, neuron symmetry), for any torch model.

* :func:`interpolate` loss and error along the line (1 - t) w_a + t w_b between two networks of one architecture,
  and the barrier (Frankle, Dziugaite, Roy & Carbin 2020);
* :func:`blend` the network at one point t of that line;
* :func:`align_neurons` a copy of a network with its hidden units permuted to match another's (weight matching,
  Ainsworth, Hayase & Srinivasa 2023), the same function, so that blending measures more than the permutation.

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
from ._src.train.losses import LOSSES, errors, loss_terms

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
    if not (callable(loss) or loss in LOSSES):
        raise ValueError(f"loss must be one of {LOSSES} or a callable fn(output, y) -> per-point losses, got {loss!r}")
    if buffers not in BUFFER_RULES:
        raise ValueError(f"buffers must be one of {BUFFER_RULES}, got {buffers!r}")
    state_a, state_b = _matching_states(model_a, model_b, "interpolate" if buffers == "recompute" else buffers)
    inputs, labels = _data(x, y)
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


def _data(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    labels = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(f"x must be (N, ...) inputs with N >= 1, got shape {tuple(inputs.shape)}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"y must have shape ({inputs.shape[0]},) to match x, got {tuple(labels.shape)}")
    return inputs, labels


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
            if not callable(loss):
                target = target.long() if loss == "cross_entropy" else target.to(out.dtype)
            terms = loss(out, target) if callable(loss) else loss_terms(loss, out, target)
            total_loss += float(terms.sum())
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
