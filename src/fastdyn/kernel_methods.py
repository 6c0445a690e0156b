"""Kernel classifiers on precomputed Gram matrices (e.g. the NTK at initialisation or at the end of training) and a
kNN baseline, as in seed 002 (science.md sections 1 and 3).

Thin wrappers over scikit-learn: ``SVC(kernel="precomputed")`` (hinge loss, the paper's choice),
``KernelRidge(kernel="precomputed")`` and ``KNeighborsClassifier``. Each takes the train Gram matrix, train
labels, the test-vs-train Gram matrix and test labels, and returns the test error with the fitted estimator.
Inputs may be numpy arrays or torch tensors (moved to CPU float64).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._src.optional import require


@dataclass(frozen=True)
class KernelFit:
    """Test error (fraction misclassified), train error and the fitted scikit-learn estimator."""

    test_error: float
    train_error: float
    estimator: Any


def svc_error(K_train, y_train, K_test_train, y_test, *, C: float = 1.0, **svc_options) -> KernelFit:
    """Soft-margin SVM (hinge loss) on a precomputed kernel.

    Args:
        K_train: (n, n) kernel between training points.
        y_train: (n,) class labels.
        K_test_train: (m, n) kernel between test and training points.
        y_test: (m,) class labels.
        C: inverse regularisation (large C ~ hard margin); other options go to ``sklearn.svm.SVC``.
    """
    SVC = _sklearn("sklearn.svm").SVC

    K_tr, y_tr, K_te, y_te = _check(K_train, y_train, K_test_train, y_test)
    estimator = SVC(kernel="precomputed", C=C, **svc_options).fit(K_tr, y_tr)
    return KernelFit(_error(estimator.predict(K_te), y_te), _error(estimator.predict(K_tr), y_tr), estimator)


def kernel_ridge_error(K_train, y_train, K_test_train, y_test, *, ridge: float = 1e-6) -> KernelFit:
    """Kernel ridge regression on one-hot (two classes: +-1) targets, classifying by the largest output (sign).

    Args as in :func:`svc_error`; ``ridge`` is ``KernelRidge``'s alpha (added to the kernel's diagonal).
    """
    KernelRidge = _sklearn("sklearn.kernel_ridge").KernelRidge

    K_tr, y_tr, K_te, y_te = _check(K_train, y_train, K_test_train, y_test)
    classes = np.unique(y_tr)
    if classes.shape[0] < 2:
        raise ValueError("y_train must contain at least two classes")
    if classes.shape[0] == 2:
        targets = np.where(y_tr == classes[1], 1.0, -1.0)
    else:
        targets = (y_tr[:, None] == classes[None, :]).astype(np.float64)
    estimator = KernelRidge(alpha=ridge, kernel="precomputed").fit(K_tr, targets)

    def predict(K):
        out = estimator.predict(K)
        return classes[(out > 0).astype(int)] if classes.shape[0] == 2 else classes[out.argmax(axis=1)]

    return KernelFit(_error(predict(K_te), y_te), _error(predict(K_tr), y_tr), estimator)


def knn_error(X_train, y_train, X_test, y_test, *, k: int = 5) -> KernelFit:
    """k-nearest-neighbour classifier (Euclidean, majority vote) on raw features: the baseline of seed 002."""
    KNeighborsClassifier = _sklearn("sklearn.neighbors").KNeighborsClassifier

    X_tr, X_te = _numpy("X_train", X_train), _numpy("X_test", X_test)
    y_tr, y_te = _numpy_labels("y_train", y_train, X_tr.shape[0]), _numpy_labels("y_test", y_test, X_te.shape[0])
    if X_tr.ndim != 2 or X_te.ndim != 2 or X_tr.shape[1] != X_te.shape[1]:
        raise ValueError(f"X_train (n, d) and X_test (m, d) must share d, got {X_tr.shape} and {X_te.shape}")
    if not 1 <= k <= X_tr.shape[0]:
        raise ValueError(f"k must be between 1 and the number of training points {X_tr.shape[0]}, got {k}")
    estimator = KNeighborsClassifier(n_neighbors=k).fit(X_tr, y_tr)
    return KernelFit(_error(estimator.predict(X_te), y_te), _error(estimator.predict(X_tr), y_tr), estimator)


def _sklearn(module_name: str):
    return require(module_name, "experiments", "fastdyn.kernel_methods")


def _check(K_train, y_train, K_test_train, y_test):
    K_tr, K_te = _numpy("K_train", K_train), _numpy("K_test_train", K_test_train)
    if K_tr.ndim != 2 or K_tr.shape[0] != K_tr.shape[1] or K_tr.shape[0] == 0:
        raise ValueError(f"K_train must be a non-empty square (n, n) kernel, got shape {K_tr.shape}")
    n = K_tr.shape[0]
    if K_te.ndim != 2 or K_te.shape[1] != n or K_te.shape[0] == 0:
        raise ValueError(f"K_test_train must be (m, {n}) (test x train), got shape {K_te.shape}")
    return K_tr, _numpy_labels("y_train", y_train, n), K_te, _numpy_labels("y_test", y_test, K_te.shape[0])


def _numpy(name: str, value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must hold floats, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return array.astype(np.float64, copy=False)


def _numpy_labels(name: str, value, n: int) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    return array


def _error(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predicted != labels))
