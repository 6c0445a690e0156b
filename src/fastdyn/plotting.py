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
           "lowrank_scale", "parity_elimination_threshold",
           "parity_construction_figure", "parity_gradient_lemma", "parity_gradient_training", "parity_sgd_curves",
           "parity_sgd_summary", "deep_narrow_figure", "deep_linear_init_curves", "deep_linear_init_rsms",
           "deep_linear_generalise", "deep_linear_depth3"]

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


# ---- deep linear matrix completion (seed 000) ----------------------------------------------------------------------

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


# ---- parities (seed 000) ----------------------------------------------------------------------------------------
def parity_elimination_threshold(curves, trials, timings):
    """Left: the fraction of parity problems that GF(2) elimination solves uniquely against the excess n - d of
    samples over unknowns (dots with binomial error bars, one colour per d), the exact full-rank probability (lines)
    and its d -> infinity limit prod_{j > n - d} (1 - 2^-j) (black dashed). Right: the time of one solve at n = 2d
    against d, with a d^3 line (the elimination's n d^2 / 64 word operations)."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.6)
    ax = axes[0, 0]
    for colour, (d, curve) in zip(viridis_colours(len(curves)), curves.items()):
        excess = curve["n"] - d
        keep = excess <= 20
        error = np.sqrt(np.maximum(curve["measured"] * (1 - curve["measured"]), 0.25 / trials) / trials)
        ax.errorbar(excess[keep], curve["measured"][keep], yerr=error[keep], fmt="o", ms=3.5, color=colour,
                    capsize=2, label=f"d = {d}: solved uniquely")
        ax.plot(excess[keep], curve["predicted"][keep], "-", color=colour, lw=1.0)
    fine = np.arange(0, 21)
    ax.plot(fine, [np.prod(1 - 2.0 ** -np.arange(m + 1, m + 200)) for m in fine], "k--", lw=0.8,
            label="d -> inf: prod_{j > n-d} (1 - 2^-j)")
    ax.set(xlabel="excess samples n - d", ylabel=f"fraction solved uniquely ({trials} trials)", ylim=(-0.03, 1.03),
           title="GF(2) elimination: threshold at n = d")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[0, 1]
    dims = np.array(sorted(timings), dtype=float)
    seconds = np.array([timings[int(d)] for d in dims])
    ax.loglog(dims, seconds, "o-", color="C0", label="solve_gf2, n = 2d")
    ax.loglog(dims, seconds[-1] * (dims / dims[-1]) ** 3, "k--", lw=0.8, label="~ d^3")
    log_ticks(ax, dims.astype(int))
    ax.set(xlabel="d (unknowns)", ylabel="seconds", title="time of one solve")
    ax.legend(fontsize=7)
    return fig


# ---- parity construction and gradient signal (seed 000) ------------------------------------------------------------

def parity_construction_figure(profile, records):
    """Left: the seed's network for I = [d] along s = number of -1 entries (continuous line), with chi_I = (-1)^s at
    the integers. Right: hidden width against d for every checked subset, next to the seed's 4d and the
    construction's 4 ceil(|I| / 2). ``profile``: s, f, integers, parity arrays; ``records``: columns d, size, width,
    kind, inputs, max_error_float64, max_error_float32 (one entry per checked subset)."""
    fig, axes = new_figure(2, 1, width=4.8, height=3.6)
    step_ax, width_ax = axes[0]
    d = int(profile["integers"][-1])
    step_ax.plot(profile["s"], profile["f"], color="C0", lw=1.5, label="network f along the line")
    step_ax.plot(profile["integers"], profile["parity"], "o", color="C3", ms=6, label="chi_I = (-1)^s")
    for k in profile["integers"][1::2]:
        step_ax.axvspan(k - 0.5, k + 0.5, color="C1", alpha=0.12, lw=0)
    step_ax.set(xlabel="s = number of -1 among x_i, i in I", ylabel="f(x)",
                title=f"d = |I| = {d}: 1 - 2 sum over odd k of steps f_k(s)\n(shaded: the supports of f_k)")
    step_ax.title.set_fontsize(9)
    step_ax.set_ylim(-1.3, 1.6)
    step_ax.legend(fontsize=7, loc="upper center", ncol=2)
    dims = np.arange(1, records["d"].max() + 1)
    width_ax.plot(dims, 4 * dims, "k--", lw=1, label="4d (the seed's bound)")
    for kind, marker in zip(("one", "half", "full", "random"), "v^os"):
        chosen = records["kind"] == kind
        width_ax.plot(records["d"][chosen], records["width"][chosen], marker, ms=5, mfc="none", label=f"I: {kind}")
    enumerated = records["inputs"] == 2 ** records["d"]
    width_ax.set(xscale="log", yscale="log", xlabel="d", ylabel="hidden width 4 ceil(|I|/2)",
                 title=f"max |f - chi_I| = {records['max_error_float64'].max():g} (float64), "
                       f"{records['max_error_float32'].max():g} (float32)\non all 2^d inputs for d <= "
                       f"{records['d'][enumerated].max()} and {records['inputs'][~enumerated].max():.0e} random "
                       f"at d = {records['d'][~enumerated].max()}")
    width_ax.title.set_fontsize(9)
    width_ax.legend(fontsize=7)
    return fig


def parity_gradient_lemma(exact, orders, weights, monte_carlo):
    """The seed's lemma at initialisation, log2 scale against d. Left: E_I <chi_I, g>^2 over uniform I (means over i
    and seeds) on its bound E g^2 / 2^d, the power E g^2, and above enumeration the Monte Carlo estimate sitting on
    its floor E g^2 / n_samples. Middle: averages over |I| = k and the largest <chi_I, g>^2 over I. Right: the same
    for the first-layer weight derivatives. ``exact``: (runs,) columns d, signal, bound, power, max; ``orders``:
    k label -> (runs,); ``weights``, ``monte_carlo``: lists of per-d dicts (experiment parity-gradient)."""
    fig, axes = new_figure(3, 1, width=4.3, height=4.8)
    signal_ax, order_ax, weight_ax = axes[0]
    dims = np.unique(exact["d"])

    def mean_over_seeds(values):
        return np.array([values[exact["d"] == d].mean() for d in dims])

    signal, bound = mean_over_seeds(exact["signal"]), mean_over_seeds(exact["bound"])
    signal_ax.plot(dims, mean_over_seeds(exact["power"]), "s-", color="0.5", ms=4, label="E_x g_i^2 (poly(d) factor)")
    signal_ax.plot(dims, signal, "o", color="C0", ms=6, label="E_I <chi_I, g_i>^2 (exact)")
    signal_ax.plot(dims, bound, "k+", ms=8, label="bound E_x g_i^2 / 2^d")
    signal_ax.plot(dims, signal[0] * 2.0 ** (dims[0] - dims), "k:", lw=1, label="slope 2^-d")
    if monte_carlo:
        mc = {key: np.array([r[key] for r in monte_carlo]) for key in monte_carlo[0]}
        signal_ax.plot(mc["d"], mc["signal"], "o", mfc="none", color="C3", ms=6, label="Monte Carlo estimate")
        signal_ax.plot(mc["d"], mc["floor"], "_", color="C3", ms=14, mew=2, label="its floor E g^2 / n_samples")
        signal_ax.plot(mc["d"], mc["bound"], "k+", ms=8)
        signal_ax.plot(mc["d"], mc["k=1"], "^", mfc="none", color="C2", ms=6, label="Monte Carlo, |I| = 1")
    signal_ax.set(yscale="log", xlabel="d", ylabel="mean over i (and seeds)",
                  title="uniform I: signal = bound (Parseval)")
    signal_ax.set_yscale("log", base=2)
    signal_ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    styles = {"0": ("C4", "I empty: (E g_i)^2"), "1": ("C2", "|I| = 1"), "2": ("C1", "|I| = 2"),
              "d//2": ("C0", "|I| = d // 2"), "d": ("C3", "I = [d]")}
    order_ax.plot(dims, mean_over_seeds(exact["max"]), "k^-", ms=5, label="max over I")
    for key, (color, label) in styles.items():
        order_ax.plot(dims, mean_over_seeds(orders[key]), "o-", color=color, ms=4, lw=1, label=label)
    order_ax.plot(dims, bound, "k+--", ms=8, lw=0.8, label="E g^2 / 2^d")
    order_ax.set(xlabel="d", ylabel="mean of <chi_I, g_i>^2 over |I| = k", title="input gradient by subset size")
    order_ax.set_yscale("log", base=2)
    order_ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    if weights:
        columns = {key: np.array([r[key] for r in weights]) for key in ("d", "signal", "bound", "max")}
        weight_ax.plot(columns["d"], columns["signal"], "o", color="C0", ms=6, label="E_I (uniform)")
        weight_ax.plot(columns["d"], columns["bound"], "k+", ms=8, label="E (df/dW)^2 / 2^d")
        weight_ax.plot(columns["d"], columns["max"], "k^-", ms=5, label="max over I")
        for key, (color, label) in styles.items():
            values = [r[f"k={r['d'] // 2}" if key == "d//2" else f"k={r['d']}" if key == "d" else f"k={key}"]
                      for r in weights]
            weight_ax.plot(columns["d"], values, "o-", color=color, ms=4, lw=1, label=label)
        weight_ax.set_yscale("log", base=2)
        weight_ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    weight_ax.set(xlabel="d", ylabel="mean over first-layer weights W_jk",
                  title="<chi_I, df/dW_jk>^2 (the SGD direction)")
    for ax in axes[0]:
        ax.title.set_fontsize(9)
    return fig


def parity_gradient_training(curves):
    """SGD on the hinge loss of chi_[d]: left, the target's correlation <chi_[d], g_i>^2 (mean over i, solid) against
    steps next to E g_i^2 / 2^d (dashed) and, where Monte Carlo, its floor E g^2 / n (dotted); right, the test
    accuracy. ``curves``: d -> arrays steps, correlation, bound, floor, accuracy (experiment parity-gradient)."""
    fig, axes = new_figure(2, 1, width=4.8, height=4.6)
    correlation_ax, accuracy_ax = axes[0]
    for (d, curve), color in zip(curves.items(), ("C0", "C3", "C2", "C1", "C4")):
        monte_carlo = bool(np.any(curve["floor"] > 0))
        steps = np.maximum(curve["steps"], 1)
        label = f"d = {d}" + (" (Monte Carlo)" if monte_carlo else " (exact)")
        correlation_ax.plot(steps, np.maximum(curve["correlation"], 1e-300), "-", color=color, lw=1.2,
                            label=f"{label}: <chi_[d], g>^2")
        correlation_ax.plot(steps, curve["bound"], "--", color=color, lw=1, label=f"d = {d}: E g^2 / 2^d")
        if monte_carlo:
            correlation_ax.plot(steps, curve["floor"], ":", color=color, lw=1.5, label=f"d = {d}: floor E g^2 / n")
        accuracy_ax.plot(steps, curve["accuracy"], "-", color=color, label=f"d = {d}")
    correlation_ax.set(xscale="log", yscale="log", xlabel="SGD step", ylabel="mean over i",
                       title="the target's gradient correlation during training")
    correlation_ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    accuracy_ax.axhline(0.5, color="gray", lw=0.6)
    accuracy_ax.set(xscale="log", ylim=(0.3, 1.02), xlabel="SGD step", ylabel="test accuracy",
                    title="SGD on the hinge loss of the full parity")
    accuracy_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    for ax in axes[0]:
        ax.title.set_fontsize(9)
    return fig


# ---- parity-sgd -------------------------------------------------------------------------------------------------

_PARITY_SGD_COLOURS = ("C3", "C1", "C0", "C2")  # parity-half, parity-full, parity-sparse, linear


def parity_sgd_curves(steps, dims, targets, orders, accuracy, target_accuracy, width_factor):
    """Test accuracy against SGD steps (log x), one panel per d, one line per target (legend: the target and its order
    from ``orders`` (len(dims), len(targets))): mean over seeds, band min-max; grey: chance 0.5, dotted:
    ``target_accuracy``. ``accuracy`` (len(dims), len(targets), seeds, len(steps)), at ``steps`` (logs,) whose
    step 0 is drawn at step 1; the networks have width ``width_factor`` d (experiment parity-sgd)."""
    fig, axes = new_figure(len(dims), 1, width=3.3, height=3.5)
    x = np.maximum(np.asarray(steps), 1)
    for ax, d, runs, run_orders in zip(axes[0], dims, accuracy, orders):
        for colour, style, target, order, curves in zip(_PARITY_SGD_COLOURS, ("--", "-", "-", "-"), targets,
                                                        run_orders, runs):
            label = f"linear, m = {order}" if target == "linear" else f"{target}, |I| = {order}"
            ax.plot(x, curves.mean(axis=0), style, color=colour, lw=1.3, label=label)
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.2, lw=0)
        ax.axhline(0.5, color="0.5", lw=0.8)
        ax.axhline(target_accuracy, color="0.5", ls=":", lw=0.8)
        ax.set(xscale="log", ylim=(0.35, 1.02), xlim=(1, x[-1]), xlabel="SGD step", title=f"d = {d}")
        ax.legend(fontsize=6.5, loc="upper left")
    axes[0, 0].set_ylabel("test accuracy")
    seeds = accuracy.shape[2]
    fig.suptitle(f"SGD, hinge loss, ReLU net of width {width_factor}d: mean and min-max over {seeds} "
                 f"seed{'s' if seeds > 1 else ''}", fontsize=9)
    return fig


def parity_sgd_summary(dims, targets, final_accuracy, steps_to_target, budget, target_accuracy):
    """Left: final test accuracy against d per target (mean over seeds, bars min-max; grey: chance). Right: the first
    logged step at which each seed reached ``target_accuracy`` (dots), with runs not learned within the step
    ``budget`` as open triangles above the budget line. ``final_accuracy`` (len(dims), len(targets), seeds);
    ``steps_to_target`` nested lists [d][target][seed] of ints or None (experiment parity-sgd)."""
    fig, axes = new_figure(2, 1, width=4.4, height=3.6)
    accuracy_ax, steps_ax = axes[0]
    dims = np.asarray(dims, dtype=float)
    offsets = (np.arange(len(targets)) - (len(targets) - 1) / 2) * 0.012 * (dims.max() - dims.min() + 1)
    cap = 1.6 * budget
    for j, (colour, target) in enumerate(zip(_PARITY_SGD_COLOURS, targets)):
        final = final_accuracy[:, j]
        mean = final.mean(axis=1)
        accuracy_ax.errorbar(dims + offsets[j], mean, yerr=[mean - final.min(axis=1), final.max(axis=1) - mean],
                             fmt="o-", color=colour, ms=4, capsize=2, label=target)
        for i, d in enumerate(dims):
            reached = [r for r in steps_to_target[i][j] if r is not None]
            missed = len(steps_to_target[i][j]) - len(reached)
            steps_ax.plot([d + offsets[j]] * len(reached), reached, "o", color=colour, ms=4,
                          label=target if i == 0 else None)
            steps_ax.plot([d + offsets[j]] * missed, [cap] * missed, "^", mfc="none", color=colour, ms=6)
    accuracy_ax.axhline(0.5, color="0.5", lw=0.8, label="chance")
    accuracy_ax.set(ylim=(0.35, 1.02), xticks=dims, xlabel="input dimension d", ylabel="final test accuracy",
                    title="after the whole step budget")
    accuracy_ax.legend(fontsize=7, loc="lower left")
    steps_ax.axhline(budget, color="0.5", ls="--", lw=0.8)
    steps_ax.text(dims.min(), cap * 1.25, "open triangles: not learned within the budget", fontsize=7, va="bottom")
    steps_ax.set(yscale="log", ylim=(10, cap * 2.5), xticks=dims, xlabel="input dimension d",
                 ylabel=f"steps to test accuracy {target_accuracy:g} (first logged)",
                 title=f"steps to {target_accuracy:.0%} (dashed: budget {budget:,})")
    steps_ax.legend(fontsize=7, loc="lower right")
    return fig


# ---- layer-convergence (seed 000) ------------------------------------------------------------------------------------
def _layer_convergence_epochs(panel) -> np.ndarray:
    """Snapshot epochs of a layer-convergence panel, step 0 drawn at the first snapshot's half (log axes)."""
    epochs = np.asarray(panel["steps"], dtype=float) / panel["per_epoch"]
    epochs[0] = epochs[1] / 2
    return epochs


