"""Kernel, information and representation observables (science.md sections 1, 3 and 6).

Kernels (seed 002):

* :func:`alignment` kernel-target alignment (Cristianini et al. 2002), batched over kernels.
* :func:`cka` centred kernel alignment (Kornblith et al. 2019), batched and broadcast over kernels.
* :func:`effective_rank` of a kernel from its spectrum.
* :func:`intrinsic_dimension` TwoNN estimator (Facco et al. 2017).

Information (seed 000's simplicity bias):

* :func:`mutual_information` kNN estimate of I(feature; label) for continuous features and a discrete label
  (Ross 2014, the estimator of sklearn's ``mutual_info_classif``), one value per feature column.
* :func:`discrete_mutual_information`, :func:`conditional_mutual_information` plug-in estimates with the
  Miller-Madow bias correction (kNN for continuous scores); :func:`simplicity_bias` Nakkiran et al.'s
  mu = I(F; Y) - I(F; Y | L).

Representations (seed 000's layer convergence), activations (..., N, features) batched over leading dims:

* :func:`canonical_correlations`, :func:`svcca` (Raghu et al. 2017), :func:`pwcca` (Morcos et al. 2018);
* :func:`linear_cka` on activations, in full or in the minibatch unbiased-HSIC form (Nguyen et al. 2021);
* :func:`activations` every named layer's output in one forward pass.

Snapshot observables for :func:`fastdyn.train` (``observables={name: fn}``): :func:`activations_observable`,
:func:`simplicity_bias_observable`.

Kernel functions take numpy or torch (CPU/CUDA) and answer in the same kind; they never copy an N x N kernel.
"""
from __future__ import annotations

import numpy as np
import torch
from dataclasses import dataclass
from typing import Callable, Sequence

from scipy.special import digamma
from torch import nn

from ._src.arrays import as_tensor, as_tensors, check_finite
from ._src import checks, gram, similarity
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


def cka(K1, K2, *, unbiased: bool = False):
    """Centred kernel alignment <H K1 H, H K2 H>_F / (||H K1 H||_F ||H K2 H||_F), in [0, 1] for PSD kernels.

    Args:
        K1, K2: (N, N) kernels or batches (..., N, N) that broadcast against each other (e.g. a batch of NTK
            snapshots against the final NTK).
        unbiased: use the unbiased HSIC estimator of Song et al. (2012) in place of <H K1 H, H K2 H>_F (N >= 4;
            the value may then fall slightly below 0 for unrelated kernels).

    Returns:
        The broadcast batch of CKA values, or a scalar for two single kernels.
    """
    (K1_t, K2_t), kind = as_tensors(K1=K1, K2=K2)
    for name, K in (("K1", K1_t), ("K2", K2_t)):
        _kernels(name, K)
    if K1_t.shape[-1] != K2_t.shape[-1]:
        raise ValueError(f"K1 and K2 must be kernels on the same N points, got {tuple(K1_t.shape)} and {tuple(K2_t.shape)}")
    inner = gram.centred_inner
    if unbiased:
        if K1_t.shape[-1] < 4:
            raise ValueError(f"unbiased CKA needs N >= 4 points, got N = {K1_t.shape[-1]}")
        inner = gram.unbiased_hsic
    value = inner(K1_t, K2_t) / torch.sqrt(inner(K1_t, K1_t) * inner(K2_t, K2_t))
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


def discrete_mutual_information(a, b, *, correction: str = "miller-madow") -> float:
    """Plug-in estimate of the mutual information I(A; B) (nats) of two discrete variables, clipped at 0.

    I = H(A) + H(B) - H(A, B) from the empirical frequencies. ``correction="miller-madow"`` adds (m - 1) / (2N) to
    each entropy (m: the number of values seen), which removes the O(1/N) bias of the plug-in entropy; "none"
    gives the plain plug-in estimate.

    Args:
        a, b: (N,) discrete values (ints, +-1 floats, strings...), e.g. a network's predicted class and the label.
    """
    codes = _discrete_codes(a=a, b=b)
    return max(0.0, _entropy_sum(codes, correction, [("a",), ("b",)], [("a", "b")]))


