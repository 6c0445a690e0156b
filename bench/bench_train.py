"""Gradient-flow steps per second: OneHidden ReLU, p = 1000, d = 10, h = 1e4, fp32, hinge, alpha = 1.

* fused: ``fastdyn.train(..., fused=True)`` — every evaluation is ``onehidden.forward`` + ``onehidden.gradient``
  (C++/OpenMP, no points x neurons matrix).
* autograd: the same ``fastdyn.train`` (same adaptive steps, same trajectory) with ``fused=False``.
* plain loop: what a torch user writes: forward, alpha-trick hinge loss, ``backward()``, an Euler update.

Each run makes STEPS accepted steps (the adaptive flow may also retry); the time per step is the best of the
rounds. The ratios print at the end of the last benchmark. Run:
``python -m pytest bench/bench_train.py --benchmark-only -s``.
"""
import copy
import time

import pytest
import torch

import fastdyn
from fastdyn import data, train

P, D, H = 1000, 10, 10_000
STEPS = 20
_seconds_per_step: dict[str, float] = {}


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
    fn(model, x, y, 2)  # warm up (kernels loaded, caches)
    benchmark.pedantic(fn, args=(model, x, y, STEPS), rounds=3, iterations=1)
    _seconds_per_step[name] = benchmark.stats.stats.min / STEPS


def fused_train(model, x, y, steps):
    result = train(model, x, y, max_steps=steps, fused=True, record_weights=False)
    assert result.step == steps and result.fused


def autograd_train(model, x, y, steps):
    result = train(model, x, y, max_steps=steps, fused=False, record_weights=False)
    assert result.step == steps and not result.fused


@pytest.mark.skipif("cpu" not in fastdyn.available_backends(), reason="needs the compiled CPU backend")
def test_fused_train(benchmark):
    _run(benchmark, "fused train", fused_train)


def test_autograd_train(benchmark):
    _run(benchmark, "autograd train", autograd_train)


def test_plain_autograd_loop(benchmark):
    _run(benchmark, "plain loop", plain_loop)
    print(f"\n{torch.get_num_threads()} threads, p={P}, d={D}, h={H}, fp32, {STEPS} steps per round")
    for name, seconds in _seconds_per_step.items():
        print(f"  {name:15s} {1e3 * seconds:8.1f} ms/step  {1 / seconds:7.1f} steps/s")
    if "fused train" in _seconds_per_step:
        fused = _seconds_per_step["fused train"]
        for name in ("autograd train", "plain loop"):
            if name in _seconds_per_step:
                print(f"  fused speed-up vs {name}: {_seconds_per_step[name] / fused:.2f}x")
