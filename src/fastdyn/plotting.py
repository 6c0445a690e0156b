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
           "parity_sgd_summary"]

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
