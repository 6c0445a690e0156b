"""Batched kernel PCA of Gram matrices (e.g. NTK snapshots over training) and the label observables of seed 002.

``kpca(K, y)`` eigen-decomposes K = sum_lambda lambda phi_lambda phi_lambda^T (science.md section 3) for one
(N, N) kernel or a batch (B, N, N), keeping the top k pairs, and measures how the label y spreads over them.

Conventions
-----------
* Eigenvalues descending; eigenvectors are unit columns, ``eigenvectors[..., :, j]`` pairs with
  ``eigenvalues[..., j]``. Sign: each eigenvector's entry of largest magnitude is positive (the first such entry
  on ties), so results are deterministic across backends and solvers (up to genuinely degenerate eigenvalues,
  where only the subspace is defined).
* Label projections omega_lambda^2 = (phi_lambda . y)^2 / ||y||^2. For labels +-1, ||y||^2 = p (the number of
  points), which is the seed's normalisation (1/p)(phi . y)^2 with unit phi; the projections over all N
  eigenvectors sum to 1 for any y. ``cumulative[..., r-1]`` is the label power in the top r components.
* ``center=True`` decomposes H K H (H = I - 11^T/N, classic kernel PCA) and uses the centred label
  y - mean(y) in the projections and alignment.

Solvers (recorded in the result): "full" (all pairs: LAPACK syevd on "cpu", torch.linalg.eigh on "torch"),
"topk" (LAPACK syevr with an index range: only the top k eigenvectors; "cpu" only) and "subspace" (iterative,
whose work is GEMMs with K). On "cpu" "subspace" is Chebyshev-filtered subspace iteration (Zhou & Saad 2007) on
k + max(10, 2k/5) = l vectors with Rayleigh-Ritz, locking and degree-3 filters, memory ~ 4 l N besides K (and a
float32 copy of K with mixed precision). For float64 kernels it runs in mixed precision (``mixed_precision``,
unless the copies would exceed 1 GiB): float32 cycles on a float32 copy of K,
packed once for fast products, until float32 rounding stalls them near 1e-7, then one float64 product and
refinement cycles that apply the filter to the float64 residual with float32 products: their error scales with
the residual, rows whose correction is still too large for tol get float64 products, and the result meets the
float64 tol with eigenvalues exact to rounding, as without mixed precision. On "torch" it is block subspace
iteration on 2k+10 vectors. It stops when every top-k Ritz pair has ||K v - theta v|| <= tol * |theta_max|; it
assumes K is positive semi-definite, as Gram matrices are, and falls back to a direct solver (``iterations = -1``)
when it sees a large negative eigenvalue or does not converge.
``solver="auto"`` takes "full" when k > N/2, "subspace" when its block 2k+10 is at most N/10, else "topk"
("full" on the torch backend).

Backends: "cpu" (compiled C++, OpenMP over the batch calling OpenBLAS's LAPACK) and "torch" (batched torch.linalg,
on CPU or CUDA tensors). There is no CUDA kernel: CUDA tensors run on "torch" (cuSOLVER through torch). Numba has
no eigensolver of its own, so there is no "numba" backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import memory, registry
from .arrays import ArrayKind, as_tensors, check_finite

_SOLVERS = ("auto", "full", "topk", "subspace")
# Relative asymmetry max|K - K^T| / max|K| accepted by default, and subspace residual tolerance, per dtype.
_SYMMETRY_TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
_SUBSPACE_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


@dataclass(frozen=True)
class KernelPCA:
    """Result of :func:`kpca`; arrays are numpy when K was numpy, else tensors on K's device.

    Attributes:
        eigenvalues: (..., k) descending.
        eigenvectors: (..., N, k) unit columns, largest-magnitude entry positive.
        projections: (..., k) omega_lambda^2 = (phi_lambda . y)^2 / ||y||^2, or None without y.
        cumulative: (..., k) cumulative sum of ``projections``, or None.
        alignment: (...) kernel-target alignment y^T K y / (||y||^2 ||K||_F), or None.
        backend: backend that ran ("cpu" or "torch").
        solver: "full", "topk" or "subspace".
        centered: whether H K H was decomposed.
        iterations: (...) int32 per matrix for solver "subspace" (products with K on "cpu", subspace steps on
            "torch"; -1: fell back to a direct solver), else None.
    """

    eigenvalues: Any
    eigenvectors: Any
    projections: Any
    cumulative: Any
    alignment: Any
    backend: str
    solver: str
    centered: bool
    iterations: Any = None


def kpca(K, y=None, *, k: int | None = None, center: bool = False, backend: str = "auto", solver: str = "auto",
         tol: float | None = None, symmetry_tol: float | None = None, mixed_precision: bool | None = None,
         seed: int = 0) -> KernelPCA:
    """Top-k kernel PCA of one symmetric kernel (N, N) or a batch (B, N, N).

    Args:
        K: symmetric Gram matrix or batch of them (numpy or torch, float32/float64, CPU or CUDA).
        y: optional labels/targets (N,) shared by the batch or (B, N), any real dtype.
        k: number of eigenpairs (1..N); None means all N.
        center: decompose the doubly-centred kernel H K H (classic kernel PCA).
        backend: "auto", "cpu" or "torch" (CUDA tensors use "torch").
        solver: "auto", "full", "topk" ("cpu" only) or "subspace".
        tol: subspace residual tolerance ||K v - theta v|| <= tol * |theta_max| (default 1e-10 fp64, 2e-5 fp32;
            the eigenvalues' error is then ~tol^2 theta_max^2 / gap, i.e. rounding).
        symmetry_tol: accepted max|K - K^T| / max|K| (default 1e-8 fp64, 1e-4 fp32).
        mixed_precision: float64 "subspace" on "cpu" only: iterate on a float32 copy of K first, then refine to
            the same float64 tol mostly with float32 products (about 1.5x faster, results as accurate). None: on
            when the float32 copies (one per matrix solved at once) fit in 1 GiB.
        seed: seed of the subspace solver's random start, an int in [0, 2**64); results differ only within tol.

    Returns:
        :class:`KernelPCA`.

    Raises:
        TypeError: K or y not numeric arrays; ``k``, ``tol``, ``seed`` or ``mixed_precision`` of the wrong type.
        ValueError: K not (N, N) or (B, N, N), empty, with NaN/Inf, or not symmetric within ``symmetry_tol``; y of
            the wrong shape or zero; ``k`` outside 1..N; an unknown ``solver`` or ``backend``, or one that cannot
            run here ("topk" is cpu-only).
        MemoryError: before allocating, when the solver's copies of K do not fit in the device's free memory.
    """
    (K_t,), kind = as_tensors(K=K)
    batched = K_t.ndim == 3
    K3 = _as_batch(K_t)
    batch, n = K3.shape[0], K3.shape[1]
    y3 = None if y is None else _check_labels(y, K3, batched)
    alignment = _check_kernel(K3, batched, symmetry_tol, y3, center)
    k = _check_k(k, n)
    name = registry.dispatch("kpca.full", backend, kind.device, what="kpca")[0]
    solver = _choose_solver(solver, name, k, n)
    tol = _check_tol(tol, kind.dtype)
    seed = _check_seed(seed)
    if mixed_precision is not None and not isinstance(mixed_precision, bool):
        raise TypeError(f"mixed_precision must be True, False or None, got {mixed_precision!r}")
    _check_memory(name, solver, batch, n, k, K3.element_size(), kind.device)

    solve = registry.implementation(f"kpca.{solver}", name)
    if solver == "subspace":
        values, vectors, iterations = solve(K3, k=k, center=center, tol=tol, mixed_precision=mixed_precision,
                                            seed=seed)
    else:
        values, vectors, iterations = solve(K3, k=k, center=center)

    projections = cumulative = None
    if y3 is not None:
        labels = y3 - y3.mean(dim=-1, keepdim=True) if center else y3
        norm2 = (labels * labels).sum(dim=-1, keepdim=True)
        projections = (labels.unsqueeze(-1) * vectors).sum(dim=-2) ** 2 / norm2
        cumulative = projections.cumsum(dim=-1)
    if solver != "subspace":
        iterations = None
    return _result(kind, batched, values, vectors, projections, cumulative, alignment, name, solver, center,
                   iterations)


def _as_batch(K: torch.Tensor) -> torch.Tensor:
    """K (N, N) or (B, N, N) as (B, N, N), after the shape checks."""
    if K.ndim not in (2, 3):
        raise ValueError(f"K must be (N, N) or a batch (B, N, N), got shape {tuple(K.shape)}")
    if K.shape[-1] != K.shape[-2]:
        raise ValueError(f"K must be square (N, N), got shape {tuple(K.shape)}")
    if K.numel() == 0:
        raise ValueError(f"K is empty (shape {tuple(K.shape)}); give at least one 1 x 1 matrix")
    return K if K.ndim == 3 else K.unsqueeze(0)


def _check_kernel(K3: torch.Tensor, batched: bool, symmetry_tol: float | None, labels: torch.Tensor | None,
                  center: bool) -> torch.Tensor | None:
    """Refuse NaN/Inf or asymmetric matrices in K3 (B, N, N); return the alignment (B,) with labels (1 or B, N),
    else None. On CPU tensors one compiled tiled pass per matrix does both, without copying K."""
    tol = _SYMMETRY_TOL[K3.dtype] if symmetry_tol is None else float(symmetry_tol)
    if labels is not None:
        centred = labels - labels.mean(dim=-1, keepdim=True) if center else labels
        if bool(((centred * centred).sum(dim=-1) == 0).any()):
            raise ValueError("y is zero (or constant, with centring); alignment needs a non-trivial label vector")
        labels = labels.contiguous()
    # the compiled pass where it runs (CPU tensors, "cpu" built), else the tiled torch pass (e.g. CUDA tensors)
    check = registry.dispatch("kpca.check", "auto", K3.device)[1]
    stats, alignment = check(K3, labels, center=center)
    for b, (scale, worst, bad) in enumerate(stats[:, :3].tolist()):
        where = f"K[{b}]" if batched else "K"
        if bad:
            raise ValueError(f"{where} contains NaN or Inf")
        if worst > tol * scale:
            raise ValueError(
                f"{where} is not symmetric: max|K - K^T| = {worst:.3e} > {tol:.0e} * max|K| = {tol * scale:.3e} "
                "(symmetrise it, e.g. (K + K^T) / 2, or raise symmetry_tol)")
    return alignment


def _check_k(k: int | None, n: int) -> int:
    if k is None:
        return n
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int or None, got {type(k).__name__}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and N = {n}, got {k}")
    return int(k)


def _check_labels(y, K3: torch.Tensor, batched: bool) -> torch.Tensor:
    """Labels as a float tensor (B or 1, N) of K's dtype and device."""
    if isinstance(y, torch.Tensor):
        labels = y.detach().to(device=K3.device, dtype=K3.dtype)
    else:
        array = np.asarray(y)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"y must hold numbers, got dtype {array.dtype}")
        labels = torch.as_tensor(array.astype(np.float64)).to(device=K3.device, dtype=K3.dtype)
    batch, n = K3.shape[0], K3.shape[-1]
    shapes = [(n,)] + ([(batch, n)] if batched else [])
    if tuple(labels.shape) not in shapes:
        raise ValueError(f"y must have shape {' or '.join(map(str, shapes))} to match K, got {tuple(labels.shape)}")
    check_finite("y", labels)
    labels = labels.reshape(-1, n)
    if bool((labels.abs().amax(dim=-1) == 0).any()):
        raise ValueError("y is all zeros; projections and alignment need a non-zero label vector")
    return labels


