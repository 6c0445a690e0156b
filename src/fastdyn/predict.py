"""Function-space predictions of kernel gradient descent: what a network in the lazy (kernel) regime outputs at
any training time, from its kernel alone (seed 003 "Kernels", seed 002's lazy regime).

Training a linearised model on the mean loss L = (1/N) sum_i l(f(x_i), y_i) by gradient flow with rate ``lr`` moves
its outputs by

    df(x)/dt = -(lr / N) sum_i K(x, x_i) dl/df(f(x_i), y_i),

the time convention of :func:`fastdyn.train` (where F = alpha (f - f0) starts at 0 and K is the NTK). For the
squared loss l = (f - y)^2 / 2 this is linear and solved in closed form (:func:`gradient_descent_mse`); for any other
loss it is integrated (:func:`gradient_descent`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.integrate
import torch

from ._src import checks
from ._src.arrays import as_tensors, check_finite
from ._src.kpca import kpca
from ._src.train.losses import loss_derivative

__all__ = ["Prediction", "gradient_descent_mse", "gradient_descent"]


@dataclass(frozen=True)
class Prediction:
    """Outputs of kernel gradient descent at the times ``t``.

    Attributes:
        t: (T,) times (gradient flow) or step counts (``discrete=True``).
        train: (T, N) or (T, N, C) outputs on the training points.
        test: (T, M) or (T, M, C) outputs on the test points, or None without ``K_test_train``.
        Tensors in K's dtype and device, numpy arrays when K was numpy.
    """

    t: np.ndarray
    train: torch.Tensor
    test: torch.Tensor | None


def gradient_descent_mse(K_train, y_train, t, *, K_test_train=None, f0_train=None, f0_test=None, lr: float = 1.0,
                         diag_reg: float = 0.0, discrete: bool = False, psd_tol: float = 1e-8) -> Prediction:
    """Outputs of gradient flow (or of gradient descent) on the mean squared loss (f - y)^2 / 2 with kernel K, at
    many times from one eigendecomposition K = V diag(lambda) V^T:

        f_t(train) = f0 + V diag(1 - e^{-lr lambda t / N}) V^T (y - f0),
        f_t(test)  = f0_test + K_test_train V diag((1 - e^{-lr lambda t / N}) / lambda) V^T (y - f0),

    with e^{-lr lambda t / N} replaced by (1 - lr lambda / N)^t when ``discrete`` (t steps of size lr). Zero
    eigenvalues (below N eps lambda_max, as numpy's pinv cuts) are modes that are never learned and move no test
    output (K_test_train v = 0 when K v = 0, the joint kernel being PSD), so a singular K needs no regulariser;
    t -> inf is kernel (pseudo-inverse) interpolation.

    Args:
        K_train: (N, N) symmetric positive semi-definite kernel of the training points.
        y_train: (N,) or (N, C) targets.
        t: (T,) times >= 0 (or step counts when ``discrete``).
        K_test_train: (M, N) kernel between test and training points, or None.
        f0_train, f0_test: outputs at t = 0 (shapes of y_train, and (M,) / (M, C)); None: 0 (the alpha-trick's F).
        lr: learning rate > 0. diag_reg: added to K's diagonal (ridge), >= 0.
        psd_tol: eigenvalues below -psd_tol * lambda_max are refused (a kernel that is not PSD).

    Returns:
        :class:`Prediction` in K's dtype and device (numpy arrays when K was numpy). Memory O(N^2 + T N C + T M C).
    """
    (K, y, Kt, f0, f0t), kind = as_tensors(K_train=K_train, y_train=y_train, K_test_train=K_test_train,
                                            f0_train=f0_train, f0_test=f0_test)
    times, y2, f02, f0t2 = _check_inputs(K, y, Kt, f0, f0t, t, discrete)
    lr, diag_reg = checks.real("lr", lr), checks.real("diag_reg", diag_reg, strict=False)
    n = K.shape[0]
    if diag_reg:
        K = K + diag_reg * torch.eye(n, dtype=K.dtype, device=K.device)
    decomposition = kpca(K, solver="full")
    values, vectors = decomposition.eigenvalues, decomposition.eigenvectors
    if float(values.min()) < -psd_tol * max(float(values.max()), 0.0):
        raise ValueError(f"K_train is not positive semi-definite: smallest eigenvalue {float(values.min()):.3e} "
                         f"< -psd_tol * largest ({psd_tol:g} * {float(values.max()):.3e}); a kernel must be PSD")
    # modes below N eps lambda_max are zero to rounding (numpy.linalg.pinv's cut): not learned at any t
    values = torch.where(values > n * torch.finfo(K.dtype).eps * float(values.max()), values, 0)
    residual = vectors.T @ (y2 - f02)                                     # (N, C) in the eigenbasis
    steps = torch.as_tensor(times, dtype=K.dtype, device=K.device)[:, None]
    # (T, N); a discrete mode with lr lambda / N > 2 diverges, as gradient descent does
    decay = (1 - values[None, :] * (lr / n)) ** steps if discrete else torch.exp(-steps * (lr / n) * values[None, :])
    learned = 1 - decay
    # (N, K) @ (T, K, C) as one batched product; no (T, N, K) intermediate
    train = f02[None] + vectors @ (learned[:, :, None] * residual[None])
    test = None
    if Kt is not None:
        # (1 - decay) / lambda; 0 where lambda = 0, since K_test_train v = 0 when K v = 0 for a PSD joint kernel
        per_mode = torch.where(values[None, :] > 0, learned / torch.where(values > 0, values, 1)[None, :], 0)
        test = f0t2[None] + (Kt @ vectors) @ (per_mode[:, :, None] * residual[None])
    squeeze = y.ndim == 1
    return Prediction(times, kind.restore(train[..., 0] if squeeze else train),
                      None if test is None else kind.restore(test[..., 0] if squeeze else test))


def gradient_descent(loss: str | Callable, K_train, y_train, t, *, K_test_train=None, f0_train=None, f0_test=None,
                     lr: float = 1.0, rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853") -> Prediction:
    """Outputs of gradient flow on the mean of ``loss`` with kernel K at the times ``t``, by integrating the
    function-space ODE df/dt = -(lr / N) K dl/df (scipy's ``solve_ivp``, float64, tolerances ``rtol``, ``atol``;
    the test outputs follow df_test/dt = -(lr / N) K_test_train dl/df(train) on the same solution).

    ``loss``: "mse", "logistic" (one output, y = +-1) or fn(f (N,), y (N,)) -> dl/df (N,), smooth in f. Other
    arguments as :func:`gradient_descent_mse`.
    """
    if loss == "hinge":
        # its slope jumps at the margin and the flow slides along it (Filippov), where an adaptive integrator
        # chatters without end: not offered rather than slow or wrong
        raise ValueError("loss='hinge' is not integrated here (the flow slides along the margin, where the ODE's "
                         "right-hand side jumps); train fastdyn.linearize(model) with fastdyn.train instead")
    if not callable(loss) and loss not in ("mse", "logistic"):
        raise ValueError(f"loss must be 'mse', 'logistic' or a callable fn(f, y) -> dl/df, got {loss!r}")
    (K, y, Kt, f0, f0t), kind = as_tensors(K_train=K_train, y_train=y_train, K_test_train=K_test_train,
                                            f0_train=f0_train, f0_test=f0_test)
    if y.ndim != 1:
        raise ValueError(f"y_train must be (N,) for gradient_descent (one output), got shape {tuple(y.shape)}")
    times, y2, f02, f0t2 = _check_inputs(K, y, Kt, f0, f0t, t, False)
    lr = checks.real("lr", lr)
    n = K.shape[0]
    K64, y64 = K.double().cpu().numpy(), y.double().cpu()
    Kt64 = None if Kt is None else Kt.double().cpu().numpy()

    def slope(f):
        f = torch.from_numpy(f)
        return (loss(f, y64) if callable(loss) else loss_derivative(loss, f, y64)).numpy()

    m = 0 if Kt is None else Kt.shape[0]

    def rhs(_, state):
        g = slope(state[:n]) * (-lr / n)
        return np.concatenate([K64 @ g, Kt64 @ g if m else np.empty(0)])

    start = np.concatenate([f02[:, 0].double().cpu().numpy(), f0t2[:, 0].double().cpu().numpy() if m else []])
    solution = scipy.integrate.solve_ivp(rhs, (0.0, float(times.max())), start, method=method, t_eval=times,
                                         rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the function-space ODE did not integrate to t = {times.max():g}: {solution.message}")
    states = torch.from_numpy(solution.y.T).to(K.dtype).to(K.device)  # (T, N + M)
    return Prediction(times, kind.restore(states[:, :n]), kind.restore(states[:, n:]) if m else None)


def _check_inputs(K, y, Kt, f0, f0t, t, discrete):
    """Shapes and values of the common arguments: returns (times (T,), y, f0, f0_test as (rows, C) tensors)."""
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise ValueError(f"K_train must be a square (N, N) kernel, got shape {tuple(K.shape)}")
    n = K.shape[0]
    check_finite("K_train", K)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train must be (N,) or (N, C) with N = {n} (K_train's size), got {tuple(y.shape)}")
    y2 = (y if y.ndim == 2 else y[:, None]).to(K.dtype)
    f02 = torch.zeros_like(y2) if f0 is None else f0.reshape(y2.shape) if f0.shape == y.shape else None
    if f02 is None:
        raise ValueError(f"f0_train must have y_train's shape {tuple(y.shape)}, got {tuple(f0.shape)}")
    f0t2 = None
    if Kt is not None:
        if Kt.ndim != 2 or Kt.shape[1] != n:
            raise ValueError(f"K_test_train must be (M, {n}), got shape {tuple(Kt.shape)}")
        check_finite("K_test_train", Kt)
        m = Kt.shape[0]
        if f0t is None:
            f0t2 = torch.zeros(m, y2.shape[1], dtype=K.dtype, device=K.device)
        elif f0t.shape == (m, *y.shape[1:]):
            f0t2 = f0t.reshape(m, y2.shape[1])
        else:
            raise ValueError(f"f0_test must have shape {(m, *y.shape[1:])}, got {tuple(f0t.shape)}")
    elif f0t is not None:
        raise ValueError("f0_test needs K_test_train")
    times = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)) or times.min() < 0:
        raise ValueError(f"t must be a non-empty 1-D array of finite times >= 0, got {t!r}")
    if discrete and not np.array_equal(times, np.round(times)):
        raise ValueError("t must hold whole step counts when discrete=True")
    return times, y2, f02, f0t2
