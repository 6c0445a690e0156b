"""Kernel and representation observables of seed 002 (science.md sections 1 and 3).

* :func:`alignment` kernel-target alignment (Cristianini et al. 2002), batched over kernels.
* :func:`cka` centred kernel alignment (Kornblith et al. 2019), batched and broadcast over kernels.
* :func:`mutual_information` kNN estimate of I(feature; label) for continuous features and a discrete label
  (Ross 2014, the estimator of sklearn's ``mutual_info_classif``), one value per feature column.
* :func:`effective_rank` of a kernel from its spectrum.
* :func:`intrinsic_dimension` TwoNN estimator (Facco et al. 2017).

Kernel functions take numpy or torch (CPU/CUDA) and answer in the same kind; they never copy an N x N kernel.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import digamma

from ._src.arrays import as_tensor, as_tensors, check_finite
from ._src import gram
from ._src.optional import require


def alignment(K, y, *, center: bool = False):
    """Kernel-target alignment A = y^T K y / (||y||^2 ||K||_F) (= y^T K y / (p ||K||_F) for labels +-1).

    Args:
        K: (N, N) kernel or batch (B, N, N).
        y: (N,) labels (any real dtype) or (B, N) with a batch.
        center: use H K H and y - mean(y) (centred alignment), without forming H K H.

    Returns:
        (B,) alignments, or a scalar (0-d tensor, float for numpy) for one kernel.
    """
    (K_t,), kind = as_tensors(K=K)
    K3 = _kernels("K", K_t)
    labels = _labels(y, K3)
    value = gram.alignment(K3, labels, center)
    return _scalar_or_batch(kind, value, K_t.ndim == 3)


def cka(K1, K2):
    """Centred kernel alignment <H K1 H, H K2 H>_F / (||H K1 H||_F ||H K2 H||_F), in [0, 1] for PSD kernels.

    Args:
        K1, K2: (N, N) kernels or batches (..., N, N) that broadcast against each other (e.g. a batch of NTK
            snapshots against the final NTK).

    Returns:
        The broadcast batch of CKA values, or a scalar for two single kernels.
    """
    (K1_t, K2_t), kind = as_tensors(K1=K1, K2=K2)
    for name, K in (("K1", K1_t), ("K2", K2_t)):
        _kernels(name, K)
    if K1_t.shape[-1] != K2_t.shape[-1]:
        raise ValueError(f"K1 and K2 must be kernels on the same N points, got {tuple(K1_t.shape)} and {tuple(K2_t.shape)}")
    cross = gram.centred_inner(K1_t, K2_t)
    value = cross / torch.sqrt(gram.centred_inner(K1_t, K1_t) * gram.centred_inner(K2_t, K2_t))
    return _scalar_or_batch(kind, value, value.ndim > 0)


def mutual_information(features, y, k: int = 5):
    """kNN estimate of the mutual information (nats) between each continuous feature and a discrete label.

    Ross (2014), "Mutual information between discrete and continuous data sets": for point i with label c, d_i is
    the distance to its k-th nearest neighbour among the N_c points of class c (k -> N_c - 1 for small classes),
    m_i the number of points of any class closer than d_i (itself included; the coincident points when d_i = 0),
    and I = psi(N) + <psi(k)> - <psi(N_c)> - <psi(m_i)>, clipped at 0. Points alone in their class are dropped.
    Features are one-dimensional (one component each), so the neighbour search is a sort. Unlike sklearn no
    jitter is added, so the result is deterministic (sklearn adds 1e-10 noise to break ties).

    Args:
        features: (N,) or (N, m) values, e.g. the top m kernel-PCA components on the N points.
        y: (N,) discrete labels (ints, +-1, strings...).
        k: neighbours (5 in seed 002).

    Returns:
        (m,) mutual informations, or a float for (N,) features.
    """
    (F_t,), kind = as_tensors(features=features)
    if F_t.ndim not in (1, 2):
        raise ValueError(f"features must be (N,) or (N, m), got shape {tuple(F_t.shape)}")
    check_finite("features", F_t)
    columns = F_t.detach().cpu().double().numpy().reshape(F_t.shape[0], -1)
    labels = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    n = columns.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match features, got {labels.shape}")
    if n == 0 or columns.shape[1] == 0:
        raise ValueError(f"features is empty (shape {tuple(F_t.shape)})")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[codes] > 1
    if not keep.any():
        raise ValueError("every label of y occurs once; the estimator needs at least two points of some class")
    codes, columns = codes[keep], columns[keep]
    counts = np.bincount(codes, minlength=len(classes))
    n_kept = codes.shape[0]
    k_each = np.minimum(k, counts[codes] - 1)
    const = digamma(n_kept) + digamma(k_each).mean() - digamma(counts[codes]).mean()
    result = np.empty(columns.shape[1])
    for j in range(columns.shape[1]):
        x = columns[:, j]
        radius = np.empty(n_kept)
        for c in np.flatnonzero(counts > 1):
            members = np.flatnonzero(codes == c)
            radius[members] = _kth_neighbour_distance_1d(x[members], min(k, counts[c] - 1))
        inside = _count_closer_1d(x, radius)
        result[j] = max(0.0, const - digamma(inside).mean())
    if F_t.ndim == 1:
        return float(result[0]) if kind.numpy else torch.tensor(result[0], dtype=kind.dtype, device=kind.device)
    return kind.restore(torch.as_tensor(result, dtype=kind.dtype, device=kind.device))


def effective_rank(K, *, kind: str = "entropy"):
    """Effective rank of a PSD kernel (N, N) or batch (B, N, N) from its eigenvalues lambda (negatives -> 0).

    kind="entropy": exp(-sum_i p_i log p_i) with p = lambda / sum(lambda) (Roy & Vetterli 2007), between 1 and N.
    kind="participation": (tr K)^2 / tr(K^2) = (sum lambda)^2 / sum lambda^2, computed without a decomposition.
    """
    (K_t,), array_kind = as_tensors(K=K)
    K3 = _kernels("K", K_t)
    if kind == "participation":
        value = torch.diagonal(K3, dim1=-2, dim2=-1).sum(-1) ** 2 / torch.linalg.vector_norm(K3, dim=(-2, -1)) ** 2
    elif kind == "entropy":
        spectrum = torch.linalg.eigvalsh(K3).clamp_min(0)
        p = spectrum / spectrum.sum(dim=-1, keepdim=True)
        value = torch.exp(-torch.special.xlogy(p, p).sum(dim=-1))
    else:
        raise ValueError(f"kind must be 'entropy' or 'participation', got {kind!r}")
    return _scalar_or_batch(array_kind, value, K_t.ndim == 3)


def intrinsic_dimension(X, *, fraction: float = 0.9) -> float:
    """TwoNN intrinsic dimension of a point cloud X (N, D) (Facco et al. 2017).

    mu_i = r2_i / r1_i from each point's two nearest neighbours (duplicates, r1 = 0, dropped); with the empirical
    CDF F(mu_(i)) = i / N of the sorted ratios (i = 0..N-1), fit -log(1 - F) = d log(mu) through the origin on the
    ``fraction`` smallest ratios (at least two; the largest are noisy) and return d.
    """
    neighbors = require("sklearn.neighbors", "experiments", "fastdyn.observables.intrinsic_dimension")

    X_t = as_tensor("X", X)
    if X_t.ndim != 2 or X_t.shape[0] < 3:
        raise ValueError(f"X must be (N, D) with N >= 3 points, got shape {tuple(X_t.shape)}")
    check_finite("X", X_t)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    points = X_t.detach().cpu().double().numpy()
    distances, _ = neighbors.NearestNeighbors(n_neighbors=3).fit(points).kneighbors(points)
    r1, r2 = distances[:, 1], distances[:, 2]
    valid = r1 > 0
    mu = np.sort(r2[valid] / r1[valid])
    n = mu.shape[0]
    if n < 2:
        raise ValueError(f"X has {n} point(s) whose nearest neighbour is not a duplicate; TwoNN needs at least 2")
    cdf = np.arange(n) / n
    used = max(2, int(np.floor(n * fraction)))  # the first ratio has F = 0: alone, it fits d = 0
    x, target = np.log(mu[:used]), -np.log1p(-cdf[:used])
    return float(x @ target / (x @ x))


def _kth_neighbour_distance_1d(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point of the 1-D sample x to its k-th nearest other point, by sorting."""
    order = np.argsort(x)
    xs = x[order]
    n = xs.shape[0]
    # The k nearest neighbours of xs[i] lie among xs[i-k .. i+k]; pad with +-inf and take the k-th smallest gap.
    padded = np.concatenate([np.full(k, -np.inf), xs, np.full(k, np.inf)])
    offsets = np.concatenate([np.arange(-k, 0), np.arange(1, k + 1)])
    gaps = np.abs(padded[np.arange(n)[:, None] + k + offsets[None, :]] - xs[:, None])
    kth = np.partition(gaps, k - 1, axis=1)[:, k - 1]
    out = np.empty(n)
    out[order] = kth
    return out