def _choose_solver(solver: str, backend: str, k: int, n: int) -> str:
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    if solver == "topk" and backend != "cpu":
        raise ValueError("solver='topk' (LAPACK syevr) runs on backend 'cpu' only; use 'subspace' or 'full'")
    if solver != "auto":
        return solver
    if 2 * k > n:
        return "full"
    if 10 * (2 * k + 10) <= n:
        return "subspace"
    return "topk" if backend == "cpu" else "full"


def _check_memory(backend: str, solver: str, batch: int, n: int, k: int, itemsize: int, device) -> None:
    """Refuse, before allocating, a direct solve whose N x N work copies exceed the available host memory."""
    if solver == "subspace" or device.type != "cpu":
        return
    copies = min(batch, torch.get_num_threads()) if backend == "cpu" else 2 * batch  # torch eigh: input + vectors
    needed = copies * n * n * itemsize + 2 * batch * n * k * itemsize
    memory.guard(needed, device, what=f"kpca solver={solver!r} (copies of the N x N kernel, N = {n})",
                 advice="use solver='subspace' (no copy of K) or a smaller batch")


def _check_tol(tol: float | None, dtype: torch.dtype) -> float:
    if tol is None:
        return _SUBSPACE_TOL[dtype]
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating, np.integer)):
        raise TypeError(f"tol must be a positive float, got {type(tol).__name__}")
    if not 0 < float(tol) < 1:
        raise ValueError(f"tol must be in (0, 1) (a residual relative to the largest eigenvalue), got {tol}")
    return float(tol)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return int(seed)


def _result(kind: ArrayKind, batched: bool, values, vectors, projections, cumulative, alignment, backend, solver,
            center, iterations) -> KernelPCA:
    def out(x):
        if x is None:
            return None
        return kind.restore(x if batched else x[0])

    return KernelPCA(out(values), out(vectors), out(projections), out(cumulative), out(alignment), backend, solver,
                     center, out(iterations))
