"""Data sets of the seeds, deterministic by seed, with train/test splits (see :class:`Split`).

* :func:`stripe`, :func:`sphere` — Gaussian inputs, labels from x_1 or from ||x|| (seed 002);
* :func:`parity` — sparse parity on {-1, +1}^d (seed 000);
* :func:`gaussian_mixture` — two Gaussian clouds;
* :func:`hierarchical` — the tree-structured items and features of seed 001 (deep linear networks);
* :func:`digits` — scikit-learn's 8x8 digits, PCA, a binary task (offline stand-in for 10-PCA MNIST).
* :func:`digit_images` — the same digits as ten-class 8x8 images (seed 000, layer convergence);
* :func:`two_stripes` (simplicity bias), :func:`shortcut_xor` (a 45-degree shortcut of tunable strength) (seed 000);
* :func:`edge_images` — a strong vertical or horizontal edge and a weak one per image, :func:`edge_patterns` (seed 000).

Each returns numpy arrays, or torch tensors with ``as_torch=True`` (and ``device``), in ``dtype``.
"""
from ._split import Split
from .digits import digits
from .hierarchical import HierarchicalData, correlation_svd, hierarchical
from .seed000 import (digit_images, edge_images, edge_patterns, shortcut_xor, shortcut_xor_labels, two_stripes,
                      two_stripes_labels)
from .synthetic import gaussian_mixture, parity, sphere, sphere_labels, stripe, stripe_labels

#: Data sets by name, as the seed-002 experiments pick them: ``GENERATORS[name](p, d=d, p_test=p_test, seed=seed)``.
GENERATORS = {
    "stripe": stripe,
    "sphere": sphere,
    "parity": parity,
    "gaussian_mixture": gaussian_mixture,
    "digits": digits,
}

__all__ = ["Split", "shortcut_xor", "shortcut_xor_labels", "two_stripes", "two_stripes_labels", "digit_images", "edge_images", "edge_patterns", "GENERATORS", "HierarchicalData", "correlation_svd", "digits", "hierarchical", "gaussian_mixture", "parity", "sphere", "sphere_labels", "stripe",
           "stripe_labels"]
