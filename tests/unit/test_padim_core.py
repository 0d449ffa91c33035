"""PaDiM functional core: the reference's channel subset, nearest upsampling, regularised Gaussian, Mahalanobis."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch
from fixtures_maps import pyramid
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from fsadbench.methods.padim import torch_model as pd
from fsadbench.methods.padim.torch_model import Padim, channel_subset, covariance, embed, fit_gaussians, mahalanobis

EQUIVALENT_MUTANTS = {
    "embed: mode='nearest' dropped": "nearest is F.interpolate's default mode",
    "embed / covariance / fit_gaussians: .to(emb.device), device=... -> None": "device: the CPU tests cannot see "
                                                                               "a device",
    "fit_gaussians: eye dtype=float64 -> float32": "reg * I in float32 differs by 2e-10 (0.01 rounded), below "
                                                   "every tolerance; covariance() pins float64 exactly",
}


def reference_distances(shots: torch.Tensor, tests: torch.Tensor, reg: float = 0.01) -> np.ndarray:
    """main.py l. 113-168 in numpy/scipy: np.cov + reg I per position, its inverse, scipy's Mahalanobis."""
    n, c, h, w = shots.shape
    x = shots.double().numpy().reshape(n, c, h * w)
    t = tests.double().numpy().reshape(tests.shape[0], c, h * w)
    out = np.zeros((tests.shape[0], h * w))
    for p in range(h * w):
        cov = np.cov(x[:, :, p], rowvar=False) + reg * np.identity(c)
        inv = np.linalg.inv(cov)
        mean = x[:, :, p].mean(axis=0)
        out[:, p] = [scipy_mahalanobis(t[b, :, p], mean, inv) for b in range(t.shape[0])]
    return out.reshape(tests.shape[0], h, w)


def test_defaults_pinned_with_their_source():
    assert pd.LAYERS == ("layer1", "layer2", "layer3")  # main.py l. 68-70
    assert pd.N_FEATURES == {"resnet18": 100, "wide_resnet50_2": 550}  # main.py l. 45-52, anomalib l. 53-56
    assert pd.TOTAL_FEATURES == {"resnet18": 64 + 128 + 256, "wide_resnet50_2": 256 + 512 + 1024}
    assert pd.SUBSET_SEED == 1024  # main.py l. 55
    assert pd.REGULARISER == 0.01  # main.py l. 120
    fields = {f.name: f.default for f in dataclasses.fields(Padim)}
    assert fields == {"backbone": "wide_resnet50_2", "n_features": None, "reg": 0.01, "seed": 1024,
                      "subset": None, "gaussians": None}


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2"])
def test_channel_subset_is_the_reference_draw(arch):
    random.seed(1024)  # main.py l. 55 then l. 60, with the global generator as there
    want = random.sample(range(0, pd.TOTAL_FEATURES[arch]), pd.N_FEATURES[arch])
    assert channel_subset(pd.TOTAL_FEATURES[arch], pd.N_FEATURES[arch]).tolist() == want
    assert channel_subset(10, 10, seed=3).sort().values.tolist() == list(range(10))
    assert channel_subset(10, 1, seed=3).tolist() == random.Random(3).sample(range(10), 1)
    assert channel_subset(10, 3).dtype == torch.long
    assert channel_subset(50, 5, seed=3).tolist() != channel_subset(50, 5, seed=4).tolist()


def test_channel_subset_errors():
    with pytest.raises(ValueError, match=r"^padim: n_features=11 must be between 1 and the 10 concatenated channels$"):
        channel_subset(10, 11)
    with pytest.raises(ValueError, match=r"n_features=0"):
        channel_subset(10, 0)


def test_embed_repeats_coarse_cells_nearest_and_selects_channels():
    layer1 = torch.zeros(1, 1, 4, 4)
    layer2 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = embed([layer1, layer2])
    want = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=torch.float32)
    assert out.shape == (1, 2, 4, 4) and torch.equal(out[0, 1], want) and torch.equal(out[0, 0], layer1[0, 0])
    sel = embed([layer1, layer2], subset=torch.tensor([1]))
    assert sel.shape == (1, 1, 4, 4) and torch.equal(sel[0, 0], want)
    with pytest.raises(ValueError, match=r"^padim.embed: no feature maps \(expected layer1, layer2, layer3\)$"):
        embed([])