def conditional_mutual_information(f, y, l, *, estimator: str = "plugin", k: int = 5,
                                   correction: str = "miller-madow") -> float:
    """I(F; Y | L) (nats): what F tells about Y beyond what L does, clipped at 0.

    * ``estimator="plugin"``, F discrete (a predicted class): H(F, L) + H(Y, L) - H(F, Y, L) - H(L) from the
      empirical frequencies, each entropy with the Miller-Madow correction (``correction``, see
      :func:`discrete_mutual_information`). Y = L gives exactly 0.
    * ``estimator="knn"``, F real (a score, e.g. the network's output): sum_l P(L = l) I(F; Y | L = l), each term
      the kNN estimate of :func:`mutual_information` (Ross 2014) on the points with L = l; a stratum whose Y takes
      one value (or has no two points of a class) contributes 0.

    Args:
        f: (N,) the network's predictions (plugin) or scores (knn).
        y: (N,) discrete labels.
        l: (N,) discrete predictions of the reference classifier (e.g. the best linear one).
    """
    if estimator == "plugin":
        codes = _discrete_codes(f=f, y=y, l=l)
        value = _entropy_sum(codes, correction, [("f", "l"), ("y", "l")], [("f", "y", "l"), ("l",)])
        return max(0.0, value)
    if estimator != "knn":
        raise ValueError(f"estimator must be 'plugin' or 'knn', got {estimator!r}")
    scores = _real_scores("f", f)
    codes = _discrete_codes(y=y, l=l, n=scores.shape[0])
    total = 0.0
    for stratum in np.unique(codes["l"]):
        members = codes["l"] == stratum
        labels = codes["y"][members]
        if np.unique(labels).size < 2 or np.bincount(labels).max() < 2:
            continue
        total += members.mean() * mutual_information(scores[members], labels, k=k)
    return total


@dataclass(frozen=True)
class SimplicityBias:
    """Nakkiran et al.'s decomposition (nats): mu = I(F;Y) - I(F;Y|L) is the part of the network's information about
    the label that the reference classifier L explains; it is at most I(L;Y). Floats, or (T,) arrays for T
    snapshots."""

    mi_fy: float | np.ndarray
    mi_fy_given_l: float | np.ndarray
    mu: float | np.ndarray
    mi_ly: float | np.ndarray

    FIELDS = ("mi_fy", "mi_fy_given_l", "mu", "mi_ly")


def simplicity_bias(f, l, y, *, estimator: str = "plugin", k: int = 5,
                    correction: str = "miller-madow") -> SimplicityBias:
    """Nakkiran et al. (2019)'s mu(F) = I(F; Y) - I(F; Y | L) with its parts and I(L; Y).

    Early in training mu ~ I(F; Y) (L accounts for all the network knows); the two part once F learns what L cannot.

    Args:
        f: (N,) or (T, N) the network's predictions (classes, ``estimator="plugin"``) or scores ("knn"), T snapshots.
        l: (N,) the reference classifier's predictions on the same points.
        y: (N,) labels.
        estimator, k, correction: as in :func:`conditional_mutual_information`.
    """
    rows = np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f)
    if rows.ndim not in (1, 2):
        raise ValueError(f"f must be (N,) predictions or (T, N) snapshots of them, got shape {rows.shape}")
    mi_ly = discrete_mutual_information(l, y, correction=correction)
    values = []
    for row in np.atleast_2d(rows):
        if estimator == "knn":
            mi_fy = mutual_information(_real_scores("f", row), np.asarray(y), k=k)
        else:
            mi_fy = discrete_mutual_information(row, y, correction=correction)
        given = conditional_mutual_information(row, y, l, estimator=estimator, k=k, correction=correction)
        values.append((mi_fy, given, mi_fy - given))
    table = np.array(values)
    if rows.ndim == 1:
        return SimplicityBias(*(float(v) for v in table[0]), mi_ly=mi_ly)
    return SimplicityBias(table[:, 0], table[:, 1], table[:, 2], np.full(table.shape[0], mi_ly))


