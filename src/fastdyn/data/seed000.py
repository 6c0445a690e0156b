"""Data generators of the seed-000 toys ("what is learned and when"), deterministic in ``seed``.

Each generator draws its training and test sets from their own random streams (:func:`._split.streams`), so the
training set does not change with ``p_test`` and vice versa; it returns a :class:`Split`.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np

from .._src.optional import require
from ._split import Split, check_sizes, make_split, streams


# ---- layer-convergence: ten-class 8x8 digits as images -------------------------------------------------------------
def digit_images(p: int = 1200, *, p_test: int | None = None, seed: int = 0, dtype="float32", as_torch: bool = False,
                 device=None) -> Split:
    """scikit-learn's 1797 8x8 digits, all ten classes, as flattened images (N, 64) in row-major pixel order.

    The images are shuffled by ``seed`` and split into ``p`` training and ``p_test`` test images (default: all the
    others). Pixels (0..16) are centred by the training set's per-pixel mean and divided by its overall standard
    deviation. Labels ``y``, ``y_test`` are the digits 0..9 as int64 (numpy, or torch with ``as_torch``).
    Reshape x to (N, 1, 8, 8) for a convolutional network.
    """
    load_digits = require("sklearn.datasets", "experiments", "fastdyn.data.digit_images").load_digits
    images, labels = load_digits(return_X_y=True)
    n = len(labels)
    p_test = n - p if p_test is None else p_test
    check_sizes(p=p, p_test=p_test)
    if p + p_test > n:
        raise ValueError(f"p + p_test must be <= {n} (the number of images), got {p} + {p_test}")
    order = streams(seed, "digit_images", 1)[0].permutation(n)
    train, test = order[:p], order[p:p + p_test]
    mean, scale = images[train].mean(axis=0), images[train].std()
    split = make_split((images[train] - mean) / scale, labels[train], (images[test] - mean) / scale, labels[test],
                       dtype, as_torch, device, info={"shape": (1, 8, 8), "classes": 10})
    y, y_test = labels[train].astype(np.int64), labels[test].astype(np.int64)
    if as_torch:
        import torch

        y, y_test = torch.from_numpy(y).to(device), torch.from_numpy(y_test).to(device)
    return Split(split.x, y, split.x_test, y_test, info=split.info)


# ---- specialisation: images made of a vertical and a horizontal edge ----------------------------------------------
def edge_patterns(size: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(V, H), each (size * size,) float64 of unit norm: a vertical edge V[i, j] = sign(j - c) (dark left, bright
    right, c = (size - 1) / 2, so the middle column of an odd size is 0) and the horizontal edge H = V transposed.
    V . H = 0."""
    check_sizes(size=size)
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    ramp = np.sign(np.arange(size) - (size - 1) / 2)
    vertical = np.tile(ramp, (size, 1))
    vertical /= np.linalg.norm(vertical)
    return vertical.ravel(), vertical.T.ravel()


def edge_images(p: int = 2000, *, size: int = 7, p_test: int = 2000, noise: float = 0.2, low: float = 0.6,
                high: float = 1.4, distractor: float = 0.5, seed: int = 0, dtype="float32", as_torch: bool = False,
                device=None) -> Split:
    """The seed's edge-detector toy: each image holds a strong edge, vertical (label +1) or horizontal (label -1),
    and a weak edge of the other orientation.

    x = a V + b H + noise * eps, eps ~ N(0, I) on the size x size pixels (flattened, (N, size * size)), with
    (V, H) = :func:`edge_patterns`. A fair coin picks the strong edge; its amplitude is s * u, s = +-1 its polarity
    (fair coin), u ~ U(low, high) its contrast; the other amplitude is U(-distractor, distractor). So
    y = sign(|a| - |b|) with a margin when distractor < low: no linear function of x predicts it (the class means
    are both 0), and a neuron mixing V and H at 45 degrees responds alike to both classes (a + b is symmetric in
    the two); four pure ReLU detectors relu(+-V . x), relu(+-H . x) solve it (f = |a| - |b| up to noise).
    distractor = 0 leaves one edge per image.

    ``info`` holds "V", "H" and the amplitudes "a", "b", "a_test", "b_test".
    """
    check_sizes(p=p, p_test=p_test, size=size)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, got low={low!r}, high={high!r}")
    if not (np.isfinite(distractor) and distractor >= 0):
        raise ValueError(f"distractor must be finite and >= 0, got {distractor!r}")
    vertical, horizontal = edge_patterns(size)
    out = []
    for rng, n in zip(streams(seed, "edge_images"), (p, p_test)):
        is_vertical = rng.random(n) < 0.5
        amplitude = rng.choice([-1.0, 1.0], size=n) * rng.uniform(low, high, size=n)
        weak = rng.uniform(-distractor, distractor, size=n)
        a, b = np.where(is_vertical, amplitude, weak), np.where(is_vertical, weak, amplitude)
        x = a[:, None] * vertical + b[:, None] * horizontal + noise * rng.standard_normal((n, size * size))
        out.append((x, np.where(is_vertical, 1.0, -1.0), a, b))
    (x, y, a, b), (x_test, y_test, a_test, b_test) = out
    info = {"V": vertical, "H": horizontal, "a": a, "b": b, "a_test": a_test, "b_test": b_test, "size": size}
    return make_split(x, y, x_test, y_test, dtype, as_torch, device, info=info)


