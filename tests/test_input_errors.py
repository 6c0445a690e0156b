"""Bad input to the public functions: one table of (call, exception, the argument's name in the message), and the
refusals of work that would not fit in memory, raised before anything is allocated."""
import numpy as np
import pytest
import torch
from torch import nn

import fastdyn
from fastdyn import data, kernel_methods, kinks, linear, observables, theory
from fastdyn._src.registry import dispatch
from fastdyn.data.hierarchical import correlation_svd, hierarchical
from fastdyn.experiments import alpha_sweep, learning_curves, load
from fastdyn.models import FCNet, OneHidden
from fastdyn.sweep import parse_grid, points


class ThreeDimensionalOutput(nn.Module):
    """A model whose output (N, 2, 1) is not (N,) or (N, O)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2).double()

    def forward(self, x):
        return self.linear(x)[..., None]


def onehidden(d=3, h=4, **options):
    return OneHidden(d, h, dtype=torch.float64, generator=torch.Generator().manual_seed(0), **options)


def points_2d(n=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 2))


def kernel(n=4, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, 3))
    return x @ x.T


def closed_form_ntk(backend, act):
    """A compiled closed-form NTK called directly, as the registry would, with an activation it does not cover."""
    model = onehidden(act=act)
    x = torch.zeros(5, 3, dtype=torch.float64)
    _, closed_form = dispatch("ntk.onehidden", backend, x.device)
    omega, b, beta = (p.detach() for p in (model.omega, model.b, model.beta))
    return closed_form(x, None, omega, b, beta, scale=model.output_scale, act=act)


LABELS_4 = np.array([1, -1, 1, -1])

BAD_INPUT = [
    # ntk
    pytest.param(lambda: fastdyn.ntk(nn.Sequential(nn.Flatten(), nn.Linear(0, 1)), torch.zeros(3, 0)),
                 ValueError, "x1 has no features", id="ntk-x1-no-columns",
                 marks=pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")),
    pytest.param(lambda: fastdyn.ntk(ThreeDimensionalOutput(), torch.zeros(4, 3, dtype=torch.float64)),
                 ValueError, r"model must map \(N, \.\.\.\) inputs to \(N,\) or \(N, O\).*\(1, 2, 1\)", id="ntk-model-output"),
    pytest.param(lambda: closed_form_ntk("cpu", "tanh"), ValueError, "act='relu' only, got 'tanh'",
                 id="ntk-cpu-act", marks=pytest.mark.needs_backend("cpu")),
    pytest.param(lambda: closed_form_ntk("numba", "tanh"), ValueError, "act='relu' only, got 'tanh'",
                 id="ntk-numba-act", marks=pytest.mark.needs_backend("numba")),
    # models
    pytest.param(lambda: OneHidden(0, 4), ValueError, "d and h must be positive integers, got d=0", id="onehidden-d"),
    pytest.param(lambda: OneHidden(3, 0), ValueError, "d and h must be positive integers, got d=3, h=0",
                 id="onehidden-h"),
    pytest.param(lambda: onehidden()(torch.zeros(5, 2, dtype=torch.float64)), ValueError,
                 r"x must have shape \(N, 3\), got \(5, 2\)", id="onehidden-forward-x"),
    pytest.param(lambda: FCNet([3, 0, 1]), ValueError, "dims must list at least two positive widths",
                 id="fcnet-dims"),
    # kinks
    pytest.param(lambda: kinks.velocities(onehidden(), np.zeros((5, 3)), np.zeros((5, 1))), ValueError,
                 "g must be 1-D", id="kinks-velocities-g"),
    pytest.param(lambda: kinks.field(np.zeros((2, 2)), np.ones((1, 2)), np.ones(1), beta=np.ones(3)), ValueError,
                 "beta must have length 2", id="kinks-field-beta"),
    # observables
    pytest.param(lambda: observables.alignment(np.zeros((3, 4)), np.ones(3)), ValueError,
                 r"K must be \(N, N\) or a batch", id="alignment-K-square"),
    pytest.param(lambda: observables.alignment(np.zeros((0, 0)), np.ones(0)), ValueError, "K is empty",
                 id="alignment-K-empty"),
    pytest.param(lambda: observables.alignment(np.full((2, 2), np.nan), np.ones(2)), ValueError,
                 "K contains NaN", id="alignment-K-nan"),
    pytest.param(lambda: observables.alignment(kernel(), np.ones(3)), ValueError,
                 r"y must have shape \(4,\) or \(1, 4\)", id="alignment-y-shape"),
    pytest.param(lambda: observables.alignment(kernel(), [1.0, np.inf, 1.0, 1.0]), ValueError, "y contains NaN",
                 id="alignment-y-inf"),
    pytest.param(lambda: observables.alignment(kernel(), np.zeros(4)), ValueError, "y is zero", id="alignment-y-zero"),
    pytest.param(lambda: observables.alignment(kernel(), np.full(4, 2.0), center=True), ValueError,
                 "y is zero .or constant, with centring", id="alignment-y-constant-centred"),
    pytest.param(lambda: observables.cka(kernel(4), kernel(5)), ValueError,
                 "K1 and K2 must be kernels on the same N points", id="cka-sizes"),
    pytest.param(lambda: observables.cka(kernel(), np.zeros((4, 3))), ValueError, r"K2 must be \(N, N\)",
                 id="cka-K2-square"),
    pytest.param(lambda: observables.effective_rank(kernel(), kind="renyi"), ValueError,
                 "kind must be 'entropy' or 'participation', got 'renyi'", id="effective-rank-kind"),
    pytest.param(lambda: observables.mutual_information(np.zeros((4, 2, 2)), np.zeros(4)), ValueError,
                 r"features must be \(N,\) or \(N, m\)", id="mi-features-ndim"),
    pytest.param(lambda: observables.mutual_information(np.zeros((4, 0)), np.zeros(4)), ValueError,
                 "features is empty", id="mi-features-empty"),
    pytest.param(lambda: observables.mutual_information(np.zeros((5, 2)), np.zeros(4)), ValueError,
                 r"y must have shape \(5,\)", id="mi-y-shape"),
    pytest.param(lambda: observables.mutual_information(np.array([0.0, np.nan]), np.array([0, 0])), ValueError,
                 "features contains NaN", id="mi-features-nan"),
    pytest.param(lambda: observables.mutual_information(np.arange(3.0), np.array([0, 1, 2])), ValueError,
                 "every label of y occurs once", id="mi-y-singletons"),
    *[pytest.param(lambda k=k: observables.mutual_information(np.arange(4.0), np.array([0, 0, 1, 1]), k=k),
                   ValueError, "k must be a positive int", id=f"mi-k-{k}") for k in (0, 2.0, True)],
    pytest.param(lambda: observables.intrinsic_dimension(np.zeros((2, 4))), ValueError,
                 r"X must be \(N, D\) with N >= 3", id="intrinsic-X-size"),
    pytest.param(lambda: observables.intrinsic_dimension(np.full((5, 2), np.nan)), ValueError, "X contains NaN",
                 id="intrinsic-X-nan"),
    pytest.param(lambda: observables.intrinsic_dimension(np.zeros((4, 2))), ValueError,
                 "X has 0 point.s. whose nearest neighbour is not a duplicate", id="intrinsic-X-duplicates"),
    *[pytest.param(lambda f=f: observables.intrinsic_dimension(points_2d(), fraction=f), ValueError,
                   r"fraction must be in \(0, 1\]", id=f"intrinsic-fraction-{f}") for f in (0.0, 1.5)],
    # kernel_methods
    pytest.param(lambda: kernel_methods.svc_error(np.zeros((4, 3)), LABELS_4, np.zeros((2, 3)), LABELS_4[:2]),
                 ValueError, "K_train must be a non-empty square", id="svc-K_train-square"),
    pytest.param(lambda: kernel_methods.svc_error(np.eye(4), LABELS_4, np.zeros((2, 3)), LABELS_4[:2]),
                 ValueError, r"K_test_train must be \(m, 4\)", id="svc-K_test_train-shape"),
    pytest.param(lambda: kernel_methods.svc_error(np.eye(4), LABELS_4[:2], np.zeros((2, 4)), LABELS_4[:2]),
                 ValueError, r"y_train must have shape \(4,\)", id="svc-y_train-shape"),
    pytest.param(lambda: kernel_methods.svc_error(np.eye(4), LABELS_4, np.zeros((2, 4)), LABELS_4), ValueError,
                 r"y_test must have shape \(2,\)", id="svc-y_test-shape"),
    pytest.param(lambda: kernel_methods.svc_error(np.eye(4, dtype=int), LABELS_4, np.zeros((2, 4)), LABELS_4[:2]),
                 TypeError, "K_train must hold floats", id="svc-K_train-dtype"),
    pytest.param(lambda: kernel_methods.svc_error(np.eye(4), LABELS_4, np.full((2, 4), np.nan), LABELS_4[:2]),
                 ValueError, "K_test_train contains NaN", id="svc-K_test_train-nan"),
    pytest.param(lambda: kernel_methods.kernel_ridge_error(np.eye(4), np.ones(4), np.zeros((2, 4)), np.ones(2)),
                 ValueError, "y_train must contain at least two classes", id="ridge-one-class"),
    pytest.param(lambda: kernel_methods.knn_error(np.zeros((4, 3)), LABELS_4, np.zeros((2, 2)), LABELS_4[:2]),
                 ValueError, r"X_train \(n, d\) and X_test \(m, d\) must share d", id="knn-X-widths"),
    *[pytest.param(lambda k=k: kernel_methods.knn_error(np.eye(4), LABELS_4, np.eye(4)[:2], LABELS_4[:2], k=k),
                   ValueError, "k must be between 1 and the number of training points 4", id=f"knn-k-{k}")
      for k in (0, 5)],
    # sweep
    pytest.param(lambda: parse_grid(["alphas=1,2"], load("lazy-vs-feature").config(True)), ValueError,
                 "'alphas' is a list setting", id="sweep-grid-list-key"),
    pytest.param(lambda: points("learning-curves", {}, seeds=2, quick=True), ValueError,
                 "has no 'seed' setting; drop --seeds", id="sweep-seeds-without-seed"),
    pytest.param(lambda: points("lazy-vs-feature", {}, seeds=0, quick=True), ValueError, "seeds must be >= 1",
                 id="sweep-seeds-zero"),
    # experiments
    *[pytest.param(lambda curve=curve: learning_curves.parse_curve(curve), ValueError,
                   "curves: expected 'dataset:d'", id=f"learning-curves-curve-{curve}")
      for curve in ("stripe", "cube:5", "sphere:1", "sphere:x")],
    pytest.param(lambda: alpha_sweep.run({**alpha_sweep.config(True), "alphas": [1.0, 0.1, 1e-2, 1e2, 1e3]},
                                         "never-written"), ValueError, "alphas: expected increasing",
                 id="alpha-sweep-unsorted"),
    pytest.param(lambda: alpha_sweep.run({**alpha_sweep.config(True), "alphas": [0.1, 1.0, 10.0]}, "never-written"),
                 ValueError, "at least 2 \\* plateau_points \\+ 1", id="alpha-sweep-too-few"),
    # data
    pytest.param(lambda: data.stripe(0, 3), ValueError, "p must be >= 1", id="data-p"),
    pytest.param(lambda: data.stripe(10, 0), ValueError, "d must be >= 1", id="data-d"),
    pytest.param(lambda: data.stripe(10, 3, p_test=-1), ValueError, "p_test must be >= 0", id="data-p_test"),
    pytest.param(lambda: data.stripe(10.5, 3), TypeError, "p must be an integer", id="data-p-float"),
    pytest.param(lambda: data.sphere(10, True), TypeError, "d must be an integer", id="data-d-bool"),
    pytest.param(lambda: data.sphere(10, 3, seed=-1), ValueError, "seed must be a non-negative integer",
                 id="data-seed"),
    pytest.param(lambda: data.stripe(10, 3, dtype="float16"), ValueError, "dtype must be float32 or float64",
                 id="data-dtype"),
    pytest.param(lambda: data.stripe(10, 3, device="cpu"), ValueError, "device applies to torch output",
                 id="data-device-without-torch"),
    pytest.param(lambda: data.parity(10, 4, k=5), ValueError, r"k must be in \[1, d=4\]", id="parity-k"),
    pytest.param(lambda: data.parity(10, 4, subset=[0, 4]), ValueError, "subset must list distinct indices",
                 id="parity-subset-range"),
    pytest.param(lambda: data.parity(10, 4, subset=[1, 1]), ValueError, "subset must list distinct indices",
                 id="parity-subset-repeated"),
    pytest.param(lambda: data.parity(10, 4, k=2, subset=[0, 1]), ValueError, "give k or subset, not both",
                 id="parity-k-and-subset"),
    pytest.param(lambda: data.gaussian_mixture(10, 2, separation=-1.0), ValueError, "separation must be >= 0",
                 id="mixture-separation"),
    pytest.param(lambda: data.digits(2000), ValueError, "p must be < 1797", id="digits-p"),
    pytest.param(lambda: data.digits(1000, p_test=900), ValueError, "p \\+ p_test must be <= 1797",
                 id="digits-p-plus-p_test"),
    pytest.param(lambda: data.digits(100, task="prime"), ValueError, "task must be one of", id="digits-task"),
    pytest.param(lambda: data.digits(100, d=65), ValueError, "d must be <= 64", id="digits-d"),
    pytest.param(lambda: hierarchical(depth=0), ValueError, "depth must be an integer >= 1", id="tree-depth"),
    pytest.param(lambda: hierarchical(depth=2.0), ValueError, "depth must be an integer >= 1", id="tree-depth-float"),
    pytest.param(lambda: hierarchical(branching=1), ValueError, "branching must be an integer >= 2",
                 id="tree-branching"),
    pytest.param(lambda: hierarchical(n_features=0), ValueError, "n_features must be an integer >= 1",
                 id="tree-n_features"),
    pytest.param(lambda: hierarchical(flip=1.5), ValueError, r"flip must be a probability in \[0, 1\]",
                 id="tree-flip"),
    # 2^31 nodes x 10^4 features: refused before anything is drawn
    pytest.param(lambda: hierarchical(depth=30), ValueError, "reduce depth, branching or n_features",
                 id="tree-too-large"),
    pytest.param(lambda: correlation_svd(np.eye(8), np.ones((7, 3))), ValueError,
                 r"inputs \(P, n_in\) and targets \(P, n_out\) must share P", id="tree-svd-shapes"),
    pytest.param(lambda: hierarchical(n_features=3).illusory_feature(level=1), ValueError,
                 "no feature marks a level-1 node", id="tree-no-illusory-feature"),
    pytest.param(lambda: theory.marchenko_pastur_density([1.0], 0.0), ValueError, "ratio must be finite and > 0",
                 id="mp-ratio-zero"),
    pytest.param(lambda: theory.marchenko_pastur_edges(float("nan")), ValueError, "ratio must be finite and > 0",
                 id="mp-ratio-nan"),
    pytest.param(lambda: theory.marchenko_pastur_cdf(1.0, -2.0), ValueError, "ratio must be finite and > 0", id="mp-cdf"),
    pytest.param(lambda: theory.marchenko_pastur_edges(1.0, sigma2=0), ValueError, "sigma2 must be finite and > 0",
                 id="mp-sigma2"),
    pytest.param(lambda: theory.marchenko_pastur_edges("1"), TypeError, "ratio must be a real number", id="mp-type"),
    pytest.param(lambda: theory.ridgeless_risk([0.5, -1.0]), ValueError, "ratio must be > 0 everywhere", id="risk-ratio"),
    pytest.param(lambda: theory.ridgeless_risk(0.5, noise=float("nan")), ValueError, "noise must be finite and >= 0",
                 id="risk-noise"),
    pytest.param(lambda: theory.ridgeless_risk(0.5, n=0), ValueError, "n must be an integer >= 1", id="risk-n"),
    pytest.param(lambda: theory.ridge_risk(0.5, -0.1), ValueError, "ridge must be >= 0 everywhere", id="ridge-risk"),
    pytest.param(lambda: theory.gd_steps_bound(0.5, 1e-3), ValueError, "kappa must be >= 1 everywhere",
                 id="gd-kappa"),
    pytest.param(lambda: theory.gd_steps_to_tolerance([1.0, 0.5], [1.0, 1.0], 2.5, 1e-3), ValueError,
                 "does not contract every component", id="gd-steps-eta"),
    pytest.param(lambda: theory.gd_contraction([1.0, 0.0], 0.5), ValueError, "eigenvalues must be > 0 everywhere",
                 id="gd-eigenvalues"),
    pytest.param(lambda: linear.descent(np.eye(3), np.ones(3), eta=0.0, steps=5), ValueError,
                 "eta must be finite and > 0", id="descent-eta"),
    pytest.param(lambda: linear.descent(np.eye(3), np.ones(3), eta=0.5, steps=0), ValueError,
                 "steps must be an integer >= 1", id="descent-steps"),
    pytest.param(lambda: linear.descent(np.eye(3), np.ones(2), eta=0.5, steps=5), ValueError,
                 "y must have one entry per row of X", id="descent-y"),
    pytest.param(lambda: linear.descent(np.full((2, 3), np.nan), np.ones(2), eta=0.5, steps=5), ValueError,
                 "X has NaN or infinite entries", id="descent-nan"),
    pytest.param(lambda: linear.descent(np.eye(3), np.ones(3), eta=0.5, steps=5, method="adam"), ValueError,
                 "method must be 'gd' or 'sgd'", id="descent-method"),
    pytest.param(lambda: linear.descent(np.eye(3), np.ones(3), eta=0.5, steps=5, w0=np.ones(2)), ValueError,
                 r"w0 must have shape \(3,\)", id="descent-w0"),
    pytest.param(lambda: linear.ridge_fit(np.eye(3), np.ones(3), -1.0), ValueError, "ridge must be finite and >= 0",
                 id="ridge-fit"),
    pytest.param(lambda: linear.relu_features(np.ones((4, 3)), np.ones((5, 2))), ValueError,
                 "weights must have 3 columns", id="relu-features"),
    pytest.param(lambda: linear.correlated_design(4, 3, 1.0, np.random.default_rng(0)), ValueError,
                 r"rho must be in \[0, 1\)", id="correlated-rho"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUT)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# Inputs of N = 2 million points whose N x N result needs >= 32 TB: the guard must refuse them at once; without it
# the call would try the allocation (torch's RuntimeError, not MemoryError) or, with memory overcommit, run on.
HUGE_N = 2_000_000


def huge_inputs(device):
    return torch.zeros(HUGE_N, 2, device=device)


@pytest.mark.parametrize("backend", ["cpu", "numba", "torch", "cuda"])
def test_closed_form_ntk_refuses_a_kernel_too_large_for_memory(backend):
    device = "cuda" if backend == "cuda" else "cpu"
    model = OneHidden(2, 3, device=device)
    with pytest.raises(MemoryError, match=rf"ntk needs about \d+\.\d\d GiB of {device} memory"):
        fastdyn.ntk(model, huge_inputs(device), backend=backend)


@pytest.mark.parametrize("model", [FCNet([2, 3, 1]), nn.Sequential(nn.Flatten(), nn.Linear(2, 1))],
                         ids=["fcnet", "flatten-first"])
def test_ntk_paths_refuse_a_kernel_too_large_for_memory(model):
    with pytest.raises(MemoryError, match=r"ntk \(.*\) needs about \d+\.\d\d GiB of cpu memory"):
        fastdyn.ntk(model, huge_inputs("cpu"))


def test_digit_experiments_leave_test_images():
    from fastdyn.experiments import _seed003
    with pytest.raises(ValueError, match=r"config 'n_train' must leave test images \(< 1797\), got 1797"):
        _seed003.check_image_count({"n_train": 1797}, "n_train", 20)
    with pytest.raises(ValueError, match="config 'n_pool'"):
        _seed003.check_image_count({"n_pool": 50}, "n_pool", 100)
    with pytest.raises(TypeError, match="config 'n_train' must be an integer"):
        _seed003.check_image_count({"n_train": 100.0}, "n_train", 20)
    _seed003.check_image_count({"n_train": 1796}, "n_train", 20)
