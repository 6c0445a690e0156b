"""Figures of the deep-linear experiment (matplotlib, Agg). Each function writes one PNG."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastdyn.experiments.deep_linear import analytic_strength, balanced_strength  # noqa: E402

DPI = 90


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _colors(n):
    return plt.cm.viridis(np.linspace(0.0, 0.9, n))


def modes(path, runs, s, tau, table, small):
    """Mode strengths a(t)/s of the small-init one-hidden-layer net against the analytic sigmoid."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    run = runs[small]
    for k, (s_k, row, color) in enumerate(zip(s, table, _colors(len(s)))):
        left.plot(run.times, run.modes[:, k] / s_k, color=color, lw=2, label=f"mode {k + 1}, s={s_k:.0f}")
        left.plot(run.times, analytic_strength(run.times, s_k, row["a0"], tau) / s_k, "k--", lw=0.8)
        if "gd" in runs:
            left.plot(runs["gd"].times, runs["gd"].modes[:, k] / s_k, color=color, lw=0.8, ls=":")
    left.set(xlabel="epoch", ylabel="a(t) / s", title=f"one hidden layer, {small}: flow (solid), "
             "analytic (dashed),\ngradient descent lr as published (dotted)")
    left.legend(fontsize=7, loc="lower right")
    measured = [row["t_half"] for row in table]
    right.plot(measured, [row["t_half_predicted"] for row in table], "o", label="a0 orthogonalised")
    right.plot(measured, [row["t_half_predicted_plain"] for row in table], "x", label="a0 = |g|^2")
    lims = [min(measured) * 0.95, max(measured) * 1.05]
    right.plot(lims, lims, "k-", lw=0.5)
    right.set(xlabel="measured t_1/2 (epochs)", ylabel="predicted tau/(2s) ln(s/a0 - 1)",
              title="half-learning time per mode")
    right.legend(fontsize=8)
    _save(fig, path)


def loss(path, runs, stage_times):
    """Loss curves on log time and their log-time derivative -dL/dln t, with the detected stages."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for (name, run), color in zip(runs.items(), _colors(len(runs))):
        t = run.times[1:]
        top.plot(t, run.loss[1:], color=color, label=f"{name}: {len(stage_times[name])} stage(s)")
        rate = -np.gradient(run.loss[1:], t) * t
        bottom.plot(t, rate / rate.max(), color=color)
        for stage in stage_times[name]:
            bottom.axvline(stage, color=color, lw=0.5, ls=":")
    top.set(xscale="log", ylabel="loss (mean squared error)", title="loss: plateaus between stages")
    top.legend(fontsize=7)
    bottom.set(xscale="log", xlabel="epoch", ylabel="-dL/d ln t (normalised)")
    _save(fig, path)


def depth(path, runs, s, small):
    """Mode strengths for the shallow, one- and two-hidden-layer nets: exponential vs sigmoidal."""
    names = [("shallow", "shallow (8 -> n_f): exponential, all modes together")]
    names.append((small, f"one hidden layer, {small}: sigmoids in order of s"))
    if "two hidden" in runs:
        names.append(("two hidden", "two hidden layers: sharper sigmoids"))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8))
    for ax, (name, title) in zip(np.atleast_1d(axes), names):
        for k, (s_k, color) in enumerate(zip(s, _colors(len(s)))):
            ax.plot(runs[name].times, runs[name].modes[:, k] / s_k, color=color, label=f"s={s_k:.0f}")
        ax.set(xlabel="epoch", ylabel="a(t) / s", title=title)
        ax.title.set_fontsize(9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    _save(fig, path)


def rsm_times(stage_times, t_end):
    """Snapshot times: start, before the first stage, on every plateau between stages, end."""
    stage_times = np.asarray(stage_times, dtype=float)
    times = [0.0]
    if stage_times.size:
        times.append(0.6 * stage_times[0])
        times.extend(np.sqrt(stage_times[:-1] * stage_times[1:]))
    times.append(float(t_end))
    return times


def rsm(path, runs, gammas, item_names, stage_times, t_end):
    """Representational similarity H H^T of the hidden layer over training, one row per initial scale."""
    times = rsm_times(stage_times, t_end)
    keys = [f"gamma={g:g}" for g in gammas]
    fig, axes = plt.subplots(len(keys), len(times), figsize=(2.1 * len(times), 2.2 * len(keys)), squeeze=False)
    for row, key in zip(axes, keys):
        run = runs[key]
        for ax, t in zip(row, times):
            hidden = run.hidden[np.argmin(np.abs(run.times - t))]
            similarity = hidden @ hidden.T
            scale = np.abs(similarity).max()
            ax.imshow(similarity / scale, cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"{key}\nt={t:.0f}, max={scale:.1e}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks(range(len(item_names)))
            ax.set_yticklabels(item_names if ax is row[0] else [], fontsize=6)
    _save(fig, path)


def illusory(path, runs, small, data, feature, exception, s, u, v, tau, a0):
    """The network's output for a feature on the one item of its group that lacks it: rises, then falls."""
    run, shallow = runs[small], runs["shallow"]
    node = int(data.feature_node[feature])
    group = data.items_under(node)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for item in group:
        label = data.item_names[item]
        if item == exception:
            ax.plot(run.times, run.feature[:, item], "C3", lw=2.5, label=f"deep: {label} (target -1)")
            theory = sum(analytic_strength(run.times, s_k, a0_k, tau) * u[feature, k] * v[item, k]
                         for k, (s_k, a0_k) in enumerate(zip(s, a0)))
            ax.plot(run.times, theory, "k--", lw=1, label="deep: sum of analytic modes")
            ax.plot(shallow.times, shallow.feature[:, item], "C0", lw=2, label=f"shallow: {label}")
        else:
            ax.plot(run.times, run.feature[:, item], "C3", lw=0.7, alpha=0.6)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xscale="symlog", xlim=(0, shallow.times[-1]), xlabel="epoch", ylabel="network output",
           title=f"illusory correlation: feature {feature} is +1 on every {data.node_names[node]} "
                 f"but the {data.item_names[exception]}\n(thin: the other {data.node_names[node]}s)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    _save(fig, path)


def dataset(path, data, s, v):
    """Targets, item similarity and the singular modes of the input-output correlation."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].imshow(data.targets[:, :80], cmap="RdBu_r", aspect="auto", vmin=-1, vmax=1)
    axes[0].set(title="targets (first 80 features)", xlabel="feature")
    axes[0].set_yticks(range(data.n_items))
    axes[0].set_yticklabels(data.item_names, fontsize=7)
    axes[1].imshow(data.targets @ data.targets.T / data.n_features, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[1].set_title("item similarity Y Y^T / n_f")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[2].imshow(v, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[2].set_xticks(range(len(s)))
    axes[2].set_xticklabels([f"{x:.0f}" for x in s], fontsize=7)
    axes[2].set(title="modes v_alpha (columns), labelled by s", yticks=[])
    _save(fig, path)