def layer_convergence_matrices(panels):
    """The seed's picture: similarity of every layer (rows, input side at the top) at every snapshot (columns,
    log-spaced in time; the first is the initialisation) to the same layer at the end, seed mean, grey scale with
    lighter = more similar (white = 1). Red dots: the first snapshot reaching the panel's threshold (seed mean of
    the step, drawn at the nearest snapshot). One panel per (architecture, measure) of ``panels``, dicts with keys
    arch, measure, labels, steps, per_epoch, similarity (seeds, layers, snapshots), epochs_to (seeds, layers),
    threshold (experiment layer-convergence)."""
    archs = list(dict.fromkeys(p["arch"] for p in panels))
    measures = list(dict.fromkeys(p["measure"] for p in panels))
    fig, axes = new_figure(len(measures), len(archs), width=4.6, height=2.6)
    for panel in panels:
        ax = axes[archs.index(panel["arch"]), measures.index(panel["measure"])]
        mean = panel["similarity"].mean(axis=0)
        image = ax.imshow(mean, cmap="gray", vmin=max(0.0, float(mean.min())), vmax=1.0, aspect="auto",
                          interpolation="nearest")
        epochs = np.asarray(panel["steps"], dtype=float) / panel["per_epoch"]
        target = panel["epochs_to"].mean(axis=0)
        columns = [int(np.argmin(np.abs(np.log(np.maximum(epochs, 1e-9)) - np.log(max(t, 1e-9))))) for t in target]
        ax.plot(columns, np.arange(len(columns)), "o", color="C3", ms=4)
        ticks = np.unique(np.linspace(0, len(epochs) - 1, 6).round().astype(int))
        ax.set_xticks(ticks, ["init" if i == 0 else f"{epochs[i]:.2g}" for i in ticks], fontsize=7)
        ax.set_yticks(np.arange(len(panel["labels"])), panel["labels"], fontsize=7)
        ax.set(xlabel="snapshot (labelled in epochs, log-spaced)",
               title=f"{panel['arch'].upper()}, {'linear CKA' if panel['measure'] == 'cka' else 'SVCCA'} to the "
                     f"final state\n(dots: first >= {panel['threshold']:g})")
        ax.title.set_fontsize(8)
        fig.colorbar(image, ax=ax, shrink=0.9)
    seeds = panels[0]["similarity"].shape[0]
    fig.suptitle(f"layer x time similarity to the end of training, mean over {seeds} seed{'s' * (seeds > 1)} "
                 "(lighter = more similar)", fontsize=9)
    return fig


def layer_convergence_steps(panels):
    """Epochs until each layer's similarity to its final state first reaches the threshold, against depth (input
    left, logits right): seed mean, bars one standard deviation; symlog y (linear below 1 epoch, so 0 = already at
    init shows); one panel per architecture, one line per measure (experiment layer-convergence)."""
    archs = list(dict.fromkeys(p["arch"] for p in panels))
    fig, axes = new_figure(len(archs), 1, width=4.0, height=3.4)
    for panel in panels:
        ax = axes[0, archs.index(panel["arch"])]
        epochs = panel["epochs_to"]
        depth = np.arange(epochs.shape[1]) + (0.05 if panel["measure"] == "svcca" else -0.05)
        name = "linear CKA" if panel["measure"] == "cka" else "SVCCA"
        ax.errorbar(depth, epochs.mean(axis=0), yerr=epochs.std(axis=0), fmt="o-", ms=4, capsize=2,
                    color="C0" if panel["measure"] == "cka" else "C1", label=f"{name} >= {panel['threshold']:g}")
        ax.set_xticks(np.arange(epochs.shape[1]), panel["labels"], fontsize=7)
        total = panel["steps"][-1] / panel["per_epoch"]
        ax.axhline(total, color="0.5", ls="--", lw=0.8)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set(ylim=(-0.2, 1.5 * total), xlabel="layer (input side left)", ylabel="epochs to threshold (0 = at init)",
               title=f"{panel['arch'].upper()} (dashed: end of training)")
        ax.legend(fontsize=7, loc="upper left")
    seeds = panels[0]["similarity"].shape[0]
    fig.suptitle(f"epochs to reach the threshold: mean +- sd over {seeds} seed{'s' * (seeds > 1)}", fontsize=9)
    return fig


def layer_convergence_curves(panels):
    """Similarity of each layer to its final state against epochs (log x; the leftmost point is the
    initialisation), seed mean, one line per layer coloured by depth (dark = input side); dotted: the threshold.
    One panel per (architecture, measure) (experiment layer-convergence)."""
    archs = list(dict.fromkeys(p["arch"] for p in panels))
    measures = list(dict.fromkeys(p["measure"] for p in panels))
    fig, axes = new_figure(len(measures), len(archs), width=4.0, height=3.0)
    for panel in panels:
        ax = axes[archs.index(panel["arch"]), measures.index(panel["measure"])]
        epochs = _layer_convergence_epochs(panel)
        mean = panel["similarity"].mean(axis=0)
        for colour, label, row in zip(viridis_colours(len(panel["labels"])), panel["labels"], mean):
            ax.plot(epochs, row, "-", color=colour, lw=1.3, label=label)
        ax.axhline(panel["threshold"], color="0.5", ls=":", lw=0.8)
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="epoch (leftmost point: init)",
               ylabel="linear CKA to final" if panel["measure"] == "cka" else "SVCCA to final",
               title=panel["arch"].upper())
        ax.legend(fontsize=6.5, loc="lower right")
    return fig