def _count_closer_1d(x: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """#{j : |x_j - x_i| < radius_i} (or == 0 where radius_i = 0), itself included.

    Bisection on the sorted sample with the same floating-point differences that measured the radii (x_i +- r
    would round differently); subtraction is monotone, so each side is one contiguous run.
    """
    ordered = np.sort(x)
    radius = np.maximum(radius, np.nextafter(0.0, 1.0))  # radius 0 (ties): count the coincident points

    def first(predicate):  # first index j in [0, n] where predicate(j) holds; predicate is monotone in j
        lo, hi = np.zeros(x.shape[0], dtype=np.int64), np.full(x.shape[0], x.shape[0], dtype=np.int64)
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            ok = predicate(np.minimum(mid, x.shape[0] - 1)) & (lo < hi)
            hi = np.where(ok, mid, hi)
            lo = np.where(~ok & (lo < hi), mid + 1, lo)
        return lo

    start = first(lambda j: x - ordered[j] < radius)
    stop = first(lambda j: ordered[j] - x >= radius)
    return stop - start


def _kernels(name: str, K: torch.Tensor) -> torch.Tensor:
    """Check a square non-empty finite (N, N) or (B, N, N) kernel; return it as (B, N, N)."""
    if K.ndim not in (2, 3) or K.shape[-1] != K.shape[-2]:
        raise ValueError(f"{name} must be (N, N) or a batch (B, N, N) of square kernels, got shape {tuple(K.shape)}")
    if K.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(K.shape)})")
    check_finite(name, K)
    return K if K.ndim == 3 else K.unsqueeze(0)


def _labels(y, K3: torch.Tensor) -> torch.Tensor:
    """Real labels (1 or B, N) in K's dtype and device."""
    if isinstance(y, torch.Tensor):
        labels = y.detach().to(device=K3.device, dtype=K3.dtype)
    else:
        labels = torch.as_tensor(np.asarray(y, dtype=np.float64)).to(device=K3.device, dtype=K3.dtype)
    n = K3.shape[-1]
    if labels.shape not in ((n,), (K3.shape[0], n)):
        raise ValueError(f"y must have shape ({n},) or ({K3.shape[0]}, {n}) to match K, got {tuple(labels.shape)}")
    check_finite("y", labels)
    return labels.reshape(-1, n)


def _scalar_or_batch(kind, value: torch.Tensor, batched: bool):
    if batched:
        return kind.restore(value)
    value = value.reshape(())
    return float(value) if kind.numpy else value