def test_one_shot_is_ten_times_the_euclidean_distance():
    shot = torch.zeros(1, 2, 1, 1)
    test = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)
    g = fit_gaussians(shot)
    assert mahalanobis(test, g).item() == pytest.approx(5.0 / 0.1)  # N(shot, 0.01 I)
    assert torch.equal(covariance(g)[0], 0.01 * torch.eye(2, dtype=torch.float64))  # float64 regulariser


def test_two_shots_hand_case():
    shots = torch.tensor([0.0, 2.0]).reshape(2, 1, 1, 1)  # mean 1, unbiased variance 2, + 0.01
    g = fit_gaussians(shots)
    assert covariance(g).item() == pytest.approx(2.01)
    assert g.mean.item() == pytest.approx(1.0)
    test = torch.tensor([3.0]).reshape(1, 1, 1, 1)
    assert mahalanobis(test, g).item() == pytest.approx(2.0 / math.sqrt(2.01), rel=1e-6)
    assert mahalanobis(test, fit_gaussians(shots, reg=1.0)).item() == pytest.approx(2.0 / math.sqrt(3.0), rel=1e-6)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_mahalanobis_equals_reference_numpy_scipy(n):
    g = torch.Generator().manual_seed(n)
    shots, tests = torch.randn(n, 5, 2, 3, generator=g), torch.randn(4, 5, 2, 3, generator=g) * 2
    fitted = fit_gaussians(shots)
    got = mahalanobis(tests, fitted)
    assert got.shape == (4, 2, 3) and got.dtype == torch.float32
    assert np.allclose(got.numpy(), reference_distances(shots, tests), rtol=1e-5, atol=1e-5)
    x = shots.double().reshape(n, 5, 6)
    assert np.allclose(covariance(fitted)[4].numpy(), np.cov(x[:, :, 4].numpy(), rowvar=False) + 0.01 * np.eye(5))
    assert np.allclose(mahalanobis(shots, fitted).numpy(), reference_distances(shots, shots), atol=1e-5)


def test_grid_or_channel_mismatch_is_refused():
    g = fit_gaussians(torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"^padim: test embedding 3 x 2 x 3 does not match the fitted 3 x 2 x 2$"):
        mahalanobis(torch.randn(1, 3, 2, 3), g)
    with pytest.raises(ValueError, match=r"test embedding 4 x 2 x 2 does not match"):
        mahalanobis(torch.randn(1, 4, 2, 2), g)
    wide = fit_gaussians(torch.randn(2, 3, 2, 5))
    with pytest.raises(ValueError, match=r"^padim: test embedding 3 x 5 x 2 does not match the fitted 3 x 2 x 5$"):
        mahalanobis(torch.randn(1, 3, 5, 2), wide)


def test_padim_fit_predict_wiring():
    gen = torch.Generator().manual_seed(0)
    shots, tests = pyramid(gen, 3, [(4, 4), (6, 2)]), pyramid(gen, 2, [(4, 4), (6, 2)])
    model = Padim()
    with pytest.raises(ValueError, match=r"^padim: predict before fit \(no Gaussians of the shots\)$"):
        model.predict(tests)
    model.fit(shots)
    assert model.subset.tolist() == channel_subset(10, 10).tolist()  # 550 capped at the 10 channels
    maps, scores = model.predict(tests)
    emb_s, emb_t = embed(shots, model.subset), embed(tests, model.subset)
    assert maps.shape == (2, 4, 4)
    assert np.allclose(maps.numpy(), reference_distances(emb_s, emb_t), atol=1e-5)
    assert torch.equal(scores, maps.flatten(1).amax(1))
    r18 = Padim(backbone="resnet18", n_features=4, seed=7)
    r18.fit(shots)
    assert r18.subset.tolist() == channel_subset(10, 4, seed=7).tolist()
    assert r18.predict(tests)[0].shape == (2, 4, 4)
    with pytest.raises(ValueError, match=r"^padim: n_features=11 must be between"):
        Padim(n_features=11).fit(shots)
    with pytest.raises(ValueError, match=r"^padim: no n_features default for backbone 'vit' \(defaults exist for "
                                         r"resnet18, wide_resnet50_2\); set n_features$"):
        Padim(backbone="vit").fit(shots)
    assert Padim(backbone="vit", n_features=3).fit(shots) is None
    loose = Padim(reg=1.0)
    loose.fit(shots)
    assert np.allclose(loose.predict(tests)[0].numpy(), reference_distances(emb_s, emb_t, reg=1.0), atol=1e-5)
