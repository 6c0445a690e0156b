"""Gradient-flow steps per second: OneHidden ReLU, p = 1000, d = 10, h = 1e4, fp32, hinge, alpha = 1.

* exact C++ loop: ``fastdyn.train`` as it runs by default here (method "exact", the C++ loop of
  csrc/cpu/flow.cpp). One accepted step costs 3 forward passes and 1 gradient per attempt, plus 1 gradient
  (over the active points only) once accepted; it carries its own error control (step doubling).
* fused euler: ``fastdyn.train(method="euler", fused=True)``: Python steps, one forward + gradient per attempt.
* autograd: the same euler ``fastdyn.train`` (same adaptive steps, same trajectory) with ``fused=False``.
* plain loop: what a torch user writes: forward, alpha-trick hinge loss, ``backward()``, an Euler update.

* kernels: one forward + gradient evaluation of the fused path alone (``fastdyn.onehidden`` kernels of the "cpu"
  backend), checked against autograd in fp64, with its GFLOP/s against torch.mm's fp32 GEMM rate measured in the same
  run and the CPU instruction-set path (``FASTDYN_CPU_ISA=baseline`` forces the portable one).

Each run makes STEPS accepted steps (the adaptive flow may also retry); every path is timed alike
(``harness.Timer``: warm-up, best of the rounds). The ratios print at the end of the last benchmark. Run:
``python -m pytest bench/bench_train.py --benchmark-only -s``.
"""
import copy

import torch

import fastdyn
from conftest import assert_close
from fastdyn import data, train
from fastdyn._src.backends import module
from gemm_rate import rate
from harness import Timer, settled_neurons, sized

P, D, H = sized(1000, 60), 10, sized(10_000, 200)
STEPS = sized(20, 3)
SIZE = f"p={P} h={H} steps={STEPS}"
NAMES = ("exact C++ loop", "fused euler", "autograd train")
TIMER = Timer()
_attempts: dict[str, float] = {}


def problem():
    x, y, _, _ = data.stripe(P, D, p_test=0, dtype="float32", as_torch=True)
    model = fastdyn.OneHidden(D, H, generator=torch.Generator().manual_seed(0))
    return model, x, y


def plain_loop(model, x, y, steps, dt=1.0, alpha=1.0):
    model = copy.deepcopy(model)
    with torch.no_grad():
        f0 = model(x)
    for _ in range(steps):
        model.zero_grad()
        F = alpha * (model(x) - f0)
        loss = torch.relu(1 - F * y).sum() / (P * alpha ** 2)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(dt * p.grad)
    return model


def _run(benchmark, name, fn):
    model, x, y = problem()
    TIMER(benchmark, name, fn, model, x, y, STEPS, size=SIZE)


def exact_loop(model, x, y, steps):
    result = train(model, x, y, max_steps=steps, record_weights=False)
    assert result.step == steps and result.engine.startswith("flow, exact method, C++ loop (cpu")
    _attempts["exact C++ loop"] = (steps + result.counts["rejected"]) / steps


def fused_euler(model, x, y, steps):
    result = train(model, x, y, max_steps=steps, fused=True, method="euler", record_weights=False)
    assert result.step == steps and result.fused


def autograd_train(model, x, y, steps):
    result = train(model, x, y, max_steps=steps, fused=False, record_weights=False)
    assert result.step == steps and not result.fused


def test_exact_loop(benchmark):
    _run(benchmark, "exact C++ loop", exact_loop)


def test_fused_euler(benchmark):
    _run(benchmark, "fused euler", fused_euler)


def test_fused_forward_gradient_kernels(benchmark):
    """onehidden_forward + onehidden_gradient, p = 1000, d = 10, h = 1e4, fp32: counted as 2 p d h + 2 p (d + 2) h
    = 4.4e8 flops (pre-activations once, then the gradient sums; the kernels compute the pre-activations twice).
    Checked against autograd in fp64: f and grad_beta (continuous in the pre-activations) everywhere, grad_omega and
    grad_b per neuron on the neurons no fp32 activation flip can reach."""
    model, x, _ = problem()
    core, threads = module("cpu"), torch.get_num_threads()
    omega, b, beta = (t.detach() for t in (model.omega, model.b, model.beta))
    out, g = torch.empty(P), torch.randn(P, generator=torch.Generator().manual_seed(1)) / P
    grads = [torch.empty_like(t) for t in (omega, b, beta)]

    def evaluate():
        core.onehidden_forward(x, omega, b, beta, out, scale=model.output_scale, threads=threads)
        core.onehidden_gradient(x, g, omega, b, beta, *grads, scale=model.output_scale, threads=threads)

    TIMER(benchmark, "kernels", evaluate, size=f"p={P} h={H}")
    model64 = copy.deepcopy(model).double()
    f64 = model64(x.double())
    expected = torch.autograd.grad((g.double() * f64).sum(), (model64.omega, model64.b, model64.beta))
    assert_close(out, f64, torch.float32)
    assert_close(grads[2], expected[2], torch.float32)
    settled = settled_neurons(x, omega, b)
    assert settled.double().mean() >= 0.5
    for grad, exp in zip(grads[:2], expected[:2]):
        assert_close(grad[settled], exp[settled], torch.float32, rows=grad.dim() > 1)
    seconds = TIMER["kernels"].wall
    print(f"\nfused forward + gradient p={P} d={D} h={H} fp32: {1e3 * seconds:.2f} ms")
    print(rate("fused forward + gradient", 2 * P * D * H + 2 * P * (D + 2) * H, seconds))


def test_autograd_train(benchmark):
    _run(benchmark, "autograd train", autograd_train)


def test_plain_autograd_loop(benchmark):
    _run(benchmark, "plain loop", plain_loop)
    print(f"\n{torch.get_num_threads()} threads, p={P}, d={D}, h={H}, fp32, {STEPS} steps per round")
    for name in (*NAMES, "plain loop"):
        if name in TIMER:
            seconds = TIMER[name].wall / STEPS
            print(f"  {name:15s} {1e3 * seconds:8.1f} ms/step  {1 / seconds:7.1f} steps/s")
    for name in NAMES:
        if name in TIMER:
            print(f"  plain loop step / {name} step: {TIMER.ratio('plain loop', name)}")
    if "exact C++ loop" in TIMER:
        attempts = _attempts["exact C++ loop"]
        evaluations = 3 * attempts + 1  # forward passes; the gradients are fewer (1 per attempt + 1)
        per_pair = TIMER["plain loop"].wall / (TIMER["exact C++ loop"].wall / (attempts + 1))
        print(f"  exact C++ loop: {attempts:.2f} attempts per accepted step ({evaluations:.1f} forward and "
              f"{attempts + 1:.1f} gradient passes); per forward + gradient pair: {per_pair:.2f}x the plain loop step")
