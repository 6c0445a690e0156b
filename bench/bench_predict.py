"""Benchmark of fastdyn.predict.gradient_descent_mse: the train and test outputs of kernel gradient flow on the squared
loss at T = 100 times, float64, against the straightforward route of a loop over the times (the matrix exponential
exp(-lr K t / N) by torch.linalg.matrix_exp, then torch.linalg.solve for K^-1 (I - exp(..)) (y - f0)), the ratio in
one run at N = 1000 training and M = 1000 test points (an RBF kernel, well conditioned enough for the solve); and
at N = 5000, the issue's size (where the loop would take hours), against neural-tangents 0.6.5's
``predict.gradient_descent_mse`` in its own venv (``bench/peers/neural_tangents_predict.py``, float64, the same kernel
and times; runs when FASTDYN_NT_PYTHON names that venv's python, else skips).

Run: python -m pytest bench/bench_predict.py --benchmark-only -s
"""
from pathlib import Path

import numpy as np
import torch

from fastdyn import predict
from harness import ROUNDS, WARMUP, Timer, neural_tangents_python, sized

N, M, T, N_LARGE = sized(1000, 40), sized(1000, 20), sized(100, 5), sized(5000, 60)
TIMER = Timer()
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "neural_tangents_predict.py"


def rbf_problem(n, m, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n + m, 10, generator=gen, dtype=torch.float64)
    K = torch.exp(-0.5 * torch.cdist(X, X) ** 2 / 10) + 1e-3 * torch.eye(n + m, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    return K[:n, :n].contiguous(), K[n:, :n].contiguous(), y


def solve_loop(K, Kt, y, times):
    n = K.shape[0]
    eye = torch.eye(n, dtype=K.dtype)
    train, test = [], []
    for t in times:
        decay = torch.linalg.matrix_exp(-K * (t / n))
        train.append(y - decay @ y)
        test.append(Kt @ torch.linalg.solve(K, (eye - decay) @ y))
    return torch.stack(train), torch.stack(test)


def test_predictions_at_many_times_vs_a_loop_of_solves(benchmark):
    K, Kt, y = rbf_problem(N, M)
    times = np.geomspace(1e-2, 1e4, T)
    label = f"N={N}, M={M}, T={T}, fp64"
    fast = TIMER(benchmark, "gradient_descent_mse", predict.gradient_descent_mse, K, y, times, K_test_train=Kt,
                 size=label)
    train, test = TIMER(benchmark, "matrix_exp + solve loop", solve_loop, K, Kt, y, times, size=label)
    scale = float(test.abs().max())
    assert float((fast.train - train).abs().max()) < 1e-8 * float(train.abs().max())
    assert float((fast.test - test).abs().max()) < 1e-6 * scale
    print(f"\n[{label}] gradient_descent_mse {TIMER['gradient_descent_mse']}, loop "
          f"{TIMER['matrix_exp + solve loop']}: {TIMER.ratio('matrix_exp + solve loop', 'gradient_descent_mse')}; "
          f"largest test difference {float((fast.test - test).abs().max()) / scale:.1e} of max|f_test|")


def test_predictions_at_the_issue_size(benchmark):
    K, Kt, y = rbf_problem(N_LARGE, M)
    times = np.geomspace(1e-2, 1e4, T)
    label = f"N={N_LARGE}, M={M}, T={T}, fp64"
    TIMER(benchmark, "gradient_descent_mse large", predict.gradient_descent_mse, K, y, times, K_test_train=Kt,
          size=label)
    print(f"\n[{label}] gradient_descent_mse {TIMER['gradient_descent_mse large']}")


def test_neural_tangents_at_the_issue_size(benchmark, tmp_path):
    python = neural_tangents_python()
    K, Kt, y = rbf_problem(N_LARGE, M)
    times = np.geomspace(1e-2, 1e4, T)
    np.savez(tmp_path / "problem.npz", K=K.numpy(), Kt=Kt.numpy(), y=y.numpy(), times=times)
    command = [python, str(PEER_SCRIPT), str(tmp_path / "problem.npz"), str(tmp_path / "out.npz"), "--repeats",
               str(ROUNDS), "--warmup", str(WARMUP)]

    label = f"N={N_LARGE}, M={M}, T={T}, fp64"
    result = TIMER.peer(benchmark, "neural-tangents large", command, size=label)
    peer = np.load(tmp_path / "out.npz")
    fast = predict.gradient_descent_mse(K, y, times, K_test_train=Kt)
    scale = float(fast.test.abs().max())
    difference = float(np.abs(peer["test"] - fast.test.numpy()).max()) / scale
    assert difference < 1e-6
    line = f"\n[{label}] neural-tangents {TIMER['neural-tangents large']} (first call {result['first_call_s']:.1f} s)"
    if "gradient_descent_mse large" in TIMER:
        line += f"; fastdyn vs neural-tangents: {TIMER.ratio('neural-tangents large', 'gradient_descent_mse large')}"
    print(f"{line}; largest test difference {difference:.1e} of max|f_test|")
