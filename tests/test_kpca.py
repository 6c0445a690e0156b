"""fastdyn.kpca against numpy.linalg.eigh: residuals, eigenspaces, label power, solvers, batching, seeds, input checks.

Every solver is held to what it promises for the true K (computed here in numpy fp64, from the upcast input):
residuals ||K v - theta v|| <= tol |theta_max| for "subspace" (kpca's docstring), and the backward error
N eps |theta_max| of a stable direct solver for "full" and "topk" (LAPACK: p(N) eps ||K||_2). Eigenvectors are then
compared with numpy's within the Davis-Kahan bound promise / gap, which also bounds the label power."""
import numpy as np
import pytest
import torch

from fastdyn import kpca
from fastdyn._src import memory, registry

from conftest import assert_close, requires_cuda

BACKENDS = ["cpu", "torch"]
SOLVERS = {"cpu": ("full", "topk", "subspace"), "torch": ("full", "subspace")}
CASES = [(backend, solver) for backend in BACKENDS for solver in SOLVERS[backend]]
DOCUMENTED_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}  # kpca's default subspace tol, from its docstring


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


def numpy_dtype(dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def true_kernel(K, center=False):
    """What the solver was asked to decompose, in fp64 from the (upcast) input."""
    K = np.asarray(K, dtype=np.float64)
    return centred(K) if center else K


def reference(K, k=None):
    """numpy.linalg.eigh's pairs, descending (the top k)."""
    values, vectors = np.linalg.eigh(K)
    return values[..., ::-1][..., :k], vectors[..., ::-1][..., :k]


def numpy_alignment(K, y, center):
    labels = y - y.mean() if center else y
    K = true_kernel(K, center)
    return labels @ K @ labels / (labels @ labels * np.linalg.norm(K))


def clusters(values, width):
    """Runs of indices of descending ``values`` whose neighbours are closer than ``width``."""
    return np.split(np.arange(len(values)), np.flatnonzero(-np.diff(values) >= width) + 1)


_EIGH = {}


def cached_eigh(K):
    """reference(K) for the fp64 matrix K, kept for the matrices several cases decompose."""
    key = (K.shape, hash(K.tobytes()))
    if key not in _EIGH:
        _EIGH[key] = reference(K)
    return _EIGH[key]


def assert_matches_eigh(K, values, vectors, dtype, solver, tol=None, labels=None, projections=None, cumulative=None):
    """Top-k pairs (values (k,), vectors (N, k)) of the true K (fp64 numpy) against numpy.linalg.eigh.

    The promise: every ||K v - theta v|| <= tol |theta_max| for "subspace" (tol: kpca's default), plus N eps
    |theta_max| (all that "full" and "topk" promise; the rounding of a residual computed in working precision).
    Checks the residuals, orthonormal columns and eigenvalues; then, per cluster of reference eigenvalues closer
    than 100 promise, that the result's columns in it lie in numpy's eigenspace: ||sin Theta||_F <= sqrt(m) promise
    / gap (Davis-Kahan; + numpy's own error, its eigenvalues exact to N eps64 |theta_max|), which bounds
    ||P - P_ref||_2 and is blind to signs and rotations inside degenerate eigenspaces. With labels, the label power
    of each cluster inside the top k and ``cumulative`` at its end against numpy's eigenvectors:
    |y^T (P - P_ref) y| / y^T y <= ||P - P_ref||_2. Returns [(result columns, reference indices, bound)].
    """
    V, theta = np.asarray(vectors, dtype=np.float64), np.asarray(values, dtype=np.float64)
    n, k = V.shape
    eps = np.finfo(numpy_dtype(dtype)).eps
    ref_values, ref_vectors = cached_eigh(K)
    theta_max = np.abs(ref_values).max()
    tol = (DOCUMENTED_TOL[dtype] if tol is None else tol) if solver == "subspace" else 0.0
    promise = (tol + n * eps) * theta_max
    residual = np.linalg.norm(K @ V - V * theta, axis=0)
    assert residual.max() <= promise, f"residual {residual.max():.3e} > promised {promise:.3e} ({residual.argmax()})"
    assert np.abs(V.T @ V - np.eye(k)).max() <= n * eps, "columns are not orthonormal"
    assert_close(theta, ref_values[:k].copy(), dtype)
    ref_error = n * np.finfo(np.float64).eps * theta_max
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float64)
        ref_power = (ref_vectors.T @ labels) ** 2 / (labels @ labels)
        projections, cumulative = np.asarray(projections, np.float64), np.asarray(cumulative, np.float64)
        assert_close(cumulative, np.cumsum(projections), dtype, scale=1.0)
    found, power_bound = [], 0.0
    for cluster in clusters(ref_values, 100 * promise):
        inside = cluster[cluster < k]
        if not inside.size:
            break
        others = np.delete(ref_values, cluster)
        gap = np.abs(theta[inside, None] - others).min(initial=np.inf) - ref_error
        ref_gap = np.abs(ref_values[cluster, None] - others).min(initial=np.inf)
        bound = np.sqrt(inside.size) * (promise / gap + np.sqrt(cluster.size) * ref_error / ref_gap) + n * eps
        basis = ref_vectors[:, cluster]
        sin_theta = np.linalg.norm(V[:, inside] - basis @ (basis.T @ V[:, inside]))
        assert sin_theta <= bound, f"eigenvectors {inside} off numpy's by {sin_theta:.3e} > bound {bound:.3e}"
        if labels is not None and inside.size == cluster.size:
            power_bound += bound
            assert_close(projections[inside].sum(), ref_power[cluster].sum(), rtol=bound, scale=1.0)
            assert_close(cumulative[inside[-1]], ref_power[:cluster[-1] + 1].sum(), rtol=power_bound, scale=1.0)
        found.append((inside, cluster, bound))
    return found


