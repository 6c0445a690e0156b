"""Near-degenerate modes (seed 001): the coupled one-hidden-layer closed form against a direct DOP853 solve of the
gradient flow on both weight matrices and against the reduced integrator from small random weights (fp64), the
angle and its resolution-time estimate, and the deep-linear-rotation experiment's quick run."""
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate

from fastdyn import deep_linear as dl
from fastdyn.experiments import run_experiment


def _rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def test_coupled_strengths_matches_direct_flow_from_balanced_start():
    rng = np.random.default_rng(0)
    n_in, h, n_out, tau = 3, 5, 4, 0.7
    s = np.array([2.0, 1.9, 1.0])
    u = np.linalg.qr(rng.standard_normal((n_out, 3)))[0]
    v = np.linalg.qr(rng.standard_normal((n_in, 3)))[0]
    m = (u * s) @ v.T
    root = rng.standard_normal((3, 3)) * 1e-3
    w0 = root @ root.T                                      # symmetric positive definite, small
    frame = np.linalg.qr(rng.standard_normal((h, 3)))[0]
    eigenvalues, vectors = np.linalg.eigh(w0)
    half = (vectors * np.sqrt(eigenvalues)) @ vectors.T      # w0^{1/2}
    w1, w2 = frame @ half @ v.T, u @ half @ frame.T          # balanced: W2^T W2 = W1 W1^T, U^T W2 W1 V = w0

    def rhs(_, y):  # tau dW1/dt = W2^T (M - W2 W1), tau dW2/dt = (M - W2 W1) W1^T: plain gradient flow
        a, b = y[:h * n_in].reshape(h, n_in), y[h * n_in:].reshape(n_out, h)
        e = m - b @ a
        return np.concatenate([(b.T @ e).ravel(), (e @ a.T).ravel()]) / tau

    times = np.linspace(0.0, 6.0, 61)
    sol = integrate.solve_ivp(rhs, (0, times[-1]), np.concatenate([w1.ravel(), w2.ravel()]), t_eval=times,
                              method="DOP853", rtol=1e-12, atol=1e-16)
    direct = np.array([u.T @ y[h * n_in:].reshape(n_out, h) @ y[:h * n_in].reshape(h, n_in) @ v for y in sol.y.T])
    assert direct[-1, 0, 0] > 0.99 * s[0] and abs(direct[30, 0, 1]) > 1e-2   # learned, and rotated on the way
    np.testing.assert_allclose(dl.coupled_strengths(times, s, w0, tau), direct, rtol=0, atol=1e-9)


def test_coupled_strengths_from_small_random_weights_matches_the_integrator():
    s, eye = np.array([1.0, 0.99]), np.eye(2)
    weights = dl.init_weights([2, 16, 2], 1e-4, np.random.default_rng(0))
    run = dl.train(weights, SimpleNamespace(inputs=eye, targets=np.diag(s)), lr=2.0, epochs=30, dt=0.01,
                   method="rk4", u=eye, v=eye, feature=0)                     # tau = P n_out / (2 lr) = 1
    predicted = dl.coupled_strengths(run.times, s, dl.effective_w0(run.initial, eye, eye), 1.0)
    assert np.abs(run.mode_matrix[-1] - np.diag(s)).max() < 1e-10        # converged
    assert np.abs(run.mode_matrix[1000:1300, 0, 1]).max() > 0.1           # with a large rotated part on the way
    np.testing.assert_allclose(run.mode_matrix, predicted, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="w0"):
        dl.coupled_strengths(run.times, s, np.eye(3), 1.0)


def test_block_angle_of_rotated_block_and_resolution_time():
    thetas = np.array([0.0, 0.3, 1.2])
    blocks = np.array([_rotation(t) @ np.diag([2.0, 0.5]) @ _rotation(t).T for t in thetas])
    full = np.zeros((3, 3, 3))
    full[:, 1:, 1:] = blocks
    np.testing.assert_allclose(dl.block_angle(full, 1, 2), thetas, atol=1e-14)
    np.testing.assert_allclose(dl.block_angle(full, 2, 1), np.pi / 2 - thetas, atol=1e-14)
    with pytest.raises(ValueError, match="i != j"):
        dl.block_angle(full, 1, 1)
    t = np.array([0.0, 1.0, 2.0, 3.0])
    assert dl.resolution_time(t, np.array([0.5, 0.05, 0.2, 0.0]), 0.1) == pytest.approx(2.5)
    assert np.isnan(dl.resolution_time(t, np.array([0.5, 0.05, 0.0, 0.2]), 0.1))


def test_resolution_time_estimate_is_the_closed_forms_small_gap_limit():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((6, 2)) * 1e-4
    w0 = g.T @ g
    times = np.linspace(0.0, 40.0, 40001)
    exact = {}
    for threshold, tolerance in ((1e-2, 0.15), (1e-3, 0.02)):   # leading order: the error is O(threshold)
        for gap in (1e-2, 1e-3, 1e-4):
            s = np.array([1.0, 1.0 - gap])
            angle = dl.block_angle(dl.coupled_strengths(times, s, w0, 1.0), 0, 1)
            exact[threshold, gap] = dl.resolution_time(times, angle, threshold)
            estimate = dl.resolution_time_estimate(s[0], s[1], np.linalg.inv(w0)[0, 1], 1.0, threshold)
            assert estimate == pytest.approx(exact[threshold, gap], abs=tolerance)
    # ln(1/gap): a 10 times smaller gap adds tau ln 10 / (s_1 + s_2), not 10 times the time
    assert exact[1e-3, 1e-4] - exact[1e-3, 1e-3] == pytest.approx(np.log(10) / (2 - 1e-3), rel=0.01)
    with pytest.raises(ValueError, match="s_i > s_j"):
        dl.resolution_time_estimate(1.0, 1.0, 1.0, 1.0, 0.01)


def test_deep_linear_rotation_quick(tmp_path):
    summary = run_experiment("deep-linear-rotation", tmp_path, quick=True, progress=False)
    for gap in (0.1, 0.01, 0.001):
        one, two = summary[f"1 hidden, gap {gap}"], summary[f"2 hidden, gap {gap}"]
        assert one["resolution"][0] == pytest.approx(one["resolution_closed_form"][0], abs=1e-3)
        assert one["decay_rate"][0] == pytest.approx(one["decay_rate_theory"][0], rel=0.01)
        assert two["decay_rate"][0] == pytest.approx(two["decay_rate_theory"][0], rel=0.03)
        assert two["stall"][0] > 5 * one["stall"][0]                    # depth 3 learns the plane's directions apart
    assert summary["2 hidden, gap 0.01"]["stall_rate"][0] == pytest.approx(0.01, rel=0.1)   # tan decays at s^1/3 gap
    # one step per mode deeper: the resolution grows with ln(1/gap)
    assert summary["1 hidden, gap 0.001"]["resolution"][0] > summary["1 hidden, gap 0.1"]["resolution"][0] + 1.5
    worst = max(summary[f"tree: mode {k} rms coupled"][0] for k in range(1, 9))
    assert worst < 1e-3 < summary["tree: mode 8 rms decoupled"][0]
    assert (tmp_path / "rotation.png").exists() and (tmp_path / "rotation_tree.png").exists()


def test_deep_linear_rotation_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError, match="gaps"):
        run_experiment("deep-linear-rotation", tmp_path, quick=True, progress=False, overrides={"gaps": [1.5]})
