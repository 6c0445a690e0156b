"""Figures: kink clouds and fields (seed 002), the deep-linear figures (seed 001) and the helpers every experiment
draws with.

Everything draws on Agg-safe :class:`matplotlib.figure.Figure` objects (never pyplot, so no global figure
manager and no GUI backend); matplotlib is imported when a function here first draws, so ``import fastdyn`` does
not need it. The plot functions return the Figure (or the Axes they drew into); :func:`save_figure` writes it.
Text layout and rendering happen under one lock (in :func:`save_figure` and the tight layouts here), which keeps
matplotlib's shared state (font cache, text layout) safe when sweep points run as threads of one process.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from . import deep_linear, kinks
from ._src.optional import require

__all__ = ["new_figure", "save_figure", "viridis_colours", "log_ticks", "attractor_colours", "plot_kinks", "plot_kink_panels",
           "plot_field", "deep_linear_modes", "deep_linear_loss", "deep_linear_depth", "deep_linear_rsm",
           "deep_linear_illusory", "deep_linear_data"]

DPI = 90  # keeps figures well under 300 KB

# matplotlib is not thread-safe: held while a figure is rendered and written.
_DRAW_LOCK = threading.Lock()


def _matplotlib(module_name: str = "matplotlib"):
    return require(module_name, "experiments", "fastdyn.plotting")


def _figure(**figure_options):
    """A new Figure without pyplot (safe in threads and headless runs)."""
    return _matplotlib("matplotlib.figure").Figure(**figure_options)


def viridis_colours(n: int) -> np.ndarray:
    """(n, 4) RGBA colours along viridis, dark to yellow-green."""
    return _matplotlib().colormaps["viridis"](np.linspace(0.0, 0.9, n))


def log_ticks(ax, values, axis: str = "x") -> None:
    """Label a log ``axis`` of ``ax`` at ``values`` only (e.g. the training-set sizes), without the minor labels that
    crowd a log axis spanning under two decades."""
    ticker = _matplotlib("matplotlib.ticker")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.FixedLocator([float(v) for v in values]))
    target.set_major_formatter(ticker.FixedFormatter([f"{v:g}" for v in values]))
    target.set_minor_locator(ticker.NullLocator())


def _numpy(values) -> np.ndarray:
    """float numpy copy of an array or (CPU or CUDA) tensor."""
    return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=float)


def new_figure(columns: int = 1, rows: int = 1, *, width: float = 4.0, height: float = 3.4,
               layout: str = "constrained"):
    """(Figure, (rows, columns) array of Axes) of ``width`` x ``height`` inches per panel."""
    fig = _figure(figsize=(width * columns, height * rows), layout=layout)
    return fig, fig.subplots(rows, columns, squeeze=False)


def save_figure(fig, out: Path, name: str, *, dpi: int = DPI, tight_layout: bool = False) -> str:
    """Save ``fig`` as the PNG ``out/name`` under the drawing lock, after ``fig.tight_layout()`` if asked (for a
    figure made with ``layout=None``); returns the file name."""
    with _DRAW_LOCK:
        if tight_layout:
            fig.tight_layout()
        fig.savefig(Path(out) / name, dpi=dpi)
    return name


def _tight_layout(fig):
    """``fig`` after ``fig.tight_layout()``, which renders text, under the drawing lock."""
    with _DRAW_LOCK:
        fig.tight_layout()
    return fig


# ---- kinks ------------------------------------------------------------------------------------------------------

# Kink pictures: attractors in the 18 colours of tab20 without its two greys; dead neurons as grey crosses and live
# neurons in no attractor as hollow dark-grey rings, neither of which any attractor colour resembles.
DEAD_STYLE = {"marker": "x", "c": "0.6", "linewidths": 0.6}
UNCOUNTED_STYLE = {"marker": "o", "facecolors": "none", "edgecolors": "0.35", "linewidths": 0.5}


def attractor_colours() -> np.ndarray:
    """(18, 4) RGBA colours of the attractors: tab20 without its greys (entries 14 and 15)."""
    colours = np.asarray(_matplotlib().colormaps["tab20"].colors)
    return np.delete(colours, [14, 15], axis=0)


def plot_kinks(z, ax=None, *, labels=None, dims=(0, 1), degenerate=None, title: str | None = None,
               limit: float | None = None, size=2.0, **scatter_kw):
    """Scatter the kinks z (h, d), in the units of the inputs x, projected on the coordinates ``dims``.

    ``labels`` (h,): >= 0 colours neurons by attractor (:func:`attractor_colours`, cycled), -1 marks dead neurons
    (grey crosses), -2 live neurons in no attractor (hollow rings), e.g. ``fastdyn.kinks.attractors(...)``'s
    ``attractor_labels()`` or ``labels``. ``degenerate`` (h,) bool hides neurons without a kink; ``size`` is the
    marker area, a scalar or (h,); ``limit`` sets a symmetric axis range.
    Draws into ``ax`` or a new Agg-safe Figure (no pyplot); returns the Axes.
    """
    z = _numpy(z)
    if z.ndim != 2 or z.shape[1] <= max(dims):
        raise ValueError(f"z must be (h, d) with d > {max(dims)}, got shape {z.shape}")
    keep = np.ones(z.shape[0], bool) if degenerate is None else ~np.asarray(degenerate, bool)
    size = np.broadcast_to(np.asarray(size, float), z.shape[:1])
    if ax is None:
        ax = _figure(figsize=(4, 4)).add_subplot()

    def scatter(mask, **style):
        ax.scatter(z[mask, dims[0]], z[mask, dims[1]], s=size[mask], **{**style, **scatter_kw})

    if labels is None:
        scatter(keep)
    else:
        labels = np.asarray(labels)
        scatter(keep & (labels == -1), **DEAD_STYLE)
        scatter(keep & (labels == -2), **UNCOUNTED_STYLE)
        live = keep & (labels >= 0)
        colours = attractor_colours()
        scatter(live, c=colours[labels[live] % len(colours)])
    if limit is not None:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel(f"$z_{dims[0] + 1}$ (units of $x_{dims[0] + 1}$)")
    ax.set_ylabel(f"$z_{dims[1] + 1}$ (units of $x_{dims[1] + 1}$)")
    if title:
        ax.set_title(title)
    return ax


def plot_kink_panels(panels, *, limit: float | None = None, dims=(0, 1), size=2.0, lines=(), circles=()):
    """One row of kink clouds with a shared range, e.g. the seed's (A) init, (B) lazy end, (C) feature mid,
    (D) feature end.

    Args:
        panels: sequence of (title, z), (title, z, labels) or (title, z, labels, size) with z (h, d) arrays/tensors
            (labels and size as in :func:`plot_kinks`).
        limit: symmetric axis range; default: the 99th percentile of |z| over all panels.
        lines: values of coordinate ``dims[0]`` drawn as dashed vertical lines (e.g. the stripe's label boundaries).
        circles: radii of dashed circles about the origin (e.g. the sphere's label boundary).

    Returns:
        the Figure (save it with :func:`save_figure`).
    """
    Circle = _matplotlib("matplotlib.patches").Circle
    panels = [tuple(panel) for panel in panels]
    if not panels:
        raise ValueError("panels is empty; give at least one (title, z) pair")
    clouds = [_numpy(panel[1]) for panel in panels]
    if limit is None:
        values = np.concatenate([np.abs(c[:, list(dims)]).ravel() for c in clouds])
        values = values[np.isfinite(values)]
        limit = float(np.percentile(values, 99)) * 1.05 if values.size else 1.0
    fig = _figure(figsize=(3.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel, cloud in zip(axes, panels, clouds):
        labels = panel[2] if len(panel) > 2 else None
        plot_kinks(cloud, ax, labels=labels, dims=dims, title=panel[0], limit=limit,
                   size=panel[3] if len(panel) > 3 else size)
        for value in lines:
            ax.axvline(value, ls="--", lw=0.7, color="k")
        for radius in circles:
            ax.add_patch(Circle((0.0, 0.0), radius, fill=False, ls="--", lw=0.7, color="k"))
    return fig


def plot_field(x, g, *, beta: float = 1.0, b: float = 1.0, scale: float = 1.0, limit: float = 3.0, n: int = 41,
               ax=None):
    """Stream plot of :func:`fastdyn.kinks.field` on an n x n grid of [-limit, limit]^2 for d = 2 data x (p, 2),
    g (p,) (the seed's p = 1 picture); data points are drawn as crosses, and dashed the circles ||z||^2 = z . x_i
    where the neurons switch on or off. Returns the Axes (new Agg-safe Figure when ``ax`` is None)."""
    Circle = _matplotlib("matplotlib.patches").Circle
    x, g = _numpy(x), _numpy(g)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot_field draws d = 2 data; x must be (p, 2), got shape {x.shape}")
    axis = np.linspace(-limit, limit, n)
    grid_x, grid_y = np.meshgrid(axis, axis)
    velocity = kinks.field(np.stack([grid_x.ravel(), grid_y.ravel()], 1), x, g, beta=beta, b=b, scale=scale)
    if ax is None:
        ax = _figure(figsize=(4, 4)).add_subplot()
    u, v = velocity[:, 0].reshape(n, n), velocity[:, 1].reshape(n, n)
    ax.streamplot(grid_x, grid_y, u, v, color=np.hypot(u, v), cmap="viridis", density=1.2)
    for point in x:  # the boundary ||z||^2 = z . x: circle on the diameter [0, x]
        ax.add_patch(Circle(point / 2, np.linalg.norm(point) / 2, fill=False, ls="--", color="0.5"))
    ax.scatter(x[:, 0], x[:, 1], marker="x", c="red")
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    return ax


# ---- deep linear networks ---------------------------------------------------------------------------------------

def deep_linear_modes(runs, s, tau, table, small):
    """Mode strengths a(t)/s of the small-init one-hidden-layer net ``runs[small]`` against the analytic sigmoid,
    and measured against predicted half-learning times (``table``: :func:`fastdyn.deep_linear.mode_table` rows)."""
    fig = _figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    run = runs[small]
    for k, (s_k, row, color) in enumerate(zip(s, table, viridis_colours(len(s)))):
        left.plot(run.times, run.modes[:, k] / s_k, color=color, lw=2, label=f"mode {k + 1}, s={s_k:.0f}")
        left.plot(run.times, deep_linear.analytic_strength(run.times, s_k, row["a0"], tau) / s_k, "k--", lw=0.8)
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
    return _tight_layout(fig)


def deep_linear_loss(runs, stage_times):
    """Loss curves on log time and their log-time derivative -dL/dln t, with the detected stages."""
    fig = _figure(figsize=(9, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for (name, run), color in zip(runs.items(), viridis_colours(len(runs))):
        t = run.times[1:]
        top.plot(t, run.loss[1:], color=color, label=f"{name}: {len(stage_times[name])} stage(s)")
        rate = -np.gradient(run.loss[1:], t) * t
        bottom.plot(t, rate / rate.max(), color=color)
        for stage in stage_times[name]:
            bottom.axvline(stage, color=color, lw=0.5, ls=":")
    top.set(xscale="log", ylabel="loss (mean squared error)", title="loss: plateaus between stages")
    top.legend(fontsize=7)
    bottom.set(xscale="log", xlabel="epoch", ylabel="-dL/d ln t (normalised)")
    return _tight_layout(fig)


def deep_linear_depth(runs, s, small):
    """Mode strengths for the shallow, one- and two-hidden-layer nets: exponential vs sigmoidal."""
    names = [("shallow", "shallow (8 -> n_f): exponential, all modes together")]
    names.append((small, f"one hidden layer, {small}: sigmoids in order of s"))
    if "two hidden" in runs:
        names.append(("two hidden", "two hidden layers: sharper sigmoids"))
    fig = _figure(figsize=(4.5 * len(names), 3.8))
    axes = fig.subplots(1, len(names))
    for ax, (name, title) in zip(np.atleast_1d(axes), names):
        for k, (s_k, color) in enumerate(zip(s, viridis_colours(len(s)))):
            ax.plot(runs[name].times, runs[name].modes[:, k] / s_k, color=color, label=f"s={s_k:.0f}")
        ax.set(xlabel="epoch", ylabel="a(t) / s", title=title)
        ax.title.set_fontsize(9)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _tight_layout(fig)


def deep_linear_rsm(runs, gammas, item_names, stage_times, t_end):
    """Representational similarity H H^T of the hidden layer over training, one row per initial scale, one column
    per loss plateau (:func:`fastdyn.deep_linear.plateau_times`)."""
    times = deep_linear.plateau_times(stage_times, t_end)
    keys = [f"gamma={g:g}" for g in gammas]
    fig = _figure(figsize=(2.1 * len(times), 2.2 * len(keys)))
    axes = fig.subplots(len(keys), len(times), squeeze=False)
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
    return _tight_layout(fig)


def deep_linear_illusory(runs, small, data, feature, exception, s, u, v, tau, a0):
    """The network's output for a feature on the one item of its group that lacks it: rises, then falls."""
    run, shallow = runs[small], runs["shallow"]
    node = int(data.feature_node[feature])
    group = data.items_under(node)
    fig = _figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for item in group:
        label = data.item_names[item]
        if item == exception:
            ax.plot(run.times, run.feature[:, item], "C3", lw=2.5, label=f"deep: {label} (target -1)")
            theory = sum(deep_linear.analytic_strength(run.times, s_k, a0_k, tau) * u[feature, k] * v[item, k]
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
    return _tight_layout(fig)


def deep_linear_data(data, s, v):
    """Targets, item similarity and the singular modes of the input-output correlation."""
    fig = _figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
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
    return _tight_layout(fig)
