"""fastdyn.observables and fastdyn.kernel_methods on known cases and against numpy / scikit-learn (errors:
test_input_errors.py)."""
import numpy as np
import pytest
import torch
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_classif

from conftest import assert_close
from fastdyn import kernel_methods, observables
from fastdyn import kpca


def gram(X):
    return X @ X.T


def centred(K):
    return K - K.mean(-1, keepdims=True) - K.mean(-2, keepdims=True) + K.mean((-2, -1), keepdims=True)


def test_alignment_known_cases():
    y = np.where(np.random.default_rng(0).standard_normal(30) > 0, 1.0, -1.0)
    assert observables.alignment(np.outer(y, y), y) == pytest.approx(1.0, rel=1e-14)
    assert observables.alignment(np.eye(30), y) == pytest.approx(1 / np.sqrt(30), rel=1e-14)
    K = gram(np.random.default_rng(1).standard_normal((30, 4)))
    assert observables.alignment(K, y) == pytest.approx(y @ K @ y / (30 * np.linalg.norm(K)), rel=1e-13)
    yc = y - y.mean()
    Kc = centred(K)
    expected = yc @ Kc @ yc / (yc @ yc * np.linalg.norm(Kc))
    assert observables.alignment(K, y, center=True) == pytest.approx(expected, rel=1e-12)


def test_alignment_batch_of_kernels_with_one_label_vector_each():
    rng = np.random.default_rng(12)
    K = np.stack([gram(rng.standard_normal((17, 3))) for _ in range(3)])
    y = rng.standard_normal((3, 17))
    plain = [y[b] @ K[b] @ y[b] / (y[b] @ y[b] * np.linalg.norm(K[b])) for b in range(3)]
    yc = y - y.mean(1, keepdims=True)
    Kc = centred(K)
    centre = [yc[b] @ Kc[b] @ yc[b] / (yc[b] @ yc[b] * np.linalg.norm(Kc[b])) for b in range(3)]
    assert_close(observables.alignment(K, y), plain)
    assert_close(observables.alignment(K, y, center=True), centre)


def test_alignment_batched_and_torch():
    rng = np.random.default_rng(2)
    K = np.stack([gram(rng.standard_normal((20, 3))) for _ in range(3)])
    y = rng.standard_normal(20)
    batch = observables.alignment(torch.from_numpy(K), torch.from_numpy(y))
    assert isinstance(batch, torch.Tensor) and batch.shape == (3,)
    for b in range(3):
        assert float(batch[b]) == pytest.approx(observables.alignment(K[b], y), rel=1e-13)


def test_cka_known_cases():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5))
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    K = gram(X)
    assert observables.cka(K, K) == pytest.approx(1.0, rel=1e-13)
    assert observables.cka(K, 7.0 * gram(X @ rotation)) == pytest.approx(1.0, rel=1e-12)  # invariances
    # A constant shift of every feature is removed by the centring.
    assert observables.cka(K, gram(X + 3.0)) == pytest.approx(1.0, rel=1e-12)
    L = gram(rng.standard_normal((40, 5)))
    Kc, Lc = centred(K), centred(L)
    expected = (Kc * Lc).sum() / (np.linalg.norm(Kc) * np.linalg.norm(Lc))
    assert observables.cka(K, L) == pytest.approx(expected, rel=1e-12)
    assert 0 < observables.cka(K, L) < 1
    # A batch of snapshots against one final kernel broadcasts.
    batch = observables.cka(np.stack([K, L]), L)
    np.testing.assert_allclose(batch, [expected, 1.0], rtol=1e-12)


def test_cka_fp32():
    X = np.random.default_rng(4).standard_normal((25, 3))
    value = observables.cka(torch.tensor(gram(X), dtype=torch.float32), torch.tensor(gram(X[:, :2]), dtype=torch.float32))
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(observables.cka(gram(X), gram(X[:, :2])), rel=1e-4)


def test_mutual_information_matches_sklearn():
    rng = np.random.default_rng(5)
    n = 600
    y = rng.integers(0, 3, n)
    features = np.column_stack([
        y + 0.5 * rng.standard_normal(n),  # strongly informative
        (y == 2) + 1.5 * rng.standard_normal(n),  # weakly informative
        rng.standard_normal(n),  # independent
        (1 + y) * rng.standard_normal(n),  # informative through the spread only
    ])
    ours = observables.mutual_information(features, y, k=5)
    theirs = mutual_info_classif(features, y, n_neighbors=5, random_state=0)
    # Same estimator: sklearn only rescales each feature (no effect in 1-D) and adds 1e-10 jitter.
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert list(np.argsort(ours)) == list(np.argsort(theirs))
    assert ours[0] > 0.5 and ours[2] < 0.05