@pytest.mark.parametrize("backend,solver", CASES)
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_eigenpairs_match_numpy(backend, solver, center, dtype):
    """Residuals, eigenvalues and eigenspaces for the true K (cpu "subspace" runs mixed precision on fp64 here)."""
    K = ntk_like(67, seed=1).astype(numpy_dtype(dtype))
    k = 6
    result = kpca(K, k=k, backend=backend, solver=solver, center=center)
    assert (result.backend, result.solver, result.centered) == (backend, solver, center)
    assert result.eigenvectors.shape == (67, k)
    if solver == "subspace":
        assert result.iterations > 0  # converged, no fallback to a direct solver
    Kt = true_kernel(K, center)
    assert_matches_eigh(Kt, result.eigenvalues, result.eigenvectors, dtype, solver)


@pytest.mark.parametrize("backend,solver", CASES)
def test_degenerate_eigenvalues_compare_subspaces(backend, solver):
    spectrum = [9.0, 4.0, 4.0, 4.0, 2.5, 1.0, 1.0] + list(np.linspace(0.5, 0.01, 50))
    K = with_spectrum(spectrum, seed=2)
    result = kpca(K, k=5, backend=backend, solver=solver)
    found = assert_matches_eigh(K, result.eigenvalues, result.eigenvectors, torch.float64, solver)
    assert [cluster.tolist() for _, cluster, _ in found] == [[0], [1, 2, 3], [4]]


@pytest.mark.parametrize("backend,solver", CASES)
def test_sign_convention_and_orthonormality(backend, solver):
    K = ntk_like(40, seed=3)
    result = kpca(K, k=8, backend=backend, solver=solver)
    V = result.eigenvectors
    np.testing.assert_allclose(V.T @ V, np.eye(8), atol=1e-10)
    largest = V[np.abs(V).argmax(axis=0), np.arange(8)]
    assert (largest > 0).all()
    # Non-degenerate spectrum: with the sign fixed, vectors agree entrywise with numpy's (||v - u|| <= sqrt(2) sin).
    _, ref = reference(K, 8)
    ref = ref * np.sign(ref[np.abs(ref).argmax(axis=0), np.arange(8)])
    found = assert_matches_eigh(K, result.eigenvalues, V, torch.float64, solver)
    assert len(found) == 8
    for (column,), _, bound in found:
        assert_close(V[:, column], ref[:, column], rtol=np.sqrt(2) * bound, scale=1.0)