__all__ += ["layer_convergence_matrices", "layer_convergence_steps", "layer_convergence_curves"]


# ---- mode connectivity (seed 000) -------------------------------------------------------------------------------
def mode_connectivity_paths(t, settings, descriptions, same_error, same_loss, indep_error, indep_loss,
                            aligned_error, aligned_loss):
    """Test error (top) and test loss (bottom) along the linear path w(t) = (1 - t) w_a + t w_b between two trained
    networks: same init and different data orders (spawned at k = 0, blue), independent inits (red), independent
    inits after permuting the hidden units of w_b to match w_a (orange, dashed). Thin lines: seeds; thick: their
    mean. One column per setting; arrays are (settings, seeds, len(t)) (experiment mode-connectivity)."""
    fig, axes = new_figure(len(settings), 2, width=4.2, height=2.9)
    kinds = (("same init, other data order", same_error, same_loss, "C0", "-"),
             ("independent inits", indep_error, indep_loss, "C3", "-"),
             ("independent, units aligned", aligned_error, aligned_loss, "C1", "--"))
    for column, setting in enumerate(settings):
        for label, errors, losses, colour, style in kinds:
            for row, values in enumerate((errors[column], losses[column])):
                ax = axes[row, column]
                for seed_values in values:
                    ax.plot(t, seed_values, style, color=colour, lw=0.5, alpha=0.35)
                ax.plot(t, values.mean(axis=0), style, color=colour, lw=1.8, label=label if row == 0 else None)
        axes[0, column].set(title=f"{setting}: {descriptions[setting]}", ylabel="test error", ylim=(0, None))
        axes[1, column].set(xlabel="t (0: network a, 1: network b)", ylabel="test cross-entropy", yscale="log")
        axes[0, column].title.set_fontsize(8)
        axes[0, column].legend(fontsize=7, loc="upper left")
    return fig


def mode_connectivity_instability(spawn_steps, settings, descriptions, spawn_barrier, indep_barrier,
                                  aligned_barrier, threshold, steps):
    """Instability: test-error barrier between two copies spawned at step k and trained on to ``steps`` with
    different data orders, against k (symlog x, so k = 0 shows). Dots: seeds; line and bars: mean +- sd. Red /
    orange bands: independent inits, raw / units aligned (mean +- sd); dotted: the threshold. One panel per setting;
    spawn_barrier (settings, seeds, k), the others (settings, seeds) (experiment mode-connectivity)."""
    fig, axes = new_figure(len(settings), 1, width=4.2, height=3.3)
    k = np.asarray(spawn_steps, dtype=float)
    for column, setting in enumerate(settings):
        ax = axes[0, column]
        for values, colour, label in ((indep_barrier[column], "C3", "independent inits"),
                                      (aligned_barrier[column], "C1", "independent, units aligned")):
            mean, sd = values.mean(), values.std(ddof=1) if values.size > 1 else 0.0
            ax.axhspan(mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
            ax.axhline(mean, color=colour, lw=1.2, label=f"{label}: {mean:.3f}")
        barriers = spawn_barrier[column]
        for seed_values in barriers:
            ax.plot(k, seed_values, ".", color="C0", alpha=0.4, ms=4)
        sd = barriers.std(axis=0, ddof=1) if barriers.shape[0] > 1 else np.zeros(k.size)
        ax.errorbar(k, barriers.mean(axis=0), yerr=sd, fmt="o-", color="C0", ms=4, capsize=2,
                    label="spawned at k (SGD noise)")
        ax.axhline(threshold, color="0.4", ls=":", lw=1.0, label=f"threshold {threshold:g}")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set(xlim=(-0.2, k.max() * 1.5), xlabel=f"spawning step k (of {steps})", ylabel="test-error barrier",
               title=f"{setting}: {descriptions[setting]}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6.5, loc="upper right")
    return fig


__all__ += ["mode_connectivity_paths", "mode_connectivity_instability"]


# ---- specialisation (seed 000) -------------------------------------------------------------------------------------
def specialisation_dynamics(steps, cos_v, cos_h, share, net_purity, test_error):
    """Left: each network's purity (neuron purities |c_V^2 - c_H^2| / (c_V^2 + c_H^2) weighted by contribution
    share) against the step (log x, step 0 drawn at 0.5), thin lines, and their mean (thick); grey dashed: 2/pi, a
    random direction's mean purity. Middle: the first network's neurons in the plane (c_V, c_H) = cosines of their
    incoming weights with the vertical and horizontal edge, from init (open circle) to the end (dot, size ~ share);
    the axes are the pure detectors. Right: test error against the step, thin lines and mean. ``cos_v``, ``cos_h``,
    ``share`` (nets, snapshots, width); ``net_purity``, ``test_error`` (nets, snapshots) (experiment
    specialisation)."""
    fig, axes = new_figure(3, 1, width=3.6, height=3.3)
    x = np.maximum(np.asarray(steps, dtype=float), 0.5)
    purity_ax, plane_ax, error_ax = axes[0]
    for ax, values, label in ((purity_ax, net_purity, "purity (share-weighted)"), (error_ax, test_error, "test error")):
        for row in values:
            ax.plot(x, row, "-", color="C0", lw=0.6, alpha=0.35)
        ax.plot(x, values.mean(axis=0), "-", color="C0", lw=2.0, label=f"mean of {values.shape[0]} networks")
        ax.set(xscale="log", xlabel="step (leftmost: init)", ylabel=label)
        ax.legend(fontsize=7, loc="lower right" if ax is purity_ax else "upper right")
    purity_ax.axhline(2 / np.pi, color="0.5", ls="--", lw=0.8)
    purity_ax.set(ylim=(0, 1.02), title="neurons become pure detectors")
    error_ax.set(ylim=(0, 0.55), title="test error")
    colours = viridis_colours(cos_v.shape[2])
    for k, colour in enumerate(colours):
        plane_ax.plot(cos_v[0, :, k], cos_h[0, :, k], "-", color=colour, lw=1.0)
        plane_ax.plot(cos_v[0, 0, k], cos_h[0, 0, k], "o", mfc="none", color=colour, ms=5)
        plane_ax.plot(cos_v[0, -1, k], cos_h[0, -1, k], "o", color=colour, ms=3 + 25 * float(share[0, -1, k]))
    plane_ax.axhline(0, color="0.7", lw=0.6)
    plane_ax.axvline(0, color="0.7", lw=0.6)
    plane_ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal", xlabel="cos(w, V)", ylabel="cos(w, H)",
                 title="one network's neurons, init -> end")
    return fig


def specialisation_weights(panels, size, share):
    """Incoming weights of the hidden neurons as ``size`` x ``size`` images, one row per entry of ``panels``
    ({"init", "trained", "average", "aligned average"}: (width, size^2) arrays), each image scaled to its own
    maximum |w| (red +, blue -); columns ordered by the trained network's contribution ``share`` (width,),
    largest first (experiment specialisation)."""
    order = np.argsort(-np.asarray(share))
    rows, width = len(panels), len(order)
    fig = _figure(figsize=(1.0 * width + 1.2, 1.05 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, width, squeeze=False)
    for r, (name, weights) in enumerate(panels.items()):
        for c, k in enumerate(order):
            ax = axes[r, c]
            image = np.asarray(weights[k]).reshape(size, size)
            limit = max(float(np.abs(image).max()), 1e-12)
            ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"share {share[k]:.2f}", fontsize=7)
    fig.suptitle("incoming weights of each hidden neuron (red +, blue -; each image on its own scale)", fontsize=8)
    return fig


def specialisation_interpolation(t, line_error, summary):
    """Test error along the line (1 - t) w_a + t w_b between two networks trained from different inits, as they
    are (red) and after matching b's neurons to a's (blue): mean over pairs, band one standard deviation, thin
    lines each pair. ``line_error`` {"raw", "aligned"}: (pairs, steps) (experiment specialisation)."""
    fig, axes = new_figure(1, 1, width=4.6, height=3.4)
    ax = axes[0, 0]
    for name, colour, label in (("raw", "C3", "as trained (no permutation)"),
                                ("aligned", "C0", "neurons matched (align_neurons)")):
        values = line_error[name]
        mean, std = values.mean(axis=0), values.std(axis=0)
        for row in values:
            ax.plot(t, row, "-", color=colour, lw=0.5, alpha=0.35)
        ax.plot(t, mean, "-", color=colour, lw=2.0,
                label=f"{label}: average {summary[f'{name}_average_error_mean']:.3f} "
                      f"+- {summary[f'{name}_average_error_std']:.3f}")
        ax.fill_between(t, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
    ax.set(xlabel="t (0: network a, 1: network b)", ylabel="test error", ylim=(0, None),
           title=f"between two trained networks ({line_error['raw'].shape[0]} pairs)")
    ax.legend(fontsize=7, loc="upper right")
    return fig


__all__ += ["specialisation_dynamics", "specialisation_weights", "specialisation_interpolation"]


# ---- simplicity-bias (seed 000): Nakkiran et al. 2019's mu over training ------------------------------------------
def _simplicity_bias_band(ax, x, values, colour, label, style="-"):
    """Mean over seeds (rows of ``values``) as a line, one standard deviation as a band."""
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, style, color=colour, lw=1.5, label=label)
    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)


def simplicity_bias_curves(steps, panels, part_fraction, reach_fraction):
    """One column per data set. Top: I(F;Y) (black), mu = I(F;Y) - I(F;Y|L) (blue), I(F;Y|L) (red) on the test set
    against SGD steps (log x; step 0 drawn at 1), mean over seeds with a one-standard-deviation band; dashed: the
    linear ceiling I(L;Y). Bottom: test accuracy of F (black), its agreement with L (green), dashed: L's accuracy.
    Vertical lines: median reach step (blue dotted: mu >= ``reach_fraction`` I(L;Y)) and median sustained part step
    (red dotted: I(F;Y|L) >= ``part_fraction`` I(L;Y) from then on). ``panels``: dicts with "dataset", "curves"
    {name: (seeds, T)}, "mi_ly", "linear_accuracy", "reach", "part" (experiment simplicity-bias)."""
    fig, axes = new_figure(len(panels), 2, width=4.3, height=3.1)
    x = np.maximum(np.asarray(steps), 1)
    for column, panel in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        curves = panel["curves"]
        _simplicity_bias_band(top, x, curves["mi_fy"], "k", "I(F;Y)")
        _simplicity_bias_band(top, x, curves["mu"], "C0", "mu = I(F;Y) - I(F;Y|L)")
        _simplicity_bias_band(top, x, curves["mi_fy_given_l"], "C3", "I(F;Y|L)")
        top.axhline(panel["mi_ly"], color="C0", ls="--", lw=0.9, label=f"I(L;Y) = {panel['mi_ly']:.3f}")
        _simplicity_bias_band(bottom, x, curves["accuracy"], "k", "accuracy of F")
        _simplicity_bias_band(bottom, x, curves["agreement"], "C2", "agreement of F with L")
        bottom.axhline(panel["linear_accuracy"], color="C0", ls="--", lw=0.9,
                       label=f"accuracy of L = {panel['linear_accuracy']:.3f}")
        for values, colour, name in ((panel["reach"], "C0", "reach"), (panel["part"], "C3", "part")):
            hit = [v for v in values if v is not None]
            if hit:
                for ax in (top, bottom):
                    ax.axvline(max(float(np.median(hit)), 1), color=colour, ls=":", lw=1.0)
                top.text(max(float(np.median(hit)), 1), 0.98 if name == "reach" else 0.9, f" {name}", color=colour,
                         fontsize=7, va="top",
                         transform=top.get_xaxis_transform())
        top.set(xscale="log", xlim=(1, x[-1]), ylabel="nats (test set)", title=panel["dataset"])
        bottom.set(xscale="log", xlim=(1, x[-1]), ylim=(0.4, 1.01), xlabel="SGD step", ylabel="test")
        top.legend(fontsize=6.5, loc="center left")
        bottom.legend(fontsize=6.5, loc="lower right")
    seeds = panels[0]["curves"]["mi_fy"].shape[0]
    fig.suptitle(f"F = MLP trained by SGD, L = logistic regression; mean +- 1 sd over {seeds} seeds\ndotted: median "
                 f"step where mu reaches {reach_fraction:g} I(L;Y) (reach) and from which I(F;Y|L) stays above "
                 f"{part_fraction:g} I(L;Y) (part)", fontsize=8)
    return fig


