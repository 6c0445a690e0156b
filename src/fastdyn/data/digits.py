"""scikit-learn's bundled 8x8 digits as an offline stand-in for 10-PCA MNIST (science.md section 1)."""
from __future__ import annotations

import numpy as np

from .._src.optional import require
from ._split import Split, check_sizes, make_split, streams

N_IMAGES = 1797  # in sklearn's digits

TASKS = {
    "parity": "even (+1) vs odd (-1) digits",
    "small": "digits 0-4 (+1) vs 5-9 (-1)",
}


def digits(p: int = 1000, *, d: int = 10, task: str = "parity", p_test: int | None = None, seed: int = 0,
           whiten: bool = True, dtype="float64", as_torch: bool = False, device=None) -> Split:
    """Binary digits task: ``d`` principal components of the 64 pixels, fit on the training images.

    Args:
        p: training images (the ``N_IMAGES`` images are shuffled by ``seed`` and split; 1 <= p < N_IMAGES).
        d: PCA components (1..64).
        task: "parity" (even vs odd) or "small" (0-4 vs 5-9).
        p_test: test images (default: all the others).
        whiten: scale each component to unit variance on the training set (feature_lazy's default), else
            scale all components by one factor so that the mean squared norm is d.

    ``info`` holds the digit labels ``"digit"`` and ``"digit_test"`` and the explained variance ratio.
    """
    load_digits = require("sklearn.datasets", "experiments", "fastdyn.data.digits").load_digits
    PCA = require("sklearn.decomposition", "experiments", "fastdyn.data.digits").PCA

    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    images, labels = load_digits(return_X_y=True)
    n = len(labels)
    check_sizes(p=p, d=d)
    if not p < n:
        raise ValueError(f"p must be < {n} (the number of images), got {p}")
    if not d <= images.shape[1]:
        raise ValueError(f"d must be <= {images.shape[1]}, got {d}")
    p_test = n - p if p_test is None else p_test
    check_sizes(p_test=p_test)
    if p + p_test > n:
        raise ValueError(f"p + p_test must be <= {n}, got {p} + {p_test}")
    order = streams(seed, "digits", 1)[0].permutation(n)
    train, test = order[:p], order[p:p + p_test]
    pca = PCA(n_components=d, whiten=whiten, random_state=0).fit(images[train])
    x, x_test = pca.transform(images[train]), pca.transform(images[test])
    if not whiten:
        scale = np.sqrt(d / np.mean(np.sum(x ** 2, axis=1)))
        x, x_test = x * scale, x_test * scale

    def label(digit):
        return np.where(digit % 2 == 0, 1.0, -1.0) if task == "parity" else np.where(digit < 5, 1.0, -1.0)

    info = {"digit": labels[train], "digit_test": labels[test],
            "explained_variance_ratio": pca.explained_variance_ratio_}
    return make_split(x, label(labels[train]), x_test, label(labels[test]), dtype, as_torch, device, info=info)
