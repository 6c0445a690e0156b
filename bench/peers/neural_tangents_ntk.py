"""Time neural-tangents' empirical NTK (structured derivatives) on an MLP; prints one JSON line.

Runs in its own venv (neural-tangents is not a fastdyn dependency), e.g.
    python -m venv .venv-nt && .venv-nt/bin/pip install neural-tangents==0.6.5 jax==0.4.23 jaxlib==0.4.23 \
        "numpy<2" "scipy<1.13" tf2jax==0.3.6
    .venv-nt/bin/python bench/peers/neural_tangents_ntk.py --dims 30 1024 1024 1 --n 2000

The network is stax Dense / activation / ... / Dense in the standard parameterisation (the same shapes and
parameter count as fastdyn.models.FCNet); the kernel is Theta(x, x) with trace_axes=() on a scalar output.
Reported: the first call's time (it compiles), then the best wall and process CPU time of --repeats calls after
--warmup untimed calls (the first of them the compiling one), each until the result is ready, and the core count
(XLA's CPU client uses every core).
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[30, 1024, 1024, 1])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--act", default="relu", choices=["relu", "erf", "gelu"])
    parser.add_argument("--implementation", default="structured_derivatives",
                        choices=["structured_derivatives", "jacobian_contraction", "ntk_vector_products"])
    parser.add_argument("--float64", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    import jax
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    act = {"relu": stax.Relu, "erf": stax.Erf, "gelu": stax.Gelu}[args.act]
    layers = []
    for i, width in enumerate(args.dims[1:]):
        if i:
            layers.append(act())
        layers.append(stax.Dense(width, parameterization="standard"))
    init_fn, apply_fn, _ = stax.serial(*layers)
    dtype = jnp.float64 if args.float64 else jnp.float32
    key_x, key_p = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key_x, (args.n, args.dims[0]), dtype)
    _, params = init_fn(key_p, x.shape)
    implementation = getattr(nt.NtkImplementation, args.implementation.upper())
    kernel_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=implementation))

    times, cpu_times = [], []
    for _ in range(args.warmup + args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        kernel = kernel_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
    compile_s = times[0]
    times, cpu_times = times[args.warmup:], cpu_times[args.warmup:]
    print(json.dumps({
        "peer": "neural-tangents", "version": nt.__version__ if hasattr(nt, "__version__") else "0.6.5",
        "jax": jax.__version__, "implementation": args.implementation, "dims": args.dims, "n": args.n,
        "act": args.act, "dtype": str(kernel.dtype), "shape": list(kernel.shape), "first_call_s": compile_s,
        "best_s": min(times), "best_cpu_s": min(cpu_times), "times_s": times, "threads": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