def simplicity_bias_data(x, y, width):
    """The two-stripes training set: points coloured by label, with the boundaries u = -width, 0, width
    (u = (x_1 + x_2) / sqrt 2); the best linear classifier is sign(u), wrong in the two middle stripes."""
    fig, axes = new_figure(1, 1, width=3.8, height=3.6)
    ax = axes[0, 0]
    x, y = _numpy(x), _numpy(y)
    ax.scatter(x[y > 0, 0], x[y > 0, 1], s=3, color="C3", label="y = +1")
    ax.scatter(x[y < 0, 0], x[y < 0, 1], s=3, color="C0", label="y = -1")
    line = np.array([-4.0, 4.0])
    for offset, style in ((-width, ":"), (0.0, "-"), (width, ":")):
        ax.plot(line, np.sqrt(2) * offset - line, style, color="k", lw=0.9)
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", xlabel="x_1", ylabel="x_2",
           title="two-stripes: solid = best linear boundary")
    ax.legend(fontsize=7, loc="upper right", markerscale=3)
    return fig


__all__ += ["simplicity_bias_curves", "simplicity_bias_data"]


# ---- simple-shortcut (seed 000): SGD latches onto a 45-degree half-plane --------------------------------------------
def simple_shortcut_curves(steps, strengths, curves, target_error, budget):
    """Left: test error against SGD steps (log-log; step 0 drawn at 1) per shortcut strength s (s = 0.5: no
    shortcut, the centred XOR), mean over seeds (line) and each seed (thin); dashed: the shortcut's error 1 - s;
    dotted: ``target_error``. Right: the error on the region where the shortcut is wrong (v > c), where a network
    that has latched onto sign(u) is wrong everywhere. ``curves`` {name: (strengths, seeds, T)} (experiment
    simple-shortcut)."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.7)
    error_ax, flipped_ax = axes[0]
    x = np.maximum(np.asarray(steps), 1)
    colours = ["k"] + list(viridis_colours(max(len(strengths) - 1, 1)))
    for colour, strength, error, flipped in zip(colours, strengths, curves["error"], curves["error_flipped_region"]):
        label = "s = 0.5 (no shortcut)" if strength == 0.5 else f"s = {strength:g}"
        for row, row_flipped in zip(error, flipped):
            error_ax.plot(x, np.maximum(row, 1e-4), "-", color=colour, lw=0.5, alpha=0.35)
            flipped_ax.plot(x, row_flipped, "-", color=colour, lw=0.5, alpha=0.35)
        error_ax.plot(x, np.maximum(error.mean(axis=0), 1e-4), "-", color=colour, lw=1.8, label=label)
        flipped_ax.plot(x, flipped.mean(axis=0), "-", color=colour, lw=1.8, label=label)
        if strength > 0.5:
            error_ax.axhline(1 - strength, color=colour, ls="--", lw=0.8)
    error_ax.axhline(target_error, color="0.4", ls=":", lw=1.0, label=f"target error {target_error:g}")
    error_ax.set(xscale="log", yscale="log", xlim=(1, x[-1]), ylim=(1e-3, 0.7), xlabel="SGD step",
                 ylabel="test error", title="test error (dashed: shortcut's error 1 - s)")
    flipped_ax.set(xscale="log", xlim=(1, x[-1]), ylim=(0, 1.02), xlabel="SGD step",
                   ylabel="test error where the shortcut is wrong",
                   title="error on the flipped region v > c")
    error_ax.legend(fontsize=7, loc="lower left")
    flipped_ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"y = sign(u) sign(c - v), sign(u) right on a fraction s; same MLP and SGD for all; step cap "
                 f"{budget:,}; thick: mean over {curves['error'].shape[1]} seeds", fontsize=8)
    return fig


def simple_shortcut_summary(strengths, steps_to_target, plateaus, budget, target_error):
    """Left: steps to reach ``target_error`` per strength (dots: seeds; bar: median; open triangles at the top: runs
    unconverged at the step cap ``budget``). Right: the plateau at the shortcut per strength (s > 0.5): one
    horizontal segment per seed from its start (F agrees with sign(u)) to its end (error <= (1 - s) / 2); an open
    end (arrow at the cap) is a run still on the plateau. ``steps_to_target`` [strength][seed] int or None,
    ``plateaus`` [strength][seed] (start, end) (experiment simple-shortcut)."""
    fig, axes = new_figure(2, 1, width=4.2, height=3.5)
    reach_ax, plateau_ax = axes[0]
    positions = np.arange(len(strengths))
    cap = 1.5 * budget
    for i, values in enumerate(steps_to_target):
        hit = [v for v in values if v is not None]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        reach_ax.plot(positions[i] + jitter[:len(hit)], np.maximum(hit, 1), "o", color="C0", ms=4)
        missed = len(values) - len(hit)
        reach_ax.plot(positions[i] + jitter[len(hit):], [cap] * missed, "^", mfc="none", color="C3", ms=7)
        if hit:
            reach_ax.plot([positions[i] - 0.25, positions[i] + 0.25], [np.median(np.maximum(hit, 1))] * 2, "-",
                          color="k", lw=1.5)
    reach_ax.axhline(budget, color="0.5", ls="--", lw=0.8)
    labels = ["0.5\n(none)" if s == 0.5 else f"{s:g}" for s in strengths]
    reach_ax.set(yscale="log", ylim=(1, cap * 2), xticks=positions, xticklabels=labels, xlabel="shortcut strength s",
                 ylabel=f"SGD steps to test error <= {target_error:g}",
                 title="time to target (triangles: unconverged)")
    for i, (strength, spans) in enumerate(zip(strengths, plateaus)):
        if strength <= 0.5:
            continue
        offsets = np.linspace(-0.2, 0.2, len(spans)) if len(spans) > 1 else np.zeros(1)
        for offset, (start, end) in zip(offsets, spans):
            if start is None:
                continue
            stop = end if end is not None else budget
            plateau_ax.plot([max(start, 1), stop], [positions[i] + offset] * 2, "-", color="C1", lw=2)
            if end is None:
                plateau_ax.plot([budget], [positions[i] + offset], ">", color="C3", ms=6)
    plateau_ax.axvline(budget, color="0.5", ls="--", lw=0.8)
    plateau_ax.set(xscale="log", xlim=(1, cap), ylim=(-0.6, len(strengths) - 0.4), yticks=positions,
                   yticklabels=[label.replace("\n", " ") for label in labels], ylabel="shortcut strength s",
                   xlabel="SGD step", title="plateau at the shortcut, per seed")
    return fig


def simple_shortcut_data(sets):
    """The training sets, one panel per strength: points coloured by label; solid: the shortcut boundary u = 0,
    dashed: the second boundary v = c. ``sets`` {strength: (x, y)} (experiment simple-shortcut)."""
    from statistics import NormalDist

    fig, axes = new_figure(len(sets), 1, width=3.0, height=3.4)
    line = np.array([-4.0, 4.0])
    for ax, (strength, (x, y)) in zip(axes[0], sets.items()):
        x, y = _numpy(x), _numpy(y)
        ax.scatter(x[y > 0, 0], x[y > 0, 1], s=2, color="C3")
        ax.scatter(x[y < 0, 0], x[y < 0, 1], s=2, color="C0")
        c = NormalDist().inv_cdf(strength)
        ax.plot(line, -line, "-", color="k", lw=0.9)
        ax.plot(line, line - np.sqrt(2) * c, "--", color="k", lw=0.9)
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", xlabel="x_1",
               title=("s = 0.5: centred XOR" if strength == 0.5 else f"s = {strength:g}"))
    axes[0, 0].set_ylabel("x_2")
    return fig


__all__ += ["simple_shortcut_curves", "simple_shortcut_summary", "simple_shortcut_data"]


# ---- hessian-spectrum (seed 003): bulk and outliers, sharpness against 2/lr, Hessian against Gauss-Newton ---------
def hessian_spectrum_densities(spectra, classes):
    """One panel per data set: the SLQ eigenvalue density of the full-data Hessian (band: one standard error over
    the probes) and of the Gauss-Newton matrix (dashed), log density axis, the top eigenvalues as ticks along the
    top (experiment hessian-spectrum). ``spectra`` {label: {"hessian"/"ggn": record}}, ``classes`` {label: C}."""
    fig, axes = new_figure(len(spectra), 1, width=3.6, height=3.2)
    for ax, (label, record) in zip(axes[0], spectra.items()):
        for kind, colour, style, name in (("hessian", "C0", "-", "Hessian"), ("ggn", "C3", "--", "Gauss-Newton")):
            grid, density = np.array(record[kind]["grid"]), np.array(record[kind]["density"])
            stderr = np.nan_to_num(np.array(record[kind]["stderr"]))
            floor = 1e-4 * density.max()
            ax.plot(grid, np.maximum(density, floor), style, color=colour, lw=1.2, label=name)
            if kind == "hessian":
                ax.fill_between(grid, np.maximum(density - stderr, floor), np.maximum(density + stderr, floor),
                                color=colour, alpha=0.2, lw=0)
        top = np.array(record["hessian"]["top"])
        ax.plot(top, np.full(top.size, 1.0), "|", color="k", ms=8, transform=ax.get_xaxis_transform(),
                clip_on=False)
        ax.set(yscale="log", xlabel="eigenvalue", title=f"{label.replace('_', ' ')} (C = {classes[label]})")
        ax.axvline(0, color="0.6", lw=0.5)
    axes[0, 0].set_ylabel("density (SLQ, seed 0)")
    axes[0, 0].legend(fontsize=7)
    return fig


def hessian_spectrum_outliers(hessian_top, ggn_top, classes):
    """Left: the top Hessian eigenvalues against their index (log y; mean over seeds, bars one s.d.), a dotted line
    at index C for each data set. Middle: the number of outliers (largest ratio gap) against C, mean +- s.d., with
    the lines C and C - 1. Right: the top GGN eigenvalues against the Hessian's, log-log, diagonal (experiment
    hessian-spectrum). ``hessian_top``, ``ggn_top`` {label: (seeds, top_k)}; ``classes`` {label: C}."""
    fig, axes = new_figure(3, 1, width=3.8, height=3.3)
    left, middle, right = axes[0]
    colours = viridis_colours(len(hessian_top))
    counts = {}
    for colour, (label, values) in zip(colours, hessian_top.items()):
        index = np.arange(1, values.shape[1] + 1)
        left.errorbar(index, values.mean(axis=0), yerr=values.std(axis=0), fmt="o-", ms=3, lw=1, color=colour,
                      label=f"{label.replace('_', ' ')}")
        left.axvline(classes[label] + 0.5, color=colour, ls=":", lw=1)
        positive = np.where(values > 0, values, np.nan)
        gaps = np.log(positive[:, :-1]) - np.log(positive[:, 1:])
        counts[label] = np.nanargmax(gaps, axis=1) + 1
        right.loglog(values.ravel(), ggn_top[label].ravel(), "o", ms=3, color=colour, alpha=0.7)
    left.set(yscale="log", xlabel="index i", ylabel="Hessian eigenvalue lambda_i (mean over seeds)",
             title="top eigenvalues (dotted: i = C + 1/2)")
    left.legend(fontsize=7)
    cs = np.array([classes[label] for label in counts])
    for colour, (label, count) in zip(colours, counts.items()):
        middle.errorbar(classes[label] + (0.15 if label == "digits" else 0), count.mean(), yerr=count.std(), fmt="o",
                        color=colour, capsize=3, label=label.replace("_", " "))
    line = np.array([cs.min() - 0.5, cs.max() + 0.5])
    middle.plot(line, line, "-", color="0.5", lw=1, label="C")
    middle.plot(line, line - 1, ":", color="0.5", lw=1, label="C - 1")
    middle.set(xlabel="classes C", ylabel="outliers (largest ratio gap)", title="outliers against C")
    middle.legend(fontsize=7)
    low = min(v[v > 0].min() for v in hessian_top.values())
    high = max(v.max() for v in hessian_top.values())
    right.plot([low, high], [low, high], "-", color="0.5", lw=1)
    right.set(xlabel="Hessian top eigenvalues", ylabel="Gauss-Newton top eigenvalues", title="Hessian vs GGN")
    return fig


def hessian_spectrum_sharpness(steps, sharpness, loss, data_label):
    """Left: the top Hessian eigenvalue against the gradient-descent step for each learning rate (thin: seeds,
    thick: mean), with 2/lr dashed in the same colour. Right: the training loss (experiment hessian-spectrum).
    ``sharpness``, ``loss`` {lr: (seeds, len(steps))}."""
    fig, axes = new_figure(2, 1, width=4.4, height=3.4)
    left, right = axes[0]
    x = np.asarray(steps) + 1
    for i, (rate, values) in enumerate(sharpness.items()):
        colour = f"C{i}"
        for row in values:
            left.plot(x, row, "-", color=colour, lw=0.5, alpha=0.4)
        left.plot(x, values.mean(axis=0), "-", color=colour, lw=1.8, label=f"lr = {rate:g}")
        left.axhline(2.0 / rate, color=colour, ls="--", lw=1)
        for row in loss[rate]:
            right.plot(x, row, "-", color=colour, lw=0.8, alpha=0.7)
        right.plot([], [], "-", color=colour, label=f"lr = {rate:g}")
    left.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="top Hessian eigenvalue",
             title=f"sharpness ({data_label.replace('_', ' ')}; dashed: 2/lr)")
    left.legend(fontsize=7)
    right.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="training loss (cross-entropy)",
              title="training loss")
    right.legend(fontsize=7)
    return fig


__all__ += ["hessian_spectrum_densities", "hessian_spectrum_outliers", "hessian_spectrum_sharpness"]


# ---- weight-spectra (seed 003): layer spectra against Marchenko-Pastur and their tails -------------------------
def weight_spectra_init(records):
    """One panel per width: the histogram of the eigenvalues of W^T W / N of the w x w layer at init against the
    Marchenko-Pastur density with the known entry variance 1 / (3 fan_in) (black) (experiment weight-spectra).
    ``records`` {width: one run's record}."""
    from .theory import marchenko_pastur_density

    fig, axes = new_figure(len(records), 1, width=3.0, height=2.8)
    for ax, (width, record) in zip(axes[0], records.items()):
        layer = record["init"][1]
        values = np.array(layer["eigenvalues"])
        ax.hist(values, bins=40, density=True, color="C0", alpha=0.6, label="init eigenvalues")
        grid = np.linspace(1e-6, values.max() * 1.05, 400)
        ax.plot(grid, marchenko_pastur_density(grid, layer["ratio"], layer["known_sigma2"]), "k-", lw=1.2,
                label="MP, variance 1/(3 fan_in)")
        ax.set(xlabel="eigenvalue of W^T W / N", title=f"w = {width}: KS {layer['known_ks']:.3f}", ylim=(0, None))
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=7)
    return fig


