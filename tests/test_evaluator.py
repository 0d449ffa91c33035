"""Evaluation protocol: upsampling, Gaussian smoothing equal to scipy, masks, undefined metrics."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from fsadbench.evaluator import gaussian_blur, postprocess, upsample


@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.0])
def test_gaussian_equals_scipy(sigma):
    rng = np.random.default_rng(0)
    maps = rng.random((2, 40, 33)).astype(np.float32)
    got = gaussian_blur(torch.from_numpy(maps), sigma).numpy()
    want = np.stack([ndimage.gaussian_filter(m.astype(np.float64), sigma, mode="reflect", truncate=4.0)
                     for m in maps])
    assert np.allclose(got, want, atol=1e-5)


def test_gaussian_radius_larger_than_map():
    maps = np.random.default_rng(1).random((1, 5, 5)).astype(np.float32)
    got = gaussian_blur(torch.from_numpy(maps), 4.0).numpy()
    want = ndimage.gaussian_filter(maps[0].astype(np.float64), 4.0, mode="reflect", truncate=4.0)
    assert np.allclose(got[0], want, atol=1e-5)


def test_upsample_bilinear_align_corners_false():
    m = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample(m, 4)
    assert up.shape == (1, 4, 4)
    assert up[0, 0, 0] == pytest.approx(0.0) and up[0, 0, 1] == pytest.approx(0.25)
    assert postprocess(m.numpy(), 2, 0).shape == (1, 2, 2)
