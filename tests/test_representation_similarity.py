"""SVCCA, PWCCA, linear CKA (full and minibatch) and layer activations against plain numpy references, fp64 and fp32,
odd sizes; the invariances the users of svcca/CKA rely on (self-similarity 1, symmetry, rotations, scaling)."""
import itertools

import numpy as np
import pytest
import torch

from fastdyn import FCNet, observables as ob


def _centre(X):
    return X - X.mean(axis=0)


def _reference_cca(A, B, keep):
    """Classical CCA by whitening the covariances (numpy), after SVD truncation as in Raghu et al."""
    def reduce(X):
        X = _centre(X)
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        s = s[s > max(X.shape) * np.finfo(float).eps * s[0]]
        k = len(s) if keep is None else int(np.searchsorted(np.cumsum(s**2), keep * np.sum(s**2))) + 1
        return X @ Vt[:k].T
    a, b = reduce(A), reduce(B)

    def inv_sqrt(C):
        w, V = np.linalg.eigh(C)
        return V @ np.diag(w ** -0.5) @ V.T
    Caa, Cbb, Cab = a.T @ a, b.T @ b, a.T @ b
    return np.linalg.svd(inv_sqrt(Caa) @ Cab @ inv_sqrt(Cbb), compute_uv=False)[:min(a.shape[1], b.shape[1])]