def weight_spectra_trained(records):
    """One panel per width, log-log: the eigenvalue histograms of the w x w layer at init (grey) and after training
    (blue), the Marchenko-Pastur law fitted to the trained bulk (black, its edge dotted) and the power-law tail fit
    lambda^-alpha above xmin (red dashed) (experiment weight-spectra)."""
    from .theory import marchenko_pastur_density

    fig, axes = new_figure(len(records), 1, width=3.0, height=2.8)
    for ax, (width, record) in zip(axes[0], records.items()):
        init, trained = record["init"][1], record["trained"][1]
        values = np.array(trained["eigenvalues"])
        positive = values[values > 0]
        bins = np.geomspace(min(positive.min(), min(init["eigenvalues"])), positive.max() * 1.01, 40)
        ax.hist(init["eigenvalues"], bins=bins, density=True, color="0.6", alpha=0.6, label="init")
        ax.hist(positive, bins=bins, density=True, histtype="step", color="C0", lw=1.4, label="trained")
        grid = np.geomspace(bins[0], bins[-1], 400)
        ax.plot(grid, marchenko_pastur_density(grid, trained["ratio"], trained["sigma2"]), "k-", lw=1,
                label="MP fit to trained bulk")
        ax.axvline(trained["bulk_edges"][1], color="k", ls=":", lw=1)
        if trained["alpha"] is not None:
            tail = grid[grid >= trained["xmin"]]
            share = np.mean(positive >= trained["xmin"])
            # the tail's density: share (alpha - 1) / xmin (lambda / xmin)^-alpha
            ax.plot(tail, share * (trained["alpha"] - 1) / trained["xmin"] * (tail / trained["xmin"]) ** -trained["alpha"],
                    "--", color="C3", lw=1.2, label=f"tail alpha = {trained['alpha']:.1f}")
        ax.set(xscale="log", yscale="log", xlabel="eigenvalue of W^T W / N",
               title=f"w = {width}: {trained['n_outliers']} outliers")
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("density")
    return fig


def weight_spectra_summary(widths, summary, layer_names):
    """Against width, mean +- s.d. over seeds, per layer (colours): the tail exponent alpha at init (open) and after
    training (filled), the number of outliers above the fitted bulk edge after training, and the largest eigenvalue
    over the bulk edge (experiment weight-spectra)."""
    fig, axes = new_figure(3, 1, width=3.6, height=3.2)
    panels = (("alpha", "power-law alpha of the tail"), ("n_outliers", "outliers above the MP edge"),
              ("top_over_edge", "lambda_max / MP bulk edge"))
    for ax, (key, label) in zip(axes[0], panels):
        for index, name in enumerate(layer_names):
            colour = f"C{index}"
            for stage, marker, fill in (("init", "o", "none"), ("trained", "s", colour)):
                mean = [summary[f"width{w}"][f"layer{index + 1}_{stage}_{key}_mean"] for w in widths]
                std = [summary[f"width{w}"][f"layer{index + 1}_{stage}_{key}_std"] for w in widths]
                ax.errorbar(widths, mean, yerr=std, fmt=marker + "-", color=colour, mfc=fill, capsize=2, lw=1,
                            label=f"{name}, {stage}" if key == "alpha" else None)
        ax.set(xscale="log", xlabel="width w", ylabel=label)
        log_ticks(ax, widths)
    axes[0, 0].legend(fontsize=6)
    axes[0, 2].set_yscale("log")
    return fig


__all__ += ["weight_spectra_init", "weight_spectra_trained", "weight_spectra_summary"]


# ---- loss-landscape (seed 003): filter-normalised slices and lines between solutions ---------------------------
def loss_landscape_slices(alphas, curves, grid, surfaces):
    """Top row, per width: the training loss along 1-D filter-normalised random directions around a trained
    network (thin: every direction of every replicate; thick: their mean), log y. Bottom row: the 2-D slice of the
    first replicate as log10-loss contours, one colour scale for all widths (experiment loss-landscape).
    ``curves`` {width: (replicates, directions, steps)}; ``surfaces`` {width: (steps_2d, steps_2d)}."""
    fig, axes = new_figure(len(curves), 2, width=3.6, height=3.2)
    low = min(float(np.log10(s.min())) for s in surfaces.values())
    high = max(float(np.log10(s.max())) for s in surfaces.values())
    levels = np.linspace(low, high, 21)
    for column, width in enumerate(curves):
        top, bottom = axes[0, column], axes[1, column]
        values = curves[width].reshape(-1, curves[width].shape[-1])
        for row in values:
            top.plot(alphas, row, "-", color="C0", lw=0.5, alpha=0.4)
        top.plot(alphas, values.mean(axis=0), "-", color="C0", lw=2)
        top.set(yscale="log", xlabel="a (filter-normalised direction)",
                title=f"width {width}: 1-D slices")
        image = bottom.contourf(grid, grid, np.log10(surfaces[width]).T, levels=levels, cmap="viridis")
        bottom.contour(grid, grid, np.log10(surfaces[width]).T, levels=levels, colors="k", linewidths=0.3)
        bottom.plot([0], [0], "r+", ms=8)
        bottom.set(xlabel="direction 1", ylabel="direction 2", aspect="equal", title=f"width {width}: 2-D slice")
    axes[0, 0].set_ylabel("training loss")
    fig.colorbar(image, ax=axes[1, :].tolist(), label="log10 training loss", shrink=0.8)
    return fig