# ---- simplicity-bias: labels alternating across diagonal stripes --------------------------------------------------
_NORMAL = NormalDist()  # standard normal: cdf Phi, inv_cdf Phi^-1


def _diagonal_coordinates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u = (x_1 + x_2) / sqrt(2) (across the 45-degree lines) and v = (x_1 - x_2) / sqrt(2) (along them)."""
    return (x[:, 0] + x[:, 1]) / np.sqrt(2.0), (x[:, 0] - x[:, 1]) / np.sqrt(2.0)


def two_stripes_labels(x: np.ndarray, width: float) -> np.ndarray:
    """+-1 labels of :func:`two_stripes` on x (N, 2): sign(u) outside the two stripes |u| < width, -sign(u) inside."""
    u, _ = _diagonal_coordinates(np.asarray(x, dtype=np.float64))
    return np.where(np.abs(u) < width, -1.0, 1.0) * np.where(u > 0, 1.0, -1.0)


def two_stripes(p: int = 2000, *, width: float = 0.2533, p_test: int = 4000, seed: int = 0, dtype="float64",
                as_torch: bool = False, device=None) -> Split:
    """2-D data whose labels alternate across four diagonal (45-degree) bands (Nakkiran et al. 2019's simplicity toy).

    x ~ N(0, I_2) and u = (x_1 + x_2) / sqrt(2) ~ N(0, 1). Going across the diagonal the labels alternate
    -1 | +1 | -1 | +1 at u = -width, 0, width: two thin stripes -width < u < 0 (label +1) and 0 < u < width (-1) in
    the middle, flanked by half-planes u < -width (-1) and u > width (+1). Classes are balanced. Every half-plane
    classifier is a monotone step in some direction, so the best one is sign(u), right everywhere but in the two
    stripes: accuracy 2 (1 - Phi(width)) (0.80 at the default width = Phi^-1(0.6)). The points it gets wrong lie
    near its boundary, so logistic regression finds it too; the stripes need a non-linear classifier (three
    parallel boundaries).

    ``info``: "width", "linear_accuracy" (2 (1 - Phi(width)), the population value), "u" and "u_test".
    """
    check_sizes(p=p, p_test=p_test)
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"width must be finite and > 0, got {width!r}")
    xs = [rng.standard_normal((n, 2)) for rng, n in zip(streams(seed, "two_stripes"), (p, p_test))]
    info = {"width": float(width), "linear_accuracy": float(2 * (1 - _NORMAL.cdf(width))),
            "u": _diagonal_coordinates(xs[0])[0], "u_test": _diagonal_coordinates(xs[1])[0]}
    return make_split(xs[0], two_stripes_labels(xs[0], width), xs[1], two_stripes_labels(xs[1], width), dtype,
                      as_torch, device, info=info)


# ---- simple-shortcut: a 45-degree half-plane that predicts a fraction `strength` of the labels --------------------
def shortcut_xor_labels(x: np.ndarray, strength: float) -> np.ndarray:
    """+-1 labels of :func:`shortcut_xor` on x (N, 2): sign(u) * sign(c - v), c = Phi^-1(strength)."""
    u, v = _diagonal_coordinates(np.asarray(x, dtype=np.float64))
    return np.where(u > 0, 1.0, -1.0) * np.where(v < _NORMAL.inv_cdf(strength), 1.0, -1.0)


def shortcut_xor(p: int = 2000, *, strength: float = 0.9, p_test: int = 4000, seed: int = 0, dtype="float64",
                 as_torch: bool = False, device=None) -> Split:
    """The seed's pair of "equally easy" data sets, as one family: an XOR of two perpendicular half-planes, offset.

    x ~ N(0, I_2), u = (x_1 + x_2) / sqrt(2), v = (x_1 - x_2) / sqrt(2) (independent N(0, 1)), and
    y = sign(u) * sign(c - v) with c = Phi^-1(strength). Every member is the same function class (the product of two
    perpendicular half-plane indicators: the same small ReLU network represents each, with the second boundary
    moved by c), but

    * ``strength`` = 0.5 (c = 0): the centred XOR. Every half-plane through the origin is right on exactly half the
      points (x -> -x keeps y and swaps a half-plane with its complement), and off-centre ones gain little: no simple
      predictor;
    * ``strength`` > 0.5: the 45-degree half-plane u > 0 (the "shortcut") is right wherever v < c, a fraction
      ``strength`` of the points; the rest (v > c, where the label is flipped) needs the second boundary.

    ``info``: "strength", "offset" (c), "shortcut_accuracy" (= strength, the population accuracy of sign(u)),
    "shortcut_test" (sign(u) on the test inputs).
    """
    check_sizes(p=p, p_test=p_test)
    if not (isinstance(strength, (int, float, np.floating)) and 0.5 <= float(strength) < 1):
        raise ValueError(f"strength must be in [0.5, 1), got {strength!r}")
    xs = [rng.standard_normal((n, 2)) for rng, n in zip(streams(seed, "shortcut_xor"), (p, p_test))]
    u_test = _diagonal_coordinates(xs[1])[0]
    info = {"strength": float(strength), "offset": float(_NORMAL.inv_cdf(strength)),
            "shortcut_accuracy": float(strength), "shortcut_test": np.where(u_test > 0, 1.0, -1.0)}
    return make_split(xs[0], shortcut_xor_labels(xs[0], strength), xs[1], shortcut_xor_labels(xs[1], strength),
                      dtype, as_torch, device, info=info)
