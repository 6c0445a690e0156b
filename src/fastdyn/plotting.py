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

__all__ = ["new_figure", "save_figure", "viridis_colours", "log_ticks", "attractor_colours", "plot_kinks",
           "plot_kink_panels", "plot_field", "deep_linear_modes", "deep_linear_loss", "deep_linear_depth",
           "deep_linear_rsm", "deep_linear_illusory", "deep_linear_data", "min_norm_paths", "min_norm_stability",
           "min_norm_kappa", "marchenko_pastur_histograms", "marchenko_pastur_conditioning",
           "double_descent_ridgeless", "double_descent_features", "lowrank_singular_values", "lowrank_rank_and_error",
           "lowrank_scale"]

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


# ---- linear theory (seed 000) -----------------------------------------------------------------------------------
def min_norm_paths(paths):
    """Top: relative distance of w_t to pinv(X) y (from zero and from a tiny init, which plateaus at the init's
    scale) and to pinv(X) y + (I - P_row) w_0 (from an O(1) init). Bottom: the part of w_t - w_0 outside the row
    space of X. One column per design, one line per method and init."""
    fig, axes = new_figure(len(paths), 2, width=4.4, height=3.0)
    styles = {"zero": "-", "tiny": "--", "random": ":"}
    colours = {"gd": "C0", "sgd": "C3"}
    for column, (design, runs) in enumerate(paths.items()):
        top, bottom = axes[0, column], axes[1, column]
        for label, path in sorted(runs.items(), key=lambda item: item[0].startswith("gd")):
            method, init = label.split()
            style = dict(color=colours[method], ls=styles[init], lw=1.2, label=f"{method.upper()} from {init}")
            top.semilogy(np.maximum(path.steps, 1), np.maximum(path.distance, 1e-17), **style)
            bottom.semilogy(np.maximum(path.steps[1:], 1), np.maximum(path.off_row_space[1:], 1e-18), **style)
        top.set(title=f"{design} design", ylabel="distance to target (relative)", xscale="log")
        bottom.set(xlabel="updates", ylabel="off-row-space part of w_t - w_0", xscale="log", ylim=(1e-18, 1))
        top.legend(fontsize=7)
    return fig