def loss_landscape_lines(t, lines, descriptions):
    """Training loss along the line between two trained networks (0: A, 1: the other; log y), per width (colours):
    other init (solid) and same init with another data order (dashed); thin lines the replicates, thick the mean
    (experiment loss-landscape). ``lines`` {width: {"init"/"order": (replicates, len(t))}}."""
    fig, axes = new_figure(len(descriptions), 1, width=4.2, height=3.3)
    for ax, (name, description) in zip(axes[0], descriptions.items()):
        for i, (width, by_kind) in enumerate(lines.items()):
            colour = f"C{i}"
            for row in by_kind[name]:
                ax.plot(t, row, "-", color=colour, lw=0.5, alpha=0.4)
            ax.plot(t, by_kind[name].mean(axis=0), "-", color=colour, lw=2, label=f"width {width}")
        for end in (0, 1):
            ax.axvline(end, color="0.6", lw=0.5)
        ax.set(yscale="log", xlabel="t (0: A, 1: the other network)", title=description)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("training loss")
    return fig


__all__ += ["loss_landscape_slices", "loss_landscape_lines"]


# ---- the kernel regime (issue 20) --------------------------------------------------------------------------------
def lazy_is_kernel_trajectories(trajectories):
    """Left: the outputs F(t) on a few test points of the smallest and the largest width (NTK scale, seed 0),
    network solid, kernel predictor dashed. Right: the relative gap ||F_net - F_kernel|| / ||F_kernel|| on the test
    points against t per width (seed mean, band min-max). ``trajectories`` {h: (time (T,), net (T, k), kernel (T, k),
    gap (seeds, T))} (experiment lazy-is-kernel)."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.5)
    widths = list(trajectories)
    for style, h in zip(("-", "--"), (widths[0], widths[-1])):
        time, net, kernel, _ = trajectories[h]
        for k in range(net.shape[1]):
            axes[0, 0].plot(time[1:], net[1:, k], "-", color=f"C{k}", lw=1.5 if h == widths[-1] else 0.8,
                            alpha=1.0 if h == widths[-1] else 0.6, label=f"net, h={h}" if k == 0 else None)
            axes[0, 0].plot(time[1:], kernel[1:, k], ":", color="k" if h == widths[-1] else "0.5", lw=1,
                            label=f"kernel GD, h={h}" if k == 0 else None)
    axes[0, 0].set(xscale="log", xlabel="t (units of p / lambda_max)", ylabel="F on 3 test points",
                   title="NTK scale, alpha = 1, seed 0")
    axes[0, 0].legend(fontsize=7)
    colours = viridis_colours(len(widths))
    for colour, h in zip(colours, widths):
        time, _, _, gap = trajectories[h]
        axes[0, 1].plot(time[1:], np.nanmean(gap[:, 1:], axis=0), color=colour, label=f"h={h}")
        axes[0, 1].fill_between(time[1:], gap[:, 1:].min(axis=0), gap[:, 1:].max(axis=0), color=colour, alpha=0.2)
    axes[0, 1].set(xscale="log", yscale="log", xlabel="t (units of p / lambda_max)",
                   ylabel="||F_net - F_kernel|| / ||F_kernel|| (test)", title="gap over time, NTK scale")
    axes[0, 1].legend(fontsize=7)
    return fig


def lazy_is_kernel_gaps(hs, hinge_hs, alphas, gaps, summary, config):
    """Left: the lazy gap (max over t of the relative test-output gap) against the width h for the NTK scale
    (MSE and hinge) and the mean-field scale at alpha = mf_alpha (MSE), seed mean +- sd with the fitted slope;
    h^-1/2 and h^-1 guides. Right: the gap against alpha at h = alpha_width, mean-field scale (experiment
    lazy-is-kernel). ``gaps`` {sweep: (seeds, settings)}."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.6)
    hs = np.asarray(hs, dtype=float)
    for (sweep, label, widths), marker in zip((("ntk_width", "NTK scale, MSE", hs),
                                               ("hinge_width", "NTK scale, hinge (vs linearised)", hinge_hs),
                                               ("mf_width", f"mean field, alpha={config['mf_alpha']:g}, MSE", hs)),
                                              "osd"):
        values = gaps[sweep]
        axes[0, 0].errorbar(widths, values.mean(0), yerr=values.std(0, ddof=1) if len(values) > 1 else None,
                            marker=marker, capsize=2,
                            label=f"{label}: h^({summary[f'{sweep}_gap_slope']:.2f} +- "
                                  f"{summary[f'{sweep}_gap_slope_err']:.2f})")
    start = gaps["ntk_width"].mean(0)[0]
    axes[0, 0].plot(hs, start * (hs / hs[0]) ** -0.5, "k--", lw=0.8, label="h^-1/2")
    axes[0, 0].plot(hs, start * (hs / hs[0]) ** -1.0, "k:", lw=0.8, label="h^-1")
    axes[0, 0].set(xscale="log", yscale="log", xlabel="width h", ylabel="max_t ||F_net - F_kernel|| / ||F_kernel||",
                   title=f"lazy gap against width (p={config['p']}, {config['seeds']} seeds)")
    log_ticks(axes[0, 0], hs)
    axes[0, 0].legend(fontsize=6)
    alphas = np.asarray(alphas, dtype=float)
    values = gaps["mf_alpha"]
    axes[0, 1].errorbar(alphas, values.mean(0), yerr=values.std(0, ddof=1) if len(values) > 1 else None, marker="o",
                        capsize=2, label=f"h={config['alpha_width']}: alpha^({summary['mf_alpha_gap_slope']:.2f} +- "
                                         f"{summary['mf_alpha_gap_slope_err']:.2f})")
    middle = len(alphas) // 2
    axes[0, 1].plot(alphas, values.mean(0)[middle] * (alphas / alphas[middle]) ** -1.0, "k:", lw=0.8,
                    label="alpha^-1")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="alpha (mean-field scale)", ylabel="lazy gap (test)",
                   title="lazy gap against alpha")
    axes[0, 1].legend(fontsize=7)
    return fig


__all__ += ["lazy_is_kernel_trajectories", "lazy_is_kernel_gaps"]


def ntk_convergence_figure(hs_init, init_errors, hs, time, changes, summary):
    """Left: ||Theta_emp - Theta_inf||_F / ||Theta_inf||_F at init against h (dots: seeds; line: the fit; dashed
    h^-1/2). Middle: ||Theta_T - Theta_0||_F / ||Theta_0||_F at the end of training against h, NTK and mean-field
    scale (seed mean +- sd). Right: the same change against t per width (seed mean; solid NTK, dashed mean field)
    (experiment ntk-convergence). ``init_errors`` (seeds, len(hs_init)); ``changes`` {scale: (len(hs), seeds, T)}."""
    fig, axes = new_figure(3, 1, width=4.0, height=3.5)
    hs_init, hs = np.asarray(hs_init, dtype=float), np.asarray(hs, dtype=float)
    ax = axes[0, 0]
    for row in init_errors:
        ax.plot(hs_init, row, ".", color="0.6", ms=3)
    mean = init_errors.mean(0)
    ax.plot(hs_init, mean, "o-", color="C0",
            label=f"seed mean: h^({summary['init_error_slope']:.3f} +- {summary['init_error_slope_err']:.3f})")
    ax.plot(hs_init, mean[0] * (hs_init / hs_init[0]) ** -0.5, "k--", lw=0.8, label="h^-1/2")
    ax.set(xscale="log", yscale="log", xlabel="width h", ylabel="||Theta_emp - Theta_inf|| / ||Theta_inf||",
           title="empirical NTK at init vs analytic")
    log_ticks(ax, hs_init)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for scale, marker, name in (("ntk", "o", "NTK scale 1/sqrt(h)"), ("mf", "s", "mean field 1/h")):
        final = changes[scale][:, :, -1]
        ax.errorbar(hs, final.mean(1), yerr=final.std(1, ddof=1) if final.shape[1] > 1 else None, marker=marker,
                    capsize=2, label=f"{name}: h^({summary[f'{scale}_change_slope']:.2f} +- "
                                     f"{summary[f'{scale}_change_slope_err']:.2f})")
    ax.set(xscale="log", yscale="log", xlabel="width h", ylabel="||Theta_T - Theta_0|| / ||Theta_0||",
           title=f"NTK change by t = {summary['final_time']:g} (alpha = 1, MSE)")
    log_ticks(ax, hs)
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    colours = viridis_colours(len(hs))
    for scale, style in (("ntk", "-"), ("mf", "--")):
        for colour, h, block in zip(colours, hs, changes[scale]):
            ax.plot(time[1:], block.mean(0)[1:], style, color=colour, label=f"h={h:g}" if scale == "ntk" else None)
    ax.set(xscale="log", yscale="log", xlabel="t (units of p / lambda_max)", ylabel="||Theta_t - Theta_0|| / ||Theta_0||",
           title="solid: NTK scale, dashed: mean field")
    ax.legend(fontsize=7)
    return fig


__all__ += ["ntk_convergence_figure"]


def mean_field_vs_ntk_summary(hs, arrays, summary):
    """Against the width h, mean-field (1/h) and NTK (1/sqrt(h)) scale, seed mean +- sd: the relative weight change;
    the test error; W1 between the particles' end and init distributions of beta and of the alignment
    omega_1 / ||omega||; W1 between the end distribution at h and at the largest h (experiment mean-field-vs-ntk).
    ``arrays`` {f"{scale}_{quantity}": (seeds, len(hs))}."""
    fig, axes = new_figure(4, 1, width=3.6, height=3.4)
    hs = np.asarray(hs, dtype=float)
    styles = {"mf": ("s", "C3", "mean field 1/h"), "ntk": ("o", "C0", "NTK 1/sqrt(h)")}

    def band(ax, x, block, scale, label, line="-"):
        marker, colour, _ = styles[scale]
        ax.errorbar(x, block.mean(0), yerr=block.std(0, ddof=1) if block.shape[0] > 1 else None, marker=marker,
                    color=colour, ls=line, capsize=2, label=label)

    for scale, (_, _, name) in styles.items():
        band(axes[0, 0], hs, arrays[f"{scale}_relative_weight_change"], scale,
             f"{name}: h^({summary[f'{scale}_relative_weight_change_slope']:.2f})")
        band(axes[0, 1], hs, arrays[f"{scale}_test_err"], scale, name)
        band(axes[0, 2], hs, arrays[f"{scale}_moved_beta"], scale, f"{name}, beta")
        band(axes[0, 2], hs, arrays[f"{scale}_moved_alignment"], scale, f"{name}, alignment", line=":")
        band(axes[0, 3], hs[:-1], arrays[f"{scale}_to_widest_beta"][:, :-1], scale, f"{name}, beta")
        band(axes[0, 3], hs[:-1], arrays[f"{scale}_to_widest_alignment"][:, :-1], scale, f"{name}, alignment",
             line=":")
    axes[0, 0].set(yscale="log", ylabel="||theta_T - theta_0|| / ||theta_0||", title="how far the weights move")
    axes[0, 1].set(ylabel="test error", title=f"test error at t = {summary['final_time']:g}")
    axes[0, 2].set(yscale="log", ylabel="W1(end, init)", title="particles: distance moved")
    axes[0, 3].set(yscale="log", ylabel=f"W1(end at h, end at h={hs[-1]:g})", title="particles: convergence in h")
    for ax in axes[0]:
        ax.set(xscale="log", xlabel="width h")
        log_ticks(ax, hs)
        ax.legend(fontsize=6)
    return fig


