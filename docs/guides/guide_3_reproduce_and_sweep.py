"""
Reproducing an experiment and sweeping it on a cluster
======================================================

Every experiment of the seeds is one module of :mod:`fastdyn.experiments` and one command. ``fastdyn list``
lists them; ``fastdyn run NAME --out DIR`` runs the full configuration whose results are committed under
``results/NAME/`` (see the :doc:`experiment gallery <../experiments/index>`), ``--quick`` the minutes-on-a-laptop
one that the tests run, and ``--set key=value`` changes one setting. From Python the same run is
:func:`fastdyn.experiments.run_experiment`.
"""
import json
import shutil
import tempfile
from pathlib import Path

from fastdyn.experiments import REGISTRY, load, run_experiment

print(len(REGISTRY), "experiments, e.g.:")
for name in list(REGISTRY)[:3]:
    print(f"  {name:18s} {load(name).DESCRIPTION}")

# %%
# One run
# -------
# The quick configuration of ``lazy-vs-feature``, shrunk further (``overrides``, as ``--set`` does) so that it
# takes seconds. The output directory gets ``config.json`` (the merged configuration and the environment:
# fastdyn version, backend, device, CPU ISA), ``results.json`` (the summary), arrays and PNG figures.
work = Path(tempfile.mkdtemp())
tiny = {"p": 40, "p_test": 100, "h": 24, "max_steps": 60, "grid": 11}
summary = run_experiment("lazy-vs-feature", work / "run", quick=True, overrides=tiny, progress=False)
print(sorted(p.name for p in (work / "run").iterdir()))
print(json.dumps(summary["alpha=0.01"], indent=1))  # one regime's summary: errors, margins, steps, why it stopped

# %%
# A sweep
# -------
# :func:`fastdyn.sweep.sweep` (``fastdyn sweep``) runs a grid of configurations, times ``seeds``, on dask and
# gathers a table with one row per point. Each point is stored under a hash of its configuration, so a re-run
# skips what is done and runs only what is missing. Here it runs in this process (``processes=False``); the
# command-line equivalent is ``fastdyn sweep lazy-vs-feature --quick --grid h=16,32 --seeds 2 --out sweeps/lvf``.
from fastdyn.sweep import sweep

table, report = sweep("lazy-vs-feature", {"h": [16, 32]}, work / "sweep", seeds=2, quick=True, overrides=tiny,
                      processes=False, n_workers=1, progress=False)
print(table[["h", "seed", "status"]])
print("ran", len(report["ran"]), "points; failed:", report["failed"])
again, report = sweep("lazy-vs-feature", {"h": [16, 32]}, work / "sweep", seeds=2, quick=True, overrides=tiny,
                      processes=False, n_workers=1, progress=False)
print("the same sweep again: ran", len(report["ran"]), "skipped", len(report["skipped"]))
shutil.rmtree(work)

# %%
# On a cluster
# ------------
# Point the sweep at any dask.distributed scheduler with ``--scheduler tcp://HOST:PORT`` (or ``scheduler=``);
# the output directory must be on a file system the client and every worker share. Each point runs in a staging
# directory renamed into place when it finishes, so a worker killed mid-point leaves nothing that counts and the
# point runs again (``--retries``); points with ``--device cuda`` ask for the worker resource ``GPU=1``. On
# SLURM, with dask-jobqueue, give workers a ``--lifetime`` below the walltime so they retire before SLURM kills
# them::
#
#     from dask_jobqueue import SLURMCluster
#     cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00",
#                            worker_extra_args=["--lifetime", "110m", "--lifetime-stagger", "5m"],
#                            job_script_prologue=["export OMP_NUM_THREADS=1"])
#     cluster.adapt(minimum_jobs=1, maximum_jobs=50)
#     sweep("lazy-vs-feature", {"h": [256, 1024, 4096]}, "sweeps/lvf", seeds=10,
#           scheduler=cluster.scheduler_address)
#
# The :doc:`overview <../overview>` (the README's "Running sweeps on a cluster") has the details: several GPUs
# on one machine, what happens to a point whose worker dies, and the measured overhead of the distributed path.