def min_norm_stability(paths):
    """Gradient descent at eta = c / lambda_1: the distance to the interpolant over steps (solid) and the exact
    spectral prediction sqrt(sum_i c_i^2 (1 - eta lambda_i)^2t) (dashed); ``paths``: {c: (DescentPath, predicted)}."""
    fig, axes = new_figure(1, 1, width=5.0, height=3.6)
    ax = axes[0, 0]
    colours = viridis_colours(len(paths))
    for colour, (factor, (path, predicted)) in zip(colours, paths.items()):
        ax.semilogy(path.steps, path.distance, color=colour, lw=2.0, alpha=0.7,
                    label=f"eta = {factor:g}/lambda_1" + (" (diverges)" if factor >= 2 else ""))
        ax.semilogy(path.steps, predicted, color="k", ls="--", lw=0.7)
    converging = [path.steps[-1] for factor, (path, _) in paths.items() if factor < 2]
    ax.set(xlabel="GD steps", ylabel="||w_t - w_inf|| / ||w_inf||", ylim=(1e-15, 1e6),
           xlim=(0, 1.3 * max(converging, default=max(path.steps[-1] for path, _ in paths.values()))),
           title="GD step size: measured (colour), spectral prediction (dashed)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return fig


def min_norm_kappa(kappas, measured, exact, bound, tol):
    """GD steps (eta = 1/lambda_1) to the relative tolerance against the condition number: measured, the exact
    spectral count, and the worst-case bound ln(tol)/ln(1 - 1/kappa) ~ kappa ln(1/tol)."""
    fig, axes = new_figure(1, 1, width=4.6, height=3.6)
    ax = axes[0, 0]
    ax.loglog(kappas, np.maximum(measured, 0.5), "o", color="C0", label="measured")
    ax.loglog(kappas, exact, "-", color="C1", lw=1.2, label="exact: sum c_i^2 (1 - lambda_i/lambda_1)^2t")
    ax.loglog(kappas, bound, "--", color="0.4", lw=1.0, label="bound ln(tol)/ln(1 - 1/kappa)")
    ax.set(xlabel="condition number kappa (positive eigenspace)", ylabel=f"steps to relative error {tol:g}",
           title="gradient descent: steps ~ kappa")
    ax.legend(fontsize=7)
    return fig


def marchenko_pastur_histograms(histograms, summary):
    """One panel per gamma = d/n: the histogram of the positive eigenvalues of X^T X / n (as a density over all d
    eigenvalues), the Marchenko-Pastur density, and the measured and predicted mass at zero."""
    from . import theory
    fig, axes = new_figure(len(histograms), 1, width=3.0, height=2.8)
    for ax, (gamma, (positive, zero_fraction)) in zip(axes[0], histograms.items()):
        lo, hi = theory.marchenko_pastur_edges(gamma)
        weight = (1 - zero_fraction) / len(positive)
        ax.hist(positive, bins=60, weights=np.full(len(positive), weight / ((positive.max() - positive.min()) / 60)),
                color="C0", alpha=0.55, label="eigenvalues")
        grid = np.linspace(max(lo, 1e-4), hi, 400)
        ax.plot(grid, theory.marchenko_pastur_density(grid, gamma), color="k", lw=1.2, label="Marchenko-Pastur")
        key = f"ratio={gamma:g}"
        title = f"d/n = {gamma:g}   KS D = {summary[key + '_ks_distance']:.3f}"
        if gamma > 1:
            title += f"\nzeros {zero_fraction:.3f} (1 - n/d = {theory.marchenko_pastur_zero_mass(gamma):.3f})"
        ax.set(title=title, xlabel="eigenvalue of X^T X / n")
        if gamma == 1:
            ax.set_ylim(0, 2.5 * theory.marchenko_pastur_density(1.0, gamma) + 0.5)
        ax.title.set_fontsize(8)
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    return fig


def marchenko_pastur_conditioning(grid, low, high, kappa, square_sizes, square_statistic, edelman_median):
    """Left: the smallest positive and the largest eigenvalue of X^T X / n against gamma (seeds as dots, the
    Marchenko-Pastur edges as lines). Middle: the condition number on the positive eigenspace. Right: at gamma = 1,
    n lambda_min(X^T X) (sizes, draws) against n, with the median of its limit law (Edelman 1988)."""
    fig, axes = new_figure(3, 1, width=3.6, height=3.2)
    fine = np.geomspace(min(grid), max(grid), 400)
    edge_low, edge_high = (1 - np.sqrt(fine)) ** 2, (1 + np.sqrt(fine)) ** 2
    ax = axes[0, 0]
    for values, colour, label in ((low, "C0", "smallest positive"), (high, "C3", "largest")):
        ax.loglog(np.repeat(grid, values.shape[1]), values.ravel(), ".", color=colour, ms=3, label=label)
    ax.loglog(fine, np.maximum(edge_low, 1e-12), "k-", lw=0.9, label="(1 -+ sqrt(d/n))^2")
    ax.loglog(fine, edge_high, "k-", lw=0.9)
    ax.set(xlabel="d / n", ylabel="eigenvalue of X^T X / n", ylim=(1e-6, 50), title="edges of the spectrum")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.loglog(np.repeat(grid, kappa.shape[1]), kappa.ravel(), ".", color="C2", ms=3, label="measured (seeds)")
    with np.errstate(divide="ignore"):
        ax.loglog(fine, ((1 + np.sqrt(fine)) / np.abs(1 - np.sqrt(fine))) ** 2, "k-", lw=0.9,
                  label="((1 + sqrt g)/(1 - sqrt g))^2")
    ax.axvline(1.0, color="0.6", ls=":", lw=0.8)
    ax.set(xlabel="d / n", ylabel="kappa on the positive eigenspace", ylim=(1, 1e8),
           title="ill conditioned only near d = n")
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    sizes = np.asarray(square_sizes, dtype=float)
    q1, median, q3 = np.percentile(square_statistic, [25, 50, 75], axis=1)
    ax.errorbar(sizes, median, yerr=[median - q1, q3 - median], fmt="o", color="C2", capsize=3,
                label="median, quartiles")
    ax.axhline(edelman_median, color="k", lw=0.9, ls="--", label=f"Edelman's limit median {edelman_median:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="n (= d)", ylabel="n lambda_min(X^T X)",
           title="d = n: lambda_min ~ 1/n, kappa ~ n^2")
    log_ticks(ax, sizes)
    ax.legend(fontsize=7)
    return fig


def double_descent_ridgeless(gammas, risks, n, signal, noise):
    """Excess risk ||beta_hat - beta||^2 of min-norm least squares (dots: mean and standard error over seeds,
    crosses: median) and of ridge against gamma = d/n, with the exact finite-n expectation (solid), the
    proportional limit of Hastie et al. (dashed) and the ridge limits (dotted)."""
    from . import theory
    fig, axes = new_figure(1, 1, width=5.6, height=4.0)
    ax = axes[0, 0]
    fine = np.geomspace(gammas.min(), gammas.max(), 600)
    ax.plot(fine, theory.ridgeless_risk(fine, signal=signal, noise=noise, n=n), "k-", lw=1.2,
            label=f"exact expectation, n = {n}")
    ax.plot(fine, theory.ridgeless_risk(fine, signal=signal, noise=noise), "k--", lw=0.9, label="limit (Hastie et al.)")
    draws = risks[0.0]
    ax.errorbar(gammas, draws.mean(axis=1), yerr=draws.std(axis=1, ddof=1) / np.sqrt(draws.shape[1]), fmt="o",
                color="C0", ms=4, capsize=2, label=f"min-norm, mean of {draws.shape[1]} draws")
    ax.plot(gammas, np.median(draws, axis=1), "x", color="C0", ms=5, label="min-norm, median")
    for colour, ridge in zip(("C1", "C2", "C4"), [r for r in risks if r != 0.0]):
        ax.plot(gammas, risks[ridge].mean(axis=1), "s", color=colour, ms=3.5, label=f"ridge {ridge:g}, mean")
        ax.plot(fine, theory.ridge_risk(fine, ridge, signal=signal, noise=noise), ":", color=colour, lw=1.2)
    ax.axhline(signal, color="0.6", lw=0.7)
    ax.set(xscale="log", yscale="log", ylim=(1e-2, 1e2), xlabel="gamma = d / n (parameters per sample)",
           ylabel="excess test risk", title=f"double descent, signal {signal:g}, noise {noise:g}")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def double_descent_features(ratios, errors, ridge, network_rows, config):
    """Left: random ReLU features, test error of the min-norm and small-ridge fits against N/n (median, band:
    quartiles over seeds). Right: the trained two-layer network's test error (and training loss) against its number of
    parameters P / n, averaged over seeds; open markers: runs that did not interpolate."""
    fig, axes = new_figure(2 if network_rows else 1, 1, width=4.6, height=3.8)
    ax = axes[0, 0]
    for colour, (name, label) in zip(("C0", "C1"), (("min-norm", "min-norm"), ("ridge", f"ridge {ridge:g}"))):
        q1, median, q3 = np.percentile(errors[name], [25, 50, 75], axis=1)
        ax.plot(ratios, median, "o-", color=colour, ms=3.5, label=label)
        ax.fill_between(ratios, q1, q3, color=colour, alpha=0.2)
    ax.axvline(1.0, color="0.6", ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="features per sample N / n", ylabel="test mean squared error",
           title="random ReLU features (Mei & Montanari)")
    ax.legend(fontsize=7)
    if network_rows:
        ax = axes[0, 1]
        widths = sorted({row["width"] for row in network_rows})
        n = config["network_n"]
        p_over_n = np.array([next(r["parameters"] for r in network_rows if r["width"] == w) / n for w in widths])
        test = np.array([np.mean([r["test_error"] for r in network_rows if r["width"] == w]) for w in widths])
        train = np.array([np.mean([r["train_loss"] for r in network_rows if r["width"] == w]) for w in widths])
        fitted = np.array([all(r["train_loss"] <= config["network_fit_tol"] for r in network_rows if r["width"] == w)
                           for w in widths])
        ax.plot(p_over_n, test, "-", color="C3")
        ax.plot(p_over_n[fitted], test[fitted], "o", color="C3", ms=4, label="test error (interpolates)")
        ax.plot(p_over_n[~fitted], test[~fitted], "o", mfc="none", color="C3", ms=4, label="test error (does not)")
        ax.axvline(1.0, color="0.6", ls=":", lw=0.8)
        twin = ax.twinx()
        twin.plot(p_over_n, np.maximum(train, 1e-8), "--", color="0.4", lw=1.0, label="training loss")
        twin.set(yscale="log", ylabel="training loss (dashed)")
        ax.set(xscale="log", xlabel="parameters per sample P / n", ylabel="test error",
               title=f"two-layer ReLU net, digits, {config['network_label_noise']:.0%} labels flipped")
        ax.legend(fontsize=7, loc="upper right")
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


# ---- deep linear matrix completion (seed 000, issue 16) ----------------------------------------------------------

def lowrank_singular_values(runs, target_singular_values, scale, fraction, half_times):
    """Singular values of B(t) on log time, one panel per flow (``runs``: name -> FlowTrajectory), the target's
    singular values dashed; last panel: when sigma_k first reaches s*_k / 2 (``half_times``: name -> (k,) times),
    deeper factorisations learn them one at a time."""
    columns = 3
    rows = -(-(len(runs) + 1) // columns)
    fig, axes = new_figure(columns, rows, width=3.6, height=3.0)
    panels = axes.ravel()
    top = len(target_singular_values)
    colours = viridis_colours(top)
    for ax, (name, run) in zip(panels, runs.items()):
        t = run.times[1:]
        for k, color in enumerate(colours):
            ax.plot(t, run.singular_values[1:, k], color=color, lw=2, label=f"sigma_{k + 1}")
        ax.plot(t, run.singular_values[1:, top:], color="0.6", lw=0.7)
        for s_k in target_singular_values:
            ax.axhline(s_k, color="k", ls="--", lw=0.6)
        ax.set(xscale="log", yscale="log", ylim=(scale / 10, 2 * max(target_singular_values)), xlabel="t",
               ylabel="singular values of B(t)", title=f"{name}, B(0) = {scale:g} I, {fraction:g} observed")
        ax.title.set_fontsize(9)
    panels[0].legend(fontsize=7, loc="lower right", title="grey: the rest; dashed: s*", title_fontsize=7)
    summary = panels[len(runs)]
    names = list(half_times)
    for k, color in enumerate(colours):
        summary.plot(range(len(names)), [half_times[name][k] for name in names], "o-", color=color,
                     label=f"sigma_{k + 1} = s*_{k + 1}/2 (s* = {target_singular_values[k]:g})")
    summary.set(yscale="log", ylabel="first time t", title="incremental learning: half-learning times")
    summary.set_xticks(range(len(names)))
    summary.set_xticklabels(names)
    summary.title.set_fontsize(9)
    summary.legend(fontsize=7)
    for ax in panels[len(runs) + 1:]:
        ax.set_visible(False)
    return fig


def lowrank_rank_and_error(runs, nuclear_test_error, scale, fraction):
    """Effective rank and test error (unobserved entries) of B(t) by flow, on log time; the min-nuclear-norm
    completion's test error dotted."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.4)
    rank_ax, error_ax = axes[0]
    for (name, run), color in zip(runs.items(), viridis_colours(len(runs))):
        t = run.times[1:]
        style = {"color": color, "lw": 1.8, "ls": ":" if name == "A^2" else "-"}
        rank_ax.plot(t, run.effective_rank[1:], label=name, **style)
        error_ax.plot(t, run.test_error[1:], label=name, **style)
    error_ax.axhline(nuclear_test_error, color="k", ls=":", lw=1, label="min nuclear norm")
    rank_ax.set(xscale="log", xlabel="t", ylabel="effective rank (Roy & Vetterli)",
                title=f"B(0) = {scale:g} I, {fraction:g} of pairs observed")
    error_ax.set(xscale="log", yscale="log", xlabel="t", ylabel="test error ||B - B*|| / ||B*|| (unobserved)")
    rank_ax.legend(fontsize=8)
    error_ax.legend(fontsize=8)
    return fig


def lowrank_scale(end_points, names, scales, fractions):
    """End-point test error, nuclear norm over the min-nuclear-norm's, and distance to the min-nuclear-norm
    completion against the initial scale, one row per observed fraction, one line per flow (mean over seeds,
    dots: single seeds). ``end_points``: (fraction, seed, name, scale) -> dict of those numbers."""
    quantities = [("test_error", "test error (unobserved)"), ("nuclear_norm_ratio", "||B||_* / ||B_nuc||_*"),
                  ("dist_nuclear", "||B - B_nuc||_F / ||B_nuc||_F")]
    fig, axes = new_figure(len(quantities), len(fractions), width=3.6, height=3.0)
    for row, fraction in zip(axes, fractions):
        for ax, (key, label) in zip(row, quantities):
            for name, color in zip(names, viridis_colours(len(names))):
                values = np.array([[v[key] for k, v in end_points.items() if k[0] == fraction and k[2] == name
                                    and k[3] == scale] for scale in scales])
                ax.plot(scales, values.mean(axis=1), "o-" if name != "A^2" else "s:", color=color, label=name)
                ax.plot(np.repeat(scales, values.shape[1]), values.ravel(), ".", color=color, ms=3)
            ax.set(xscale="log", yscale="linear" if key == "nuclear_norm_ratio" else "log", ylabel=label,
                   xlabel="initial scale (B(0) = scale I)", title=f"{fraction:g} of pairs observed")
            log_ticks(ax, scales)
    axes[0, 0].legend(fontsize=7)
    return fig
