"""Image-level methods (``Method.produces == ("image",)``): predictions without maps, the evaluator's
n/a pixel metrics, the cell's checks of what a method returns, the declaration's check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsadbench.core.errors import BenchError, ConfigError
from fsadbench.core.types import IMAGE_LEVEL, PIXEL_METRICS, Prediction, Sample
from fsadbench.protocol.evaluator import CategoryEvaluator, check_finite
from fsadbench.protocol.method import Method
from fsadbench.run.cell import check_outputs


def test_constants():
    assert IMAGE_LEVEL == "n/a, image-level method"
    assert PIXEL_METRICS == ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro")
    assert Method.produces == ("image", "pixel")


def test_prediction_without_maps():
    p = Prediction(None, [[0.5], [1]])
    assert p.maps is None and p.scores.dtype == np.float32 and p.scores.tolist() == [0.5, 1.0]
    check_finite(p, "x")
    with pytest.raises(FloatingPointError, match="1 non-finite value"):
        check_finite(Prediction(None, [np.nan, 1.0]), "x")
    with pytest.raises(ValueError, match="B x H x W"):
        Prediction(np.zeros((2, 2)), [1, 2])


def test_makes_maps_and_its_check():
    class Img(Method):
        name = "img"
        produces = ("image",)

    class Bad(Img):
        produces = ("pixel",)

    assert Method.makes_maps() and not Img.makes_maps()
    with pytest.raises(ConfigError, match=r"method 'img': produces must be \('image', 'pixel'\) or \('image',\) "
                                          r"\(an image-level method\), not \('pixel',\)"):
        Bad.makes_maps()


def _samples(labels):
    return [Sample(Path(f"/nonexistent/{i}.png"), y, "bad" if y else "good") for i, y in enumerate(labels)]


def test_image_level_evaluator_metrics_and_reasons():
    ev = CategoryEvaluator(8, 4.0, pixel=False)
    masks = [np.zeros((8, 8), bool)] * 4
    assert ev.add(Prediction(None, [0.1, 0.9, 0.2, 0.8]), _samples([0, 1, 0, 1]), masks) is None
    m, u = ev.compute()
    assert m["image_auroc"] == 1.0
    assert all(m[k] is None and u[k] == IMAGE_LEVEL for k in PIXEL_METRICS)
    ev2 = CategoryEvaluator(8, 4.0, aupro=False, pixel=False)
    ev2.add(Prediction(None, [0.1, 0.9]), _samples([0, 1]), masks[:2])
    m2, u2 = ev2.compute()
    assert "aupro" not in m2 and "aupro" not in u2 and u2["pixel_auroc"] == IMAGE_LEVEL
    with pytest.raises(ValueError, match=r"maps from a method declared image-level"):
        ev.add(Prediction(np.zeros((1, 2, 2)), [0.1]), _samples([0]), masks[:1])
    with pytest.raises(ValueError, match="a prediction without maps for a method that makes maps"):
        CategoryEvaluator(8, 4.0).add(Prediction(None, [0.1]), _samples([0]), masks[:1])


def test_check_outputs_messages():
    check_outputs(Prediction(None, [1.0, 2.0]), False, 2, "m")
    check_outputs(Prediction(np.zeros((2, 3, 3)), [1.0, 2.0]), True, 2, "m")
    with pytest.raises(BenchError, match=r"^m: predict\(\) returned no maps; a method without pixel maps declares "
                                         r"produces = \('image',\) \(its pixel metrics are then n/a\)$"):
        check_outputs(Prediction(None, [1.0]), True, 1, "m")
    with pytest.raises(BenchError, match=r"^m: predict\(\) returned maps but the method declares produces = "
                                         r"\('image',\); return maps=None or declare \('image', 'pixel'\)$"):
        check_outputs(Prediction(np.zeros((1, 3, 3)), [1.0]), False, 1, "m")
    with pytest.raises(BenchError, match=r"^m: 1 scores for a batch of 2 images$"):
        check_outputs(Prediction(None, [1.0]), False, 2, "m")
    with pytest.raises(BenchError, match=r"^m: 1 maps for a batch of 2 images$"):
        check_outputs(Prediction(np.zeros((1, 3, 3)), [1.0]), True, 2, "m")
