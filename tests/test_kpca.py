"""fastdyn.kpca against numpy.linalg.eigh: eigenpairs, solvers, batching, label projections, input checks."""
import numpy as np
import pytest
import torch

import fastdyn
from fastdyn import kpca
from fastdyn._src import memory
from fastdyn.observables import alignment

from conftest import assert_close, requires_cuda

BACKENDS = ["cpu", "torch"]
SOLVERS = {"cpu": ("full", "topk", "subspace"), "torch": ("full", "subspace")}
CASES = [(backend, solver) for backend in BACKENDS for solver in SOLVERS[backend]]


def ntk_like(n, seed=0, d=5, h=300):
    """A PSD Gram matrix with an NTK-like spectrum: relu random features of Gaussian data, plus a little diagonal."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    A = np.maximum(X @ rng.standard_normal((d, h)) / np.sqrt(d) + rng.standard_normal(h), 0)
    return A @ A.T / h + 1e-3 * np.eye(n)


def with_spectrum(values, seed=0):
    """U diag(values) U^T for a random orthogonal U (values may repeat: degenerate eigenspaces)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((len(values), len(values))))
    K = (U * np.asarray(values)) @ U.T
    return (K + K.T) / 2


def centred(K):
    return K - K.mean(-1, keepdims=True) - K.mean(-2, keepdims=True) + K.mean((-2, -1), keepdims=True)


def reference(K, k):
    values, vectors = np.linalg.eigh(K)
    return values[..., ::-1][..., :k], vectors[..., ::-1][..., :k]


def assert_same_eigenspaces(vectors, ref_values, ref_vectors, dtype, scale):
    """Compare projectors onto each cluster of (near-)equal reference eigenvalues, so signs and rotations inside a
    degenerate eigenspace do not matter."""
    vectors = np.asarray(vectors, dtype=np.float64)
    gap = 1e-6 * scale
    start = 0
    k = ref_values.shape[0]
    while start < k:
        stop = start + 1
        while stop < k and ref_values[stop - 1] - ref_values[stop] < gap:
            stop += 1
        if stop < k or k == ref_vectors.shape[0]:  # a cluster cut by k is not defined by the top-k alone
            P = vectors[:, start:stop] @ vectors[:, start:stop].T
            P_ref = ref_vectors[:, start:stop] @ ref_vectors[:, start:stop].T
            tol = {torch.float64: 1e-7, torch.float32: 1e-2}[dtype]  # vectors: error ~ eps * scale / gap
            assert np.abs(P - P_ref).max() < tol, (start, stop, np.abs(P - P_ref).max())
        start = stop


@pytest.mark.parametrize("backend,solver", CASES)
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_eigenpairs_match_numpy(backend, solver, center, dtype):
    K = ntk_like(67, seed=1)
    k = 6
    result = kpca(K.astype(np.float64 if dtype == torch.float64 else np.float32), k=k, backend=backend,
                  solver=solver, center=center)
    assert (result.backend, result.solver, result.centered) == (backend, solver, center)
    ref_values, ref_vectors = reference(centred(K) if center else K, k)
    assert_close(result.eigenvalues, ref_values.copy(), dtype)
    assert result.eigenvectors.shape == (67, k)
    assert_same_eigenspaces(result.eigenvectors, ref_values, ref_vectors, dtype, ref_values[0])


@pytest.mark.parametrize("backend,solver", CASES)
def test_degenerate_eigenvalues_compare_subspaces(backend, solver):
    spectrum = [9.0, 4.0, 4.0, 4.0, 2.5, 1.0, 1.0] + list(np.linspace(0.5, 0.01, 50))
    K = with_spectrum(spectrum, seed=2)
    result = kpca(K, k=5, backend=backend, solver=solver)
    ref_values, ref_vectors = reference(K, 5)
    assert_close(result.eigenvalues, ref_values.copy(), torch.float64)
    assert_same_eigenspaces(result.eigenvectors, ref_values, ref_vectors, torch.float64, 9.0)