def _reference_cka(A, B):
    """Kornblith et al.'s Gram form with the centring matrix H written out."""
    n = A.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ A @ A.T @ H, H @ B @ B.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def _reference_unbiased_hsic(K, L):
    """The U-statistic over distinct index tuples (Gretton et al.), by brute force."""
    n = K.shape[0]
    t1 = np.mean([K[i, j] * L[i, j] for i, j in itertools.permutations(range(n), 2)])
    t2 = np.mean([K[i, j] * L[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    t3 = np.mean([K[i, j] * L[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    return t1 + t2 - 2 * t3


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((53, 7)) @ rng.standard_normal((7, 9))  # rank 7 in 9 columns
    B = A[:, :5] @ rng.standard_normal((5, 6)) + 0.7 * rng.standard_normal((53, 6))
    return A, B


@pytest.mark.parametrize("keep", [None, 0.99, 0.8])
def test_canonical_correlations_match_whitened_cca(pair, keep):
    A, B = pair
    np.testing.assert_allclose(ob.canonical_correlations(A, B, keep=keep), _reference_cca(A, B, keep), rtol=1e-9)
    assert ob.svcca(A, B, keep=0.99) == pytest.approx(_reference_cca(A, B, 0.99).mean(), rel=1e-9)


def test_pwcca_matches_projection_weighting(pair):
    A, B = pair
    a, b = _centre(A), _centre(B)
    # canonical variates of A through the whitened form: h = a Caa^{-1/2} u for the left singular vectors u
    Ua, s, _ = np.linalg.svd(a, full_matrices=False)
    Ua = Ua[:, :7]
    Ub = np.linalg.svd(b, full_matrices=False)[0]
    M, rho, _ = np.linalg.svd(Ua.T @ Ub)
    m = min(7, 6)
    H = Ua @ M[:, :m]
    alpha = np.abs(H.T @ a).sum(axis=1)
    assert ob.pwcca(A, B) == pytest.approx(np.sum(alpha * rho[:m]) / alpha.sum(), rel=1e-9)


def test_invariances_and_bounds(pair):
    A, B = pair
    rng = np.random.default_rng(4)
    Q = np.linalg.qr(rng.standard_normal((9, 9)))[0]
    for fn in (ob.svcca, ob.pwcca, ob.linear_cka):
        assert fn(A, A) == pytest.approx(1.0, abs=1e-12)
        assert fn(A, 3.7 * A @ Q + 2.0) == pytest.approx(1.0, abs=1e-12)
        assert 0.0 <= fn(A, B) <= 1.0
    assert ob.svcca(A, B) == pytest.approx(ob.svcca(B, A), rel=1e-12)
    assert ob.linear_cka(A, B) == pytest.approx(ob.linear_cka(B, A), rel=1e-12)
    assert ob.linear_cka(A, B) == pytest.approx(_reference_cka(A, B), rel=1e-10)
    assert ob.linear_cka(A, A) <= 1.0 and ob.svcca(A, A) <= 1.0


def test_point_space_path_when_features_outnumber_points():
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((11, 40)), rng.standard_normal((11, 17))
    assert ob.linear_cka(A, B) == pytest.approx(_reference_cka(A, B), rel=1e-10)


def test_batched_broadcast_equals_loop_fp32(pair):
    A, B = pair
    rng = np.random.default_rng(6)
    stack = np.stack([A, A + 0.3 * rng.standard_normal(A.shape), rng.standard_normal(A.shape)])
    for fn in (ob.svcca, ob.pwcca, ob.linear_cka):
        batched = fn(stack, A)
        assert batched.shape == (3,)
        np.testing.assert_allclose(batched, [fn(S, A) for S in stack], rtol=1e-12)
        single = fn(torch.tensor(stack, dtype=torch.float32), torch.tensor(A, dtype=torch.float32))
        assert single.dtype == torch.float32
        np.testing.assert_allclose(single.numpy(), batched, rtol=1e-4, atol=1e-5)
    layers = np.stack([stack, stack[::-1]])  # (2 layers, 3 snapshots, N, p) against (2, 1, N, p)
    assert ob.linear_cka(layers, layers[:, -1:]).shape == (2, 3)


def test_minibatch_cka_is_the_accumulated_unbiased_hsic():
    rng = np.random.default_rng(7)
    A, B = rng.standard_normal((14, 3)), rng.standard_normal((14, 4))
    parts = [(A[s:s + 7], B[s:s + 7]) for s in (0, 7)]
    hsic = [[_reference_unbiased_hsic(X @ X.T, Y @ Y.T) for X, Y in ((a, b), (a, a), (b, b))] for a, b in parts]
    cross, aa, bb = np.sum(hsic, axis=0)
    assert ob.linear_cka(A, B, batch_size=7) == pytest.approx(cross / np.sqrt(aa * bb), rel=1e-10)
    assert ob.linear_cka(A, A, batch_size=7) == pytest.approx(1.0, abs=1e-12)
    K, L = A @ A.T, B @ B.T
    assert ob.cka(K, L, unbiased=True) == pytest.approx(
        _reference_unbiased_hsic(K, L) / np.sqrt(_reference_unbiased_hsic(K, K) * _reference_unbiased_hsic(L, L)),
        rel=1e-10)


def test_independent_representations_score_near_zero_with_minibatches():
    rng = np.random.default_rng(8)
    A, B = rng.standard_normal((4000, 5)), rng.standard_normal((4000, 5))
    assert abs(ob.linear_cka(A, B, batch_size=200)) < 0.01
    assert ob.linear_cka(A[:200], B[:200]) > 0.01  # the biased form on a batch of that size is biased upwards


def test_no_variance_gives_nan_and_bad_input_errors(pair):
    A, _ = pair
    assert np.isnan(ob.svcca(A, np.ones((53, 3))))
    with pytest.raises(ValueError, match="same N points"):
        ob.linear_cka(A, A[:10])
    with pytest.raises(ValueError, match="keep"):
        ob.svcca(A, A, keep=1.5)
    with pytest.raises(ValueError, match="batch dims"):
        ob.linear_cka(np.zeros((2, 53, 3)), np.zeros((3, 53, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        ob.linear_cka(A, A, batch_size=3)
    with pytest.raises(ValueError, match="NaN"):
        ob.svcca(A, np.full((53, 2), np.nan))


def test_activations_match_a_manual_forward():
    torch.manual_seed(0)
    model = FCNet([5, 7, 4, 3], dtype=torch.float64)
    x = torch.randn(13, 5, dtype=torch.float64)
    acts = ob.activations(model, x, batch_size=4)
    assert list(acts) == ["0", "1", "2", "3", "4"]
    h = x
    for name, layer in model.named_children():
        h = layer(h)
        torch.testing.assert_close(acts[name], h.detach(), rtol=1e-12, atol=0)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x)
    picked = ob.activations(Wrapped(), x, ["body.1"])
    torch.testing.assert_close(picked["body.1"], acts["1"])
    with pytest.raises(ValueError, match="layers must name"):
        ob.activations(Wrapped(), x)
    with pytest.raises(ValueError, match="not a submodule"):
        ob.activations(model, x, ["9"])


def test_activations_observable_records_snapshots():
    import fastdyn
    torch.manual_seed(1)
    model = FCNet([3, 6, 1], dtype=torch.float64)
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.sign(x[:, 0])
    result = fastdyn.train(model, x, y, alpha=1.0, dynamics="sgd", lr=0.1, batch_size=5, max_steps=20,
                           observables={"acts": ob.activations_observable(layers=["1"])})
    final = result.snapshots[-1].observables["acts"]["1"]
    torch.testing.assert_close(final, torch.relu(result.model[0](x)).detach())
