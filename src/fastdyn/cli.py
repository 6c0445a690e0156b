"""The ``fastdyn`` command line: list, run and sweep experiments; show backends."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _key_values(items: list[str] | None) -> dict[str, str]:
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        overrides[key] = value
    return overrides


def _print_summary(summary: dict) -> None:
    """The scalars (and lists) one per line, "key  value"; then the groups (dict values: one per regime, width, ...)
    as a table, one row per group and one column per key."""
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    if flat:
        width = max(len(k) for k in flat)
        for key, value in flat.items():
            print(f"{key.ljust(width)}  {_cell(value)}")
    rows = {k: v for k, v in summary.items() if isinstance(v, dict)}
    if not rows:
        return
    if flat:
        print()
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    cells = [["", *columns]] + [[name, *(_cell(row.get(c, "")) for c in columns)] for name, row in rows.items()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    for i, row in enumerate(cells):
        print("  ".join(text.ljust(w) for text, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value)


def _print_core_build() -> None:
    """How fastdyn._core was compiled: OpenMP or serial kernels, native CPU tuning or portable code."""
    from ._src.backends import module

    core = module("cpu")
    info = core.build_info()
    if info["openmp"]:
        print(f"openmp: on (version {info['openmp']}, {info['threads']} threads by default)")
    else:
        print("openmp: off (the compiler had no OpenMP: the cpu kernels run serially)")
    if info["native"]:
        print("native: on (-march=native, FASTDYN_NATIVE=ON: the non-dispatched kernels tuned for the CPU that built "
              "it; a wheel built so runs on that kind of CPU only)")
    else:
        print("native: off (portable code, FASTDYN_NATIVE=OFF, the default; the hot one-hidden kernels pick their "
              "instruction-set path at run time)")
    print(f"compiler: {info['compiler']}; blas: {info['blas']}")
    try:
        print(f"cpu isa: {core.cpu_isa()} (the path of the dispatched kernels; this CPU runs "
              f"{', '.join(core.cpu_isas())}; FASTDYN_CPU_ISA forces one)")
    except ValueError as error:  # FASTDYN_CPU_ISA names a path this CPU cannot run
        print(f"cpu isa: error: {error}")


def _print_operations(available: list[str]) -> None:
    """The kernel operations and the backends registered for each; those that cannot run here in brackets."""
    from ._src import registry

    print("operations (backends registered; [not available here]):")
    width = max(map(len, registry.OPERATIONS))
    for name in registry.OPERATIONS:
        names = [b if b in available else f"[{b}]" for b in registry.supported(name)]
        print(f"  {name:{width}s}  {' '.join(names)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastdyn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="backends and build status")
    sub.add_parser("list", help="experiments with one-line descriptions")

    run = sub.add_parser("run", help="run one experiment")
    run.add_argument("name")
    run.add_argument("--quick", action="store_true", help="the small configuration (a minute or less)")
    run.add_argument("--out", default=None, help="output directory (default runs/NAME)")
    run.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", help="override a setting")
    run.add_argument("--device", default=None, help="cpu or cuda (experiments with a 'device' setting)")
    run.add_argument("--no-progress", action="store_true")

    sweep = sub.add_parser("sweep", help="run a grid of configurations on dask.distributed")
    sweep.add_argument("name")
    sweep.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...")
    sweep.add_argument("--seeds", type=int, default=None, help="add seed=0..N-1 to the grid")
    sweep.add_argument("--quick", action="store_true")
    sweep.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    sweep.add_argument("--scheduler", default=None, help="address of a running dask scheduler (default: local)")
    sweep.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    sweep.add_argument("--threads", type=int, default=1, help="threads per worker (torch threads per point)")
    sweep.add_argument("--in-process", action="store_true",
                       help="LocalCluster workers as threads of this process (quick start, small sweeps)")
    sweep.add_argument("--device", default=None,
                       help="cpu or cuda; cuda points go to workers started with --resources GPU=1")
    sweep.add_argument("--retries", type=int, default=2, help="re-runs of a point that raised or lost its worker")
    sweep.add_argument("--out", default=None, help="output directory (default runs/sweep-NAME)")
    sweep.add_argument("--no-progress", action="store_true")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, TypeError) as error:
        print(f"fastdyn {args.command}: error: {error}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "info":
        import fastdyn

        print("backends:", fastdyn.available_backends(verbose=True))
        print("build:", fastdyn.build_status())
        if "cpu" in fastdyn.available_backends():
            _print_core_build()
        _print_operations(fastdyn.available_backends())
        return 0

    from .experiments import REGISTRY, load

    if args.command == "list":
        width = max((len(n) for n in REGISTRY), default=0)
        for name in sorted(REGISTRY):
            print(f"{name.ljust(width)}  {load(name).DESCRIPTION}")
        return 0

    if args.command == "run":
        from .experiments import run_experiment

        out = Path(args.out or Path("runs") / args.name)
        summary = run_experiment(args.name, out, quick=args.quick, overrides=_key_values(args.overrides),
                                 progress=not args.no_progress, device=args.device)
        _print_summary(summary)
        seconds = json.loads((out / "results.json").read_text())["seconds"]
        print(f"\n{args.name}: {seconds:.1f} s; results in {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
        return 0

    if args.command == "sweep":
        from .sweep import parse_grid, sweep

        defaults = load(args.name).config(args.quick)
        grid = parse_grid(args.grid, defaults)
        out = Path(args.out or Path("runs") / f"sweep-{args.name}")
        overrides = _key_values(args.overrides)
        if args.device is not None:
            if "device" not in defaults:
                raise ValueError(f"experiment {args.name!r} has no 'device' setting; drop --device")
            overrides["device"] = args.device
        table, report = sweep(args.name, grid, out, seeds=args.seeds, quick=args.quick,
                              overrides=overrides, scheduler=args.scheduler,
                              n_workers=args.workers, threads_per_worker=args.threads,
                              processes=not args.in_process, retries=args.retries,
                              progress=not args.no_progress)
        print(f"{len(report['ran'])} ran, {len(report['skipped'])} skipped (already done), "
              f"{len(report['failed'])} failed")
        for key, message in report["failed"].items():
            print(f"  failed {key}: {message} (see {out}/points/{key}/error.txt)")
        print(table.drop(columns=[c for c in ("hash", "error") if c in table]).to_string(index=False, max_cols=12))
        print(f"table: {out}/results.csv, plot: {out}/sweep.png")
        return 1 if report["failed"] else 0
    raise AssertionError(args.command)
