"""Experiment first-layer-filters (seed 003): the indices on filters whose answer is known (a single pixel, a flat
filter, a plane wave, a checkerboard), ZCA whitens, and on the quick configuration (8x8 patches of the sample
photographs, 49 filters) sparse coding's filters are more localised than PCA's by both measures, and oriented."""
import numpy as np
import pytest

from fastdyn.experiments import first_layer_filters as flf, run_experiment

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("first-layer-filters")
    return run_experiment("first-layer-filters", out, quick=True, progress=False), out


def test_indices_on_known_filters():
    p = 8
    pixel = np.zeros((1, p, p))
    pixel[0, 3, 5] = 2.0
    flat = np.ones((1, p, p))
    rows, cols = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    wave = np.cos(2 * np.pi * 0.25 * cols)[None]  # vertical stripes, 0.25 cycles per pixel
    checker = np.cos(np.pi * (rows + cols))[None]  # the diagonal frequency (1/2, 1/2)
    assert flf.localisation(pixel, 1)[0] == pytest.approx(1.0)
    assert flf.localisation(flat, 6)[0] == pytest.approx(6 / 64)
    assert flf.spread(pixel)[0] == pytest.approx(0.0)
    # a flat p x p square: the r.m.s. distance from the centre is sqrt(2 (p^2 - 1) / 12)
    assert flf.spread(flat)[0] == pytest.approx(np.sqrt(2 * (p * p - 1) / 12))
    assert flf.orientation(wave, p)[0] == pytest.approx(1.0)  # no zero padding: all power on the kx axis
    assert flf.orientation(checker, p)[0] == pytest.approx(1.0)
    assert flf.peak_frequency(wave, p)[0] == pytest.approx(0.25)
    # white noise has power in all directions
    noise = np.random.default_rng(0).standard_normal((200, p, p))
    assert flf.orientation(noise, 32).mean() < 0.25
    assert flf.spread(noise).mean() == pytest.approx(flf.spread(flat)[0], abs=0.15)  # noise is not localised


def test_zca_whitens_and_keeps_the_pixel_basis():
    x = flf.photo_patches(6, 4000, seed=0)
    assert x.shape == (4000, 36) and 0.0 <= x.min() and x.max() <= 1.0
    x = x - x.mean(axis=1, keepdims=True)
    white, w = flf.zca(x, 1e-9)
    cov = white.T @ white / len(white)
    s = np.linalg.eigvalsh(cov)
    assert np.allclose(np.sort(s)[1:], 1.0, atol=1e-3)  # one direction (the DC) is removed
    assert np.allclose(w, w.T)  # ZCA: symmetric, the whitened patch stays a patch


def test_sparse_coding_is_more_localised_than_pca(quick):
    summary, out = quick
    pca, sparse = summary["pca"], summary["sparse"]
    assert summary["sparse_more_localised_than_pca_all_seeds"]
    assert sparse["localisation_mean"] > pca["localisation_mean"] + 0.03
    assert sparse["spread_mean"] < pca["spread_mean"] - 0.1
    assert sparse["spread_mean"] < summary["noise_spread_mean"] - 0.1
    assert sparse["orientation_mean"] > summary["init"]["orientation_mean"] + 0.15  # oriented, unlike noise
    assert summary["sparse_fraction_nonzero_mean"] < 0.3  # the codes are sparse
    # every learned bank is more localised than the random init
    for bank in ("pca", "sparse", "autoencoder"):
        assert summary[bank]["localisation_mean"] > summary["init"]["localisation_mean"]
    assert (out / "filters.png").exists() and (out / "indices.png").exists()


@pytest.mark.parametrize("key, value", [("filters", 64), ("top_k", 64), ("seeds", [])])
def test_bad_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        run_experiment("first-layer-filters", tmp_path, quick=True, overrides={key: value}, progress=False)
