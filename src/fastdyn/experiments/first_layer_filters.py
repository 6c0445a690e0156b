"""First-layer filters against sparse coding (seed 003, "Intriguing phenomena"; Olshausen and Field 1996): on
whitened patches of natural images, sparse coding learns localised, oriented, band-pass filters, PCA global ones,
and the first layer of a small network trained on the patches (a sparse autoencoder) is drawn beside them, each
bank with a measured localisation and orientation index.

* data: scikit-learn's two sample photographs (:func:`sklearn.datasets.load_sample_images`, offline), grey
  levels in [0, 1]; ``n_patches`` random ``patch`` x ``patch`` patches
  (:func:`sklearn.feature_extraction.image.extract_patches_2d`, half from each photograph, drawn from the seed),
  each minus its own mean (the DC), then ZCA-whitened: x <- U (S + eps)^(-1/2) U^T x with U S U^T the patches'
  covariance and eps = ``zca_eps`` x the mean eigenvalue (the usual regulariser; at 1 it is a strong low-pass,
  in the role of Olshausen and Field's low-pass in their whitening filter: with 0.01 the whitened pixel noise
  dominates and the atoms come out as noise);
* ``pca``: the first ``filters`` principal components of the (unwhitened, DC-removed) patches
  (:class:`sklearn.decomposition.PCA`; at most patch^2 - 1);
* ``sparse``: sparse coding of the whitened patches, min_D sum_i 1/2 |x_i - D a_i|^2 + ``alpha`` |a_i|_1 with
  unit-norm atoms (:class:`sklearn.decomposition.MiniBatchDictionaryLearning`, LARS, ``filters`` atoms from a
  random unit-norm start, ``dict_iter`` epochs, batches of ``dict_batch``); the filters are the atoms;
* ``autoencoder``: a one-hidden-layer tied sparse autoencoder (torch) on the whitened patches, h = relu(W x + b),
  x_hat = W^T h, loss 1/2 |x - x_hat|^2 + ``ae_l1`` |h|_1, W's rows renormalised to unit norm after every Adam
  step (``ae_lr``, batches of ``ae_batch``, ``ae_epochs`` epochs); the filters are the rows of the first layer W;
* ``init``: the autoencoder's W at initialisation (torch's default U(+-1/sqrt(fan_in))), a control for the indices.

Indices of a filter f (patch x patch, energy e = f^2 / sum f^2):

* localisation: the fraction of the energy in its ``top_k`` largest pixels (1 for a single pixel, top_k / patch^2
  for a flat filter);
* spread: the r.m.s. distance of the energy from its centroid, sqrt(sum e |r - r_c|^2), in pixels (small =
  localised);
* orientation: the concentration in angle of its Fourier power P(k) (zero-padded to ``fft`` x ``fft``, DC
  excluded), |sum P(k) exp(2 i theta_k)| / sum P(k), with theta_k the angle of the wave vector k (doubled, as an
  orientation is an axis): 1 for a single orientation, about 0 for power spread over all orientations;
* peak frequency: |k| (cycles per pixel) where P is largest: > 0 for a band-pass filter, 0 for a low-pass one.

Each bank's summary is the mean +- s.d. over its filters (first seed) and the mean +- s.d. over seeds of the
banks' means; ``noise_*`` are the indices of 1000 Gaussian white-noise filters for reference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import plotting
from .._src import checks
from . import mean_std

DESCRIPTION = ("seed 003: sparse coding, PCA and a sparse autoencoder's first layer on whitened photo patches, "
               "with localisation and orientation indices")

BANKS = ("pca", "sparse", "autoencoder", "init")
INDICES = ("localisation", "spread", "orientation", "peak_frequency")


def config(quick: bool) -> dict:
    if quick:
        return {"patch": 8, "n_patches": 6000, "zca_eps": 1.0, "filters": 49, "alpha": 1.0, "dict_iter": 3,
                "dict_batch": 256, "ae_hidden": 49, "ae_l1": 1.0, "ae_lr": 1e-2, "ae_batch": 128,
                "ae_epochs": 10, "top_k": 6, "fft": 32, "seeds": [0], "threads": 1}
    return {"patch": 12, "n_patches": 20000, "zca_eps": 1.0, "filters": 100, "alpha": 1.0, "dict_iter": 4,
            "dict_batch": 256, "ae_hidden": 100, "ae_l1": 1.0, "ae_lr": 1e-2, "ae_batch": 128, "ae_epochs": 20,
            "top_k": 14, "fft": 48, "seeds": [0, 1, 2], "threads": 1}


def check_config(config: dict) -> None:
    """ValueError or TypeError naming the offending key."""
    checks.integer("config 'patch'", config["patch"], minimum=3)
    p2 = int(config["patch"]) ** 2
    checks.integer("config 'n_patches'", config["n_patches"], minimum=2 * p2)
    checks.integer("config 'filters'", config["filters"], minimum=1)
    if config["filters"] > p2 - 1:
        raise ValueError(f"config 'filters' must be at most patch^2 - 1 = {p2 - 1} (PCA of DC-free patches), "
                         f"got {config['filters']}")
    checks.integer("config 'top_k'", config["top_k"], minimum=1)
    if config["top_k"] >= p2:
        raise ValueError(f"config 'top_k' must be below patch^2 = {p2}, got {config['top_k']}")
    checks.integer("config 'fft'", config["fft"], minimum=int(config["patch"]))
    for key in ("dict_iter", "dict_batch", "ae_hidden", "ae_batch", "ae_epochs"):
        checks.integer(f"config {key!r}", config[key])
    for key in ("zca_eps", "alpha", "ae_l1", "ae_lr"):
        checks.real(f"config {key!r}", config[key])
    if not config["seeds"]:
        raise ValueError("config 'seeds' must list at least one seed")
    for seed in config["seeds"]:
        checks.integer("config 'seeds' entry", seed, minimum=0)


def photo_patches(patch: int, n: int, seed: int) -> np.ndarray:
    """(n, patch^2) float64 grey-level patches in [0, 1], half from each of scikit-learn's sample photographs."""
    from sklearn.datasets import load_sample_images
    from sklearn.feature_extraction.image import extract_patches_2d
    images = load_sample_images().images
    counts = [n // len(images) + (i < n % len(images)) for i in range(len(images))]
    parts = [extract_patches_2d(image.mean(axis=2) / 255.0, (patch, patch), max_patches=count,
                                random_state=int(seed) * 100 + i)
             for i, (image, count) in enumerate(zip(images, counts))]
    return np.concatenate(parts).reshape(n, patch * patch)


def zca(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(whitened x, whitening matrix) for rows x already centred per patch: W = U (S + eps mean(S))^(-1/2) U^T."""
    x = x - x.mean(axis=0)
    cov = x.T @ x / len(x)
    s, u = np.linalg.eigh(cov)
    s = np.clip(s, 0.0, None)
    w = (u / np.sqrt(s + eps * s.mean())) @ u.T
    return x @ w, w


def localisation(filters: np.ndarray, top_k: int) -> np.ndarray:
    """Fraction of each filter's energy f^2 in its ``top_k`` largest pixels, (n,)."""
    e = filters.reshape(len(filters), -1) ** 2
    e = e / e.sum(axis=1, keepdims=True)
    return np.sort(e, axis=1)[:, ::-1][:, :top_k].sum(axis=1)


def spread(filters: np.ndarray) -> np.ndarray:
    """r.m.s. distance (pixels) of each filter's energy from its centroid, (n,); filters (n, p, p)."""
    n, p, _ = filters.shape
    e = filters ** 2
    e = e / e.sum(axis=(1, 2), keepdims=True)
    rows, cols = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    r0 = (e * rows).sum(axis=(1, 2))
    c0 = (e * cols).sum(axis=(1, 2))
    return np.sqrt((e * ((rows - r0[:, None, None]) ** 2 + (cols - c0[:, None, None]) ** 2)).sum(axis=(1, 2)))


def fourier(filters: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(power (n, size, size), kx, ky in cycles per pixel) of the filters zero-padded to size x size."""
    power = np.abs(np.fft.fft2(filters, s=(size, size))) ** 2
    k = np.fft.fftfreq(size)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return power, kx, ky


def orientation(filters: np.ndarray, size: int) -> np.ndarray:
    """|sum_k P(k) exp(2 i theta_k)| / sum_k P(k) over k != 0, (n,): 1 = one orientation, ~0 = all."""
    power, kx, ky = fourier(filters, size)
    power[:, 0, 0] = 0.0
    phase = np.exp(2j * np.arctan2(ky, kx))
    return np.abs((power * phase).sum(axis=(1, 2))) / power.sum(axis=(1, 2))


def peak_frequency(filters: np.ndarray, size: int) -> np.ndarray:
    """|k| (cycles per pixel) of each filter's largest Fourier power, (n,)."""
    power, kx, ky = fourier(filters, size)
    flat = power.reshape(len(filters), -1).argmax(axis=1)
    return np.hypot(kx.ravel(), ky.ravel())[flat]


def indices(filters: np.ndarray, config: dict) -> dict:
    """The four indices of a bank (n, p, p), each (n,)."""
    return {"localisation": localisation(filters, int(config["top_k"])), "spread": spread(filters),
            "orientation": orientation(filters, int(config["fft"])),
            "peak_frequency": peak_frequency(filters, int(config["fft"]))}


def sparse_coding(x: np.ndarray, config: dict, seed: int) -> np.ndarray:
    """Dictionary atoms (filters, d) of the whitened patches x."""
    from sklearn.decomposition import MiniBatchDictionaryLearning
    rng = np.random.default_rng(int(seed))
    init = rng.standard_normal((int(config["filters"]), x.shape[1]))  # random unit atoms, not sklearn's SVD start
    init /= np.linalg.norm(init, axis=1, keepdims=True)
    learner = MiniBatchDictionaryLearning(n_components=int(config["filters"]), alpha=float(config["alpha"]),
                                          batch_size=int(config["dict_batch"]), max_iter=int(config["dict_iter"]),
                                          fit_algorithm="lars", dict_init=init, random_state=int(seed),
                                          tol=0.0, max_no_improvement=None)
    learner.fit(x)
    return learner.components_


def autoencoder(x: np.ndarray, config: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(first layer W after training (hidden, d), W at init, its bias b after training, loss per epoch) of the
    tied sparse autoencoder h = relu(W x + b), x_hat = W^T h, W's rows renormalised to unit norm after each step."""
    torch.manual_seed(int(seed))
    d, hidden = x.shape[1], int(config["ae_hidden"])
    encoder = nn.Linear(d, hidden)
    initial = encoder.weight.detach().clone().numpy()
    with torch.no_grad():
        encoder.weight /= encoder.weight.norm(dim=1, keepdim=True)
    data = torch.tensor(x, dtype=torch.float32)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=float(config["ae_lr"]))
    generator = torch.Generator().manual_seed(int(seed) + 1000)
    l1, losses = float(config["ae_l1"]), []
    for _ in range(int(config["ae_epochs"])):
        total = 0.0
        for index in torch.randperm(len(data), generator=generator).split(int(config["ae_batch"])):
            xb = data[index]
            h = torch.relu(encoder(xb))
            loss = 0.5 * ((h @ encoder.weight - xb) ** 2).sum(dim=1).mean() + l1 * h.abs().sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                encoder.weight /= encoder.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
            total += float(loss.detach()) * len(index)
        losses.append(total / len(data))
    return (encoder.weight.detach().numpy().astype(np.float64), initial.astype(np.float64),
            encoder.bias.detach().numpy().astype(np.float64), losses)


def run(config: dict, out: Path, *, progress: bool = True) -> dict:
    check_config(config)
    from sklearn.decomposition import PCA, sparse_encode
    out = Path(out)
    log = print if progress else (lambda *args, **kw: None)
    p, m = int(config["patch"]), int(config["filters"])
    per_seed = {bank: {name: [] for name in INDICES} for bank in BANKS}
    first: dict = {}
    extra: dict = {"ae_final_loss": [], "sparse_fraction_nonzero": [], "ae_fraction_active": []}
    for number, seed in enumerate(config["seeds"]):
        patches = photo_patches(p, int(config["n_patches"]), int(seed))
        patches = patches - patches.mean(axis=1, keepdims=True)
        white, _ = zca(patches, float(config["zca_eps"]))
        banks = {"pca": PCA(n_components=m, random_state=int(seed)).fit(patches).components_,
                 "sparse": sparse_coding(white, config, int(seed))}
        banks["autoencoder"], banks["init"], bias, losses = autoencoder(white, config, int(seed))
        extra["ae_final_loss"].append(losses[-1])
        # how sparse the codes are: sparse coding's lasso codes, the autoencoder's relu units
        sample = white[:2000]
        codes = sparse_encode(sample, banks["sparse"], algorithm="lasso_cd", alpha=float(config["alpha"]))
        extra["sparse_fraction_nonzero"].append(float((np.abs(codes) > 1e-8).mean()))
        extra["ae_fraction_active"].append(float((sample @ banks["autoencoder"].T + bias > 0).mean()))
        for bank, filters in banks.items():
            values = indices(filters.reshape(len(filters), p, p), config)
            for name in INDICES:
                per_seed[bank][name].append(values[name])
            if number == 0:
                first[bank] = filters.reshape(len(filters), p, p)
        if number == 0:
            first["losses"] = losses
        log("first-layer-filters: seed " + str(seed) + ": " + ", ".join(
            f"{bank} localisation {per_seed[bank]['localisation'][-1].mean():.3f} "
            f"orientation {per_seed[bank]['orientation'][-1].mean():.3f}" for bank in BANKS))

    summary: dict = {"seeds": len(config["seeds"]), "patch": p, "filters": m, "top_k": int(config["top_k"]),
                     "flat_localisation": int(config["top_k"]) / p ** 2}
    for bank in BANKS:
        entry = {}
        for name in INDICES:
            values = per_seed[bank][name]
            entry[f"{name}_mean"], entry[f"{name}_std"] = mean_std(values[0])  # over filters, first seed
            entry[f"{name}_seed_mean"], entry[f"{name}_seed_std"] = mean_std([v.mean() for v in values])
        summary[bank] = entry
    # reference values: Gaussian white-noise filters of the same size (heavy-tailed pixels score higher on the
    # top-k index than the uniform init does, so the top-k index alone can flatter a noisy bank)
    noise = indices(np.random.default_rng(0).standard_normal((1000, p, p)), config)
    for name in INDICES:
        summary[f"noise_{name}_mean"], summary[f"noise_{name}_std"] = mean_std(noise[name])
    for key, values in extra.items():
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(values)
    # the claim, seed by seed: sparse coding's filters more localised than PCA's (higher top-k energy, smaller spread)
    summary["sparse_more_localised_than_pca_all_seeds"] = bool(all(
        s.mean() > q.mean() for s, q in zip(per_seed["sparse"]["localisation"], per_seed["pca"]["localisation"])) and
        all(s.mean() < q.mean() for s, q in zip(per_seed["sparse"]["spread"], per_seed["pca"]["spread"])))
    summary["autoencoder_more_localised_than_pca_all_seeds"] = bool(all(
        s.mean() > q.mean() for s, q in zip(per_seed["autoencoder"]["localisation"], per_seed["pca"]["localisation"])))
    np.savez_compressed(out / "first_layer_filters.npz",
                        **{f"{bank}_filters": first[bank] for bank in BANKS},
                        **{f"{bank}_{name}": np.array(per_seed[bank][name]) for bank in BANKS for name in INDICES},
                        ae_losses=np.array(first["losses"]))
    plotting.save_figure(filters_figure(first, summary), out, "filters.png")
    plotting.save_figure(indices_figure(per_seed, summary), out, "indices.png")
    return summary


TITLES = {"pca": "PCA (unwhitened patches)", "sparse": "sparse coding (whitened)",
          "autoencoder": "sparse autoencoder, first layer", "init": "the same layer at init"}


def tile(filters: np.ndarray, columns: int) -> np.ndarray:
    """One image of the filters (n, p, p) on a grid, each scaled to [-1, 1] by its own max |f|, 1-pixel gaps."""
    n, p, _ = filters.shape
    rows = -(-n // columns)
    grid = np.full((rows * (p + 1) + 1, columns * (p + 1) + 1), np.nan)
    for i, f in enumerate(filters):
        r, c = divmod(i, columns)
        grid[1 + r * (p + 1):1 + r * (p + 1) + p, 1 + c * (p + 1):1 + c * (p + 1) + p] = f / np.abs(f).max()
    return grid


def filters_figure(first: dict, summary: dict):
    """The four banks of the first seed side by side, each filter in its own grey scale."""
    fig, axes = plotting.new_figure(len(BANKS), 1, width=3.4, height=3.7)
    for ax, bank in zip(axes[0], BANKS):
        filters = first[bank]
        columns = int(np.ceil(np.sqrt(len(filters))))
        ax.imshow(np.ma.masked_invalid(tile(filters, columns)), cmap="gray", vmin=-1, vmax=1,
                  interpolation="nearest")
        ax.set_facecolor("white")
        s = summary[bank]
        ax.set_title(f"{TITLES[bank]}\nlocalisation {s['localisation_mean']:.2f}, "
                     f"orientation {s['orientation_mean']:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def indices_figure(per_seed: dict, summary: dict):
    """Histograms over the first seed's filters of localisation, spread, orientation and peak frequency."""
    labels = {"localisation": f"energy in top {summary['top_k']} pixels", "spread": "r.m.s. spread (pixels)",
              "orientation": "orientation concentration", "peak_frequency": "peak frequency (cycles/pixel)"}
    fig, axes = plotting.new_figure(len(INDICES), 1, width=3.2, height=2.9)
    for ax, name in zip(axes[0], INDICES):
        values = {bank: per_seed[bank][name][0] for bank in BANKS}
        everything = np.concatenate(list(values.values()))
        bins = np.linspace(everything.min(), everything.max(), 25)
        for bank, colour in zip(BANKS, ("C0", "C1", "C2", "grey")):
            s = summary[bank]
            ax.hist(values[bank], bins=bins, histtype="step", color=colour, lw=1.4,
                    label=f"{bank} {s[name + '_mean']:.2f} +- {s[name + '_std']:.2f}")
        if name == "localisation":
            ax.axvline(summary["flat_localisation"], color="k", ls=":", lw=1, label="flat filter")
        ax.axvline(summary[f"noise_{name}_mean"], color="k", ls="--", lw=1, label="Gaussian noise (mean)")
        ax.set(xlabel=labels[name], ylabel="filters")
        ax.legend(fontsize=6)
    return fig
