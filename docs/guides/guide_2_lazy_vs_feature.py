"""
Lazy vs feature learning in 10 minutes
======================================

The α-trick (Chizat & Bach; Geiger et al., seed 002): train F(x) = α (f(x) − f₀(x)) with the loss divided by α².
Large α keeps the weights near their start, so the network is its initial NTK (lazy); small α lets the neurons
move and learn features. This guide trains both regimes on the stripe model (the label depends on x₁ only), and
looks at what changed: the test error, the NTK's alignment with the labels (kernel PCA), and the ReLU kinks.
Sizes are small so that it runs in seconds; ``fastdyn run lazy-vs-feature`` is the full version.
"""
import matplotlib.pyplot as plt
import torch

import fastdyn

x, y, x_test, y_test = fastdyn.data.stripe(p=128, d=2, p_test=500, seed=0, as_torch=True)
model = fastdyn.OneHidden(d=2, h=400, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

# %%
# Train both regimes
# ------------------
# Gradient flow on the hinge loss, integrated piecewise exactly for a ReLU ``OneHidden`` (the default
# ``method="auto"``), until every margin F y ≥ 1 or a step cap: here 20 000 steps, a few seconds, where both runs
# stop short of zero loss (the experiment trains on to it). An observable is evaluated at each log-spaced
# snapshot; here the empirical NTK on the training points.
observables = {"ntk": lambda net, context: fastdyn.ntk(net, context.x)}
runs = {}
for regime, alpha in (("feature", 1e-2), ("lazy", 1e2)):
    runs[regime] = fastdyn.train(model, x, y, alpha=alpha, loss="hinge", x_test=x_test, y_test=y_test,
                                 max_steps=20_000, snapshots_per_decade=3, observables=observables)
    run = runs[regime]
    print(f"{regime:7s} alpha={alpha:g}: {run.message}; test error {run.snapshots[-1].test_err:.3f}; "
          f"{len(run.snapshots)} snapshots; {run.engine}")

# %%
# The snapshots
# -------------
# Each :class:`fastdyn.Snapshot` holds the time, losses, errors, outputs, weights and observables. The lazy
# network needs far longer times (t scales with α) and ends with a worse test error.
fig, ax = plt.subplots(figsize=(6, 3.5))
for regime, run in runs.items():
    t = [s.t for s in run.snapshots[1:]]
    ax.semilogx(t, [s.unsatisfied / len(y) for s in run.snapshots[1:]], label=f"{regime}: margins F y < 1")
    ax.semilogx(t, [s.test_err for s in run.snapshots[1:]], "--", label=f"{regime}: test error")
ax.set_xlabel("t")
ax.set_ylabel("fraction")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# Kernel PCA of the NTK
# ---------------------
# :func:`fastdyn.kpca` gives the top eigenvalues and how much of the label lies on each eigenvector
# (ω_λ² = (φ_λ·y)²/‖y‖²) and the kernel-target alignment. Feature learning turns the kernel towards the label;
# the lazy kernel stays where it started.
for regime, run in runs.items():
    first, last = (fastdyn.kpca(s.observables["ntk"], y, k=10) for s in (run.snapshots[0], run.snapshots[-1]))
    print(f"{regime:7s} alignment {first.alignment:.3f} -> {last.alignment:.3f}; label power on the top 3 "
          f"eigenvectors {first.cumulative[2]:.3f} -> {last.cumulative[2]:.3f}")

# %%
# Kinks
# -----
# Neuron n of a ReLU network bends the function on the hyperplane ω_n·x/√d + b_n = 0; its point nearest the
# origin is the kink z_n = −√d b_n ω_n/‖ω_n‖². Feature learning moves the kinks and lines many of them up on
# vertical lines (the label depends on x₁ alone; the dashed lines are the stripe's edges), and groups neurons
# with identical activation patterns on the data (attractors); the lazy cloud stays the one of the initialisation.
fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
for ax, (regime, run) in zip(axes, runs.items()):
    z = fastdyn.kinks.positions(run.model)
    groups = fastdyn.kinks.attractors(run.model, x, min_size=2)
    ax.scatter(z[:, 0], z[:, 1], s=4)
    for boundary in (-0.3, 1.18549):  # the stripe's edges (fastdyn.data.stripe_labels)
        ax.axvline(boundary, color="grey", linestyle="--", linewidth=1)
    ax.set_title(f"{regime}: {groups.n_attractors} attractors")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
fig.tight_layout()
