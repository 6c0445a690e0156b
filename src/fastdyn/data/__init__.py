"""Data sets of the seeds, deterministic by seed, with train/test splits (see :class:`Split`).

* :func:`stripe`, :func:`sphere` — Gaussian inputs, labels from x_1 or from ||x|| (seed 002);
* :func:`parity` — sparse parity on {-1, +1}^d (seed 000);
* :func:`gaussian_mixture` — two Gaussian clouds;
* :func:`hierarchical` — the tree-structured items and features of seed 001 (deep linear networks);
* :func:`digits` — scikit-learn's 8x8 digits, PCA, a binary task (offline stand-in for 10-PCA MNIST).

Each returns numpy arrays, or torch tensors with ``as_torch=True`` (and ``device``), in ``dtype``.
"""
from ._split import Split
from .digits import digits
from .hierarchical import HierarchicalData, correlation_svd, hierarchical
from .synthetic import gaussian_mixture, parity, sphere, sphere_labels, stripe, stripe_labels

GENERATORS = {
    "stripe": stripe,
    "sphere": sphere,
    "parity": parity,
    "gaussian_mixture": gaussian_mixture,
    "digits": digits,
}

__all__ = ["Split", "GENERATORS", "HierarchicalData", "correlation_svd", "digits", "hierarchical", "gaussian_mixture", "parity", "sphere", "sphere_labels", "stripe",
           "stripe_labels"]
