"""Kinks: each hidden ReLU neuron of :class:`~fastdyn.models.OneHidden` followed through input space (seed 002).

Neuron n is active where omega_n . x / sqrt(d) + b_n > 0. Its kink is the point of that hyperplane nearest the
origin,

    z_n = -sqrt(d) b_n omega_n / ||omega_n||^2                                               (d,)

and under gradient flow (omega_dot = -grad_omega, b_dot = -grad_b of a loss with g_i = dL/df(x_i)) it moves with

    z_dot = dz/db b_dot + dz/domega omega_dot
          = -sqrt(d) / ||omega||^2 [ omega b_dot + b (omega_dot - 2 omega (omega . omega_dot) / ||omega||^2) ].

:func:`velocities` evaluates this chain rule exactly on top of the fused gradient kernel
(:func:`fastdyn.onehidden.gradient`: h x p work, O((h + p) d) memory). :func:`field` is the closed form of the same
velocity written in z alone (the seed's z_dot = F(z)) and :func:`attractors` groups neurons active on the same
training points; :mod:`fastdyn.plotting` draws kink clouds and the field.

Degenerate neurons: when ||omega_n|| <= ``eps`` (default 0, i.e. omega_n = 0) or z_n overflows, the neuron has no
kink at finite distance (its pre-activation is constant). Such rows of z and z_dot are set to 0, never NaN or Inf;
a RuntimeWarning says how many there were unless the caller asks for the mask (``return_degenerate=True``).
A neuron with b_n = 0 and omega_n != 0 is regular: its kink is the origin.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ._src.arrays import as_tensors, check_matrix, check_vector, match_parameters, onehidden_parameters
from ._src.registry import dispatch
from .models import OneHidden

__all__ = ["positions", "velocities", "field", "attractors", "Attractors"]


def positions(model, b=None, *, eps: float = 0.0, return_degenerate: bool = False):
    """Kink positions z_n = -sqrt(d) b_n omega_n / ||omega_n||^2.

    Args:
        model: a :class:`OneHidden`, or the (h, d) array omega (then ``b`` is required).
        b: (h,) biases when ``model`` is an array; must be None for a model.
        eps: neurons with ||omega_n|| <= eps are degenerate (rows of z set to 0, see the module docstring).
        return_degenerate: also return the (h,) bool mask of degenerate neurons (and do not warn).

    Returns:
        z (h, d), or (z, degenerate) — numpy if omega was numpy, else tensors on its device.

    Raises:
        ValueError: ``b`` missing for an omega array (or given with a model), or shapes that do not agree.
    """
    omega, b_t, kind = _omega_and_b(model, b)
    z, degenerate = _positions(omega, b_t, eps)
    _report(degenerate, return_degenerate)
    return kind.restore((z, degenerate) if return_degenerate else z)


def velocities(model: OneHidden, x, g, *, backend: str = "auto", eps: float = 0.0, return_parameters: bool = False,
               return_degenerate: bool = False):
    """Kink velocities z_dot (h, d) under gradient flow of a loss with dL/df(x_i) = g_i.

    omega_dot, b_dot, beta_dot = -(:func:`fastdyn.onehidden.gradient`) and z_dot is their exact chain rule (module
    docstring), done as O(h d) torch operations after the fused kernel.

    Args:
        model: a ReLU :class:`OneHidden` with the dtype and device of ``x``.
        x: (p, d) training inputs; g: (p,) dL/df at those inputs (e.g. -y/p for the hinge loss below its margin).
        backend: "auto", "cuda", "cpu", "numba" or "torch" (runs the gradient).
        eps: degeneracy threshold on ||omega_n|| (see :func:`positions`); degenerate rows of z_dot are 0.
        return_parameters: also return (omega_dot (h, d), b_dot (h,), beta_dot (h,)).
        return_degenerate: also return the (h,) bool mask of degenerate neurons (and do not warn).

    Returns:
        z_dot, then the parameter velocities and/or the mask when asked, as a tuple in that order; numpy if x is.

    Raises:
        TypeError, ValueError: as :func:`fastdyn.onehidden.gradient` (a ReLU :class:`OneHidden`, x (p, d), g (p,)
            of its dtype and device, a backend that runs here).
    """
    (x_t, g_t), kind = as_tensors(x=x, g=g)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    check_vector("g", g_t, x_t.shape[0])
    omega, b, beta = onehidden_parameters(model, kind)
    _, kernel = dispatch("onehidden.gradient", backend, kind.device, what="kinks.velocities")
    grad_omega, grad_b, grad_beta = kernel(x_t, g_t, omega, b, beta, scale=model.output_scale)
    omega_dot, b_dot, beta_dot = grad_omega.neg_(), grad_b.neg_(), grad_beta.neg_()
    z_dot, degenerate = _chain_rule(omega, b, omega_dot, b_dot, eps)
    _report(degenerate, return_degenerate)
    out = (z_dot,)
    if return_parameters:
        out += (omega_dot, b_dot, beta_dot)
    if return_degenerate:
        out += (degenerate,)
    return kind.restore(out[0] if len(out) == 1 else out)


def field(z, x, g, *, beta=1.0, b=1.0, scale: float = 1.0, max_elements: int = 1 << 22):
    """The kink velocity written in z alone: z_dot = F(z) for neurons of output weight ``beta`` and bias ``b``.

    A kink z with bias b belongs to omega = -sqrt(d) b z / ||z||^2; the chain rule of :func:`velocities` then
    reads, in fastdyn's convention (pre-activation omega . x / sqrt(d) + b, output scale s = ``scale``),

        F(z) = -(s beta / b) sum_i g_i a_i(z) [z - ||z||^2 x_i / d + 2 (z . x_i) z / d],
        a_i(z) = [z . x_i < ||z||^2] for b > 0,  [z . x_i > ||z||^2] for b < 0.

    With s = 1/h and g_i = -y_i / p (hinge loss below the margin, mean over points) and the rescaled
    coordinates z' = z / sqrt(d), x' = x / sqrt(d), this is exactly the seed's
    z'_dot = beta / (p h b) sum_i Theta(...) [z' - ||z'||^2 x'_i + 2 (z' . x'_i) z'] y_i
    (the seed's pre-activation omega . x + b has no 1/sqrt(d), hence the rescaling). F(0) = 0.

    Args:
        z: (m, d) points, e.g. a grid for the p = 1 picture.
        x: (p, d) inputs; g: (p,) dL/df at them.
        beta, b: output weight and (non-zero) bias of the neurons, scalars or (m,) arrays.
        scale: output scale s (``model.output_scale``; the seed's 1/h).
        max_elements: bound on the (points-chunk x p) temporaries.

    Returns:
        (m, d) velocities, numpy if z was numpy.
    """
    (z_t, x_t, g_t), kind = as_tensors(z=z, x=x, g=g)
    check_matrix("x", x_t)
    check_matrix("z", z_t, x_t.shape[1], allow_empty=True)
    check_vector("g", g_t, x_t.shape[0])
    m, d = z_t.shape
    beta_t = _per_point("beta", beta, m, kind)
    b_t = _per_point("b", b, m, kind)
    if bool((b_t == 0).any()):
        raise ValueError("b must be non-zero: a neuron with b = 0 has its kink at the origin for any omega, and "
                         "the velocity there depends on omega (use kinks.velocities)")
    out = torch.empty_like(z_t)
    chunk = max(1, max_elements // x_t.shape[0])
    for start in range(0, m, chunk):
        zc = z_t[start:start + chunk]
        zx = zc @ x_t.T  # (c, p)
        zz = (zc * zc).sum(1, keepdim=True)
        positive = (b_t[start:start + chunk] > 0)[:, None]
        active = torch.where(positive, zx < zz, zx > zz)
        gated = active.to(zc.dtype) * g_t  # g_i a_i(z)
        bracket = (gated.sum(1, keepdim=True) * zc - zz / d * (gated @ x_t)
                   + 2.0 / d * (gated * zx).sum(1, keepdim=True) * zc)
        factor = -scale * beta_t[start:start + chunk] / b_t[start:start + chunk]
        out[start:start + chunk] = factor[:, None] * bracket
    return kind.restore(out)


@dataclass(frozen=True)
class Attractors:
    """Neurons grouped by their activation pattern on the training points, and the groups that count as attractors.

    A *pattern group* is the set of live neurons active on exactly the same training points (the seed's attractor
    definition; such a group acts on the training set as one neuron). A group counts as an *attractor* when it holds
    at least ``min_size`` neurons of non-negligible output weight, |beta_n| > ``beta_rtol`` * max_m |beta_m|.
    With the defaults (``min_size=1``, ``beta_rtol=0``) every pattern group counts.

    Attributes:
        labels: (h,) int64; neurons with the same label are active on exactly the same points. Labels run
            0..n_patterns-1 in order of first appearance; dead neurons (active on no point) get -1.
        sizes: (n_patterns,) number of neurons of each pattern group (negligible ones included).
        n_dead: number of dead neurons (label -1; never part of a group).
        negligible: (h,) bool, live neurons with |beta_n| <= beta_rtol * max|beta| (all False for beta_rtol=0).
        weighty_sizes: (n_patterns,) number of non-negligible neurons of each group.
        min_size, beta_rtol: the counting rule used.
    """

    labels: np.ndarray
    sizes: np.ndarray
    n_dead: int
    negligible: np.ndarray
    weighty_sizes: np.ndarray
    min_size: int = 1
    beta_rtol: float = 0.0

    @property
    def counted(self) -> np.ndarray:
        """(n_patterns,) bool: the groups that count as attractors (weighty_sizes >= min_size)."""
        return self.weighty_sizes >= self.min_size

    @property
    def n_attractors(self) -> int:
        """Number of attractors: pattern groups with at least ``min_size`` non-negligible neurons."""
        return int(self.counted.sum())

    @property
    def n_patterns(self) -> int:
        """Number of distinct activation patterns of live neurons (every group, counted or not)."""
        return int(self.sizes.shape[0])

    @property
    def n_singletons(self) -> int:
        """Pattern groups with exactly one non-negligible neuron (not attractors when min_size > 1)."""
        return int((self.weighty_sizes == 1).sum())

    @property
    def n_negligible(self) -> int:
        """Live neurons with negligible |beta| (in no attractor's weighty size)."""
        return int(self.negligible.sum())

    def attractor_labels(self) -> np.ndarray:
        """(h,) labels of the counted attractors (0..n_attractors-1, first appearance), -1 for dead neurons and -2
        for live neurons in no attractor (negligible |beta|, or a group below ``min_size``)."""
        rank = np.cumsum(self.counted) - 1
        out = np.where(self.labels >= 0, -2, -1)
        member = (self.labels >= 0) & ~self.negligible
        member[member] = self.counted[self.labels[member]]
        out[member] = rank[self.labels[member]]
        return out


def attractors(model: OneHidden, x, *, min_size: int = 1, beta_rtol: float = 0.0, backend: str = "auto",
               max_elements: int = 1 << 24) -> Attractors:
    """Group the neurons of ``model`` by their activation pattern a_n(x_i) = [pre_n(x_i) > 0] on ``x`` (p, d).

    Counting (:class:`Attractors`): a group of identical patterns is an attractor when at least ``min_size`` of
    its neurons have |beta_n| > ``beta_rtol`` * max|beta|; singletons and negligible-|beta| neurons are reported
    apart (``n_singletons``, ``n_negligible``). The defaults count every group (the seed's bare definition).
    The reference code (mariogeiger/feature_lazy, snapshot 64626d0) has no attractor or kink code, and the seed's
    slides define an attractor only as "a set of neurons active on the same subset of training points" (such a
    set "can be replaced by a single neuron"); excluding singletons and neurons that carry no output weight, as
    the seed-002 experiment does (``min_size=2``, ``beta_rtol=1e-2``), is this project's reading of that remark:
    a lone neuron or one with beta ~ 0 gathers nothing and contributes nothing.

    No pattern is stored: each neuron gets a key, a 128-bit hash of its p bits plus its number of active points,
    and neurons are grouped by equal keys. Two different patterns share a key with probability about
    h^2 / 2^129 (never, in practice). Backends: "cpu" (fused C++ kernel, h x p x d work, O(h + p d) memory) or
    "torch" (neuron chunks of at most ``max_elements`` booleans, bit-packed and hashed with BLAKE2b; also CUDA).

    Raises:
        TypeError: ``model`` is not a :class:`OneHidden`, or x not of its dtype.
        ValueError: x not (p, d) or on another device; ``min_size`` not an integer >= 1; ``beta_rtol`` outside [0, 1);
            a ``backend`` that is unknown or cannot run here.
    """
    (x_t,), kind = as_tensors(x=x)
    check_matrix("x", x_t, model.d if isinstance(model, OneHidden) else None)
    if not isinstance(model, OneHidden):
        raise TypeError(f"model must be a fastdyn.models.OneHidden, got {type(model).__name__}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    beta_rtol = float(beta_rtol)
    if not 0.0 <= beta_rtol < 1.0:
        raise ValueError(f"beta_rtol must be in [0, 1), got {beta_rtol}")
    omega, b = match_parameters("model", {"omega": model.omega, "b": model.b}, kind)
    _, pattern_keys = dispatch("onehidden.pattern_keys", backend, kind.device, what="kinks.attractors")
    keys, dead = pattern_keys(x_t, omega, b, max_elements=max_elements)
    labels = np.full(omega.shape[0], -1, dtype=np.int64)
    live = np.flatnonzero(~dead)
    if live.size:
        _, first, inverse, counts = np.unique(keys[live], axis=0, return_index=True, return_inverse=True,
                                              return_counts=True)
        order = np.argsort(first, kind="stable")  # relabel by first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        labels[live] = rank[inverse.ravel()]
        sizes = counts[order].astype(np.int64)
    else:
        sizes = np.zeros(0, dtype=np.int64)
    beta = np.abs(model.beta.detach().double().cpu().numpy())
    negligible = (labels >= 0) & (beta <= beta_rtol * beta.max()) if beta_rtol > 0 else np.zeros_like(labels, bool)
    weighty = labels[(labels >= 0) & ~negligible]
    weighty_sizes = np.bincount(weighty, minlength=sizes.shape[0]).astype(np.int64)
    return Attractors(labels=labels, sizes=sizes, n_dead=int(dead.sum()), negligible=negligible,
                      weighty_sizes=weighty_sizes, min_size=int(min_size), beta_rtol=beta_rtol)


# ---- internals -------------------------------------------------------------------------------------------------

def _omega_and_b(model, b):
    """(omega, b, kind) from a model or from explicit arrays, checked."""
    if isinstance(model, OneHidden):
        if b is not None:
            raise ValueError("give either a OneHidden model or (omega, b) arrays, not both")
        (omega,), kind = as_tensors(omega=model.omega)
        (b_t,), _ = as_tensors(b=model.b)
    else:
        if b is None:
            raise ValueError("b is required when model is an omega array (or pass a OneHidden model)")
        (omega, b_t), kind = as_tensors(omega=model, b=b)
    check_matrix("omega", omega)
    check_vector("b", b_t, omega.shape[0])
    return omega, b_t, kind


def _positions(omega: torch.Tensor, b: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    norm2 = (omega * omega).sum(1)
    z = (-math.sqrt(omega.shape[1]) * b / norm2)[:, None] * omega
    degenerate = (norm2.sqrt() <= eps) | (norm2 == 0) | ~torch.isfinite(z).all(1)
    return z.masked_fill_(degenerate[:, None], 0.0), degenerate


def _chain_rule(omega, b, omega_dot, b_dot, eps):
    """z_dot = -sqrt(d)/||omega||^2 [omega b_dot + b (omega_dot - 2 omega_hat (omega_hat . omega_dot))]."""
    norm2 = (omega * omega).sum(1)
    norm = norm2.sqrt()
    unit = omega / norm[:, None]  # omega_hat: no ||omega||^4, so nothing overflows before 1/||omega||^2 does
    radial = (unit * omega_dot).sum(1)
    inner = omega * b_dot[:, None] + b[:, None] * (omega_dot - 2.0 * radial[:, None] * unit)
    z_dot = (-math.sqrt(omega.shape[1]) / norm2)[:, None] * inner
    degenerate = (norm <= eps) | (norm2 == 0) | ~torch.isfinite(z_dot).all(1)
    return z_dot.masked_fill_(degenerate[:, None], 0.0), degenerate


def _report(degenerate: torch.Tensor, quiet: bool) -> None:
    count = int(degenerate.sum())
    if count and not quiet:
        warnings.warn(f"{count} neuron(s) have ||omega|| ~ 0 and no kink at finite distance; their rows are set to "
                      "0 (pass return_degenerate=True for the mask)", RuntimeWarning, stacklevel=3)


def _per_point(name, value, m, kind) -> torch.Tensor:
    """A scalar or (m,) array as an (m,) tensor of the inputs' dtype and device."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        (tensor,), _ = as_tensors(**{name: value})
    else:
        tensor = torch.tensor(float(value))
    tensor = tensor.to(dtype=kind.dtype, device=kind.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(m)
    check_vector(name, tensor, m)
    return tensor
