"""Synthetic classification data of seeds 000 and 002 (definitions in science.md section 1 and 6).

Every generator is deterministic in ``seed``: the training set is drawn from its own random stream, so it does not
change with ``p_test`` (and the test set does not change with ``p``). Labels are +-1.
"""
from __future__ import annotations

import numpy as np

from ._split import Split, check_sizes, make_split, streams

STRIPE_BOUNDS = (-0.3, 1.18549)  # P(-0.3 < x_1 < 1.18549) = 1/2 for x_1 ~ N(0, 1): balanced classes


def stripe_labels(x: np.ndarray) -> np.ndarray:
    """y = -1 inside the stripe -0.3 < x_1 < 1.18549, +1 outside."""
    inside = (x[:, 0] > STRIPE_BOUNDS[0]) & (x[:, 0] < STRIPE_BOUNDS[1])
    return np.where(inside, -1.0, 1.0)


def sphere_labels(x: np.ndarray) -> np.ndarray:
    """y = +1 if ||x||^2 > d (1 - 2/(9d))^3 (the chi^2_d median, Wilson-Hilferty), else -1."""
    d = x.shape[1]
    return np.where((x ** 2).sum(axis=1) > d * (1 - 2 / (9 * d)) ** 3, 1.0, -1.0)


def stripe(p: int, d: int, *, p_test: int = 1000, seed: int = 0, dtype="float64", as_torch: bool = False,
           device=None) -> Split:
    """Stripe model: x ~ N(0, I_d), label from x_1 only (the informative direction; x_2..x_d are noise)."""
    check_sizes(p=p, d=d, p_test=p_test)
    xs = [rng.standard_normal((n, d)) for rng, n in zip(streams(seed, "stripe"), (p, p_test))]
    return make_split(xs[0], stripe_labels(xs[0]), xs[1], stripe_labels(xs[1]), dtype, as_torch, device)


def sphere(p: int, d: int, *, p_test: int = 1000, seed: int = 0, dtype="float64", as_torch: bool = False,
           device=None) -> Split:
    """Sphere model: x ~ N(0, I_d), y = sign(||x||^2 - median): rotation invariant, no compressible direction."""
    check_sizes(p=p, d=d, p_test=p_test)
    xs = [rng.standard_normal((n, d)) for rng, n in zip(streams(seed, "sphere"), (p, p_test))]
    return make_split(xs[0], sphere_labels(xs[0]), xs[1], sphere_labels(xs[1]), dtype, as_torch, device)


def parity(p: int, d: int, *, k: int | None = None, subset=None, p_test: int = 1000, seed: int = 0,
           dtype="float64", as_torch: bool = False, device=None) -> Split:
    """Sparse parity: x uniform in {-1, +1}^d, y = prod_{i in I} x_i.

    Args:
        k: size of the random subset I (drawn from ``seed``); default: all d coordinates.
        subset: the subset I itself (indices in [0, d)), instead of ``k``.

    The chosen subset is ``split.info["subset"]``.
    """
    check_sizes(p=p, d=d, p_test=p_test)
    rng_subset, rng_train, rng_test = streams(seed, "parity", 3)
    if subset is not None and k is not None:
        raise ValueError("give k or subset, not both")
    if subset is None:
        k = d if k is None else int(k)
        if not 1 <= k <= d:
            raise ValueError(f"k must be in [1, d={d}], got {k}")
        subset = np.sort(rng_subset.choice(d, size=k, replace=False))
    subset = np.asarray(subset, dtype=np.int64)
    if subset.ndim != 1 or subset.size == 0 or subset.min() < 0 or subset.max() >= d or len(set(subset)) != subset.size:
        raise ValueError(f"subset must list distinct indices in [0, {d}), got {subset.tolist()}")

    def draw(rng, n):
        x = rng.choice(np.array([-1.0, 1.0]), size=(n, d))
        return x, np.prod(x[:, subset], axis=1)

    x, y = draw(rng_train, p)
    xt, yt = draw(rng_test, p_test)
    return make_split(x, y, xt, yt, dtype, as_torch, device, info={"subset": subset.tolist()})


def gaussian_mixture(p: int, d: int, *, separation: float = 2.0, p_test: int = 1000, seed: int = 0,
                     dtype="float64", as_torch: bool = False, device=None) -> Split:
    """Two Gaussian clouds N(+-separation/2 e_1, I_d); exactly balanced labels (alternating +1, -1), shuffled."""
    check_sizes(p=p, d=d, p_test=p_test)
    if not separation >= 0:
        raise ValueError(f"separation must be >= 0, got {separation}")

    def draw(rng, n):
        y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        rng.shuffle(y)
        x = rng.standard_normal((n, d))
        x[:, 0] += 0.5 * separation * y
        return x, y

    (x, y), (xt, yt) = (draw(rng, n) for rng, n in zip(streams(seed, "mixture"), (p, p_test)))
    return make_split(x, y, xt, yt, dtype, as_torch, device)