def test_mutual_information_on_kpca_components():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((200, 3))
    y = np.where(X[:, 0] > 0, 1, -1)
    result = kpca(gram(X), k=3)
    mi = observables.mutual_information(torch.from_numpy(result.eigenvectors), torch.from_numpy(y))
    assert isinstance(mi, torch.Tensor) and mi.shape == (3,)
    theirs = mutual_info_classif(result.eigenvectors, y, n_neighbors=5, random_state=0)
    np.testing.assert_allclose(mi.numpy(), theirs, atol=1e-3)
    single = observables.mutual_information(result.eigenvectors[:, 0], y)
    assert single == pytest.approx(float(mi[0]), abs=1e-12)


def brute_force_mi(x, y, k):
    """Ross (2014) by the definition: m_i = 1 + #{j != i : |x_j - x_i| < d_i}, singleton classes dropped."""
    keep = np.array([np.sum(y == label) > 1 for label in y])
    x, y = x[keep], y[keep]
    distance = np.abs(x[:, None] - x[None, :])
    radius, k_all, counts = np.empty(len(x)), np.empty(len(x)), np.empty(len(x))
    for label in np.unique(y):
        members = y == label
        k_all[members] = min(k, members.sum() - 1)
        counts[members] = members.sum()
        radius[members] = np.sort(distance[np.ix_(members, members)], axis=1)[:, int(k_all[members][0])]
    m = (distance < radius[:, None]).sum(axis=1)
    mi = digamma(len(x)) + digamma(k_all).mean() - digamma(counts).mean() - digamma(m).mean()
    return max(0.0, mi)


def test_mutual_information_small_classes():
    # Tiny samples: compare with the definition (sklearn's KD-tree distance sqrt(d^2) sometimes rounds below d
    # and counts the k-th neighbour too, which matters for 10 points but averages out on the 600 above).
    x = np.random.default_rng(11).standard_normal(10) + np.arange(10.0)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2])  # class 2 alone: dropped; class 1 uses k = 3
    for k in (1, 3, 5):
        assert observables.mutual_information(x, y, k=k) == pytest.approx(brute_force_mi(x, y, k), abs=1e-12)


@pytest.mark.parametrize("kind", ["entropy", "participation"])
def test_effective_rank(kind):
    assert observables.effective_rank(np.eye(12), kind=kind) == pytest.approx(12.0, rel=1e-12)
    U, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((12, 4)))
    assert observables.effective_rank(U @ U.T, kind=kind) == pytest.approx(4.0, rel=1e-10)
    values = np.array([4.0, 2.0, 1.0, 1.0])
    K = np.diag(values)
    p = values / values.sum()
    expected = np.exp(-(p * np.log(p)).sum()) if kind == "entropy" else values.sum() ** 2 / (values**2).sum()
    batch = observables.effective_rank(np.stack([K, np.eye(4)]), kind=kind)
    np.testing.assert_allclose(batch, [expected, 4.0], rtol=1e-12)


def test_effective_rank_entropy_drops_negative_eigenvalues():
    rotation, _ = np.linalg.qr(np.random.default_rng(13).standard_normal((5, 5)))
    values = np.array([3.0, 1.0, 0.5, -0.5, -1e-3])
    p = np.array([3.0, 1.0, 0.5]) / 4.5
    expected = np.exp(-(p * np.log(p)).sum())
    # np.float64: assert_close reads a Python float as float32
    assert_close(np.float64(observables.effective_rank(rotation @ np.diag(values) @ rotation.T)), expected)


