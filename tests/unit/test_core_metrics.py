"""The metric engine's edges as a caller meets them: why a metric is undefined (the reason a table prints),
inputs refused with a message that says what to fix, tensors that still carry a gradient, empty inputs.
The values themselves are checked against oracles in test_metrics.py.

EQUIVALENT_MUTANTS lists the surviving mutants of protocol/metrics/{ranking,aupro,pixel}.py that cannot change
behaviour.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsadbench.protocol.metrics.ranking import (UndefinedMetric, auroc, average_precision, distinct, f1_max,
                                                image_metrics, summary_flat)


@pytest.mark.parametrize("fn,reason", [
    (auroc, "one class only: no anomalous sample"),
    (average_precision, "no anomalous sample: recall undefined"),
    (f1_max, "no anomalous sample: F1 undefined"),
])
def test_undefined_metrics_say_why(fn, reason):
    with pytest.raises(UndefinedMetric) as err:
        fn([0.1, 0.2], [0, 0])
    assert err.value.reason == reason and str(err.value) == reason
    with pytest.raises(UndefinedMetric, match="^one class only: no normal sample$"):
        auroc([0.1, 0.2], [1, 1])


def test_image_metrics_name_images_in_their_reasons():
    got = image_metrics([0.1, 0.2], [0, 0])
    assert got == {"image_auroc": None, "image_ap": None, "image_f1_max": None,
                   "undefined": {"image_auroc": "one class only: no anomalous image",
                                 "image_ap": "no anomalous image: recall undefined",
                                 "image_f1_max": "no anomalous image: F1 undefined"}}


def test_bad_inputs_are_refused_saying_what_to_fix():
    with pytest.raises(ValueError, match=r"^scores has 3 values but labels has 2: pass one label per score$"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"^scores must be numeric, got dtype <U1$"):
        auroc(np.array(["a", "b"]), [0, 1])
    with pytest.raises(ValueError, match=r"^labels must be 0/1 or bool \(1 = anomalous\), got values outside "
                                         r"\{0, 1\}$"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(FloatingPointError, match="scores contain 1 NaN value"):
        auroc([0.1, float("nan")], [0, 1])


def test_a_tensor_that_carries_a_gradient_is_scored():
    s = torch.tensor([0.1, 0.9, 0.4], requires_grad=True)
    assert auroc(s, torch.tensor([0, 1, 1])) == pytest.approx(1.0)


def test_distinct_values_and_counts_including_none():
    u, c = distinct(np.array([1.0, 1.0, 2.0, 5.0, 5.0, 5.0]))
    assert u.tolist() == [1.0, 2.0, 5.0] and c.tolist() == [2, 1, 3]
    u, c = distinct(np.array([], dtype=np.float32))
    assert u.size == 0 and c.size == 0 and c.dtype == np.int64 and u.dtype == np.float32
    s = summary_flat([0.3, 0.3, 0.1], [1, 0, 0])
    assert (s.lt.tolist(), s.le.tolist()) == ([1], [2])  # negatives < / <= the positive score


def test_aupro_undefined_says_why():
    from fsadbench.protocol.metrics.aupro import aupro, pro_area
    from fsadbench.protocol.metrics.ranking import RankSummary

    maps = [np.array([[0.1, 0.9], [0.2, 0.3]])]
    with pytest.raises(UndefinedMetric, match="^no anomalous region in the masks$"):
        aupro(maps, [np.zeros((2, 2), bool)])
    with pytest.raises(UndefinedMetric, match="^no normal pixel: FPR undefined$"):
        aupro(maps, [np.ones((2, 2), bool)])
    empty = np.zeros(0)
    with pytest.raises(UndefinedMetric, match="^no anomalous region in the masks$"):
        pro_area(RankSummary(empty, empty, empty, empty, 0, 4), empty, 0.3)
    with pytest.raises(ValueError, match="^2 maps but 1 masks: pass one mask per map$"):
        aupro(maps * 2, [np.ones((2, 2), bool)])


EQUIVALENT_MUTANTS = {
    "ranking.scores_labels: kind not in 'XXfiubXX' for 'fiub'": "numpy has no dtype kind 'X': the same kinds pass",
    "ranking.distinct: sorted_values[:1] for [:0] on an empty array": "a slice of an empty array is empty",
    "ranking.distinct: np.empty(n, dtype=None / absent) for bool": "the 0/1 floats mark the same first positions",
    "ranking.summary_flat: searchsorted(..., side absent) for side='left'": "numpy's default side is 'left'",
    "aupro.label_regions: np.asarray(mask, dtype=None / absent), np.ones(structure, dtype=None / absent)":
        "ndimage.label takes any nonzero pixel as foreground and any nonzero structure element as a neighbour",
    "aupro.pro_area: e_last starts at 1.0 for 0.0":
        "it only multiplies p_last, which is 0 until the first step has been integrated",
    "aupro.pro_area: .astype(None) for .astype(np.float64) (E_j, G_j)": "astype(None) is float64",
    "aupro.pro_area: searchsorted(e, lim) side absent for 'right'":
        "a step ending exactly at L is then cut at L: the cut adds the same trapezoid",
    "aupro.pro_area: slice(None, full) / slice(full) for slice(0, full)": "the same slice",
    "aupro.pro_area: lim >= g[j] for lim > g[j]": "at lim == g[j] the added trapezoid has width 0",
    "aupro.pro_area: (lim - e_last) / p_last for * p_last in the flat tail":
        "the tail is reached after the last step, where PRO = p_last = 1 (every region fully covered)",
    "aupro.aupro: PixelMetrics(device=None / absent) for device='cpu'": "device placement: the CPU either way here",
    "aupro.aupro: PixelMetrics(...) without aupro=True": "aupro=True is PixelMetrics' default",
}
