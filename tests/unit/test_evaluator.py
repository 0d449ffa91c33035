"""Evaluation protocol: upsampling, Gaussian smoothing equal to scipy, masks, undefined metrics."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from fsadbench.protocol.evaluator import gaussian_blur, postprocess, upsample


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


def test_anomalous_image_without_mask_counts_for_image_metrics_only():
    """A folder dataset's unmasked anomaly has unknown pixels: left out of pixel metrics, kept for image ones."""
    from pathlib import Path

    from sklearn.metrics import roc_auc_score

    from fsadbench.protocol.evaluator import CategoryEvaluator, has_pixel_truth
    from fsadbench.core.types import Prediction, Sample

    rng = np.random.default_rng(3)
    maps = rng.random((3, 8, 8)).astype(np.float32)
    maps[2] += 5.0  # the unmasked anomaly scores high everywhere: as "normal" pixels it would sink pixel AUROC
    masks = [np.zeros((8, 8), bool), np.zeros((8, 8), bool), np.zeros((8, 8), bool)]
    masks[1][2:5, 3:6] = True
    samples = [Sample(Path("n.png"), 0), Sample(Path("a.png"), 1, "dent", Path("a_mask.png")),
               Sample(Path("b.png"), 1, "smudge", None)]
    assert [has_pixel_truth(s) for s in samples] == [True, True, False]
    ev = CategoryEvaluator(eval_size=8, sigma=0, aupro=False)
    ev.add(Prediction(maps, np.array([0.1, 0.7, 0.9])), samples, masks)
    metrics, _ = ev.compute()
    want_pixel = roc_auc_score(np.concatenate([masks[0].ravel(), masks[1].ravel()]),
                               np.concatenate([maps[0].ravel(), maps[1].ravel()]))
    assert metrics["pixel_auroc"] == pytest.approx(want_pixel, abs=1e-6)
    assert metrics["image_auroc"] == pytest.approx(1.0)  # all three images scored
    ev_all = CategoryEvaluator(eval_size=8, sigma=0, aupro=False)  # the same maps with the unmasked one dropped
    ev_all.add(Prediction(maps[:2], np.array([0.1, 0.7])), samples[:2], masks[:2])
    assert ev_all.compute()[0]["pixel_auroc"] == pytest.approx(metrics["pixel_auroc"], abs=1e-9)


def test_pixel_truth_reasons_name_missing_or_empty_masks():
    """The sweep (CategoryEvaluator) and rescore (metrics_from_scores) share these reasons."""
    from fsadbench.protocol.evaluator import no_pixel_truth, pixel_truth_reasons

    assert no_pixel_truth(0, 2) == ("no masks: none of the 2 anomalous test image(s) has a mask file, so their pixels "
                                    "are unlabelled (image metrics only); add the masks (check-data lists the images)")
    assert no_pixel_truth(3, 0) == ("empty masks: the masks of the 3 anomalous test image(s) mark no anomalous pixel; "
                                    "check the mask files (check-data lists them)")
    assert no_pixel_truth(3, 1) == ("empty masks: the masks of the 3 anomalous test image(s) mark no anomalous "
                                    "pixel; 1 more have no mask file; check the mask files (check-data lists them)")
    one = "one class only: no anomalous pixels"
    given = {"pixel_auroc": one, "aupro": one, "pixel_ap": "one class only: no normal pixels"}
    got = pixel_truth_reasons(given, 1, 2)
    assert got == {"pixel_auroc": no_pixel_truth(1, 2), "aupro": no_pixel_truth(1, 2),
                   "pixel_ap": "one class only: no normal pixels"}
    assert given["pixel_auroc"] == one  # a new dict, the input untouched
    assert pixel_truth_reasons(given, 0, 0) == given  # no anomalous image: one class only is the reason
    assert pixel_truth_reasons(given, 0, 1)["pixel_auroc"] == no_pixel_truth(0, 1)
    assert pixel_truth_reasons(given, 1, 0)["pixel_auroc"] == no_pixel_truth(1, 0)
    assert pixel_truth_reasons(given, 2, 2)["pixel_auroc"] == no_pixel_truth(2, 2)
    assert pixel_truth_reasons({}, 1, 1) == {}


def test_category_evaluator_counts_masked_and_unmasked_anomalies():
    from pathlib import Path

    from fsadbench.core.types import Prediction, Sample
    from fsadbench.protocol.evaluator import CategoryEvaluator, no_pixel_truth

    ev = CategoryEvaluator(4, 0.0, aupro=False)
    assert (ev.masked, ev.unmasked) == (0, 0)
    samples = [Sample(Path("n.png"), 0), Sample(Path("a.png"), 1, "dent", Path("a_m.png")), Sample(Path("b.png"), 1),
               Sample(Path("c.png"), 1)]
    maps = torch.rand(4, 2, 2)
    for _ in range(2):  # two batches: the counts add up
        ev.add(Prediction(maps, torch.tensor([0.1, 0.9, 0.8, 0.7])), samples, [np.zeros((4, 4), bool)] * 4)
    assert (ev.masked, ev.unmasked) == (2, 4)
    metrics, undefined = ev.compute()  # the one mask is empty: no anomalous pixel
    assert undefined["pixel_auroc"] == no_pixel_truth(2, 4) and metrics["image_auroc"] == 1.0