def mean_field_vs_ntk_particles(hs, kept, initial, config):
    """Top: neurons as particles, beta_n against the alignment omega_n1 / ||omega_n|| at the end of training (seed 0;
    grey: the widest mean-field network at init), for the mean-field scale at the smallest and largest width and the
    NTK scale at the largest. Bottom: the kinks' x_1 weighted by |beta| ||omega|| (histograms, density), same three
    networks, the stripe's boundaries dashed (experiment mean-field-vs-ntk). ``kept`` {(scale, h): {name: (k,)}}."""
    from .data.synthetic import STRIPE_BOUNDS

    panels = [("mf", hs[0]), ("mf", hs[-1]), ("ntk", hs[-1])]
    fig, axes = new_figure(3, 2, width=3.7, height=3.2)
    for column, (scale, h) in enumerate(panels):
        values = kept[(scale, h)]
        top, bottom = axes[0, column], axes[1, column]
        top.plot(initial["alignment"], initial["beta"], ".", color="0.75", ms=2, label="init")
        top.scatter(values["alignment"], values["beta"], s=4, c="C3" if scale == "mf" else "C0", label="end")
        top.set(xlabel="alignment omega_1 / ||omega||", ylabel="beta",
                title=f"{'mean field' if scale == 'mf' else 'NTK scale'}, h={h}")
        top.legend(fontsize=6, markerscale=2)
        bottom.hist(values["kink_x1"], bins=60, range=(-4, 4), weights=values["weight"], density=True,
                    color="C3" if scale == "mf" else "C0")
        if config["dataset"] == "stripe":
            for bound in STRIPE_BOUNDS:
                bottom.axvline(bound, color="k", ls="--", lw=0.8)
        bottom.set(xlabel="kink position x_1", ylabel="density, weighted |beta| ||omega||")
    return fig


__all__ += ["mean_field_vs_ntk_summary", "mean_field_vs_ntk_particles"]


# ---- deep narrow chain (seed 001) ------------------------------------------------------------------------------
def deep_narrow_figure(depths, lrs, grid, fixed, fixed_lr, best_lr, bounds, bound_final, margin, scales,
                       init_depths, init_steps):
    """Four panels of the 1-D chain: steps to the loss fraction against depth (fixed and best lr); steps against lr
    per depth with the stability bound dotted; final loss just below / above the bound per depth; steps against the
    initial scale. grid (n_depths, n_lr), bound_final (n_depths, 2), init_steps (len(init_depths), n_scales)."""
    fig, axes = new_figure(4, 1, width=3.9, height=3.3)
    ax = axes[0, 0]
    ax.plot(depths, fixed, "o-", label=f"lr = {fixed_lr:g}")
    ax.plot(depths, np.nanmin(grid, axis=1), "s-", label="best lr of the grid")
    ax.set(yscale="log", xlabel="depth D", ylabel="steps to the loss fraction", title="depth slows learning")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    colours = viridis_colours(len(depths))
    for d, row, bound, colour in zip(depths, grid, bounds, colours):
        ax.plot(lrs, row, color=colour, label=f"D={d}")
        ax.axvline(bound, color=colour, ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="steps (gap: no convergence)",
           title="steps against lr; dotted: 2/(D s^(2-2/D))")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[0, 2]
    floor = 1e-32
    ax.semilogy(depths, np.maximum(bound_final[:, 0], floor), "o-", label=f"lr = (1-{margin:g}) x bound")
    ax.semilogy(depths, np.where(np.isfinite(bound_final[:, 1]), np.maximum(bound_final[:, 1], floor), 1e3), "x-",
                label=f"lr = (1+{margin:g}) x bound (1e3: diverged)")
    ax.set(xlabel="depth D", ylabel="final loss", title="stability bound by simulation")
    ax.legend(fontsize=7)
    ax = axes[0, 3]
    for d, row in zip(init_depths, init_steps):
        ax.loglog(scales, row, "o-", ms=3, label=f"D={d}")
    ax.set(xlabel="initial scale c (w_i = c)", ylabel=f"steps at lr = {fixed_lr:g}", title="initial scale")
    ax.legend(fontsize=8)
    fig.axes[1].plot(best_lr, np.nanmin(grid, axis=1), "k*", ms=6)
    return fig


def deep_linear_init_curves(curves, hidden_layers, inits):
    """Per number of hidden layers (rows): the loss over training (left) and the correlation of the first hidden
    layer's RSM with the tree's shared-ancestor similarity (right), one colour per init, one thin line per seed.
    curves[f"{n} hidden, {init}"] holds times (T,), loss (S, T), rsa (S, T)."""
    fig, axes = new_figure(2, len(hidden_layers), width=4.6, height=3.2)
    for row, n_hidden in zip(axes, hidden_layers):
        for k, init in enumerate(inits):
            curve = curves[f"{n_hidden} hidden, {init}"]
            for j, (loss, rsa) in enumerate(zip(curve["loss"], curve["rsa"])):
                label = init if j == 0 else None
                row[0].plot(curve["times"], loss, color=f"C{k}", lw=0.8, label=label)
                row[1].plot(curve["times"], rsa, color=f"C{k}", lw=0.8, label=label)
        row[0].set(yscale="log", xlabel="epoch", ylabel="loss", title=f"{n_hidden} hidden layer(s): loss, all seeds")
        row[1].set(xlabel="epoch", ylabel="corr(RSM, shared ancestors)", ylim=(-0.5, 1.02),
                   title=f"{n_hidden} hidden layer(s): RSA, all seeds")
        row[0].legend(fontsize=8)
        row[1].legend(fontsize=8)
    return fig