def canonical_correlations(A, B, *, keep: float | None = None):
    """Canonical correlations between two representations of the same N points, descending, in [0, 1].

    Each side is centred and reduced to its leading singular directions that explain ``keep`` of its variance (all
    directions above the numerical rank for None); the correlations are the singular values of U_A^T U_B (cosines
    of the principal angles between the two subspaces), so no covariance matrix is inverted.

    Args:
        A: (..., N, pA) activations (N points, pA neurons); B: (..., N, pB), batch dims broadcast against A's.
        keep: fraction of variance kept on each side, in (0, 1], or None.

    Returns:
        (m,) correlations, m = min(kA, kB) the kept dimensions, for 2-D inputs; for batches (..., min(pA, pB)) with
        NaN past each pair's m.
    """
    pairs, kind = _cca_pairs(A, B, keep, weights=False)
    if pairs.batch == ():
        return kind.restore(pairs.results[0][0])
    width = min(pairs.A.shape[-1], pairs.B.shape[-1])
    out = torch.full((len(pairs.results), width), float("nan"), dtype=kind.dtype, device=kind.device)
    for i, (rho, _) in enumerate(pairs.results):
        out[i, :rho.shape[0]] = rho
    return kind.restore(out.reshape(*pairs.batch, width))


def svcca(A, B, *, keep: float = 0.99):
    """SVCCA similarity (Raghu et al. 2017): the mean canonical correlation after keeping, on each side, the leading
    singular directions that explain ``keep`` of its variance (0.99 in the paper). 1 for A against itself or any
    invertible linear map of it (a rotation, a rescaling), up to rounding and never above 1; symmetric.

    Args:
        A: (..., N, pA), B: (..., N, pB) activations on the same N points; batch dims broadcast (e.g. a stack of
            snapshots (S, N, p) against the final layer (N, p)).

    Returns:
        A float for 2-D numpy inputs (0-d tensor for torch), else the (...) batch; NaN where a side has no variance.
    """
    pairs, kind = _cca_pairs(A, B, keep, weights=False)
    values = [rho.mean() if rho.numel() else torch.tensor(float("nan")) for rho, _ in pairs.results]
    return _similarity_result(kind, values, pairs.batch)


def pwcca(A, B, *, keep: float | None = None):
    """Projection-weighted CCA (Morcos, Raghu & Bengio 2018): sum_i alpha_i rho_i / sum_i alpha_i with
    alpha_i = sum_j |<h_i, a_j>| the weight of A's canonical variate h_i (unit norm) in A's centred neurons a_j.
    Not symmetric: the weights come from A. ``keep`` truncates each side as in :func:`svcca` (None: every direction
    above the numerical rank, as the paper). Shapes and returns as :func:`svcca`.
    """
    pairs, kind = _cca_pairs(A, B, keep, weights=True)
    values = [(rho * alpha).sum() / alpha.sum() if rho.numel() else torch.tensor(float("nan"))
              for rho, alpha in pairs.results]
    return _similarity_result(kind, values, pairs.batch)


def linear_cka(A, B, *, batch_size: int | None = None):
    """Linear CKA of two representations of the same N points (Kornblith et al. 2019), in [0, 1].

    ``batch_size=None``: ||A^T B||_F^2 / (||A^T A||_F ||B^T B||_F) of the centred activations, computed in feature
    space (N p^2) or point space (N^2 p), whichever is cheaper; 1 for A against itself, a rotation or a rescaling
    of it (to rounding, clamped to at most 1). ``batch_size=n``: the minibatch form of Nguyen, Raghu & Kornblith
    (2021): the unbiased HSIC (Song et al. 2012) of consecutive batches of n >= 4 points, summed over batches
    before the ratio (unbiased in each batch, so it does not shrink with n; invariant to shifts of the features,
    so no centring is needed).

    Args:
        A: (..., N, pA), B: (..., N, pB) activations; batch dims broadcast (e.g. (L, S, N, p) layers x snapshots
            against (L, 1, N, p) final states). Each side's self-term is computed once for its own batch.

    Returns:
        A float for 2-D numpy inputs (0-d tensor for torch), else the (...) batch; NaN where a side has no variance.
    """
    A_t, B_t, kind, batch = _activation_pair(A, B)
    if batch_size is None:
        value = similarity.linear_cka(similarity.centre(A_t), similarity.centre(B_t))
    else:
        batch_size = checks.integer("batch_size", batch_size, minimum=4)
        value = similarity.minibatch_linear_cka(A_t, B_t, batch_size)
    return _scalar_or_batch(kind, value, batch != ())