def twonn_by_definition(X, fraction):
    """TwoNN from the pairwise distances: mu = r2 / r1 (r1 = 0 dropped), slope of -log(1 - i/n) on log mu_(i)."""
    distances = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    r1, r2 = np.sort(distances, axis=1)[:, :2].T
    mu = np.sort(r2[r1 > 0] / r1[r1 > 0])
    used = max(2, int(np.floor(len(mu) * fraction)))
    x, target = np.log(mu[:used]), -np.log(1 - np.arange(used) / len(mu))
    return np.sum(x * target) / np.sum(x * x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_intrinsic_dimension_fraction_against_the_definition(dtype):
    rng = np.random.default_rng(14)
    embed, _ = np.linalg.qr(rng.standard_normal((9, 4)))
    X = torch.tensor(rng.standard_normal((601, 4)) @ embed.T, dtype=dtype)
    estimates = {}
    for fraction in (1e-4, 0.3, 0.9, 1.0):  # 1e-4: the fit's least, two ratios
        estimates[fraction] = np.float64(observables.intrinsic_dimension(X, fraction=fraction))
        assert_close(estimates[fraction], twonn_by_definition(X.double().numpy(), fraction), dtype)
    assert len(set(estimates.values())) == 4
    assert estimates[0.9] == pytest.approx(4.0, abs=0.5)
    # Duplicated points (r1 = 0) are dropped; their neighbours' ratios (r2 = r1, mu = 1) are kept.
    X = torch.cat([X, X[:7]])
    assert_close(np.float64(observables.intrinsic_dimension(X)), twonn_by_definition(X.double().numpy(), 0.9), dtype)


def test_intrinsic_dimension_of_embedded_gaussian():
    rng = np.random.default_rng(8)
    embed, _ = np.linalg.qr(rng.standard_normal((10, 3)))
    X = rng.standard_normal((2000, 3)) @ embed.T + 5.0
    assert observables.intrinsic_dimension(X) == pytest.approx(3.0, abs=0.3)
    assert observables.intrinsic_dimension(rng.standard_normal((2000, 6))) == pytest.approx(6.0, abs=0.6)


@pytest.mark.parametrize("fit", [kernel_methods.svc_error, kernel_methods.kernel_ridge_error])
def test_kernel_classifiers_learn_a_linear_rule(fit):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((300, 4))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, 1, -1)
    train, test = slice(0, 200), slice(200, 300)
    K = X @ X.T
    result = fit(K[train, train], y[train], K[test, train], y[test])
    assert result.test_error < 0.05
    if fit is kernel_methods.svc_error:
        assert result.test_error == pytest.approx(np.mean(result.estimator.predict(K[test, train]) != y[test]))
    # A kernel blind to the label's direction does no better than chance.
    K_blind = X[:, 2:] @ X[:, 2:].T
    assert fit(K_blind[train, train], y[train], K_blind[test, train], y[test]).test_error > 0.3


def noisy_rbf_problem(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 3))
    y = np.where(X[:, 0] + 0.8 * rng.standard_normal(120) > 0, 1, -1)
    K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 2)
    return X, y, K


def test_kernel_ridge_ridge_against_the_closed_form():
    X, y, K = noisy_rbf_problem(15)
    train, test = slice(0, 80), slice(80, 120)
    classes = np.array(["neg", "pos"])
    labels = classes[(y > 0).astype(int)]  # non-numeric classes: +1 is the second of the sorted classes
    errors = {}
    for ridge in (1e-6, 30.0):
        coefficients = np.linalg.solve(K[train, train] + ridge * np.eye(80), y[train].astype(float))
        expected = [np.mean(np.sign(K[part, train] @ coefficients) != y[part]) for part in (test, train)]
        fit = kernel_methods.kernel_ridge_error(K[train, train], labels[train], K[test, train], labels[test],
                                                ridge=ridge)
        assert [fit.test_error, fit.train_error] == pytest.approx(expected, abs=1e-12)
        errors[ridge] = fit.train_error
    assert errors[1e-6] == 0 < errors[30.0]  # interpolation, and a ridge that is not ignored


def test_svc_passes_C_and_options_to_sklearn():
    X, y, K = noisy_rbf_problem(16)
    fits = {C: kernel_methods.svc_error(K[:80, :80], y[:80], K[80:, :80], y[80:], C=C, class_weight="balanced")
            for C in (0.01, 1e4)}
    for C, fit in fits.items():
        assert fit.estimator.C == C and fit.estimator.class_weight == "balanced"
        assert fit.train_error == pytest.approx(np.mean(fit.estimator.predict(K[:80, :80]) != y[:80]))
    assert fits[1e4].train_error < fits[0.01].train_error


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_against_a_brute_force_vote(k):
    X, y, _ = noisy_rbf_problem(17)
    train, test = slice(0, 80), slice(80, 120)

    def vote(queries):
        distances = ((queries[:, None] - X[train][None]) ** 2).sum(-1)
        nearest = np.argsort(distances, axis=1)[:, :k]
        return np.where(y[train][nearest].sum(1) > 0, 1, -1)

    fit = kernel_methods.knn_error(X[train], y[train], X[test], y[test], k=k)
    assert fit.test_error == np.mean(vote(X[test]) != y[test])
    assert fit.train_error == np.mean(vote(X[train]) != y[train])
    assert k > 1 or fit.train_error == 0


def test_kernel_ridge_multiclass_and_knn():
    rng = np.random.default_rng(10)
    centres = rng.standard_normal((3, 5)) * 8
    y = rng.integers(0, 3, 300)
    X = centres[y] + rng.standard_normal((300, 5))
    K = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 10)
    ridge = kernel_methods.kernel_ridge_error(K[:200, :200], y[:200], K[200:, :200], y[200:], ridge=1e-3)
    knn = kernel_methods.knn_error(X[:200], y[:200], X[200:], y[200:], k=5)
    assert ridge.test_error < 0.05 and knn.test_error < 0.05
    assert knn.test_error == pytest.approx(np.mean(knn.estimator.predict(X[200:]) != y[200:]))
