"""Shared pieces of the seed-003 experiments ("Deepnet spectra", "Optimization landscape").

Multi-class data sets and a plain cross-entropy training loop for :class:`fastdyn.FCNet`. The
experiment modules (``hessian_spectrum``, ``weight_spectra``, ``loss_landscape``) are thin scripts over these,
:mod:`fastdyn.curvature`, :mod:`fastdyn.landscape` and :mod:`fastdyn.plotting`.

The loop is plain torch rather than :func:`fastdyn.train`, which trains the centred output alpha (f - f0): here the
curvature, the weights and the landscape are those of the network f itself at its own cross-entropy loss.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import data
from .._src import checks
from ..data import Split
from ..data.digits import N_IMAGES as N_DIGITS
from ..models import FCNet
from . import mean_std  # noqa: F401  (the experiments' _seed003.mean_std)


def class_mixture(n: int, d: int, classes: int, *, separation: float, n_test: int, seed: int) -> Split:
    """``classes`` Gaussian clouds N(mu_c, I_d) in d dimensions, |mu_c| = ``separation`` (random directions drawn
    from ``seed``), balanced labels 0..C-1 (each class n / C points, up to one). x (n, d) float32, y (n,) int64;
    the test set likewise; ``info["means"]`` (C, d)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, classes, d]))
    means = rng.standard_normal((classes, d))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(count):
        y = np.arange(count) % classes
        rng.shuffle(y)
        return torch.tensor(means[y] + rng.standard_normal((count, d)), dtype=torch.float32), torch.from_numpy(y)

    (x, y), (x_test, y_test) = draw(n), draw(n_test)
    return Split(x, y, x_test, y_test, info={"means": means, "classes": classes})


def digit_classes(n: int, d: int, *, seed: int) -> Split:
    """The ten digits as classes on ``d`` whitened principal components (:func:`fastdyn.data.digits`): x (n, d)
    float32, y (n,) int64 digits; the test set is the other 1797 - n images."""
    split = data.digits(n, d=d, seed=seed, dtype="float32", as_torch=True)
    return Split(split.x, torch.as_tensor(split.info["digit"], dtype=torch.int64), split.x_test,
                 torch.as_tensor(split.info["digit_test"], dtype=torch.int64), info={"classes": 10})


def check_image_count(config: dict, key: str, minimum: int) -> None:
    """config[key] an int >= ``minimum`` that leaves test images among sklearn's 1797 digits (ValueError/TypeError
    naming the key)."""
    checks.integer(f"config {key!r}", config[key], minimum=minimum)
    if config[key] >= N_DIGITS:
        raise ValueError(f"config {key!r} must leave test images (< {N_DIGITS}), got {config[key]}")


def digit_images(n: int, *, seed: int) -> Split:
    """The ten digits as classes on the 64 standardised pixels (:func:`fastdyn.data.digit_images`)."""
    split = data.digit_images(n, seed=seed, as_torch=True)
    return Split(*split, info={"classes": 10})


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, misclassified fraction) of ``model`` on (x, y)."""
    with torch.no_grad():
        out = model(x)
        return float(nn.functional.cross_entropy(out, y)), float((out.argmax(dim=1) != y).double().mean())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of (x, y) that ``model`` classifies right."""
    return 1.0 - evaluate(model, x, y)[1]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int, batch: int | None = None,
          order_seed: int = 0, record_steps=(), on_record: Callable[[int], None] | None = None) -> None:
    """Plain SGD on the mean cross-entropy of ``model`` (changed in place) for ``steps`` steps.

    ``batch``: None or len(x) for full-batch gradient descent, else minibatches drawn without replacement, epoch by
    epoch, in an order drawn from ``order_seed``. ``on_record(step)`` is called before step ``step`` for each of
    ``record_steps`` (``steps`` itself included: after the last step).
    """
    steps = checks.integer("steps", steps, minimum=0)
    n = x.shape[0]
    batch = n if batch is None else min(int(batch), n)
    optimiser = torch.optim.SGD(model.parameters(), lr=float(lr))
    generator = torch.Generator().manual_seed(int(order_seed))
    wanted = set(int(s) for s in record_steps)
    order, position = torch.arange(n), n
    for step in range(steps + 1):
        if on_record is not None and step in wanted:
            on_record(step)
        if step == steps:
            break
        if batch == n:
            xb, yb = x, y
        else:
            if position + batch > n:
                order, position = torch.randperm(n, generator=generator), 0
            index = order[position:position + batch]
            position += batch
            xb, yb = x[index], y[index]
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def init_model(dims, seed: int) -> nn.Sequential:
    """:class:`fastdyn.FCNet` ``dims`` (ReLU, torch's default init) drawn from ``seed``."""
    torch.manual_seed(int(seed))
    return FCNet(dims)


def state_record(model: nn.Module) -> dict:
    """The model's parameters as JSON-able nested lists."""
    return {name: value.detach().tolist() for name, value in model.state_dict().items()}


def load_state(model: nn.Module, record: dict) -> nn.Module:
    """``model`` with the parameters of :func:`state_record`'s ``record`` (float32)."""
    model.load_state_dict({name: torch.tensor(value, dtype=torch.float32) for name, value in record.items()})
    return model


def log_steps(steps: int, n: int, dense_until: int = 0, dense_every: int = 1) -> np.ndarray:
    """Step 0, about n log-spaced steps in [1, steps] and every ``dense_every``-th step below ``dense_until``
    (int64, increasing, ending at steps)."""
    grid = [np.zeros(1), np.geomspace(1, max(steps, 1), n).round(), np.arange(0, min(dense_until, steps), dense_every),
            [steps]]
    return np.unique(np.concatenate(grid).astype(np.int64))