def activations(model: nn.Module, x, layers: Sequence[str] | None = None, *,
                batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Outputs of named submodules of ``model`` on ``x``, collected in one forward pass per batch (forward hooks).

    The model runs as it is (call ``model.eval()`` first for dropout or BatchNorm in inference mode), without
    gradients. Each output is flattened per point: a conv layer's (N, C, H, W) becomes (N, C H W).

    Args:
        model: any nn.Module.
        x: (N, ...) inputs the model accepts (tensor or numpy).
        layers: names from ``model.named_modules()`` (e.g. "0", "3", "block.conv1"); None for every child of an
            nn.Sequential, in order.
        batch_size: points per forward pass (None: all at once).

    Returns:
        {name: (N, features) tensor on CPU, detached}, in the order of ``layers``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layers is None:
        if not isinstance(model, nn.Sequential):
            raise ValueError(f"layers must name the submodules to record for a {type(model).__name__} (not an "
                             f"nn.Sequential); its submodules: {[n for n in modules if n][:20]}")
        layers = [name for name, _ in model.named_children()]
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers) or not layers:
        raise TypeError(f"layers must be a non-empty list of submodule names, got {layers!r}")
    for name in layers:
        if name not in modules:
            raise ValueError(f"layers: {name!r} is not a submodule of the model; its submodules: "
                             f"{[n for n in modules if n][:20]}")
    inputs = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    n = inputs.shape[0] if inputs.ndim else 0
    if n == 0:
        raise ValueError(f"x must hold at least one point (N, ...), got shape {tuple(inputs.shape)}")
    size = n if batch_size is None else checks.integer("batch_size", batch_size)
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    current: dict[str, torch.Tensor] = {}

    def recorder(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returned {type(output).__name__}, not a tensor; record another layer")
            if name in current:
                raise ValueError(f"layer {name!r} ran twice in one forward pass (a shared module); name a module "
                                 "used once")
            current[name] = output.detach().reshape(output.shape[0], -1).cpu()
        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in layers]
    try:
        with torch.no_grad():
            for start in range(0, n, size):
                current.clear()
                model(inputs[start:start + size])
                for name in layers:
                    if name not in current:
                        raise ValueError(f"layer {name!r} did not run in the model's forward pass")
                    collected[name].append(current[name])
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts) for name, parts in collected.items()}


def activations_observable(x=None, layers: Sequence[str] | None = None, *,
                           batch_size: int | None = None) -> Callable:
    """A snapshot observable for :func:`fastdyn.train` recording :func:`activations` of ``layers`` on ``x`` (None:
    the training inputs); ``result.snapshots[i].observables[name]`` is then the {layer: (N, features)} dict."""
    def observe(model, context):
        return activations(model, context.x if x is None else x, layers, batch_size=batch_size)
    return observe


def simplicity_bias_observable(reference, *, on: str = "test", correction: str = "miller-madow") -> Callable:
    """A snapshot observable for :func:`fastdyn.train`: :func:`simplicity_bias` of the network's predicted class
    (sign of F for one output, argmax for several) against the reference classifier's predictions ``reference``
    (N,) on the ``on`` set ("test" or "train"), as a (4,) array in the order of ``SimplicityBias.FIELDS``
    (``result.history()["obs_<name>"]`` is then (snapshots, 4))."""
    if on not in ("test", "train"):
        raise ValueError(f"on must be 'test' or 'train', got {on!r}")

    def observe(model, context):
        out, y = (context.test_out, context.y_test) if on == "test" else (context.train_out, context.y)
        if out is None:
            raise ValueError("simplicity_bias_observable(on='test') needs x_test and y_test in fastdyn.train")
        predicted = torch.sign(out) if out.ndim == 1 else out.argmax(dim=1)
        parts = simplicity_bias(predicted.cpu().numpy(), reference, y.cpu().numpy(), correction=correction)
        return np.array([getattr(parts, field) for field in SimplicityBias.FIELDS])
    return observe


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


