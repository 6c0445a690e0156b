"""Curvature of a full-data loss, for any torch model (seed 003, "Deepnet spectra").

The loss is the mean over the whole data set, L(theta) = (1/N) sum_i l(f(x_i; theta), y_i), at the model's current
parameters theta (the P entries of ``model.parameters()`` that require gradients, in their order; the flat layout of
``torch.nn.utils.parameters_to_vector``). Nothing is estimated on a minibatch: every product runs over all N points
in chunks of ``chunk_size``, so memory is bounded and the answer does not depend on the chunking.

* :class:`CurvatureOperator` the P x P matrix as products with vectors: the Hessian (forward-over-reverse,
  ``torch.func.jvp`` of ``torch.func.grad``), the Gauss-Newton matrix G = (1/N) sum_i J_i^T H_l J_i, or the
  empirical Fisher F = (1/N) sum_i g_i g_i^T (g_i the gradient of point i's loss, never formed one by one);
  :func:`hvp`, :func:`ggn_vp`, :func:`fisher_vp` are one product each;
* :func:`hessian_eigs` the top or bottom eigenpairs by scipy's Lanczos (``eigsh`` on a LinearOperator), with the
  residual of each pair recomputed;
* :func:`spectral_density` stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019): the density broadened
  by a Gaussian, per probe vector and averaged;
* :func:`hessian_trace` Hutchinson's and Hutch++'s (Meyer, Musco, Musco & Woodruff 2021) estimates with their
  standard errors;
* :func:`weight_spectrum` the eigenvalues of W^T W / N of a layer, the Marchenko-Pastur fit of their bulk and the
  power-law exponent of their tail (Martin & Mahoney 2021).

For the seed's ReLU :class:`fastdyn.OneHidden` with "mse", "hinge" or "logistic", the Hessian and Gauss-Newton
products take a closed form (``fused``): ReLU'' = 0, so the network's own second derivatives couple only beta_n
with (omega_n, b_n) of the same neuron, and H v = J^T (l'' J v) / N + s (per-neuron terms of the fixed moments
sum_i l'_i [pre_ni > 0] (x_i / sqrt(d), 1)) / N. A product is then one fused Jacobian-vector kernel and one fused
gradient kernel (C++ or CUDA, memory O((h + N) d), no points x neurons matrix).

The model is evaluated in eval mode (dropout off, BatchNorm on its running statistics) and is not changed.
For cross-entropy, the logistic loss and "mse" (0.5 (f - y)^2), the Gauss-Newton matrix *is* the Fisher
information of the model's own predictive distribution (the "true" Fisher), so :func:`ggn_vp` is that product.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse.linalg
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

from . import theory
from ._src import checks
from ._src.arrays import labelled_data
from ._src.optional import require
from ._src.registry import dispatch, implementation
from ._src.train.losses import check_loss, loss_derivative, loss_second_derivative, point_losses
from .models import OneHidden

__all__ = ["CurvatureOperator", "hvp", "ggn_vp", "fisher_vp", "Eigenpairs", "hessian_eigs", "SpectralDensity",
           "spectral_density", "TraceEstimate", "hessian_trace", "WeightSpectrum", "weight_spectrum"]

KINDS = ("hessian", "ggn", "fisher")
_FUSED_LOSSES = ("mse", "hinge", "logistic")
_WHICH = {"top": "LA", "bottom": "SA", "magnitude": "LM"}


class CurvatureOperator:
    """The P x P curvature matrix of the full-data mean loss of ``model`` at its current parameters.

    Args:
        model: any nn.Module whose forward takes a batch of x.
        x: (N, ...) inputs; y: (N,) labels (class indices for "cross_entropy", +-1 for "hinge" and "logistic",
            targets for "mse"; outputs (N, 1) are read as (N,)).
        loss: "cross_entropy", "mse", "logistic", "hinge", or fn(output, y) -> (n,) per-point losses.
        kind: "hessian", "ggn" (Gauss-Newton) or "fisher" (empirical Fisher).
        chunk_size: points per forward pass.
        fused: the closed form for a ReLU OneHidden with "mse", "hinge" or "logistic" and kind "hessian" or "ggn"
            (None: where it applies; True: required, a ValueError where it does not; False: the generic path).
        backend: the fused path's kernels, "auto", "cuda", "cpu", "numba" or "torch".
        cache: keep each chunk's backward graph at theta between products (about 1.5-2x faster per product, with
            the memory of a forward and backward pass over all N points); False rebuilds it for every product, so
            memory is one chunk's.

    ``size`` is P; ``matvec`` takes (P,) or (k, P) tensors (any float dtype; computed in the model's dtype and
    device) and returns the same shape.
    """

    def __init__(self, model: nn.Module, x, y, *, loss: str | Callable = "cross_entropy", kind: str = "hessian",
                 chunk_size: int = 1024, cache: bool = True, fused: bool | None = None, backend: str = "auto"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        check_loss(loss)
        self.kind, self.loss = kind, loss
        self.chunk_size = checks.integer("chunk_size", chunk_size)
        self.cache, self._cached = bool(cache), None
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("model has no parameters that require gradients")
        self._names, params = zip(*trainable)
        self._shapes = [p.shape for p in params]
        self.theta = nn.utils.parameters_to_vector(params).detach()
        self.size = self.theta.numel()
        self.dtype, self.device = self.theta.dtype, self.theta.device
        self.x, self.y = labelled_data(x, y)
        self.x = self.x.to(self.device, self.dtype if self.x.is_floating_point() else self.x.dtype)
        self.y = self.y.to(self.device)
        self.n_points = self.x.shape[0]
        self._buffers = {n: b.detach() for n, b in model.named_buffers()}
        self._model = model
        self.n_products = 0
        self.fused = _fused_applies(model, loss, kind, fused)
        if self.fused:
            self._prepare_fused(backend)

    def _prepare_fused(self, backend: str) -> None:
        """The fixed parts of the closed form: the network's tensors, l'' / N, and the moments of l' / N."""
        model = self._model
        self._network = [t.detach().contiguous() for t in (model.omega, model.b, model.beta)]
        self._x = self.x.contiguous()
        name, self._jvp = dispatch("onehidden.jvp", backend, self.device, what="the fused OneHidden curvature")
        self._gradient = implementation("onehidden.gradient", name)
        self.backend = name
        scale = model.output_scale
        f = implementation("onehidden.forward", name)(self._x, *self._network, scale=scale)
        y = self.y.to(self.dtype)
        self._curvature = loss_second_derivative(self.loss, f, y) / self.n_points
        self._flat = not bool(self._curvature.any())
        slope = loss_derivative(self.loss, f, y) / self.n_points
        omega, b, _ = self._network
        ones = torch.ones_like(b)
        # sum_i l'_i a_ni x_i / sqrt(d) and sum_i l'_i a_ni (the gradient kernel at beta = 1, scale = 1)
        self._slope_moments = self._gradient(self._x, slope, omega, b, ones, scale=1.0)[:2]

    def _fused_product(self, v: torch.Tensor) -> torch.Tensor:
        h, d = self._network[0].shape
        v_omega, v_b, v_beta = v[:h * d].view(h, d), v[h * d:h * d + h], v[h * d + h:]
        scale = self._model.output_scale
        if self._flat:     # l'' = 0 everywhere (the hinge loss): no Gauss-Newton part
            g_omega, g_b, g_beta = torch.zeros_like(v_omega), torch.zeros_like(v_b), torch.zeros_like(v_beta)
        else:
            jv = self._jvp(self._x, *self._network, v_omega.contiguous(), v_b.contiguous(), v_beta.contiguous(),
                           scale=scale)
            g_omega, g_b, g_beta = self._gradient(self._x, (self._curvature * jv).contiguous(), *self._network,
                                                  scale=scale)
        if self.kind == "hessian":
            m_omega, m_1 = self._slope_moments
            g_omega = g_omega + scale * v_beta[:, None] * m_omega
            g_b = g_b + scale * v_beta * m_1
            g_beta = g_beta + scale * ((v_omega * m_omega).sum(1) + v_b * m_1)
        return torch.cat([g_omega.reshape(-1), g_b, g_beta])

    # ------------------------------------------------------------------------------------------ the functions
    def _outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self._names, (c.view(s) for c, s in zip(theta.split([math.prod(s) for s in self._shapes]),
                                                                    self._shapes))))
        out = functional_call(self._model, {**params, **self._buffers}, (x,))
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def _chunk_product(self, start: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """v (P,) -> the share of points start : start + chunk_size, (1/N) times their sum, of the matrix times v.

        The backward graph at theta is built once (``torch.func.vjp``), so a product is one backward pass (plus
        one forward-mode pass for the Gauss-Newton and Fisher matrices); for the Hessian this is reverse-over-
        reverse, which measured faster than forward-over-reverse on MLPs here.
        """
        x, y = self.x[start:start + self.chunk_size], self.y[start:start + self.chunk_size]
        scale = 1.0 / self.n_points

        def outputs(theta):
            return self._outputs(theta, x)

        def per_point(theta):
            return point_losses(self.loss, outputs(theta), y)

        if self.kind == "hessian":
            _, pullback = vjp(grad(lambda theta: per_point(theta).sum() * scale), self.theta)
            return lambda v: pullback(v)[0]
        if self.kind == "ggn":
            out, pullback = vjp(outputs, self.theta)
            _, loss_pullback = vjp(grad(lambda f: point_losses(self.loss, f, y).sum() * scale), out)
            return lambda v: pullback(loss_pullback(jvp(outputs, (self.theta,), (v,))[1])[0])[0]
        # empirical Fisher: (1/N) J_l^T (J_l v), J_l the (n, P) Jacobian of the per-point losses
        _, pullback = vjp(per_point, self.theta)
        return lambda v: pullback(jvp(per_point, (self.theta,), (v,))[1] * scale)[0]

    def matvec(self, v) -> torch.Tensor:
        """The matrix times v: (P,) -> (P,), or times each row: (k, P) -> (k, P)."""
        v = torch.as_tensor(v)
        if v.shape[-1:] != (self.size,) or v.ndim not in (1, 2):
            raise ValueError(f"v must have shape ({self.size},) or (k, {self.size}), got {tuple(v.shape)}")
        V = v.reshape(-1, self.size).to(self.device, self.dtype)
        if self.fused:
            self.n_products += V.shape[0]
            return torch.stack([self._fused_product(row) for row in V]).reshape(v.shape).to(
                v.dtype if v.is_floating_point() else self.dtype)
        was_training = self._model.training
        self._model.eval()
        try:
            chunks = self._cached or [self._chunk_product(start) for start in range(0, self.n_points, self.chunk_size)]
            if self.cache:
                self._cached = chunks
            # one vector at a time: vmap over the vectors measured slower per vector than this loop
            total = torch.stack([sum(product(row) for product in chunks).detach() for row in V])
        finally:
            self._model.train(was_training)
        self.n_products += V.shape[0]
        return total.reshape(v.shape).to(v.dtype if v.is_floating_point() else self.dtype)

    def dense(self, *, max_entries: int = 50_000_000) -> torch.Tensor:
        """The whole (P, P) matrix, P products; refused above ``max_entries`` entries before anything is allocated."""
        if self.size ** 2 > max_entries:
            raise MemoryError(f"the dense {self.size} x {self.size} matrix has {self.size ** 2:.3g} entries, more "
                              f"than max_entries={max_entries:.3g}; use hessian_eigs or spectral_density instead")
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        return torch.cat([self.matvec(eye[i:i + 256]) for i in range(0, self.size, 256)])

    def linear_operator(self) -> scipy.sparse.linalg.LinearOperator:
        """A float64 scipy LinearOperator of the matrix (the products run in the model's dtype)."""
        def apply(v):
            product = self.matvec(torch.from_numpy(np.ascontiguousarray(v.T, dtype=np.float64)))
            return product.double().cpu().numpy().T
        return scipy.sparse.linalg.LinearOperator((self.size, self.size), matvec=apply, matmat=apply,
                                                  dtype=np.float64)


def _fused_applies(model: nn.Module, loss, kind: str, fused: bool | None) -> bool:
    reasons = []
    if not (isinstance(model, OneHidden) and model.act == "relu"):
        reasons.append(f"the model is a {type(model).__name__}, not a ReLU fastdyn.OneHidden")
    elif not all(p.requires_grad for p in model.parameters()):
        reasons.append("some of its parameters do not require gradients")
    if callable(loss) or loss not in _FUSED_LOSSES:
        reasons.append(f"the loss is {loss!r}, not one of {_FUSED_LOSSES}")
    if kind not in ("hessian", "ggn"):
        reasons.append(f"kind is {kind!r}, not 'hessian' or 'ggn'")
    if fused and reasons:
        raise ValueError("fused=True needs the closed form, which does not apply: " + "; ".join(reasons))
    return not reasons if fused is None else bool(fused)


def hvp(model: nn.Module, x, y, v, *, loss: str | Callable = "cross_entropy", chunk_size: int = 1024) -> torch.Tensor:
    """H v for the Hessian H of the full-data mean loss: v (P,) or (k, P) -> the same shape. See
    :class:`CurvatureOperator` for the arguments."""
    return CurvatureOperator(model, x, y, loss=loss, kind="hessian", chunk_size=chunk_size).matvec(v)


def ggn_vp(model: nn.Module, x, y, v, *, loss: str | Callable = "cross_entropy",
           chunk_size: int = 1024) -> torch.Tensor:
    """G v for the Gauss-Newton matrix G = (1/N) sum_i J_i^T (d^2 l / df^2) J_i (J_i = df(x_i)/dtheta), the
    Hessian without the second derivatives of the network: v (P,) or (k, P) -> the same shape."""
    return CurvatureOperator(model, x, y, loss=loss, kind="ggn", chunk_size=chunk_size).matvec(v)


def fisher_vp(model: nn.Module, x, y, v, *, loss: str | Callable = "cross_entropy",
              chunk_size: int = 1024) -> torch.Tensor:
    """F v for the empirical Fisher F = (1/N) sum_i g_i g_i^T (g_i = d l(f(x_i), y_i) / dtheta, at the given
    labels): v (P,) or (k, P) -> the same shape. The Fisher of the model's predictive distribution is
    :func:`ggn_vp` (equal for cross-entropy, logistic and mse)."""
    return CurvatureOperator(model, x, y, loss=loss, kind="fisher", chunk_size=chunk_size).matvec(v)


# ---------------------------------------------------------------------------------------------------- eigenpairs
@dataclass(frozen=True)
class Eigenpairs:
    """Eigenpairs of a curvature matrix.

    Attributes:
        values: (k,) eigenvalues, largest first for "top" and "magnitude", smallest first for "bottom".
        vectors: (k, P) unit eigenvectors (rows), in the model's dtype.
        residuals: (k,) ||M v - lambda v|| of each pair, recomputed with fresh products.
        n_products: matrix-vector products used, residuals included.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    n_products: int


def hessian_eigs(model: nn.Module, x, y, *, k: int = 6, which: str = "top", kind: str = "hessian",
                 loss: str | Callable = "cross_entropy", tol: float | None = None, seed: int = 0,
                 chunk_size: int = 1024, cache: bool = True) -> Eigenpairs:
    """The ``k`` top (largest), bottom (smallest) or largest-magnitude eigenpairs of the full-data Hessian (or
    ``kind`` "ggn" / "fisher"), by implicitly restarted Lanczos (scipy's ``eigsh``, ARPACK) on its products.

    ``chunk_size``, ``cache``: see :class:`CurvatureOperator`. ``tol``: eigsh's relative accuracy (None: 1e-10
    for a float64 model, 1e-5 for float32, whose products are exact only to about 1e-7). The start vector is
    drawn from ``seed``, so a call is reproducible.
    """
    if which not in _WHICH:
        raise ValueError(f"which must be one of {tuple(_WHICH)}, got {which!r}")
    operator = CurvatureOperator(model, x, y, loss=loss, kind=kind, chunk_size=chunk_size, cache=cache)
    k = checks.integer("k", k)
    if k >= operator.size:
        raise ValueError(f"k must be below the number of parameters P = {operator.size} (Lanczos), got {k}; for "
                         "all of them use torch.linalg.eigvalsh(CurvatureOperator(...).dense())")
    if tol is None:
        tol = 1e-10 if operator.dtype == torch.float64 else 1e-5
    v0 = np.random.default_rng(seed).standard_normal(operator.size)
    # ARPACK's own BLAS calls are small; its idle OpenBLAS threads spin against torch's and made every product
    # 2.7x slower here (2 cores), so they get one thread
    with threadpool_limits(1, user_api="blas"):
        values, vectors = scipy.sparse.linalg.eigsh(operator.linear_operator(), k=k, which=_WHICH[which], tol=tol,
                                                    v0=v0)
    order = np.argsort(values) if which == "bottom" else np.argsort(-(np.abs(values) if which == "magnitude"
                                                                      else values))
    values, vectors = values[order], torch.from_numpy(np.ascontiguousarray(vectors[:, order].T))
    vectors = vectors.to(operator.device, operator.dtype)
    products = operator.matvec(vectors).double()
    residuals = (products - torch.from_numpy(values).to(products)[:, None] * vectors.double()).norm(dim=1)
    return Eigenpairs(values, vectors, residuals.cpu().numpy(), operator.n_products)


# ----------------------------------------------------------------------------------------- spectral density (SLQ)
@dataclass(frozen=True)
class SpectralDensity:
    """The eigenvalue density of a P x P curvature matrix by stochastic Lanczos quadrature.

    Each probe vector v (Rademacher, ||v||^2 = P) gives a Gauss quadrature: nodes theta_j (Ritz values) and weights
    tau_j (summing to 1) with sum_j tau_j g(theta_j) = v^T g(M) v / P exactly for polynomials g of degree < 2 m.
    Averaged over probes, that is an unbiased estimate of tr g(M) / P.

    Attributes:
        nodes, weights: (n_vectors, m) per probe (m = n_steps, or fewer where Lanczos found an invariant subspace:
            the missing entries have weight 0).
        grid: (G,) eigenvalue axis; density: (G,) the mean over probes of the Gaussian-broadened quadratures
            (integrates to 1 over the grid; times P for a count of eigenvalues); per_vector: (n_vectors, G);
            sigma: the Gaussian's standard deviation.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    per_vector: np.ndarray
    sigma: float

    @property
    def density_stderr(self) -> np.ndarray:
        """(G,) the standard error of ``density`` across the probe vectors."""
        n = self.per_vector.shape[0]
        return self.per_vector.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(self.density, np.nan)

    def moment(self, power: int) -> tuple[float, float]:
        """(estimate, standard error) of tr(M^power) / P from the quadratures (exact per probe for power < 2 m)."""
        per_probe = (self.weights * self.nodes ** checks.integer("power", power, minimum=0)).sum(axis=1)
        n = per_probe.size
        return float(per_probe.mean()), float(per_probe.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def spectral_density(model: nn.Module, x, y, *, n_vectors: int = 10, n_steps: int = 80, kind: str = "hessian",
                     loss: str | Callable = "cross_entropy", sigma: float | None = None, grid_points: int = 1000,
                     seed: int = 0, chunk_size: int = 1024, cache: bool = True) -> SpectralDensity:
    """The spectral density of the full-data Hessian (or "ggn" / "fisher") by stochastic Lanczos quadrature:
    ``n_vectors`` Rademacher probes, ``n_steps`` Lanczos steps each with full reorthogonalisation (in float64).

    ``sigma``: the broadening (None: 1 % of the range of all nodes). Costs n_vectors x n_steps products.
    """
    operator = CurvatureOperator(model, x, y, loss=loss, kind=kind, chunk_size=chunk_size, cache=cache)
    n_vectors, n_steps = checks.integer("n_vectors", n_vectors), checks.integer("n_steps", n_steps)
    grid_points = checks.integer("grid_points", grid_points, minimum=2)
    steps = min(n_steps, operator.size)
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = np.zeros((n_vectors, steps)), np.zeros((n_vectors, steps))
    for i in range(n_vectors):
        probe = torch.randint(0, 2, (operator.size,), generator=generator, dtype=torch.float64) * 2 - 1
        alpha, beta = _lanczos(operator.matvec, probe.to(operator.device), steps)
        theta, S = scipy.linalg.eigh_tridiagonal(alpha, beta)
        nodes[i, :theta.size], weights[i, :theta.size] = theta, S[0] ** 2
    used = weights > 0
    lo, hi = nodes[used].min(), nodes[used].max()
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    sigma = checks.real("sigma", sigma)
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_points)
    gauss = np.exp(-0.5 * ((grid[None, None, :] - nodes[:, :, None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    per_vector = (weights[:, :, None] * gauss).sum(axis=1)
    return SpectralDensity(nodes, weights, grid, per_vector.mean(axis=0), per_vector, float(sigma))


def _lanczos(matvec: Callable, start: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The tridiagonal (alpha (m,), beta (m-1,)) of m <= steps Lanczos steps from ``start``, with full
    reorthogonalisation (twice, classical Gram-Schmidt) in float64; stops early on an invariant subspace."""
    basis = torch.zeros(steps, start.numel(), dtype=torch.float64, device=start.device)
    alpha, beta = [], []
    q = start.double() / start.double().norm()
    for j in range(steps):
        basis[j] = q
        w = matvec(q).double()
        alpha.append(float(q @ w))
        for _ in range(2):
            w -= basis[:j + 1].T @ (basis[:j + 1] @ w)
        norm = float(w.norm())
        if j == steps - 1 or norm <= 1e-12 * max(1.0, max(abs(a) for a in alpha)):
            break
        beta.append(norm)
        q = w / norm
    return np.array(alpha), np.array(beta)


# ---------------------------------------------------------------------------------------------------------- trace
@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic estimate of tr(M).

    Attributes:
        value: the estimate; stderr: its standard error from the spread of the Hutchinson samples (for Hutch++,
            of its residual part, conditional on the sketched subspace, which the value includes exactly);
        n_products: matrix-vector products used; method: "hutchinson" or "hutch++"; samples: the Hutchinson
            samples z^T M z (of the residual part for Hutch++).
    """

    value: float
    stderr: float
    n_products: int
    method: str
    samples: np.ndarray


def hessian_trace(model: nn.Module, x, y, *, n_vectors: int = 99, method: str = "hutch++", kind: str = "hessian",
                  loss: str | Callable = "cross_entropy", seed: int = 0, chunk_size: int = 1024,
                  cache: bool = True) -> TraceEstimate:
    """tr of the full-data Hessian (or "ggn" / "fisher") from ``n_vectors`` products with Rademacher vectors.

    "hutchinson": the mean of z^T M z. "hutch++": a third of the products sketch the top subspace Q of M, a third
    give tr(Q^T M Q) exactly, and a third estimate the trace of the rest by Hutchinson; far more accurate when a
    few eigenvalues dominate (as in a trained network's Hessian).
    """
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    operator = CurvatureOperator(model, x, y, loss=loss, kind=kind, chunk_size=chunk_size, cache=cache)
    n_vectors = checks.integer("n_vectors", n_vectors, minimum=2 if method == "hutchinson" else 3)
    generator = torch.Generator().manual_seed(seed)

    def rademacher(count):
        return (torch.randint(0, 2, (count, operator.size), generator=generator) * 2 - 1).to(operator.device,
                                                                                             operator.dtype)
    exact = 0.0
    if method == "hutchinson":
        Z = rademacher(n_vectors)
    else:
        sketch = n_vectors // 3
        Q = torch.linalg.qr(operator.matvec(rademacher(sketch)).T.double())[0]          # (P, sketch)
        exact = float((Q * operator.matvec(Q.T.to(operator.dtype)).T.double()).sum())
        Z = rademacher(n_vectors - 2 * sketch).double()
        Z = (Z - (Z @ Q) @ Q.T).to(operator.dtype)
    samples = (Z.double() * operator.matvec(Z).double()).sum(dim=1).cpu().numpy()
    stderr = float(samples.std(ddof=1) / math.sqrt(samples.size)) if samples.size > 1 else math.nan
    return TraceEstimate(exact + float(samples.mean()), stderr, operator.n_products, method, samples)


# ------------------------------------------------------------------------------------------------ weight spectra
@dataclass(frozen=True)
class WeightSpectrum:
    """The empirical spectrum of one layer's correlation matrix X = W^T W / N (W reshaped to (N, M) with N >= M).

    Attributes:
        eigenvalues: (M,) ascending.
        ratio: M / N, the Marchenko-Pastur aspect ratio.
        sigma2: the entry variance of the Marchenko-Pastur law fitted to the bulk (the minimum KS distance);
            bulk_edges: its support (lambda_-, lambda_+); ks: the KS distance of the fit.
        n_outliers: eigenvalues above lambda_+ by more than 4 Tracy-Widom scales (Johnstone 2001).
        alpha, alpha_stderr, xmin, tail_ks: the power-law fit p(lambda) ~ lambda^-alpha of the tail above xmin
            (Clauset, Shalizi & Newman's method, the ``powerlaw`` package, as Martin & Mahoney use it); None when
            fewer than 10 distinct positive eigenvalues.
    """

    eigenvalues: np.ndarray
    ratio: float
    sigma2: float
    bulk_edges: tuple[float, float]
    ks: float
    n_outliers: int
    alpha: float | None
    alpha_stderr: float | None
    xmin: float | None
    tail_ks: float | None


def weight_spectrum(layer, *, tail: bool = True) -> WeightSpectrum:
    """The spectrum of W^T W / N of ``layer`` (an nn.Linear, an nn.Conv*d, whose weight is read as (out, in x
    kernel), or a >= 2-D weight tensor), with its Marchenko-Pastur bulk and, if ``tail``, its power-law tail
    (needs the ``powerlaw`` package: pip install 'fastdyn[experiments]')."""
    weight = layer.weight if isinstance(layer, nn.Module) else layer
    if not isinstance(weight, (torch.Tensor, np.ndarray)) or np.ndim(weight) < 2:
        raise TypeError("layer must be an nn.Linear / nn.Conv*d or a weight tensor of at least 2 dimensions, got "
                        f"{type(layer).__name__}" + (f" of shape {tuple(np.shape(weight))}" if np.ndim(weight) else ""))
    W = torch.as_tensor(weight).detach().double().cpu().reshape(np.shape(weight)[0], -1)
    if W.shape[0] < W.shape[1]:
        W = W.T
    n, m = W.shape
    if m < 2:
        raise ValueError(f"layer's weight must have at least 2 rows and 2 columns, got {tuple(np.shape(weight))}")
    # from the singular values: relative accuracy eps sigma_max / sigma_i, where eigvalsh of W^T W gives
    # eps lambda_max / lambda_i, which loses the bulk of a heavy-tailed layer
    singular = torch.linalg.svdvals(W).flip(0).numpy()
    eigenvalues = singular ** 2 / n
    ratio = m / n

    def ks(log_sigma2):
        return theory.marchenko_pastur_ks_distance(eigenvalues, ratio, math.exp(log_sigma2))
    mean = max(float(eigenvalues.mean()), 1e-300)
    fit = scipy.optimize.minimize_scalar(ks, bounds=(math.log(mean * 1e-3), math.log(mean * 1.5)), method="bounded",
                                         options={"xatol": 1e-6})
    sigma2 = math.exp(fit.x)
    edges = theory.marchenko_pastur_edges(ratio, sigma2)
    tracy_widom = sigma2 * n ** (-2 / 3) * (1 + math.sqrt(ratio)) * (1 + 1 / math.sqrt(ratio)) ** (1 / 3)
    n_outliers = int((eigenvalues > edges[1] + 4 * tracy_widom).sum())
    alpha = alpha_stderr = xmin = tail_ks = None
    positive = eigenvalues[singular > m * np.finfo(np.float64).eps * singular.max()]
    if tail and np.unique(positive).size >= 10:
        powerlaw = require("powerlaw", "experiments", "fastdyn.curvature.weight_spectrum")
        # powerlaw 2.0 reads its own deprecated ``sigma`` while searching xmin, warns on casts of large values to
        # int while checking for discrete data, and on candidate xmins whose fit hits its alpha range: silence
        # these (the chosen fit's quality is tail_ks)
        with warnings.catch_warnings():
            for category in (DeprecationWarning, RuntimeWarning, UserWarning):
                warnings.simplefilter("ignore", category)
            tail_fit = powerlaw.Fit(positive, verbose=False)
        alpha, alpha_stderr = float(tail_fit.alpha), float(tail_fit.power_law.standard_err)
        xmin, tail_ks = float(tail_fit.xmin), float(tail_fit.D)
    return WeightSpectrum(eigenvalues, ratio, sigma2, edges, float(fit.fun), n_outliers, alpha, alpha_stderr, xmin,
                          tail_ks)
