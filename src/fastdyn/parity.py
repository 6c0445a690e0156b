"""Parities (seed 000, "The contrapositive of simplicity"): what recovers them, what computes them, and why gradients
do not find them.

For I a subset of [d], chi_I(x) = prod_{i in I} x_i on x in {-1, +1}^d (data: :func:`fastdyn.data.parity`).

* :func:`solve_gf2` recovers I from n samples by Gaussian elimination over GF(2): with Z = (1 - x)/2 and
  b = (1 - y)/2 each sample is the equation sum_j Z_ij s_j = b_i (mod 2) in the indicator s of I. The "cpu" backend
  is a bit-packed C++ kernel (64 equations per word, XOR row operations, OpenMP over columns); "torch" eliminates a
  bool matrix (the reference, also on CUDA).
* :func:`full_rank_probability`: the chance that n uniform random equations in d unknowns have rank d,
  prod_{k=0}^{d-1} (1 - 2^(k - n)) (the count of full-rank n x d matrices over GF(2)): the threshold at n ~ d.
* :func:`relu_parity_network`: the seed's construction, chi_I exactly with 4 ReLUs per odd k <= |I|.
* :func:`gradient_signal`: the seed's lemma, E_I <chi_I, g>^2 against E_x g^2 / 2^d for g = a derivative of the
  network's output, by exact enumeration (Walsh-Hadamard transform) or Monte Carlo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._src import checks
from ._src.registry import dispatch
from .models import FCNet

__all__ = ["GF2Solution", "solve_gf2", "full_rank_probability", "relu_parity_network", "all_inputs", "random_inputs",
           "parity_of", "input_gradients", "walsh_coefficients", "GradientSignal", "gradient_signal"]


# ------------------------------------------------------------------------------------------------- recovery
@dataclass
class GF2Solution:
    """The solution set of Z s = b over GF(2) for n equations in d unknowns.

    s (d,) uint8: one solution (the free unknowns at 0), None when the system is inconsistent; rank; consistent;
    free (d - rank,) int64: the free unknowns, so that the solutions form an affine space of dimension
    ``nullity`` = d - rank (2^nullity solutions); backend: the one that eliminated.
    """

    s: np.ndarray | None
    rank: int
    consistent: bool
    free: np.ndarray
    backend: str

    @property
    def nullity(self) -> int:
        return int(self.free.size)

    @property
    def unique(self) -> bool:
        """True when exactly one s solves the system (then it is the parity's I)."""
        return self.consistent and self.nullity == 0

    @property
    def subset(self) -> np.ndarray | None:
        """The recovered I: indices j with s_j = 1 (one solution of many when not unique; None if inconsistent)."""
        return None if self.s is None else np.flatnonzero(self.s)


def _signs(name: str, value, ndim: int) -> np.ndarray:
    """value as a bool array "is -1" after checking that it holds only -1 and +1."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array of -1 and +1, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    bad = ~((array == 1) | (array == -1))
    if bad.any():
        raise ValueError(f"{name} must hold only -1 and +1 (parity inputs), got {array[bad].ravel()[0]!r} at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    return array < 0


def solve_gf2(x, y, *, backend: str = "auto") -> GF2Solution:
    """Recover the parity's subset from samples: solve sum_j Z_ij s_j = b_i (mod 2), Z = (1 - x)/2, b = (1 - y)/2.

    x (n, d) and y (n,) hold -1 and +1 (numpy or torch). Any n >= 1 works: with n < d or dependent samples the
    answer says so (``unique`` False, ``nullity`` > 0, one solution ``s``), labels no parity fits give
    ``consistent`` False. backend: "auto", "cpu" (bit-packed C++) or "torch".
    """
    z, b = _signs("x", x, 2), _signs("y", y, 1)
    if b.shape[0] != z.shape[0]:
        raise ValueError(f"y must have one label per row of x ({z.shape[0]}), got {b.shape[0]}")
    name, eliminate = dispatch("gf2.eliminate", backend, torch.device("cpu"), what="GF(2) elimination")
    pivots, reduced = eliminate(z, b)
    pivots = np.asarray(pivots, dtype=np.int64)
    pivot_columns = pivots >= 0
    used = np.zeros(z.shape[0], dtype=bool)
    used[pivots[pivot_columns]] = True
    consistent = not bool(reduced[~used].any())
    s = None
    if consistent:
        s = np.zeros(z.shape[1], dtype=np.uint8)
        s[pivot_columns] = reduced[pivots[pivot_columns]]
    return GF2Solution(s=s, rank=int(pivot_columns.sum()), consistent=consistent,
                       free=np.flatnonzero(~pivot_columns), backend=name)


def full_rank_probability(n, d: int) -> np.ndarray:
    """P(rank d) of a uniform random n x d matrix over GF(2), prod_{k=0}^{d-1} (1 - 2^(k - n)), for n (any shape,
    integers >= 0; 0 where n < d). This is the probability that :func:`solve_gf2` recovers I uniquely from n
    uniform samples."""
    d = checks.integer("d", d)
    n = np.asarray(n)
    if not np.issubdtype(n.dtype, np.integer) or np.any(n < 0):
        raise ValueError(f"n must be non-negative integers (numbers of samples), got {n!r}")
    k = np.arange(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):   # n < d: a factor 1 - 2^(k - n) <= 0, masked below
        logs = np.log1p(-np.exp2(k - n.astype(float)[..., None]))
    return np.where(n >= d, np.exp(logs.sum(axis=-1)), 0.0)


# --------------------------------------------------------------------------------------------- construction
def relu_parity_network(d: int, subset, *, dtype=torch.float64) -> FCNet:
    """The seed's network: FCNet [d, 4m, 1] with m = ceil(|I| / 2) (4 ceil(d / 2) <= 2d + 2 ReLUs at most) computing
    chi_I(x) exactly on {-1, +1}^d.

    With s(x) = sum_{i in I} (1 - x_i)/2 (the number of -1 entries in I), chi_I = 1 - 2 sum_{k odd} f_k(s), where
    f_k(s) = 4 [relu(s - k + 1/2) - relu(s - k + 1/4) - relu(s - k - 1/4) + relu(s - k - 1/2)] is 1 on
    [k - 1/4, k + 1/4] and 0 outside (k - 1/2, k + 1/2): four ReLUs of the same linear function s(x).
    """
    d = checks.integer("d", d)
    subset = np.asarray(subset, dtype=np.int64).ravel()
    if subset.size == 0 or subset.min() < 0 or subset.max() >= d or len(set(subset.tolist())) != subset.size:
        raise ValueError(f"subset must list distinct indices in [0, {d}), got {subset.tolist()}")
    odd = np.arange(1, subset.size + 1, 2, dtype=float)             # k = 1, 3, ... <= |I|
    offsets = np.array([-0.5, -0.25, 0.25, 0.5])
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    net = FCNet([d, 4 * odd.size, 1], act="relu", dtype=dtype)
    first, last = net[0], net[2]
    with torch.no_grad():
        w = np.zeros((4 * odd.size, d))
        w[:, subset] = -0.5                                          # s(x) = |I|/2 - sum_{i in I} x_i / 2
        first.weight.copy_(torch.as_tensor(w))
        first.bias.copy_(torch.as_tensor((subset.size / 2 - (odd[:, None] + offsets[None, :])).ravel()))
        last.weight.copy_(torch.as_tensor(np.tile(-2.0 * 4.0 * signs, odd.size)[None, :]))
        last.bias.fill_(1.0)
    return net


def all_inputs(d: int, *, start: int = 0, stop: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """(stop - start, d) rows start..stop-1 (default: all 2^d) of the enumeration of {-1, +1}^d in which row r has
    x_j = -1 where bit j of r is set (d <= 24); blocks bound the memory of a sweep over a large cube."""
    d = checks.integer("d", d)
    if d > 24:
        raise ValueError(f"d must be <= 24 to enumerate 2^d inputs, got {d}")
    stop = 2 ** d if stop is None else checks.integer("stop", stop, minimum=0)
    start = checks.integer("start", start, minimum=0)
    if not start <= stop <= 2 ** d:
        raise ValueError(f"start and stop must satisfy 0 <= start <= stop <= 2^d = {2 ** d}, got {start}, {stop}")
    bits = (torch.arange(start, stop, dtype=torch.int64)[:, None] >> torch.arange(d, dtype=torch.int64)[None, :]) & 1
    return (1.0 - 2.0 * bits.to(torch.float64)).to(dtype)


def random_inputs(n: int, d: int, *, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """(n, d) independent uniform x in {-1, +1}^d: x = 1 - 2 b for fair bits b drawn from ``generator``."""
    bits = torch.randint(0, 2, (checks.integer("n", n), checks.integer("d", d)), generator=generator)
    return (1.0 - 2.0 * bits.to(torch.float64)).to(dtype)


def parity_of(x, subset) -> torch.Tensor:
    """chi_I(x) = prod_{i in I} x_i for x (N, d): (N,)."""
    return torch.prod(torch.as_tensor(x)[:, torch.as_tensor(np.asarray(subset, dtype=np.int64))], dim=1)


def input_gradients(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d f / d x at every row of x (N, d), for a model f: (N, d) -> (N,) or (N, 1): (N, d), detached."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    return g.detach()


# ------------------------------------------------------------------------------------------ gradient signal
def walsh_coefficients(values) -> torch.Tensor:
    """<chi_I, g> = E_x chi_I(x) g(x) for every I, from g on :func:`all_inputs` (2^d,) (or (2^d, m) for m
    functions at once): (2^d,) or (2^d, m), entry r for I = {j : bit j of r set}. Fast Walsh-Hadamard transform,
    d 2^d operations; sum_I <chi_I, g>^2 = E_x g^2 (Parseval) to rounding."""
    g = torch.as_tensor(values)
    size = g.shape[0]
    d = size.bit_length() - 1
    if size != 2 ** d:
        raise ValueError(f"values must have 2^d rows (g on all_inputs(d)), got {size}")
    h = g.reshape(size, -1).clone()
    span = 1
    while span < size:
        h = h.reshape(size // (2 * span), 2, span, -1)
        # x_j = -1 where bit j is set, so chi_I picks up a sign on the upper half of each pair
        h = torch.stack([h[:, 0] + h[:, 1], h[:, 0] - h[:, 1]], dim=1).reshape(size, -1)
        span *= 2
    return (h / size).reshape(g.shape)


@dataclass
class GradientSignal:
    """The seed's lemma for one network, per coordinate i (arrays (d,)): ``signal`` = E_I <chi_I, g_i>^2 with
    g_i = d f / d x_i, ``power`` = E_x g_i^2 and ``bound`` = power / 2^d.

    exact: by enumeration of every x and every I (then signal = bound to rounding: Parseval over the 2^d subsets).
    Monte Carlo: each <chi_I, g_i> is a mean over ``n_samples`` inputs, whose sampling noise adds about
    ``floor`` = power / n_samples to the estimate; ``signal_sem`` is its standard error over the subsets.
    """

    signal: np.ndarray
    power: np.ndarray
    bound: np.ndarray
    exact: bool
    signal_sem: np.ndarray | None = None
    floor: np.ndarray | None = None


def gradient_signal(model: torch.nn.Module, d: int, *, exact: bool | None = None, n_samples: int = 100_000,
                    n_subsets: int = 200, subset_size: int | None = None, seed: int = 0) -> GradientSignal:
    """E_I (E_x[chi_I(x) d f(x) / d x_i])^2 and E_x (d f / d x_i)^2 for a model f: (N, d) -> (N,) or (N, 1).

    exact (the default for d <= 16): every x in {-1, +1}^d and every subset I, by the Walsh-Hadamard transform.
    Otherwise Monte Carlo over ``n_samples`` uniform inputs and ``n_subsets`` subsets I, uniform over all subsets
    or of ``subset_size`` elements (:class:`GradientSignal` says how far it can resolve).
    """
    d = checks.integer("d", d)
    exact = d <= 16 if exact is None else bool(exact)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float64
    if exact:
        x = all_inputs(d, dtype=dtype)
    else:
        x = random_inputs(checks.integer("n_samples", n_samples), d, generator=torch.Generator().manual_seed(seed),
                          dtype=dtype)
    g = input_gradients(model, x)                                   # (N, d): d f / d x_i at every input
    power = (g ** 2).mean(dim=0)
    if exact:
        coefficients = walsh_coefficients(g)                        # (2^d, d)
        signal = (coefficients ** 2).mean(dim=0)
        return GradientSignal(signal=signal.numpy(), power=power.numpy(), bound=(power / 2 ** d).numpy(), exact=True)
    rng = np.random.default_rng(seed)
    squares = []
    for _ in range(checks.integer("n_subsets", n_subsets)):
        if subset_size is None:
            subset = np.flatnonzero(rng.random(d) < 0.5)
        else:
            subset = rng.choice(d, size=checks.integer("subset_size", subset_size), replace=False)
        chi = parity_of(x, subset)
        squares.append(((chi[:, None] * g).mean(dim=0) ** 2).numpy())
    squares = np.array(squares)
    return GradientSignal(signal=squares.mean(axis=0), power=power.numpy(), bound=(power / 2 ** d).numpy(), exact=False,
                          signal_sem=squares.std(axis=0, ddof=1) / math.sqrt(len(squares)),
                          floor=power.numpy() / x.shape[0])
