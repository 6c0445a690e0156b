"""Time neural-tangents' empirical NTK (structured derivatives) of the CNNs of bench/bench_ntk_cnn.py; prints one
JSON line. Runs in its own venv (see bench/peers/neural_tangents_ntk.py for how to make it).

The networks are stax layers with the shapes and parameter counts of the torch models (NHWC, standard
parameterisation, SAME padding where torch pads by k // 2; with stride 2 SAME pads one side where torch pads both, a
different function at the same cost). Reported as in neural_tangents_ntk.py, plus the growth of the peak resident
memory during the timed calls (VmHWM reset through /proc/self/clear_refs).
"""
from __future__ import annotations

import argparse
import json
import os
import time


def _kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def networks(stax):
    """stax versions of bench_ntk_cnn's lenet and resnet, and their input shapes (NHWC)."""
    # b_std: with a bias, as the torch layers have (stax's default b_std=None means no bias parameter)
    def conv(width, size, stride=1, padding="SAME"):
        return stax.Conv(width, (size, size), (stride, stride), padding, b_std=0.05, parameterization="standard")

    def dense(width):
        return stax.Dense(width, b_std=0.05, parameterization="standard")

    lenet = stax.serial(conv(6, 5), stax.Relu(), stax.AvgPool((2, 2), (2, 2)), conv(16, 5, padding="VALID"),
                        stax.Relu(), stax.AvgPool((2, 2), (2, 2)), stax.Flatten(),
                        dense(120), stax.Relu(), dense(84), stax.Relu(), dense(10))

    def block(width, stride, project):
        main = stax.serial(conv(width, 3, stride), stax.Relu(), conv(width, 3))
        shortcut = conv(width, 1, stride) if project else stax.Identity()
        return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum(), stax.Relu())

    resnet = stax.serial(conv(16, 3), stax.Relu(), block(16, 1, False), block(32, 2, True), block(64, 2, True),
                         stax.GlobalAvgPool(), dense(10))
    return {"lenet": (lenet, (28, 28, 1)), "resnet": (resnet, (16, 16, 3))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=["lenet", "resnet"], default="lenet")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", choices=["trace", "full"], default="trace")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    import jax
    import neural_tangents as nt
    from neural_tangents import stax

    (init_fn, apply_fn, _), shape = networks(stax)[args.model]
    key_x, key_p = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key_x, (args.n, *shape))
    _, params = init_fn(key_p, x.shape)
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
    kernel_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,) if args.out == "trace" else (), vmap_axes=0,
                                            implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES))
    times, cpu_times = [], []
    for i in range(args.warmup + args.repeats):
        if i == args.warmup:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            before = _kib("VmRSS")
        start, cpu = time.perf_counter(), time.process_time()
        kernel = kernel_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
    peak_mb = (_kib("VmHWM") - before) / 1024
    compile_s = times[0]
    times, cpu_times = times[args.warmup:], cpu_times[args.warmup:]
    print(json.dumps({
        "peer": "neural-tangents", "jax": jax.__version__, "implementation": "structured_derivatives",
        "model": args.model, "parameters": int(n_params), "n": args.n, "out": args.out, "dtype": str(kernel.dtype),
        "shape": list(kernel.shape), "first_call_s": compile_s, "best_s": min(times), "best_cpu_s": min(cpu_times),
        "times_s": times, "peak_growth_mb": peak_mb, "threads": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
