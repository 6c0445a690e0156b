"""Time neural-tangents' ``predict.gradient_descent_mse`` on a given kernel; prints one JSON line.

Runs in the neural-tangents venv (see neural_tangents_ntk.py), float64 (``jax_enable_x64``):
    .venv-nt/bin/python bench/peers/neural_tangents_predict.py PROBLEM.npz OUT.npz

PROBLEM.npz holds K (N, N), Kt (M, N), y (N,) and times (T,); the flow is neural-tangents' own convention
(learning rate 1 on the loss 0.5 ||f - y||^2 / N, zero initial outputs), the one bench_predict.py's loop uses.
Timed, per call, until the result is ready: building the predictor (its eigendecomposition) and predicting the train
and test outputs at all T times in one vectorised call. Reported: the first call (it compiles), then the best wall
and process CPU time of --repeats calls after --warmup untimed calls; the last call's outputs go to OUT.npz
(train (T, N), test (T, M)) for the caller to check.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("problem")
    parser.add_argument("out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jax.numpy as jnp
    import neural_tangents as nt

    data = np.load(args.problem)
    K, Kt, y, times = (jnp.asarray(data[k]) for k in ("K", "Kt", "y", "times"))
    y = y[:, None]

    def predict():
        predict_fn = nt.predict.gradient_descent_mse(K, y, learning_rate=1.0)
        out = predict_fn(t=times, fx_train_0=0.0, fx_test_0=0.0, k_test_train=Kt)
        return jax.block_until_ready(out)

    walls, cpus = [], []
    for _ in range(args.warmup + args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        train, test = predict()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    np.savez(args.out, train=np.asarray(train)[..., 0], test=np.asarray(test)[..., 0])
    print(json.dumps({
        "peer": "neural-tangents", "jax": jax.__version__, "n": int(K.shape[0]), "m": int(Kt.shape[0]),
        "t": int(times.shape[0]), "dtype": str(train.dtype), "first_call_s": walls[0],
        "best_s": min(walls[args.warmup:]), "best_cpu_s": min(cpus[args.warmup:]), "threads": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
