"""Benchmarks of fastdyn.curvature, ratios in one run (fp32, full data, no minibatch estimates):

* top-20 Hessian eigenvalues of an MLP [64, 256, 256, 10] (85 002 parameters) on N = 5000 points, cross-entropy:
  ``hessian_eigs`` (scipy's Lanczos on cached reverse-over-reverse products) against PyHessian's method written
  plainly (power iteration per eigenvalue, deflated against the ones found, stopped at a relative change of 1e-3 or
  100 iterations, each product a double backward over the whole data); both eigenvalue lists are printed against
  each other;
* the same on a small MLP [64, 32, 32, 10] (3 466 parameters), where the dense route fits: the whole Hessian
  (torch.autograd.functional.hessian, one backward per parameter) then numpy's eigvalsh;
* one Hessian-vector product of the seed's ReLU OneHidden (N = 5000, d = 30, h = 10 000, MSE): the fused closed
  form (C++ kernels) against fastdyn's generic torch.func path and a plain double backward, with its GFLOP/s and
  the fraction of torch.mm's rate (8 N h d flops: two length-d dot products per point and neuron in the
  Jacobian-vector kernel, two in the gradient kernel).

Run: python -m pytest bench/bench_curvature.py --benchmark-only -s
"""
import numpy as np
import torch
from torch import nn

import fastdyn
from fastdyn import curvature
from gemm_rate import rate
from harness import Timer, sized

N, K = sized(5000, 64), sized(20, 3)
TIMER = Timer()


def classification_problem(widths, seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    x = torch.randn(N, widths[0])
    y = torch.randint(0, widths[-1], (N,))
    return model, x, y


def double_backward_hvp(model, x, y):
    """v -> H v of the mean cross-entropy by autograd's double backward, over the whole data (PyHessian's product)."""
    params = list(model.parameters())

    def product(v):
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(flat @ v, params)])
    return product, sum(p.numel() for p in params)


def power_iteration_eigenvalues(product, size, k, max_iter=100, tol=1e-3, seed=0):
    """PyHessian's top-k: power iteration per eigenvalue, orthogonalised against the eigenvectors found so far."""
    gen = torch.Generator().manual_seed(seed)
    values, vectors = [], []
    for _ in range(k):
        v = torch.randn(size, generator=gen)
        value = None
        for _ in range(max_iter):
            for u in vectors:
                v = v - (v @ u) * u
            v = v / v.norm()
            hv = product(v)
            new = float(hv @ v)
            if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
                value = new
                break
            value, v = new, hv
        values.append(value)
        vectors.append(v / v.norm())
    return np.array(values)


def test_top_eigenvalues_lanczos_vs_power_iteration(benchmark):
    model, x, y = classification_problem(sized([64, 256, 256, 10], [8, 16, 16, 3]))
    product, size = double_backward_hvp(model, x, y)
    label = f"MLP P={size}, N={N}, top {K}, fp32"
    fast = TIMER(benchmark, "hessian_eigs", lambda: curvature.hessian_eigs(model, x, y, k=K, tol=1e-4,
                                                                          chunk_size=N), size=label)
    slow = TIMER(benchmark, "power iteration", power_iteration_eigenvalues, product, size, K, size=label)
    scale = abs(fast.values).max()
    assert fast.residuals.max() < 1e-3 * scale
    print(f"\n[{label}] hessian_eigs {TIMER['hessian_eigs']} ({fast.n_products} products, largest residual "
          f"{fast.residuals.max() / scale:.1e} of lambda_max), power iteration {TIMER['power iteration']}: "
          f"{TIMER.ratio('power iteration', 'hessian_eigs')}")
    print("  Lanczos:         ", np.array2string(fast.values, precision=4, max_line_width=200))
    print("  power iteration: ", np.array2string(slow, precision=4, max_line_width=200))


def test_top_eigenvalues_lanczos_vs_dense_hessian(benchmark):
    model, x, y = classification_problem(sized([64, 32, 32, 10], [8, 6, 6, 3]))
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    theta = nn.utils.parameters_to_vector(params).detach()
    label = f"MLP P={theta.numel()}, N={N}, top {K}, fp32"

    def mean_loss(t):
        state = {n: c.view(p.shape) for n, c, p in zip(names, t.split([p.numel() for p in params]), params)}
        return nn.functional.cross_entropy(torch.func.functional_call(model, state, (x,)), y)

    def dense():
        H = torch.autograd.functional.hessian(mean_loss, theta)
        return np.linalg.eigvalsh(H.double().numpy())[::-1][:K]
    fast = TIMER(benchmark, "hessian_eigs small", lambda: curvature.hessian_eigs(model, x, y, k=K, tol=1e-6,
                                                                                chunk_size=N), size=label)
    exact = TIMER(benchmark, "dense Hessian + eigvalsh", dense, size=label)
    np.testing.assert_allclose(fast.values, exact, rtol=2e-3, atol=1e-4 * abs(exact).max())
    print(f"\n[{label}] hessian_eigs {TIMER['hessian_eigs small']}, dense Hessian + eigvalsh "
          f"{TIMER['dense Hessian + eigvalsh']}: {TIMER.ratio('dense Hessian + eigvalsh', 'hessian_eigs small')}; "
          f"largest relative difference {np.max(np.abs(fast.values - exact) / np.abs(exact)):.1e}")


def test_fused_onehidden_hvp_vs_generic(benchmark):
    d, h = sized(30, 5), sized(10_000, 40)
    gen = torch.Generator().manual_seed(0)
    model = fastdyn.OneHidden(d, h, generator=gen)
    x, y = torch.randn(N, d, generator=gen), torch.randn(N, generator=gen)
    fused = curvature.CurvatureOperator(model, x, y, loss="mse")
    generic = curvature.CurvatureOperator(model, x, y, loss="mse", fused=False, chunk_size=N)
    v = torch.randn(fused.size, generator=gen)
    params = list(model.parameters())

    def double_backward(v):
        f = model(x)
        grads = torch.autograd.grad((0.5 * (f - y) ** 2).mean(), params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(flat @ v, params)])
    label = f"OneHidden N={N}, d={d}, h={h}, MSE, fp32"
    a = TIMER(benchmark, "fused", fused.matvec, v, size=label)
    b = TIMER(benchmark, "generic torch.func", generic.matvec, v, size=label)
    c = TIMER(benchmark, "double backward", double_backward, v, size=label)
    for other in (b, c):  # fp32 sums over N = 5000 points in different orders, with cancellation
        assert float((a - other).norm() / other.norm()) < 1e-3
    print(f"\n[{label}] fused {TIMER['fused']}, generic {TIMER['generic torch.func']} "
          f"({TIMER.ratio('generic torch.func', 'fused')}), double backward {TIMER['double backward']} "
          f"({TIMER.ratio('double backward', 'fused')}); fastdyn backend {fused.backend}")
    print("  " + rate("fused hvp", 8 * N * h * d, TIMER["fused"].wall))