def deep_linear_init_rsms(curves, ideal, item_names, hidden_layers, inits):
    """The tree's shared-ancestor similarity (first column) and the final first-hidden-layer RSM H H^T (seed 0,
    scaled by its largest entry) for each init (columns) and number of hidden layers (rows)."""
    fig, axes = new_figure(len(inits) + 1, len(hidden_layers), width=2.4, height=2.4)
    for row, n_hidden in zip(axes, hidden_layers):
        row[0].imshow(ideal / ideal.max(), cmap="RdBu_r", vmin=-1, vmax=1)
        row[0].set_title("shared ancestors", fontsize=8)
        for ax, init in zip(row[1:], inits):
            rsm = curves[f"{n_hidden} hidden, {init}"]["final_rsm"]
            ax.imshow(rsm / np.abs(rsm).max(), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"{n_hidden} hidden, {init}: final", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks(range(len(item_names)))
            ax.set_yticklabels(item_names if ax is row[0] else [], fontsize=6)
    return fig


def deep_linear_generalise(table, item_names, sibling):
    """A new item learned from K of its features. Left: sign accuracy on its other features against K, on those
    where it agrees with its parent node and on its own flips. Right: cosine similarity of its hidden vector to each
    known item's against K. table: [(K, accuracy agreeing, accuracy flips, similarities (P,))]."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.3)
    known = [row[0] for row in table]
    axes[0, 0].plot(known, [row[1] for row in table], "o-", label="features shared with its parent node")
    axes[0, 0].plot(known, [row[2] for row in table], "s-", label="its own flips (exceptions)")
    axes[0, 0].axhline(0.5, color="gray", lw=0.5)
    axes[0, 0].set(xscale="log", ylim=(0, 1), xlabel="K features trained", ylabel="sign accuracy, other features",
                   title=f"new sibling of {sibling}")
    axes[0, 0].legend(fontsize=7)
    similarity = np.array([row[3] for row in table])
    for i, name in enumerate(item_names):
        axes[0, 1].plot(known, similarity[:, i], "o-", ms=3, color=f"C{i}", label=name)
    axes[0, 1].set(xscale="log", xlabel="K features trained", ylabel="cosine to known item's hidden vector",
                   title="hidden similarity of the new item")
    axes[0, 1].legend(fontsize=6, ncol=2)
    return fig


def deep_linear_depth3(times, modes, loss, s, tau, rows, stage_times):
    """Two hidden layers. Left: every mode a_k(t)/s_k (solid) and the closed-form balanced depth-3 trajectory
    through its measured 10 % point (dashed, :func:`fastdyn.deep_linear.depth3_time` inverted on a grid). Right:
    the loss with the detected stages. modes (T, r), rows: the experiment's per-mode dicts (t10)."""
    fig, axes = new_figure(2, 1, width=4.8, height=3.4)
    fractions = np.linspace(0.1, 0.995, 200)
    for k, (s_k, row) in enumerate(zip(s, rows)):
        axes[0, 0].plot(times, modes[:, k] / s_k, color=f"C{k}", lw=1.2, label=f"s={s_k:.1f}")
        if np.isfinite(row["t10"]):
            t = row["t10"] + deep_linear.depth3_time(fractions * s_k, s_k, 0.1 * s_k, tau)
            axes[0, 0].plot(t, fractions, "k--", lw=0.7)
    axes[0, 0].set(xlabel="epoch", ylabel="a / s", title="modes (dashed: closed form from the 10 % point)")
    axes[0, 0].legend(fontsize=6, ncol=2)
    axes[0, 1].semilogy(times, loss, "k")
    for t in stage_times:
        axes[0, 1].axvline(t, color="C3", lw=0.6)
    axes[0, 1].set(xlabel="epoch", ylabel="loss", title=f"two hidden layers: {len(stage_times)} stages (red)")
    return fig


def deep_linear_rotation(curves, toy, gaps, threshold):
    """Near-degenerate 2-mode problem (s = 1, 1 - gap; tau = 1). Top: the learned mode's angle theta(t) in the plane
    of the two SVD modes against t - t2 (t2: both eigenvalues of the block at s/2), seed 0, one hidden layer (solid;
    dashed: the coupled closed form) and two (solid). Bottom left: time after t2 until theta < threshold for good,
    mean +- s.d. over seeds, against the gap, beside the closed form and its leading-order estimate (log in 1/gap);
    negative: resolved before t2 (drift in the plateau or stall; clipped at -4). Bottom middle: the late decay rate -d ln theta/dt against the gap and the linearised theory. Top
    right: two hidden layers, the decay rate of tan theta during the stall (first direction learned, second not)
    and the rank-one theory. Bottom right: the stall t2 - t1 (t1: the block's top eigenvalue at s/2).
    curves, toy: :mod:`fastdyn.experiments.deep_linear_rotation`'s arrays and summary."""
    fig, axes = new_figure(3, 2, width=4.6, height=3.4)
    colours = viridis_colours(len(gaps))
    for col, n_layers in enumerate((2, 3)):
        ax = axes[0, col]
        for gap, colour in zip(gaps, colours):
            key = f"toy/{n_layers}/{gap}"
            shift = float(curves[f"{key}/t2"])
            ax.plot(curves[f"{key}/times"] - shift, curves[f"{key}/angle"], color=colour, lw=1.5, label=f"gap {gap:g}")
            if f"{key}/predicted" in curves:
                ax.plot(curves[f"{key}/times"] - shift, curves[f"{key}/predicted"], "k--", lw=0.6)
        ax.axhline(threshold, color="gray", lw=0.5)
        ax.set(yscale="log", ylim=(1e-6, 2), xlim=(-8, 12) if n_layers == 2 else (-22, 10), xlabel="t - t2  (tau = 1)",
               ylabel="angle theta (rad)", title=f"{n_layers - 1} hidden layer{'s' if n_layers == 3 else ''}"
               + (": solid simulated, dashed closed form" if n_layers == 2 else ": simulated"))
        ax.legend(fontsize=6, ncol=2)
    positive = [g for g in gaps if g > 0]
    ax = axes[1, 0]
    for n_layers, marker, colour in ((2, "o", "C0"), (3, "s", "C1")):
        rows = [toy[f"{n_layers - 1} hidden, gap {g}"] for g in positive]
        ax.errorbar(positive, [r["resolution"][0] for r in rows], [r["resolution"][1] for r in rows], fmt=marker,
                    color=colour, ms=4, capsize=2, label=f"{n_layers - 1} hidden, simulated")
    rows = [toy[f"1 hidden, gap {g}"] for g in positive]
    ax.plot(positive, [r["resolution_closed_form"][0] for r in rows], "k-", lw=0.8, label="1 hidden, closed form")
    ax.plot(positive, [r["resolution_estimate"][0] for r in rows], "k:", lw=0.8, label="leading order (ln 1/gap)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xscale="log", ylim=(-4, 2.0 * max(r["resolution_closed_form"][0] for r in rows)),
           xlabel="gap (s_1 - s_2) / s_1", ylabel=f"time after t2 to theta < {threshold}",
           title="resolves in ~ ln(1/gap) (tau/gap = 3..1000: off the scale)")
    ax.legend(fontsize=6)
    ax = axes[1, 1]
    for n_layers, marker, colour in ((2, "o", "C0"), (3, "s", "C1")):
        rows = [toy[f"{n_layers - 1} hidden, gap {g}"] for g in positive]
        ax.errorbar(positive, [r["decay_rate"][0] for r in rows], [r["decay_rate"][1] for r in rows], fmt=marker,
                    color=colour, ms=4, capsize=2, label=f"{n_layers - 1} hidden, simulated")
        ax.plot(positive, [r["decay_rate_theory"][0] for r in rows], color=colour, lw=0.8,
                label="s1 + s2" if n_layers == 2 else "s1^4/3 + (s1 s2)^2/3 + s2^4/3")
    ax.set(xscale="log", ylim=(0, 3.5), xlabel="gap (s_1 - s_2) / s_1", ylabel="-d ln theta / dt  (late)",
           title="late decay rate: set by s, not by the gap")
    ax.legend(fontsize=6)
    ax = axes[0, 2]
    rows = [toy[f"2 hidden, gap {g}"] for g in positive]
    ax.errorbar(positive, [r["stall_rate"][0] for r in rows], [r["stall_rate"][1] for r in rows], fmt="s",
                color="C1", ms=4, capsize=2, label="2 hidden, simulated")
    ax.plot(positive, positive, "k-", lw=0.8, label="s^(1/3) (s1 - s2) / tau")
    ax.set(xscale="log", yscale="log", xlabel="gap (s_1 - s_2) / s_1", ylabel="-d ln tan theta / dt",
           title="during the stall (one direction learned)")
    ax.legend(fontsize=6)
    ax = axes[1, 2]
    for n_layers, marker, colour in ((2, "o", "C0"), (3, "s", "C1")):
        rows = [toy[f"{n_layers - 1} hidden, gap {g}"] for g in gaps]
        ax.errorbar(gaps, [r["stall"][0] for r in rows], [r["stall"][1] for r in rows], fmt=marker, color=colour,
                    ms=4, capsize=2, label=f"{n_layers - 1} hidden")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set(xlabel="gap (0 included)", ylabel="stall t2 - t1", title="stall between the plane's two directions")
    ax.legend(fontsize=6)
    return fig


def deep_linear_rotation_tree(arrays, tree, threshold):
    """Hierarchical data, one hidden layer (gamma = 1e-12), seed 0. Left: the leaf modes 5-8, a_k/s_k simulated
    (solid), the decoupled logistic (dotted) and the coupled closed form (dashed). Middle: |a_k - prediction| / s_k
    of every mode, decoupled (dotted) and coupled (solid). Right: the learned mode's angle in the plane of each
    near-degenerate pair, simulated (solid) and closed form (dashed). arrays, tree: the experiment's."""
    fig, axes = new_figure(3, 1, width=4.6, height=3.4)
    t, s = arrays["tree/times"], arrays["tree/s"]
    ax = axes[0, 0]
    for k in range(4, len(s)):
        ax.plot(t, arrays["tree/modes"][:, k] / s[k], color=f"C{k}", lw=1.5, label=f"mode {k + 1}, s={s[k]:.1f}")
        ax.plot(t, arrays["tree/decoupled"][:, k] / s[k], color=f"C{k}", ls=":", lw=1)
        ax.plot(t, arrays["tree/coupled"][:, k] / s[k], "k--", lw=0.6)
    ax.set(xlim=(150, 200), xlabel="epoch", ylabel="a / s", title="leaf modes: dotted decoupled, dashed coupled")
    ax.legend(fontsize=6)
    ax = axes[0, 1]
    for k in range(len(s)):
        ax.plot(t, np.abs(arrays["tree/modes"][:, k] - arrays["tree/coupled"][:, k]) / s[k], color=f"C{k}", lw=1,
                label=f"mode {k + 1}")
        ax.plot(t, np.abs(arrays["tree/modes"][:, k] - arrays["tree/decoupled"][:, k]) / s[k], color=f"C{k}",
                ls=":", lw=1)
    ax.set(yscale="log", ylim=(1e-12, 1), xlim=(50, 250), xlabel="epoch", ylabel="|a - prediction| / s",
           title="error: dotted decoupled, solid coupled")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[0, 2]
    for n, pair in enumerate(tree["tree: near_degenerate_pairs"]):
        ax.plot(t, arrays[f"tree/{pair}/angle"], color=f"C{n}", lw=1.5, label=f"modes {pair}")
        ax.plot(t, arrays[f"tree/{pair}/predicted"], "k--", lw=0.6)
    ax.axhline(threshold, color="gray", lw=0.5)
    ax.set(yscale="log", ylim=(1e-8, 2), xlim=(60, 250), xlabel="epoch", ylabel="angle theta (rad)",
           title="near-degenerate pairs' rotation")
    ax.legend(fontsize=6)
    return fig


def deep_linear_balanced(curves, summary, s):
    """Aligned balanced init (every mode at a0). Left: each mode's time to half of s against s, one and two hidden
    layers, simulated (markers), closed form (lines) and its small-a0 limit (dotted). Middle, right: the modes
    a_k/s_k and the loss with its stages (red) for one and two hidden layers. curves, summary: the experiment's."""
    fig, axes = new_figure(3, 1, width=4.6, height=3.4)
    ax = axes[0, 0]
    for n_layers, marker in ((2, "o"), (3, "s")):
        rows = [summary[f"balanced, {n_layers - 1} hidden: mode {k + 1}"] for k in range(len(s))]
        colour = f"C{n_layers - 2}"
        ax.plot(s, [r["t50"] for r in rows], marker, color=colour, ms=5, label=f"{n_layers - 1} hidden, simulated")
        ax.plot(s, [r["t50_closed_form"] for r in rows], "-", color=colour, lw=0.8, label="closed form")
        ax.plot(s, [r["t_leading_order"] for r in rows], ":", color=colour, lw=0.8,
                label="tau/(2s) ln(s/a0)" if n_layers == 2 else "tau/(s a0^(1/3))")
    ax.set(xscale="log", yscale="log", xlabel="singular value s", ylabel="epochs to a = s/2",
           title="start times from a balanced init")
    ax.legend(fontsize=6)
    for col, n_layers in ((1, 2), (2, 3)):
        ax = axes[0, col]
        times = curves[f"{n_layers}/times"]
        for k, s_k in enumerate(s):
            ax.plot(times, curves[f"{n_layers}/modes"][:, k] / s_k, color=f"C{k}", lw=1.2, label=f"s={s_k:.1f}")
        loss = curves[f"{n_layers}/loss"]
        ax.plot(times, loss / loss[0], "k", lw=0.8, label="loss / loss(0)")
        for t in curves[f"{n_layers}/stage_times"]:
            ax.axvline(t, color="C3", lw=0.5)
        ax.set(xlabel="epoch", ylabel="a / s", title=f"{n_layers - 1} hidden: "
               f"{len(curves[f'{n_layers}/stage_times'])} stages (red)")
        ax.legend(fontsize=5, ncol=2)
    return fig


def deep_linear_new_feature(items, table, taught_times, taught, teach, feature, item_names, feature_name,
                            stage_times):
    """A new feature (output) learned on K items from the trained hidden layer. Left: sign accuracy on the other
    items against K, averaged over every set of K items, the net (lines) and kernel regression with the balanced
    theory's similarity V S V^T (crosses). Right: the feature ``feature_name`` (P,) taught on the items ``teach`` at
    earlier epochs, from the hidden layer of that epoch: its predicted value for every other item; red lines: the
    loss's stages. table: {name: (net (K,), theory (K,))}; taught (T, P) at taught_times (T,)."""
    fig, axes = new_figure(2, 1, width=4.6, height=3.4)
    for n, (name, (net, theory)) in enumerate(table.items()):
        axes[0, 0].plot(items, net, "o-", color=f"C{n}", ms=4, label=name)
        axes[0, 0].plot(items, theory, "x", color="k", ms=5)
    axes[0, 0].axhline(0.5, color="gray", lw=0.5)
    axes[0, 0].set(ylim=(0, 1.02), ylabel="sign accuracy, untrained items",
                   xlabel="K items the new feature is trained on", title="new feature (x: theory V S V^T)")
    axes[0, 0].legend(fontsize=6)
    ax = axes[0, 1]
    for i, name in enumerate(item_names):
        if i not in teach:
            ax.plot(taught_times, taught[:, i], color=f"C{i}", lw=1.2, ls="-" if feature[i] > 0 else "--",
                    label=f"{name} ({'has it' if feature[i] > 0 else 'not'})")
    for t in stage_times:
        ax.axvline(t, color="C3", lw=0.5)
    ax.axhline(0, color="gray", lw=0.5)
    taught_on = ", ".join(f"{item_names[i]} {feature[i]:+.0f}" for i in teach)
    ax.set(xlabel="epoch at which the feature is taught", ylabel="predicted value",
           title=f'"{feature_name}" taught on {taught_on}')
    ax.legend(fontsize=6)
    return fig