@pytest.mark.parametrize("backend,solver", CASES)
def test_sign_convention_and_orthonormality(backend, solver):
    K = ntk_like(40, seed=3)
    V = kpca(K, k=8, backend=backend, solver=solver).eigenvectors
    np.testing.assert_allclose(V.T @ V, np.eye(8), atol=1e-10)
    largest = V[np.abs(V).argmax(axis=0), np.arange(8)]
    assert (largest > 0).all()
    # Non-degenerate spectrum: with the sign fixed, vectors agree entrywise with numpy's.
    _, ref = reference(K, 8)
    ref = ref * np.sign(ref[np.abs(ref).argmax(axis=0), np.arange(8)])
    np.testing.assert_allclose(V, ref, atol=1e-8)


@pytest.mark.parametrize("backend,solver", CASES)
def test_batch_matches_loop(backend, solver):
    K = np.stack([ntk_like(45, seed=s) for s in range(4)])
    y = np.sign(np.random.default_rng(0).standard_normal((4, 45)))
    batch = kpca(K, y, k=4, backend=backend, solver=solver)
    assert batch.eigenvalues.shape == (4, 4) and batch.eigenvectors.shape == (4, 45, 4)
    assert batch.projections.shape == (4, 4) and batch.alignment.shape == (4,)
    for b in range(4):
        single = kpca(K[b], y[b], k=4, backend=backend, solver=solver)
        assert_close(batch.eigenvalues[b], single.eigenvalues, torch.float64)
        assert_close(batch.eigenvectors[b], single.eigenvectors, torch.float64)
        assert_close(batch.projections[b], single.projections, torch.float64)
        assert_close(batch.alignment[b], single.alignment, torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_k_matches_full(backend, dtype):
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    K = np.stack([ntk_like(80, seed=s) for s in range(2)]).astype(np_dtype)
    y = np.where(np.random.default_rng(1).standard_normal(80) > 0, 1, -1)
    full = kpca(K, y, backend=backend, solver="full")
    for solver in SOLVERS[backend]:
        top = kpca(K, y, k=3, backend=backend, solver=solver)
        assert_close(top.eigenvalues, full.eigenvalues[:, :3], dtype)
        assert_close(top.projections, full.projections[:, :3], dtype, scale=1.0)
        assert top.eigenvalues.dtype == np_dtype and top.eigenvectors.dtype == np_dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_projections_sum_rule_and_definition(backend, center):
    K = ntk_like(50, seed=4)
    y = np.where(np.random.default_rng(2).standard_normal(50) > 0, 1.0, -1.0)
    result = kpca(K, y, backend=backend, center=center)
    labels = y - y.mean() if center else y
    expected = (result.eigenvectors.T @ labels) ** 2 / (labels @ labels)
    np.testing.assert_allclose(result.projections, expected, atol=1e-12)
    np.testing.assert_allclose(result.projections.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.cumulative, np.cumsum(expected), atol=1e-12)
    np.testing.assert_allclose(result.alignment, alignment(K, y, center=center), rtol=1e-12)
    if not center:  # labels +-1: omega^2 = (phi . y)^2 / p, the seed's normalisation
        np.testing.assert_allclose(result.projections, (result.eigenvectors.T @ y) ** 2 / 50, atol=1e-12)


def test_subspace_falls_back_on_indefinite_matrix():
    K = with_spectrum([5.0, 3.0, 2.0, -50.0] + [0.1] * 60, seed=5)
    for backend in BACKENDS:
        result = kpca(K, k=3, backend=backend, solver="subspace")
        assert int(np.asarray(result.iterations)) == -1
        assert_close(result.eigenvalues, np.array([5.0, 3.0, 2.0]), torch.float64)


needs_cpu = pytest.mark.skipif("cpu" not in BACKENDS, reason="the compiled backend did not build")


@needs_cpu
@pytest.mark.parametrize("n,k", [(130, 5), (301, 7), (700, 40)])  # cut the 64-column panels and 6-row tiles
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
@pytest.mark.parametrize("mixed", [True, False], ids=["mixed", "float64"])
@pytest.mark.parametrize("tol", [1e-10, 1e-12])
def test_subspace_meets_its_float64_tolerance(n, k, center, mixed, tol):
    """The residual bound holds for the true K (checked in numpy), not only for the solver's own estimate, also
    when float32 products did most of the work (mixed precision)."""
    K = ntk_like(n, seed=n)
    Kc = centred(K) if center else K
    ref_values, ref_vectors = reference(Kc, k)
    result = kpca(K, k=k, solver="subspace", center=center, mixed_precision=mixed, tol=tol, backend="cpu")
    assert result.iterations > 0  # converged without falling back to syevr
    V, values = result.eigenvectors, result.eigenvalues
    assert np.linalg.norm(Kc @ V - V * values, axis=0).max() <= tol * values[0]
    np.testing.assert_allclose(values, ref_values, rtol=1e-9, atol=1e-13 * ref_values[0])
    assert_same_eigenspaces(V, ref_values, ref_vectors, torch.float64, ref_values[0])


@needs_cpu
def test_one_matrix_on_two_threads_matches_one_thread():
    """A single matrix runs its float32 products on OpenMP threads (the batch path runs one matrix per thread)."""
    K = ntk_like(257, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = kpca(K, k=9, solver="subspace", backend="cpu")
        torch.set_num_threads(2)
        double = kpca(K, k=9, solver="subspace", backend="cpu")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(double.eigenvalues, single.eigenvalues, rtol=0, atol=1e-12 * single.eigenvalues[0])
    ref_values, ref_vectors = reference(K, 9)
    assert_same_eigenspaces(double.eigenvectors, ref_values, ref_vectors, torch.float64, ref_values[0])


@needs_cpu
def test_mixed_precision_on_float32_kernels_changes_nothing():
    K = ntk_like(150, seed=4).astype(np.float32)
    plain = kpca(K, k=4, solver="subspace", backend="cpu", mixed_precision=False)
    mixed = kpca(K, k=4, solver="subspace", backend="cpu", mixed_precision=True)
    np.testing.assert_array_equal(mixed.eigenvalues, plain.eigenvalues)


@needs_cpu
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_alignment_from_the_check_pass_matches_observables(center):
    """The compiled symmetry check also accumulates the alignment: several 64-wide tiles, one ragged, per-matrix
    labels, threads sharing the tiles."""
    K = np.stack([ntk_like(150, seed=s) for s in range(3)])
    y = np.random.default_rng(2).standard_normal((3, 150))
    result = kpca(K, y, k=3, center=center, backend="cpu")
    expected = [alignment(K[b], y[b], center=center) for b in range(3)]
    np.testing.assert_allclose(result.alignment, expected, rtol=1e-12)


def test_auto_solver_choice():
    assert kpca(ntk_like(30), k=20).solver == "full"
    assert kpca(ntk_like(30), k=5).solver == ("topk" if "cpu" in BACKENDS else "full")  # syevr is LAPACK's
    result = kpca(ntk_like(200), k=3)
    assert result.solver == "subspace" and result.iterations > 0
    if "cpu" in BACKENDS:
        assert result.backend == "cpu"


def test_kinds_in_kinds_out():
    K = ntk_like(20)
    out = kpca(K, k=3)
    assert isinstance(out.eigenvalues, np.ndarray) and isinstance(out.eigenvectors, np.ndarray)
    out = kpca(torch.from_numpy(K), np.ones(20), k=3)
    assert isinstance(out.eigenvalues, torch.Tensor) and isinstance(out.projections, torch.Tensor)
    assert out.projections.dtype == torch.float64


@pytest.mark.parametrize(
    "K,kwargs,error,match",
    [
        (np.zeros((3, 4)), {}, ValueError, "square"),
        (np.zeros((2, 2, 2, 2)), {}, ValueError, r"\(N, N\)"),
        (np.zeros((0, 0)), {}, ValueError, "empty"),
        (np.zeros((2, 0, 0)), {}, ValueError, "empty"),
        (np.array([[1.0, 2.0], [0.0, 1.0]]), {}, ValueError, "not symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), {}, ValueError, "NaN"),
        (np.eye(3), {"k": 4}, ValueError, "k must be between"),
        (np.eye(3), {"k": 0}, ValueError, "k must be between"),
        (np.eye(3), {"k": 1.5}, TypeError, "k must be an int"),
        (np.eye(3, dtype=np.int64), {}, TypeError, "float32 or float64"),
        (np.eye(3, dtype=np.float16), {}, TypeError, "float32 or float64"),
        (np.eye(3), {"y": np.ones(4)}, ValueError, "y must have shape"),
        (np.eye(3), {"y": np.zeros(3)}, ValueError, "zero"),
        (np.eye(3), {"solver": "arpack"}, ValueError, "solver must be"),
        (np.eye(3), {"backend": "torch", "solver": "topk"}, ValueError, "cpu"),
        (np.eye(3), {"backend": "numba"}, ValueError, "does not implement"),
        (np.eye(3), {"tol": 0.0}, ValueError, "tol must be in"),
        (np.eye(3), {"tol": "1e-8"}, TypeError, "tol must be a positive float"),
        (np.eye(3), {"mixed_precision": "yes"}, TypeError, "mixed_precision must be"),
    ],
)
def test_bad_input_is_refused(K, kwargs, error, match):
    with pytest.raises(error, match=match):
        kpca(K, **kwargs)


def test_symmetry_tolerance():
    K = ntk_like(10)
    K[0, 1] += 1e-12  # round-off asymmetry is accepted
    kpca(K)
    K[0, 1] += 1e-3
    with pytest.raises(ValueError, match="not symmetric"):
        kpca(K)
    kpca(K, symmetry_tol=1e-2)


@requires_cuda
@pytest.mark.parametrize("solver", ["full", "subspace"])
def test_cuda_tensors_run_on_torch(solver):
    K = torch.from_numpy(np.stack([ntk_like(300, seed=s) for s in range(3)]))
    y = torch.from_numpy(np.where(np.random.default_rng(0).standard_normal(300) > 0, 1.0, -1.0))
    gpu = kpca(K.cuda(), y.cuda(), k=10, solver=solver)
    assert gpu.backend == "torch" and gpu.eigenvalues.is_cuda
    ref_values, _ = reference(K.numpy(), 10)
    assert_close(gpu.eigenvalues, ref_values.copy(), torch.float64)
    cpu = kpca(K, y, k=10, solver="full")
    assert_close(gpu.projections, cpu.projections, torch.float64, scale=1.0)


def test_torch_check_matches_compiled_check():
    from fastdyn._src import backends as _backends
    from fastdyn._src.backend_torch.kpca import _SYMMETRY_TILE, _tile_stats

    rng = np.random.default_rng(7)
    n = _SYMMETRY_TILE + 37  # several tiles, one ragged
    K = torch.from_numpy(rng.standard_normal((2, n, n)))
    K[1, 5, n - 3] = np.inf
    expected = [[float(K[0].abs().max()), float((K[0] - K[0].T).abs().max()), 0.0]]
    assert torch.allclose(_tile_stats(K[0]), torch.tensor(expected[0], dtype=torch.float64))
    assert _tile_stats(K[1])[2] == 1.0
    if "cpu" in BACKENDS:
        stats = torch.empty(2, 4, dtype=torch.float64)
        _backends.module("cpu").kpca_check(K, None, stats, center=False, threads=1)
        assert torch.allclose(stats[0, :3], torch.tensor(expected[0], dtype=torch.float64)) and stats[1, 2] == 1.0
        assert torch.isnan(stats[:, 3]).all()  # no labels, no alignment


def test_direct_solver_refuses_what_cannot_fit(monkeypatch):

    monkeypatch.setattr(memory, "available_memory", lambda device: 4096)
    with pytest.raises(MemoryError, match="GiB"):
        kpca(ntk_like(30), k=20)
    assert kpca(ntk_like(200), k=3).solver == "subspace"  # the copy-free solver still runs
