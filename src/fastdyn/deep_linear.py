"""Deep linear networks: the exact gradient flow and the theory of its stage-like, sigmoidal mode learning
(Saxe, McClelland & Ganguli 2019; seed 001).

A network without bias maps x (n_in,) to W x with W = W_L ... W_1, W_l of shape (n_l, n_{l-1}), trained full batch
on the mean squared error L = 1/(P n_out) sum_mu ||y_mu - W x_mu||^2 (torch's MSELoss: mean over all P n_out
entries) of P inputs X (P, n_in) with targets Y (P, n_out).

Time t is counted in epochs: gradient descent with learning rate lr is the Euler step dt = 1 of the gradient flow
dW_l/dt = -lr dL/dW_l. With one-hot inputs (Sigma_x = I/P) that flow reads, for the product W,
    tau dW_l/dt = (W_L..W_{l+1})^T (M - W) (W_{l-1}..W_1)^T,    tau = P n_out / (2 lr),
with M = Y^T X the least-squares map, M = U diag(s) V^T (s = P x singular values of Sigma_yx). For a mode
a = u^T W v the balanced, decoupled solution (Saxe et al.) is
    one hidden layer:  tau da/dt = 2 a (s - a),  a(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/a0),
    any depth D:       tau da/dt = D a^{2 - 2/D} (s - a)    (D = 1: shallow, a(t) = s + (a0 - s) e^{-t/tau}).
From small random weights the early phase is linear and exact: b = W1 v and c = W2^T u obey tau db/dt = s c,
tau dc/dt = s b, so a = b.c = |g|^2 e^{2st/tau} - |h|^2 e^{-2st/tau} with g = (b0 + c0)/2, h = (b0 - c0)/2; the
effective initial strength of the logistic is a0 = |g|^2 (from the initial weights, no fit); for later modes the
part of g along the hidden vectors of modes learned before decays, hence the orthogonalised a0 of effective_a0.
Half-learning time t_1/2 = tau/(2s) ln(s/a0 - 1); rise time from 10% to 90% of s, independent of a0,
tau/(D s^{2-2/D}) int_0.1^0.9 dx / (x^{2-2/D} (1 - x))  (= tau ln 81 / (2s) for D = 2, tau ln 9 for D = 1).
Start times from an aligned balanced init (:func:`aligned_balanced_weights`, every mode at a0) in closed form:
:func:`balanced_time` (D = 2: ~ tau/(2s) ln(s/a0); D = 3: ~ tau/(s a0^{1/3})).
All modes coupled (one hidden layer): the product in the SVD basis obeys the matrix Riccati equation
tau dW/dt = W (S - W) + (S - W) W from w0 = G^T G (:func:`effective_w0`), linear in W^{-1} and solved exactly by
:func:`coupled_strengths`; it gives the rotation of near-degenerate modes (:func:`block_angle`,
:func:`resolution_time_estimate`; experiment ``deep-linear-rotation``).

:func:`train` integrates the flow with classical RK4 (or Euler: gradient descent) in fp64 with the gradient in
closed matrix form, exactly reduced to the r-dimensional output subspace the targets span (:class:`ReducedProblem`),
so a step costs the same for 10^4 outputs as for 10 (numpy: the matrices are at most max(h, r) x max(h, n_in); the
plain-torch autograd reference in ``tests/oracles/deep_linear.py`` checks it). The experiment
``fastdyn run deep-linear`` (:mod:`fastdyn.experiments.deep_linear`) runs it on hierarchical data
(:func:`fastdyn.data.hierarchical`).

Low-rank matrix completion (seed 000; last section). A target B* (m, m) is observed on a mask Omega,
L(B) = 1/2 sum_Omega (B - B*)^2, grad L = P_Omega(B - B*) = G. Gradient flow on square factors, B = W_L ... W_1
(:func:`factorised_flow`), or on one symmetric A, B = A^2 (:func:`symmetric_square_flow`), integrated with
scipy's DOP853 at stated rtol/atol and sampled at log-spaced times. Their end-to-end forms
(:func:`end_to_end_flow`):
    balanced factors (W_{j+1}^T W_{j+1} = W_j W_j^T, :func:`balanced_factors`; Arora, Cohen & Hazan 2018):
        dB/dt = -psi_B(G),  psi_B(G) = sum_{j=1}^{L} (B B^T)^{(j-1)/L} G (B^T B)^{(L-j)/L}
        (:func:`end_to_end_operator`; for PSD B the terms are B^{2(j-1)/L} G B^{2(L-j)/L}, exponents summing to
        2 - 2/L, which is 1 only for L = 2: psi = G B + B G);
    B = A^2, A symmetric PSD (tied factors): dA/dt = -(G A + A G), so
        dB/dt = -(G B + 2 A G A + B G) = -sum_{alpha in {0, 1/2, 1/2, 1}} B^alpha G B^{1-alpha}
        (:func:`symmetric_square_operator`); the seed writes -A G A (:func:`seed_literal_operator`).
References for the end points: :func:`min_frobenius_completion` (closed form, where depth 1 ends) and
:func:`min_nuclear_norm_completion` (cvxpy). The experiment is ``fastdyn run deep-linear-lowrank``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate

from ._src import checks
from ._src.optional import require
from .data.hierarchical import HierarchicalData

__all__ = ["Trajectory", "ReducedProblem", "init_weights", "orthogonal_weights", "rsa_correlation",
           "new_item_representation",
           "product", "train", "analytic_strength", "effective_a0",
           "effective_w0", "coupled_strengths", "block_angle", "resolution_time",
           "resolution_time_estimate", "aligned_balanced_weights", "balanced_time", "half_time", "half_time_gd", "rise_time", "balanced_strength", "depth3_time",
           "chain_stability_bound", "chain_gradient", "chain_descent", "steps_to", "crossing_time", "window_error",
           "stages", "plateau_times", "mode_table", "CompletionProblem", "completion_problem", "effective_rank", "log_times",
           "FlowTrajectory", "factor_gradients", "symmetric_square_gradient", "balanced_factors", "factorised_flow",
           "symmetric_square_flow", "psd_power", "end_to_end_operator", "symmetric_square_operator",
           "seed_literal_operator", "end_to_end_flow", "min_frobenius_completion", "min_nuclear_norm_completion"]


# ----------------------------------------------------------------------------------------------------- dynamics
@dataclass
class Trajectory:
    """What one training run recorded at every step (T = number of steps + 1).

    times (T,) epochs; loss (T,); modes (T, r) a_alpha = u_alpha^T W v_alpha; mode_matrix (T, r, r) U^T W V, the
    product in the SVD basis (modes is its diagonal; the off-diagonal part is how far the learned modes are rotated
    away from the SVD's); feature (T, P) the network's output for one chosen feature on every item; hidden
    (T, P, h) first hidden layer (None for the shallow net); initial: the initial weights (first layer first).
    """

    times: np.ndarray
    loss: np.ndarray
    modes: np.ndarray
    mode_matrix: np.ndarray
    feature: np.ndarray
    hidden: np.ndarray | None
    initial: list


def init_weights(widths: list[int], gamma: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Weights W_l of shape (widths[l+1], widths[l]) drawn from N(0, gamma / sqrt(n_in + n_out)) in fp64."""
    return [rng.standard_normal((n_out, n_in)) * (gamma / math.sqrt(n_in + n_out))
            for n_in, n_out in zip(widths[:-1], widths[1:])]


def orthogonal_weights(widths: list[int], gamma: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Weights W_l of shape (widths[l+1], widths[l]), each gamma times a random semi-orthogonal matrix (orthonormal
    columns or rows, from the QR of a Gaussian with signs fixed: Haar), in fp64: every singular value is gamma
    ("dynamic isometry" at gamma = 1; Saxe et al. 2014)."""
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    weights = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        q, r = np.linalg.qr(rng.standard_normal((max(n_in, n_out), min(n_in, n_out))))
        q = q * np.sign(np.diag(r))
        weights.append(gamma * (q if n_out >= n_in else q.T))
    return weights


def rsa_correlation(hidden: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    """Pearson correlation (T,) over the off-diagonal entries between each representational similarity matrix
    H_t H_t^T of ``hidden`` (T, P, h) and ``ideal`` (P, P); nan where H_t H_t^T is constant off the diagonal."""
    hidden = np.asarray(hidden, dtype=np.float64)
    upper = np.triu_indices(hidden.shape[1], 1)
    rsm = np.einsum("tph,tqh->tpq", hidden, hidden)[:, upper[0], upper[1]]
    target = np.asarray(ideal, dtype=np.float64)[upper]
    rsm = rsm - rsm.mean(axis=1, keepdims=True)
    target = target - target.mean()
    norm = np.linalg.norm(rsm, axis=1) * np.linalg.norm(target)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, rsm @ target / norm, np.nan)


def new_item_representation(w_out: np.ndarray, observed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Hidden vector h (h,) of a new item added to a trained net with one hidden layer by learning only its input
    weights (its new one-hot column of W_1, from 0) on the features ``observed`` (K,) with target ``values`` (K,):
    gradient flow on ||values - w_out[observed] h||^2 from h = 0 ends at the minimum-norm least-squares solution
    pinv(w_out[observed]) values. w_out: (n_out, h) the trained last layer (kept fixed).
    With items and features exchanged it is a new feature's output row (h,) learned on the items ``observed`` from
    the hidden representations w_out = H (P, h) (first layer fixed): H of it is kernel regression with H H^T."""
    w_out, values = np.asarray(w_out, dtype=np.float64), np.asarray(values, dtype=np.float64)
    observed = np.asarray(observed)
    if w_out.ndim != 2 or observed.ndim != 1 or values.shape != observed.shape:
        raise ValueError(f"need w_out (n_out, h), observed (K,), values (K,); got {w_out.shape}, {observed.shape}, "
                         f"{values.shape}")
    return np.linalg.lstsq(w_out[observed], values, rcond=None)[0]


def product(weights: list[np.ndarray]) -> np.ndarray:
    """W_L ... W_1."""
    total = weights[0]
    for weight in weights[1:]:
        total = weight @ total
    return total


@dataclass
class ReducedProblem:
    """The gradient flow in the output subspace that the targets span, plus what leaves it (exact).

    With U (n_out, r) an orthonormal basis of the column space of M = Y^T X, the last layer splits as
    W_L = U A + K with U^T K = 0. The part outside, dK/dt = -rate K C, is K(t) = K(0) Phi(t), so with M = U M_r
    the flow closes on A (r, h), Phi (h, h) and the lower layers W_1..W_{L-1}, given G0 = K(0)^T K(0):
        E_r = M_r - A B XX,  C = B XX B^T,  B = W_{L-1}..W_1,  G = Phi^T G0 Phi = K^T K,
        dA/dt = rate E_r B^T,  dPhi/dt = -rate Phi C,
        dW_l/dt = rate (W_{L-1}..W_{l+1})^T (A^T E_r - G B XX) (W_{l-1}..W_1)^T.
    Every matrix is at most max(h, r) x max(h, n_in): the cost no longer depends on n_out (10^4 features). K enters
    linearly through Phi, so Euler and RK4 steps on this state are the same steps as on the full weights.
    """

    m_r: np.ndarray      # U^T M, (r, n_in)
    xx: np.ndarray       # X^T X, (n_in, n_in), invertible
    rate: float          # 2 lr / (P n_out)
    loss_min: float      # P n_out times the smallest reachable loss (0 for one-hot inputs)
    fit: np.ndarray      # M_r XX^{-1}: the least-squares map in the U basis, (r, n_in)
    g0: np.ndarray       # K(0)^T K(0), (h, h)

    def velocity(self, state: list[np.ndarray]) -> list[np.ndarray]:
        """d/dt of [W_1, ..., W_{L-1}, A, Phi]."""
        *lower, a, phi = state
        below = [np.eye(self.xx.shape[0])]
        for weight in lower:  # below[l] = W_l ... W_1 (below[0] = identity)
            below.append(weight @ below[-1])
        b = below[-1]
        b_xx = b @ self.xx
        c = b_xx @ b.T
        e_r = self.m_r - a @ b_xx
        back = self.rate * (a.T @ e_r - phi.T @ (self.g0 @ (phi @ b_xx)))
        velocities = [None] * len(lower)
        for layer in range(len(lower) - 1, -1, -1):
            velocities[layer] = back @ below[layer].T
            back = lower[layer].T @ back
        return velocities + [self.rate * e_r @ b.T, -self.rate * phi @ c]

    def loss(self, state: list[np.ndarray]) -> float:
        """P n_out L = loss_min + tr(Z XX Z^T) + tr(G B XX B^T), Z = A B - fit (no cancellation near zero)."""
        *lower, a, phi = state
        b = product(lower) if lower else np.eye(self.xx.shape[0])
        z = a @ b - self.fit
        k_b = phi @ b       # K B = K(0) Phi B
        return (self.loss_min + float(np.sum((z @ self.xx) * z))
                + float(np.sum((self.g0 @ k_b @ self.xx) * k_b)))


def train(weights: list[np.ndarray], data: HierarchicalData, *, lr: float, epochs: float, dt: float,
          method: str, u: np.ndarray, v: np.ndarray, feature: int) -> Trajectory:
    """Integrate dW/dt = -lr grad L (mean squared error) from ``weights`` for ``epochs`` with step ``dt``.

    weights: [W_1 (h, n_in), ..., W_L (n_out, h)]; u (n_out, r), v (n_in, r): the SVD of M = Y^T X (r = n_in for
    one-hot inputs). method "rk4": classical Runge-Kutta (gradient flow); "gd": Euler, which with dt = 1 is gradient
    descent with learning rate lr. Integrated exactly in the reduced form of :class:`ReducedProblem`. Only
    ``data.inputs`` (P, n_in) and ``data.targets`` (P, n_out) are used (any object with those two arrays will do).
    """
    if method not in ("rk4", "gd"):
        raise ValueError(f"method must be 'rk4' or 'gd', got {method!r}")
    if not dt > 0 or not epochs >= 0:
        raise ValueError(f"need dt > 0 and epochs >= 0, got dt={dt!r}, epochs={epochs!r}")
    x, y = data.inputs, data.targets
    shapes = [np.shape(w) for w in weights]
    chained = all(len(a) == 2 for a in shapes) and all(a[0] == b[1] for a, b in zip(shapes[:-1], shapes[1:]))
    if not shapes or not chained or shapes[0][1] != x.shape[1] or shapes[-1][0] != y.shape[1]:
        raise ValueError(f"weights must chain ({x.shape[1]} inputs) -> ... -> ({y.shape[1]} outputs) as "
                         f"[(h1, {x.shape[1]}), (h2, h1), ..., ({y.shape[1]}, hL)], got shapes {shapes}")
    if not 0 <= feature < y.shape[1]:
        raise ValueError(f"feature must index one of the {y.shape[1]} features, got {feature}")
    xx = x.T @ x
    m = y.T @ x
    fit = u.T @ m @ np.linalg.inv(xx)
    residual = y - x @ (u @ fit).T
    if not np.allclose(u @ (u.T @ m), m, rtol=0, atol=1e-10 * np.abs(m).max()):
        raise ValueError("u must span the column space of Y^T X (pass all left singular vectors)")
    initial = [np.array(w, dtype=np.float64) for w in weights]
    last = initial[-1]
    outside = last - u @ (u.T @ last)
    problem = ReducedProblem(m_r=u.T @ m, xx=xx, rate=2.0 * lr / y.size, loss_min=float(np.sum(residual ** 2)),
                             fit=fit, g0=outside.T @ outside)
    state = initial[:-1] + [u.T @ last, np.eye(last.shape[1])]
    n_steps = int(round(epochs / dt))
    loss, matrices, outputs, hidden = [], [], [], []

    def record():
        *lower, a, phi = state
        b = product(lower) if lower else np.eye(xx.shape[0])
        loss.append(problem.loss(state) / y.size)
        matrices.append(a @ b @ v)
        outputs.append(x @ (u[feature] @ a @ b + outside[feature] @ phi @ b))
        if lower:
            hidden.append(x @ lower[0].T)

    def shifted(base, slopes, scale):
        return [w + scale * s for w, s in zip(base, slopes)]

    record()
    for _ in range(n_steps):
        k1 = problem.velocity(state)
        if method == "gd":
            state = shifted(state, k1, dt)
        else:
            k2 = problem.velocity(shifted(state, k1, dt / 2))
            k3 = problem.velocity(shifted(state, k2, dt / 2))
            k4 = problem.velocity(shifted(state, k3, dt))
            state = [w + dt / 6 * (p + 2 * q + 2 * r + z) for w, p, q, r, z in zip(state, k1, k2, k3, k4)]
        record()
    matrices = np.array(matrices)
    return Trajectory(times=np.arange(n_steps + 1) * dt, loss=np.array(loss),
                      modes=np.diagonal(matrices, axis1=1, axis2=2).copy(), mode_matrix=matrices, feature=np.array(outputs), hidden=np.array(hidden) if hidden else None, initial=initial)


# ----------------------------------------------------------------------------------------------------- theory
def analytic_strength(t: np.ndarray, s: float, a0: float, tau: float) -> np.ndarray:
    """One-hidden-layer mode strength a(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/a0) at times t (T,) -> (T,),
    computed without overflow."""
    return s / (1.0 + np.exp(np.log(s / a0 - 1.0) - 2.0 * s * np.asarray(t) / tau))


def effective_a0(initial: list, u: np.ndarray, v: np.ndarray, orthogonalise: bool = True) -> np.ndarray:
    """Initial strength a0 (r,) of the growing component of every mode (one hidden layer), modes in decreasing s.

    initial: [W1 (h, n_in), W2 (n_out, h)]; u (n_out, r), v (n_in, r): the singular vectors of M = Y^T X.

    Plain: |g|^2, g = (W1 v + W2^T u) / 2 (exact while all modes are small). Orthogonalised: once a mode is
    learned, the part of a later mode's hidden vector g along it decays (rate (s_later - s_learned)/tau < 0),
    so only the part orthogonal to the earlier modes' vectors keeps growing: a0 = R_kk^2 of g = QR (Gram-Schmidt in
    the order of s). Our refinement of the decoupled theory, exact when the modes' learning times are far apart.
    """
    g = _growing_part(initial, u, v)
    if orthogonalise:
        return np.diag(np.linalg.qr(g, mode="r")) ** 2
    return (g ** 2).sum(axis=0)


def _growing_part(initial: list, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """g = (W1 v + W2^T u) / 2 (h, r) of initial [W1 (h, n_in), W2 (n_out, h)]: the part that grows as e^{st/tau}."""
    if len(initial) != 2:
        raise ValueError(f"initial must be [W1, W2] (one hidden layer), got {len(initial)} weight matrices")
    w1, w2 = initial
    return (w1 @ v + w2.T @ u) / 2.0


def effective_w0(initial: list, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Effective initial product in the SVD basis, G^T G (r, r) with G = (W1 v + W2^T u) / 2 (h, r), of a net with
    one hidden layer (initial [W1 (h, n_in), W2 (n_out, h)]): while all modes are small, U^T W V grows as
    e^{St/tau} G^T G e^{St/tau} (the decaying part (W1 v - W2^T u)/2 dropped), which is the linearisation of
    :func:`coupled_strengths` from w0 = G^T G. Its diagonal is the plain a0 of :func:`effective_a0`."""
    g = _growing_part(initial, u, v)
    return g.T @ g


def coupled_strengths(t: np.ndarray, s: np.ndarray, w0: np.ndarray, tau: float) -> np.ndarray:
    """Product in the SVD basis U^T W(t) V (T, r, r) of a balanced net with one hidden layer from a symmetric
    positive definite U^T W(0) V = w0 (r, r), at times t (T,); s (r,) the singular values of M = U diag(s) V^T.

    The balanced end-to-end flow tau dW/dt = (W W^T)^{1/2} (M - W) + (M - W) (W^T W)^{1/2} keeps W = U Ws V^T
    with Ws symmetric PSD, and there it is the matrix Riccati equation tau dWs/dt = Ws (S - Ws) + (S - Ws) Ws,
    which is linear in Z = Ws^{-1}: tau dZ/dt = 2 I - S Z - Z S, so (every mode coupled, no approximation)
        Z(t) = E Z0 E + S^{-1} (I - E^2),  E = diag(e^{-s t / tau}),  Z0 = w0^{-1}.
    Off the diagonal Z_ij = Z0_ij e^{-(s_i + s_j) t / tau}; on it, Z_ii = 1/a_i of the decoupled logistic.
    Inverted after symmetric diagonal (Jacobi) scaling, so that entries from 1/a0 ~ 1e24 to 1/s stay accurate.
    """
    s = np.asarray(s, dtype=np.float64)
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.shape != (s.size, s.size) or not np.allclose(w0, w0.T, rtol=0, atol=1e-12 * np.abs(w0).max()):
        raise ValueError(f"w0 must be a symmetric ({s.size}, {s.size}) matrix, got shape {w0.shape}")
    z0 = np.linalg.inv((w0 + w0.T) / 2.0)
    e = np.exp(-np.outer(np.asarray(t, dtype=np.float64), s) / tau)                  # (T, r)
    z = e[:, :, None] * z0 * e[:, None, :]
    z[:, np.arange(s.size), np.arange(s.size)] += -np.expm1(-2.0 * np.outer(t, s) / tau) / s
    scale = 1.0 / np.sqrt(np.diagonal(z, axis1=1, axis2=2))                           # (T, r)
    return scale[:, :, None] * np.linalg.inv(scale[:, :, None] * z * scale[:, None, :]) * scale[:, None, :]


def block_angle(mode_matrix: np.ndarray, i: int, j: int) -> np.ndarray:
    """Rotation angle (T,) in [0, pi/2] of the learned mode within the plane of SVD modes i and j: the angle between
    mode i's direction and the top eigenvector of the symmetric part of the 2 x 2 block [[W_ii, W_ij], [W_ji, W_jj]]
    of ``mode_matrix`` (T, r, r) (U^T W V), 1/2 |atan2(W_ij + W_ji, W_ii - W_jj)|: 0 = the SVD's mode i, pi/2 = mode j."""
    mode_matrix = np.asarray(mode_matrix, dtype=np.float64)
    r = mode_matrix.shape[-1]
    if mode_matrix.ndim != 3 or mode_matrix.shape[1] != r or not (0 <= i < r and 0 <= j < r and i != j):
        raise ValueError(f"need mode_matrix (T, r, r) and modes i != j in [0, r), got shape {mode_matrix.shape}, "
                         f"i={i!r}, j={j!r}")
    return 0.5 * np.abs(np.arctan2(mode_matrix[:, i, j] + mode_matrix[:, j, i],
                                   mode_matrix[:, i, i] - mode_matrix[:, j, j]))


def resolution_time(t: np.ndarray, angle: np.ndarray, threshold: float) -> float:
    """Time from which ``angle`` (T,) at times t (T,) stays below ``threshold`` (linear interpolation at the last
    crossing); nan if it is still above at the end, t[0] if it never was above."""
    if not angle[-1] < threshold:
        return float("nan")
    if not np.any(angle >= threshold):
        return float(t[0])
    return crossing_time(t[::-1], angle[::-1], threshold)


def resolution_time_estimate(s_i: float, s_j: float, z0_ij: float, tau: float, threshold: float) -> float:
    """Leading-order time at which the learned mode's angle in the (i, j) plane falls to ``threshold`` (one hidden
    layer, s_i > s_j): once learned, W_ij = -s_i s_j Z0_ij e^{-(s_i + s_j) t / tau} (Z0 = w0^{-1} of
    :func:`coupled_strengths`) while W_ii - W_jj -> s_i - s_j, so tan 2 theta = 2 |W_ij| / (s_i - s_j) and
        t = tau / (s_i + s_j) ln(2 s_i s_j |Z0_ij| / ((s_i - s_j) tan(2 threshold))):
    logarithmic in 1 / gap, and the angle decays at the gap-independent rate (s_i + s_j) / tau."""
    if not s_i > s_j > 0:
        raise ValueError(f"need s_i > s_j > 0, got s_i={s_i!r}, s_j={s_j!r}")
    return tau / (s_i + s_j) * math.log(2.0 * s_i * s_j * abs(z0_ij) / ((s_i - s_j) * math.tan(2.0 * threshold)))


def half_time(s: np.ndarray, a0: np.ndarray, tau: float) -> np.ndarray:
    """Predicted time at which a(t) = s/2 under the flow (one hidden layer): tau/(2s) ln(s/a0 - 1); s, a0 (r,)."""
    return tau / (2.0 * s) * np.log(s / a0 - 1.0)


def half_time_gd(s: np.ndarray, a0: np.ndarray, tau: float) -> np.ndarray:
    """Predicted step at which a = s/2 under gradient descent (dt = 1, one hidden layer): its linear phase grows the
    balanced component by (1 + s/tau) per step instead of e^{s/tau}, so ln(s/a0 - 1) / (2 ln(1 + s/tau))."""
    return np.log(s / a0 - 1.0) / (2.0 * np.log1p(s / tau))


def rise_time(s: float, tau: float, n_layers: int, low: float = 0.1, high: float = 0.9) -> float:
    """Balanced-theory time for a mode of strength s to grow from low*s to high*s in a net of ``n_layers`` weight
    matrices: tau/(D s^{2-2/D}) int_low^high dx / (x^{2-2/D} (1 - x)), D = ``n_layers``."""
    power = 2.0 - 2.0 / n_layers
    from scipy import integrate  # scipy.integrate and scipy.signal cost ~2 s at import: loaded when used

    value, _ = integrate.quad(lambda x: 1.0 / (x ** power * (1.0 - x)), low, high)
    return tau / (n_layers * s ** power) * value


def balanced_strength(t: np.ndarray, s: float, tau: float, n_layers: int, t_anchor: float, a_anchor: float):
    """Balanced-theory a(t) (T,) at times t (T,) for any depth, through the point (t_anchor, a_anchor): the ODE
    tau da/dt = D a^{2 - 2/D} (s - a) with D = ``n_layers``, integrated numerically both ways from the anchor."""
    from scipy import integrate

    power = 2.0 - 2.0 / n_layers

    def rhs(_, x):
        return n_layers / tau * s ** power * np.abs(x) ** power * (1.0 - x)

    t = np.asarray(t, dtype=np.float64)
    out = np.full(t.shape, np.nan)
    for part in (t >= t_anchor, t < t_anchor):
        times = t[part]
        if times.size:
            end = times.max() if times[0] >= t_anchor else times.min()
            sol = integrate.solve_ivp(rhs, (t_anchor, end), [a_anchor / s], dense_output=True, rtol=1e-10, atol=1e-14)
            out[part] = s * sol.sol(times)[0]
    return out


def aligned_balanced_weights(widths: list[int], a0, u: np.ndarray, v: np.ndarray,
                             rng: np.random.Generator) -> list[np.ndarray]:
    """Balanced weights [W_1 (widths[1], widths[0]), ..., W_L] whose product is U diag(a0) V^T, u (n_out, r),
    v (n_in, r), a0 a scalar or (r,) > 0: W_1 = R_1 A V^T, W_l = R_l A R_{l-1}^T, W_L = U A R_{L-1}^T with
    A = diag(a0)^{1/L} and R_l (widths[l], r) Haar orthonormal columns, so W_{l+1}^T W_{l+1} = W_l W_l^T on the
    modes. Every mode then follows the decoupled balanced ODE tau da/dt = L a^{2 - 2/L} (s - a) exactly
    (:func:`balanced_time`). (For square factors of a given product see :func:`balanced_factors`.)"""
    r = u.shape[1]
    a0 = np.broadcast_to(np.asarray(a0, dtype=np.float64), (r,))
    if not np.all(a0 > 0):
        raise ValueError(f"a0 must be > 0, got {a0!r}")
    if len(widths) < 2 or widths[0] != v.shape[0] or widths[-1] != u.shape[0] or min(widths[1:-1], default=r) < r:
        raise ValueError(f"widths must run from {v.shape[0]} to {u.shape[0]} with hidden widths >= r = {r}, "
                         f"got {widths}")
    root = a0 ** (1.0 / (len(widths) - 1))
    frames = [v] + [np.linalg.qr(rng.standard_normal((n, r)))[0] for n in widths[1:-1]] + [u]
    return [(frames[l + 1] * root) @ frames[l].T for l in range(len(widths) - 1)]


def balanced_time(a: np.ndarray, s: float, a0: float, tau: float, n_layers: int) -> np.ndarray:
    """Closed-form time (shape of a) for a mode to grow from a0 to a (0 < a0, a < s) under the balanced ODE
    tau da/dt = D a^{2 - 2/D} (s - a), D = ``n_layers`` in {1, 2, 3}:
        D = 1: tau ln((s - a0) / (s - a));
        D = 2: tau / (2 s) ln(a (s - a0) / (a0 (s - a)))  (-> tau / (2 s) ln(s / a0) for the start, a0 << s);
        D = 3: :func:`depth3_time`  (-> tau / (s a0^{1/3}) for a0 << s: a power law, not a logarithm)."""
    a = np.asarray(a, dtype=np.float64)
    if n_layers == 1:
        return tau * np.log((s - a0) / (s - a))
    if n_layers == 2:
        return tau / (2.0 * s) * np.log(a * (s - a0) / (a0 * (s - a)))
    if n_layers == 3:
        return depth3_time(a, s, a0, tau)
    raise ValueError(f"n_layers must be 1, 2 or 3, got {n_layers!r}")


def depth3_time(a: np.ndarray, s: float, a0: float, tau: float) -> np.ndarray:
    """Closed-form balanced-theory time (same shape as a) for a mode to grow from a0 to a (0 < a0, a < s) in a net
    of three weight matrices (two hidden layers), tau da/dt = 3 a^{4/3} (s - a) (Saxe et al. 2014, deep case).
    With u = (a/s)^{1/3}: t = tau / s^{4/3} [G(u) - G(u0)],
    G(u) = -1/u - ln(1 - u)/3 + ln(u^2 + u + 1)/6 - arctan((2u + 1)/sqrt 3)/sqrt 3 (partial fractions of
    1/(u^2 (1 - u^3)))."""

    def antiderivative(u):
        return (-1.0 / u - np.log1p(-u) / 3.0 + np.log(u * u + u + 1.0) / 6.0
                - np.arctan((2.0 * u + 1.0) / np.sqrt(3.0)) / np.sqrt(3.0))

    u = np.cbrt(np.asarray(a, dtype=np.float64) / s)
    return tau / s ** (4.0 / 3.0) * (antiderivative(u) - antiderivative(np.cbrt(a0 / s)))


def chain_stability_bound(s: float, depth: int) -> float:
    """Largest stable gradient-descent learning rate 2 / (D s^{2 - 2/D}) of the 1-D chain y = w_D ... w_1 x on
    L = (s - w_D ... w_1)^2 / 2 at its balanced minimum w_i = s^{1/D}: the Hessian there is g g^T with
    g_i = s^{1 - 1/D}, so its top eigenvalue is D s^{2 - 2/D}."""
    return 2.0 / (depth * s ** (2.0 - 2.0 / depth))


def chain_gradient(weights: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Loss (R,) and gradient (R, D) of L = (target - w_D ... w_1)^2 / 2 for R chains ``weights`` (R, D) (x = 1).
    dL/dw_i = (p - target) prod_{j != i} w_j with p the product, from exclusive prefix and suffix products (no
    division, so exact at w_i = 0)."""
    weights = np.asarray(weights, dtype=np.float64)
    ones = np.ones(weights.shape[:-1] + (1,))
    prefix = np.cumprod(np.concatenate([ones, weights[..., :-1]], axis=-1), axis=-1)
    suffix = np.cumprod(np.concatenate([ones, weights[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    residual = prefix[..., -1] * weights[..., -1] - target
    return 0.5 * residual ** 2, residual[..., None] * prefix * suffix


def chain_descent(weights: np.ndarray, target: float, lr, steps: int, *, blowup: float = 1e12) -> np.ndarray:
    """Losses (steps + 1, R) of plain gradient descent w <- w - lr dL/dw on R chains of :func:`chain_gradient` from
    ``weights`` (R, D), learning rate ``lr`` a scalar or (R,). A chain whose loss exceeds ``blowup`` times its initial
    loss (or is not finite) is stopped and its later losses are inf."""
    if steps < 0 or blowup <= 1:
        raise ValueError(f"need steps >= 0 and blowup > 1, got steps={steps}, blowup={blowup}")
    weights = np.array(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"weights must be (R, D), got shape {weights.shape}")
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), weights.shape[:1])[:, None]
    losses = np.empty((steps + 1, weights.shape[0]))
    alive = np.ones(weights.shape[0], dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps + 1):
            loss, grad = chain_gradient(weights, target)
            if k == 0:
                limit = blowup * np.maximum(loss, 1e-300)
            alive &= np.isfinite(loss) & (loss <= limit)
            losses[k] = np.where(alive, loss, np.inf)
            weights = np.where(alive[:, None], weights - lr * grad, weights)
    return losses


def steps_to(losses: np.ndarray, fraction: float) -> np.ndarray:
    """First step (R,) from which each column of ``losses`` (T, R) stays at most ``fraction`` times its initial value
    to the end (a run that dips below and comes back, oscillates or diverges has not trained); nan where its last
    loss is above."""
    above = losses > fraction * losses[:1]
    last_above = losses.shape[0] - 1 - np.argmax(above[::-1], axis=0)
    steps = np.where(above.any(axis=0), last_above + 1, 0).astype(float)
    return np.where(above[-1], np.nan, steps)


def crossing_time(t: np.ndarray, a: np.ndarray, level: float) -> float:
    """First time a(t) reaches ``level`` (linear interpolation between samples t (T,), a (T,)); nan if never."""
    above = np.flatnonzero(a >= level)
    if above.size == 0:
        return float("nan")
    k = above[0]
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - a[k - 1]) / (a[k] - a[k - 1]) * (t[k] - t[k - 1]))


def window_error(t: np.ndarray, measured: np.ndarray, predicted: np.ndarray, s: float,
                 low: float = 0.1, high: float = 0.9) -> float:
    """RMS of (measured - predicted) / predicted, both (T,), over the samples where low s <= measured <= high s
    (nan if there are none)."""
    inside = (measured >= low * s) & (measured <= high * s)
    if not inside.any():
        return float("nan")
    return float(np.sqrt(np.mean(((measured[inside] - predicted[inside]) / predicted[inside]) ** 2)))


def stages(t: np.ndarray, loss: np.ndarray, prominence: float = 0.1) -> np.ndarray:
    """Times (n_stages,) of the learning stages of a loss curve loss (T,) at times t (T,): the peaks of the log-time
    loss derivative D(t) = -dL/d(ln t).

    Between two stages D(t) falls to a plateau of the loss; a peak counts if its prominence is at least
    ``prominence`` times the largest value of D. Exponential decay (a shallow or large-init net) gives one peak.
    """
    positive = t > 0
    rate = -np.gradient(loss[positive], t[positive]) * t[positive]
    from scipy import signal

    peaks, _ = signal.find_peaks(np.concatenate([[0.0], rate, [0.0]]), prominence=prominence * rate.max())
    return t[positive][peaks - 1]


def plateau_times(stage_times: np.ndarray, t_end: float) -> list[float]:
    """Snapshot times on the loss plateaus: the start, before the first stage, the geometric middle between every
    two stages (stage_times (n_stages,), from :func:`stages`), and ``t_end``."""
    stage_times = np.asarray(stage_times, dtype=float)
    times = [0.0]
    if stage_times.size:
        times.append(0.6 * stage_times[0])
        times.extend(np.sqrt(stage_times[:-1] * stage_times[1:]))
    times.append(float(t_end))
    return times


def mode_table(run: Trajectory, s: np.ndarray, u: np.ndarray, v: np.ndarray, tau: float, n_layers: int) -> list[dict]:
    """One row per mode (columns of ``run.modes``, s (r,) decreasing): s, measured and predicted half-learning and
    rise times, RMS relative errors of a(t) in its 10%-90% window; predictions for ``n_layers`` weight matrices
    (1: shallow, 2: one hidden layer with the a0 of :func:`effective_a0`, more: the balanced theory only)."""
    rows = []
    if n_layers == 2:
        a0, a0_plain = effective_a0(run.initial, u, v), effective_a0(run.initial, u, v, orthogonalise=False)
    for k, s_k in enumerate(s):
        a = run.modes[:, k]
        t10, t50, t90 = (crossing_time(run.times, a, f * s_k) for f in (0.1, 0.5, 0.9))
        row = {"s": float(s_k), "t_half": t50, "rise": t90 - t10, "rise_predicted": rise_time(s_k, tau, n_layers)}
        if n_layers == 2:
            row["a0"], row["a0_plain"] = float(a0[k]), float(a0_plain[k])
            row["t_half_predicted"] = float(half_time(s_k, a0[k], tau))
            row["t_half_predicted_plain"] = float(half_time(s_k, a0_plain[k], tau))
            row["rms_rel_error"] = window_error(run.times, a, analytic_strength(run.times, s_k, a0[k], tau), s_k)
            row["rms_rel_error_plain"] = window_error(run.times, a, analytic_strength(run.times, s_k, a0_plain[k],
                                                                                       tau), s_k)
        elif n_layers == 1:
            a_init = float(a[0])
            row["t_half_predicted"] = tau * math.log((s_k - a_init) / (s_k / 2.0)) if a_init < s_k / 2 else 0.0
            row["rms_rel_error"] = window_error(run.times, a, s_k + (a_init - s_k) * np.exp(-run.times / tau), s_k)
        if not math.isnan(t10):  # shape alone: the balanced theory through the measured 10% point
            predicted = balanced_strength(run.times, s_k, tau, n_layers, t10, 0.1 * s_k)
            row["rms_rel_error_anchored"] = window_error(run.times, a, predicted, s_k)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------- low-rank matrix completion
# Seed 000, "Deep linear networks": depth biases gradient flow toward low rank.
def _check_square(name: str, value, size: int | None = None) -> np.ndarray:
    array = checks.array(name, value)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or (size is not None and array.shape[0] != size):
        want = "(m, m)" if size is None else f"({size}, {size})"
        raise ValueError(f"{name} must be a square matrix of shape {want}, got shape {array.shape}")
    return array


@dataclass
class CompletionProblem:
    """Matrix completion of target B* (m, m) from the entries where mask (m, m, bool) is True (the set Omega).

    Train loss L(B) = 1/2 sum_{(i,j) in Omega} (B_ij - B*_ij)^2, gradient P_Omega(B - B*); test error
    ||P_{not Omega}(B - B*)||_F / ||P_{not Omega}(B*)||_F, relative, on the unobserved entries.
    """

    target: np.ndarray
    mask: np.ndarray

    def __post_init__(self):
        self.target = _check_square("target", self.target)
        mask = np.asarray(self.mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
        if mask.shape != self.target.shape:
            raise ValueError(f"mask must have the target's shape {self.target.shape}, got {mask.shape}")
        if mask.all() or not mask.any():
            raise ValueError("mask must observe some but not all entries")
        self.mask = mask

    @property
    def size(self) -> int:
        return self.target.shape[0]

    def gradient(self, b: np.ndarray) -> np.ndarray:
        """grad L(B) = P_Omega(B - B*), (m, m)."""
        return np.where(self.mask, b - self.target, 0.0)

    def train_loss(self, b: np.ndarray) -> float:
        return 0.5 * float(np.sum(self.gradient(b) ** 2))

    def test_error(self, b: np.ndarray) -> float:
        unobserved = ~self.mask
        return float(np.linalg.norm((b - self.target)[unobserved]) / np.linalg.norm(self.target[unobserved]))


def completion_problem(size: int, rank: int, fraction: float, singular_values, rng: np.random.Generator
                       ) -> CompletionProblem:
    """A PSD target B* = U diag(singular_values) U^T (size, size), U (size, rank) Haar-orthonormal, observed on a
    symmetric mask that keeps every pair {i, j} (diagonal included) with probability ``fraction``."""
    size, rank = checks.integer("size", size), checks.integer("rank", rank)
    if rank > size:
        raise ValueError(f"rank must be <= size = {size}, got {rank}")
    fraction = checks.real("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be < 1 (some entries unobserved), got {fraction}")
    s = np.asarray(singular_values, dtype=np.float64)
    if s.shape != (rank,) or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"singular_values must be {rank} finite positive numbers, got {singular_values!r}")
    u, _ = np.linalg.qr(rng.standard_normal((size, rank)))
    upper = np.triu(rng.random((size, size)) < fraction)
    return CompletionProblem(target=(u * s) @ u.T, mask=upper | upper.T)


def effective_rank(singular_values: np.ndarray) -> np.ndarray:
    """Effective rank exp(-sum_k p_k ln p_k), p = s / sum(s), of singular values (..., k) -> (...) (Roy & Vetterli
    2007), between 1 and k; nan where all s are 0. (:func:`fastdyn.observables.effective_rank` takes a PSD
    kernel's eigenvalues, which for B B^T are s^2: a different normalisation.)"""
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum(axis=-1, keepdims=True)
    p = s / np.where(total > 0, total, 1.0)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return np.where(total[..., 0] > 0, np.exp(entropy), np.nan)


def log_times(t_first: float, t_end: float, n: int) -> np.ndarray:
    """0 followed by n log-spaced times from t_first to t_end: (n + 1,)."""
    t_first, t_end = checks.real("t_first", t_first), checks.real("t_end", t_end)
    n = checks.integer("n", n)
    if t_end <= t_first:
        raise ValueError(f"t_end must exceed t_first = {t_first}, got {t_end}")
    return np.concatenate([[0.0], np.geomspace(t_first, t_end, n)])


@dataclass
class FlowTrajectory:
    """A gradient flow sampled at T times: times (T,), products B(t) (T, m, m), singular_values (T, m) decreasing,
    train_loss (T,), test_error (T,), effective_rank (T,); n_evaluations: velocity evaluations the integrator used."""

    times: np.ndarray
    products: np.ndarray
    singular_values: np.ndarray
    train_loss: np.ndarray
    test_error: np.ndarray
    effective_rank: np.ndarray
    n_evaluations: int


def _integrate(velocity, state0: np.ndarray, times: np.ndarray, to_product, problem: CompletionProblem,
               rtol: float, atol: float) -> FlowTrajectory:
    """Integrate d state/dt = velocity(state) (flat fp64 vectors) with DOP853 and sample B = to_product(state)."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or times[0] != 0 or np.any(np.diff(times) <= 0) or not np.all(
            np.isfinite(times)):
        raise ValueError("times must be finite, strictly increasing and start at 0")
    checks.real("rtol", rtol)
    checks.real("atol", atol)
    solution = integrate.solve_ivp(lambda _, y: velocity(y), (0.0, times[-1]), state0, t_eval=times,
                                   rtol=rtol, atol=atol, method="DOP853")   # explicit Runge-Kutta, order 8
    if solution.status != 0:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    products = np.array([to_product(y) for y in solution.y.T])
    s = np.linalg.svd(products, compute_uv=False)
    return FlowTrajectory(times=times, products=products, singular_values=s,
                          train_loss=np.array([problem.train_loss(b) for b in products]),
                          test_error=np.array([problem.test_error(b) for b in products]),
                          effective_rank=effective_rank(s), n_evaluations=int(solution.nfev))


def factor_gradients(problem: CompletionProblem, factors: list[np.ndarray]) -> list[np.ndarray]:
    """dL/dW_j = (W_L..W_{j+1})^T grad L(B) (W_{j-1}..W_1)^T for B = W_L ... W_1, factors [W_1, ..., W_L] (m, m)."""
    below = [np.eye(problem.size)]   # below[j] = W_j ... W_1
    for factor in factors:
        below.append(factor @ below[-1])
    back = problem.gradient(below[-1])   # (W_L..W_{j+1})^T G, built from the top
    gradients = [None] * len(factors)
    for j in range(len(factors) - 1, -1, -1):
        gradients[j] = back @ below[j].T
        back = factors[j].T @ back
    return gradients


def symmetric_square_gradient(problem: CompletionProblem, a: np.ndarray) -> np.ndarray:
    """d L(A A) / dA = G A^T + A^T G, G = grad L(A^2) (m, m); for symmetric A and G: G A + A G."""
    g = problem.gradient(a @ a)
    return g @ a.T + a.T @ g


def balanced_factors(b0: np.ndarray, depth: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Balanced factors [W_1, ..., W_L] (m, m) with W_L ... W_1 = b0 (m, m) and W_{j+1}^T W_{j+1} = W_j W_j^T:
    from b0 = U S V^T, W_1 = O_1 S^{1/L} V^T, W_j = O_j S^{1/L} O_{j-1}^T, W_L = U S^{1/L} O_{L-1}^T with Haar
    orthogonal O_j (depth 1: [b0])."""
    b0, depth = _check_square("b0", b0), checks.integer("depth", depth)
    u, s, vt = np.linalg.svd(b0)
    root = s ** (1.0 / depth)
    frames = [vt.T] + [np.linalg.qr(rng.standard_normal(b0.shape))[0] for _ in range(depth - 1)] + [u]
    return [(frames[j + 1] * root) @ frames[j].T for j in range(depth)]


def factorised_flow(problem: CompletionProblem, factors: list[np.ndarray], times: np.ndarray, *,
                    rtol: float = 1e-10, atol: float = 1e-12) -> FlowTrajectory:
    """Gradient flow dW_j/dt = -dL/dW_j on factors [W_1, ..., W_L] (each (m, m); depth L = len(factors)) of
    B = W_L ... W_1, sampled at ``times`` (T,) (from 0, increasing); DOP853 with rtol, atol on the factors."""
    if not isinstance(factors, (list, tuple)) or not factors:
        raise TypeError("factors must be a non-empty list of (m, m) matrices [W_1, ..., W_L]")
    factors = [_check_square(f"factors[{j}]", w, problem.size) for j, w in enumerate(factors)]
    shape, depth = factors[0].shape, len(factors)

    def unpack(y):
        return list(y.reshape(depth, *shape))

    def velocity(y):
        return -np.concatenate([g.ravel() for g in factor_gradients(problem, unpack(y))])

    return _integrate(velocity, np.concatenate([w.ravel() for w in factors]), times,
                      lambda y: product(unpack(y)), problem, rtol, atol)


def symmetric_square_flow(problem: CompletionProblem, a0: np.ndarray, times: np.ndarray, *, rtol: float = 1e-10,
                          atol: float = 1e-12) -> FlowTrajectory:
    """Gradient flow dA/dt = -dL(A^2)/dA on one symmetric A (m, m) (the seed's depth 2, A_1 = A_2 = A), B = A^2,
    sampled at ``times`` (T,); A stays symmetric for a symmetric mask and target."""
    a0 = _check_square("a0", a0, problem.size)
    if not np.allclose(a0, a0.T, rtol=0, atol=1e-12 * max(1.0, np.abs(a0).max())):
        raise ValueError("a0 must be symmetric")
    shape = a0.shape

    def velocity(y):
        return -symmetric_square_gradient(problem, y.reshape(shape)).ravel()

    return _integrate(velocity, a0.ravel(), times, lambda y: y.reshape(shape) @ y.reshape(shape), problem, rtol, atol)


def psd_power(b: np.ndarray, power: float) -> np.ndarray:
    """B^power (m, m) of a symmetric PSD b (m, m) (eigenvalues clipped at 0; B^0 = I)."""
    eigenvalues, vectors = np.linalg.eigh((b + b.T) / 2.0)
    return (vectors * np.clip(eigenvalues, 0.0, None) ** power) @ vectors.T


def end_to_end_operator(b: np.ndarray, g: np.ndarray, depth: int) -> np.ndarray:
    """psi_B(G) = sum_{j=1}^{L} (B B^T)^{(j-1)/L} G (B^T B)^{(L-j)/L}, b, g (m, m), L = depth (Arora, Cohen & Hazan
    2018): dB/dt = -psi_B(grad L(B)) for balanced factors. With B = U S V^T it is U [(U^T G V) * K] V^T,
    K_kl = sum_j s_k^{2(j-1)/L} s_l^{2(L-j)/L} (0^0 = 1: the j = 1 and j = L terms keep G V, U^T G whole)."""
    depth = checks.integer("depth", depth)
    u, s, vt = np.linalg.svd(b)
    j = np.arange(1, depth + 1)[:, None, None]
    kernel = np.sum(s[None, :, None] ** (2.0 * (j - 1) / depth) * s[None, None, :] ** (2.0 * (depth - j) / depth),
                    axis=0)
    return u @ ((u.T @ g @ vt.T) * kernel) @ vt


def symmetric_square_operator(b: np.ndarray, g: np.ndarray) -> np.ndarray:
    """G B + 2 B^{1/2} G B^{1/2} + B G for symmetric PSD b (m, m), g (m, m): the end-to-end flow
    dB/dt = -(that) of B = A^2, A = B^{1/2} PSD, = sum over alpha in {0, 1/2, 1/2, 1} of B^alpha G B^{1-alpha}."""
    root = psd_power(b, 0.5)
    return g @ b + 2.0 * root @ g @ root + b @ g


def seed_literal_operator(b: np.ndarray, g: np.ndarray) -> np.ndarray:
    """B^{1/2} G B^{1/2}, the seed's dB/dt = -sqrt(B) grad sqrt(B) (it drops G B + B G and one B^{1/2} G B^{1/2})."""
    root = psd_power(b, 0.5)
    return root @ g @ root


def end_to_end_flow(problem: CompletionProblem, b0: np.ndarray, times: np.ndarray, operator, *,
                    rtol: float = 1e-10, atol: float = 1e-12) -> FlowTrajectory:
    """dB/dt = -operator(B, grad L(B)) from b0 (m, m), sampled at ``times`` (T,); operator (B, G) -> (m, m), e.g.
    ``lambda b, g: end_to_end_operator(b, g, 3)`` or :func:`symmetric_square_operator`."""
    b0 = _check_square("b0", b0, problem.size)
    if not callable(operator):
        raise TypeError(f"operator must be callable (B, G) -> (m, m), got {type(operator).__name__}")
    shape = b0.shape

    def velocity(y):
        b = y.reshape(shape)
        return -operator(b, problem.gradient(b)).ravel()

    return _integrate(velocity, b0.ravel(), times, lambda y: y.reshape(shape).copy(), problem, rtol, atol)


def min_frobenius_completion(problem: CompletionProblem, b0: np.ndarray | None = None) -> np.ndarray:
    """argmin ||B - b0||_F subject to B = B* on Omega: b0 + P_Omega(B* - b0) (m, m); b0 defaults to 0 (then the
    observed entries, zeros elsewhere). It is where depth-1 gradient flow from b0 ends."""
    b0 = np.zeros_like(problem.target) if b0 is None else _check_square("b0", b0, problem.size)
    return np.where(problem.mask, problem.target, b0)


def min_nuclear_norm_completion(problem: CompletionProblem, *, eps: float = 1e-8) -> tuple[np.ndarray, float]:
    """argmin ||B||_* subject to B = B* on Omega (m, m), a reference solution, and its certified relative gap.

    Solved by cvxpy with Clarabel (interior point, tolerances ``eps``). Certificate, independent of the solver's
    stopping rule: any Y supported on Omega with ||Y||_op <= 1 gives ||Z||_* >= <Y, Z> = <Y, B*> for every
    completion Z, so with Y the constraint's dual (normalised), gap = (||B||_* - |<Y, B*>| / ||Y||_op) / ||B||_*
    bounds how far the returned B's nuclear norm is above the minimum.
    """
    cp = require("cvxpy", "experiments", "fastdyn.deep_linear.min_nuclear_norm_completion")
    x = cp.Variable(problem.target.shape)
    mask = problem.mask.astype(np.float64)
    fit = cp.multiply(mask, x) == mask * problem.target
    task = cp.Problem(cp.Minimize(cp.normNuc(x)), [fit])
    task.solve(solver=cp.CLARABEL, tol_gap_abs=eps, tol_gap_rel=eps, tol_feas=eps)
    if task.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(f"nuclear-norm completion: cvxpy status {task.status}")
    solution = np.where(problem.mask, problem.target, x.value)   # observed entries exact (solver: ~eps)
    dual = np.where(problem.mask, fit.dual_value, 0.0)
    lower = abs(float(np.sum(dual * problem.target))) / np.linalg.norm(dual, 2)
    nuclear = float(np.linalg.svd(solution, compute_uv=False).sum())
    return solution, (nuclear - lower) / nuclear