@pytest.mark.parametrize("backend,solver", CASES)
def test_batch_members_match_numpy(backend, solver, dtype):
    """Each member of a batch against numpy: eigenpairs, label power and alignment; dtypes preserved."""
    np_dtype = numpy_dtype(dtype)
    K = np.stack([ntk_like(45, seed=s) for s in range(4)]).astype(np_dtype)
    y = np.sign(np.random.default_rng(0).standard_normal((4, 45)))
    batch = kpca(K, y, k=4, backend=backend, solver=solver)
    assert batch.eigenvalues.shape == (4, 4) and batch.eigenvectors.shape == (4, 45, 4)
    assert batch.projections.shape == (4, 4) and batch.alignment.shape == (4,)
    assert batch.eigenvalues.dtype == np_dtype and batch.eigenvectors.dtype == np_dtype
    for b in range(4):
        Kt = true_kernel(K[b])
        assert_matches_eigh(Kt, batch.eigenvalues[b], batch.eigenvectors[b], dtype, solver, labels=y[b],
                            projections=batch.projections[b], cumulative=batch.cumulative[b])
        assert_close(batch.alignment[b], numpy_alignment(Kt, y[b], False), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_projections_sum_rule_and_definition(backend, center):
    """All N pairs: omega^2 = (phi . y)^2 / ||y||^2 from numpy's eigenvectors (for labels +-1 and no centring
    ||y||^2 = p, the seed's normalisation), summing to 1; alignment as numpy computes it."""
    K = ntk_like(50, seed=4)
    y = np.where(np.random.default_rng(2).standard_normal(50) > 0, 1.0, -1.0)
    result = kpca(K, y, backend=backend, center=center)
    assert result.solver == "full"
    Kt = true_kernel(K, center)
    labels = y - y.mean() if center else y
    found = assert_matches_eigh(Kt, result.eigenvalues, result.eigenvectors, torch.float64, "full", labels=labels,
                                projections=result.projections, cumulative=result.cumulative)
    assert sum(cluster.size for _, cluster, _ in found) == 50
    assert_close(result.projections.sum(), 1.0, torch.float64)
    assert_close(result.alignment, numpy_alignment(K, y, center), torch.float64)


def test_subspace_falls_back_on_indefinite_matrix():
    K = with_spectrum([5.0, 3.0, 2.0, -50.0] + [0.1] * 60, seed=5)
    for backend in BACKENDS:
        result = kpca(K, k=3, backend=backend, solver="subspace")
        assert int(np.asarray(result.iterations)) == -1
        assert_close(result.eigenvalues, np.array([5.0, 3.0, 2.0]), torch.float64)


@pytest.mark.needs_backend("cpu")
@pytest.mark.parametrize("n,k", [(130, 5), (301, 7), (700, 40)])  # cut the 64-column panels and 6-row tiles
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
@pytest.mark.parametrize("mixed", [True, False], ids=["mixed", "float64"])
@pytest.mark.parametrize("tol", [1e-10, 1e-12])
def test_subspace_meets_its_float64_tolerance(n, k, center, mixed, tol):
    """The residual bound holds for the true K (checked in numpy), not only for the solver's own estimate, also
    when float32 products did most of the work (mixed precision)."""
    K = ntk_like(n, seed=n)
    result = kpca(K, k=k, solver="subspace", center=center, mixed_precision=mixed, tol=tol, backend="cpu")
    assert result.iterations > 0  # converged without falling back to syevr
    Kt = true_kernel(K, center)
    assert_matches_eigh(Kt, result.eigenvalues, result.eigenvectors, torch.float64, "subspace", tol)


@pytest.mark.needs_backend("cpu")
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
    assert_matches_eigh(K, double.eigenvalues, double.eigenvectors, torch.float64, "subspace")


@pytest.mark.needs_backend("cpu")
def test_mixed_precision_on_float32_kernels_changes_nothing():
    K = ntk_like(150, seed=4).astype(np.float32)
    plain = kpca(K, k=4, solver="subspace", backend="cpu", mixed_precision=False)
    mixed = kpca(K, k=4, solver="subspace", backend="cpu", mixed_precision=True)
    np.testing.assert_array_equal(mixed.eigenvalues, plain.eigenvalues)


@pytest.mark.needs_backend("cpu")
@pytest.mark.parametrize("center", [False, True], ids=["plain", "centred"])
def test_alignment_from_the_check_pass_matches_numpy(center):
    """The compiled symmetry check also accumulates the alignment: several 64-wide tiles, one ragged, per-matrix
    labels, threads sharing the tiles."""
    K = np.stack([ntk_like(150, seed=s) for s in range(3)])
    y = np.random.default_rng(2).standard_normal((3, 150))
    result = kpca(K, y, k=3, center=center, backend="cpu")
    expected = [numpy_alignment(K[b], y[b], center) for b in range(3)]
    assert_close(result.alignment, np.array(expected), torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_moves_the_start_not_the_result(backend):
    """Same seed: identical results (a numpy integer too); another seed: other iterates, the same eigenpairs
    within the promised residual."""
    K = ntk_like(120, seed=6)
    first, again, numpy_seed, other = (kpca(K, k=5, backend=backend, solver="subspace", seed=seed)
                                       for seed in (3, 3, np.int64(3), 2**64 - 1))
    for same in (again, numpy_seed):
        np.testing.assert_array_equal(same.eigenvalues, first.eigenvalues)
        np.testing.assert_array_equal(same.eigenvectors, first.eigenvectors)
        assert same.iterations == first.iterations
    assert not np.array_equal(other.eigenvectors, first.eigenvectors)  # the seed reaches the random start
    for result in (first, other):
        assert result.iterations > 0
        assert_matches_eigh(K, result.eigenvalues, result.eigenvectors, torch.float64, "subspace")


def _columns_swapped(solve):
    def wrong(K, **options):
        values, vectors, iterations = solve(K, **options)
        return values, vectors[..., [1, 0] + list(range(2, vectors.shape[-1]))], iterations
    return wrong


def _pairs_reversed(solve):
    def wrong(K, **options):
        values, vectors, iterations = solve(K, **options)
        return values.flip(-1), vectors.flip(-1), iterations
    return wrong


def _stopped_early(solve):
    def wrong(K, *, tol, **options):
        return solve(K, tol=1e5 * tol, **options)
    return wrong


MUTANTS = {"columns swapped": ("full", _columns_swapped, "residual"),
           "pairs reversed": ("topk", _pairs_reversed, "entries off"),
           "stopped early": ("subspace", _stopped_early, "residual")}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mutant", MUTANTS)
def test_checks_catch_a_wrong_solver(monkeypatch, backend, mutant):
    """Eigenvectors shuffled, pairs out of order, or an iterative solver stopping early fail assert_matches_eigh."""
    solver, wrap, message = MUTANTS[mutant]
    solver = solver if solver in SOLVERS[backend] else "full"
    registry.supported(f"kpca.{solver}")  # loads the registrations
    implementations = registry.OPERATIONS[f"kpca.{solver}"].implementations
    monkeypatch.setitem(implementations, backend, wrap(implementations[backend]))
    K = ntk_like(67, seed=1)
    result = kpca(K, k=6, backend=backend, solver=solver)
    with pytest.raises(AssertionError, match=message):
        assert_matches_eigh(K, result.eigenvalues, result.eigenvectors, torch.float64, solver)


@pytest.mark.needs_backend("cpu")
def test_auto_solver_choice():
    assert kpca(ntk_like(30), k=20).solver == "full"
    assert kpca(ntk_like(30), k=5).solver == "topk"  # syevr is LAPACK's
    assert kpca(ntk_like(30), k=5, backend="torch").solver == "full"
    result = kpca(ntk_like(200), k=3)
    assert result.solver == "subspace" and result.iterations > 0 and result.backend == "cpu"


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
        (np.eye(3), {"seed": 1.5}, TypeError, "seed must be an int"),
        (np.eye(3), {"seed": True}, TypeError, "seed must be an int"),
        (np.eye(3), {"seed": None}, TypeError, "seed must be an int"),
        (np.eye(3), {"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*64\)"),
        (np.eye(3), {"seed": 2**64, "solver": "subspace"}, ValueError, "seed must be in"),
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
    for member, pairs in zip(K.numpy(), zip(gpu.eigenvalues, gpu.eigenvectors, gpu.projections, gpu.cumulative)):
        values, vectors, projections, cumulative = (x.cpu() for x in pairs)
        assert_matches_eigh(member, values, vectors, torch.float64, solver, labels=y.numpy(), projections=projections,
                            cumulative=cumulative)


@pytest.mark.needs_backend("cpu")
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
    stats = torch.empty(2, 4, dtype=torch.float64)
    _backends.module("cpu").kpca_check(K, None, stats, center=False, threads=1)
    assert torch.allclose(stats[0, :3], torch.tensor(expected[0], dtype=torch.float64)) and stats[1, 2] == 1.0
    assert torch.isnan(stats[:, 3]).all()  # no labels, no alignment


def test_direct_solver_refuses_what_cannot_fit(monkeypatch):

    monkeypatch.setattr(memory, "available_memory", lambda device: 4096)
    with pytest.raises(MemoryError, match="GiB"):
        kpca(ntk_like(30), k=20)
    assert kpca(ntk_like(200), k=3).solver == "subspace"  # the copy-free solver still runs