def _discrete_codes(n: int | None = None, **variables) -> dict[str, np.ndarray]:
    """Each named 1-D discrete variable as integer codes 0..m-1, all of one length (``n`` if given)."""
    codes = {}
    for name, value in variables.items():
        array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array of discrete values, got shape {array.shape}")
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or Inf")
        n = array.shape[0] if n is None else n
        if array.shape[0] != n:
            raise ValueError(f"{name} has {array.shape[0]} entries but the other arguments have {n}")
        codes[name] = np.unique(array, return_inverse=True)[1].reshape(-1)
    return codes


def _entropy(codes: dict[str, np.ndarray], names: tuple[str, ...], correction: str) -> float:
    """Plug-in joint entropy (nats) of the named variables, with the Miller-Madow term (m - 1) / (2N)."""
    joint = np.zeros_like(codes[names[0]])
    for name in names:
        joint = joint * (codes[name].max() + 1) + codes[name]
    counts = np.unique(joint, return_counts=True)[1]
    n = joint.shape[0]
    p = counts / n
    entropy = float(-(p * np.log(p)).sum())
    if correction == "miller-madow":
        return entropy + (counts.size - 1) / (2 * n)
    if correction == "none":
        return entropy
    raise ValueError(f"correction must be 'miller-madow' or 'none', got {correction!r}")


def _entropy_sum(codes, correction: str, plus, minus) -> float:
    return (sum(_entropy(codes, names, correction) for names in plus)
            - sum(_entropy(codes, names, correction) for names in minus))


def _real_scores(name: str, value) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of real scores, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def _activation_pair(A, B):
    """A, B as tensors (..., N, p) on the same points, with their kind and broadcast batch shape."""
    (A_t, B_t), kind = as_tensors(A=A, B=B)
    for name, T in (("A", A_t), ("B", B_t)):
        if T.ndim < 2 or T.shape[-1] == 0 or T.shape[-2] < 2:
            raise ValueError(f"{name} must be activations (..., N, features) with N >= 2 points and at least one "
                             f"feature, got shape {tuple(T.shape)}")
        check_finite(name, T)
    if A_t.shape[-2] != B_t.shape[-2]:
        raise ValueError(f"A and B must hold the same N points (axis -2), got {tuple(A_t.shape)} and {tuple(B_t.shape)}")
    try:
        batch = torch.broadcast_shapes(A_t.shape[:-2], B_t.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the batch dims of A {tuple(A_t.shape[:-2])} and B {tuple(B_t.shape[:-2])} do not "
                         "broadcast") from None
    return A_t, B_t, kind, tuple(batch)


@dataclass
class _CCAPairs:
    A: torch.Tensor
    B: torch.Tensor
    batch: tuple[int, ...]
    results: list


def _cca_pairs(A, B, keep, weights: bool):
    """similarity.cca for every broadcast pair; each side's SVD is computed once per element of its own batch."""
    A_t, B_t, kind, batch = _activation_pair(A, B)
    if keep is not None:
        keep = checks.real("keep", keep)
        if keep > 1:
            raise ValueError(f"keep must be a fraction of variance in (0, 1] or None, got {keep}")
    directions = {}
    for name, T in (("A", A_t), ("B", B_t)):
        flat = similarity.centre(T).reshape(-1, *T.shape[-2:])
        directions[name] = [similarity.kept_directions(M, keep) for M in flat]
    index = {name: torch.arange(len(directions[name])).reshape(T.shape[:-2]).broadcast_to(batch).reshape(-1)
             for name, T in (("A", A_t), ("B", B_t))}
    results = [similarity.cca(directions["A"][int(i)], directions["B"][int(j)], weights)
               for i, j in zip(index["A"], index["B"])]
    return _CCAPairs(A_t, B_t, batch, results), kind


def _similarity_result(kind, values: list[torch.Tensor], batch: tuple[int, ...]):
    stacked = torch.stack([v.to(dtype=kind.dtype, device=kind.device) for v in values]).reshape(batch)
    return _scalar_or_batch(kind, stacked, batch != ())
