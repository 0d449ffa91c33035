"""Metric engine: hand-checked cases, sklearn / threshold-sweep oracles, ties, undefined cases, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from fsadbench.core.errors import DataError
from fsadbench.protocol.metrics import (METRIC_VERSION, PixelMetrics, RankSummary, UndefinedMetric, aupro, auroc,
                                        average_precision, f1_max, image_metrics, label_regions)


# ----------------------------------------------------------------------------- plain oracles

def oracle_f1_max(scores, labels):
    """F1 at every distinct threshold, one threshold at a time."""
    s, y = np.ravel(scores), np.ravel(labels).astype(bool)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp = np.sum(pred & y)
        fp = np.sum(pred & ~y)
        fn = np.sum(~pred & y)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def oracle_aupro(maps, masks, fpr_limit=0.3):
    """PRO curve by a sweep over every distinct score; trapezoids cut at fpr_limit."""
    regions = []  # (image index, boolean region mask)
    for i, g in enumerate(masks):
        lab, n = ndimage.label(g, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = np.concatenate([m[~g] for m, g in zip(maps, masks)])
    xs, ys = [0.0], [0.0]
    for t in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
        xs.append(np.mean(normal >= t))
        ys.append(np.mean([np.mean(maps[i][r] >= t) for i, r in regions]))
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # cut the crossing segment at the limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_category(rng, n_maps=5, h=10, w=12, levels=None, p_anomalous=0.6):
    maps, masks = [], []
    for _ in range(n_maps):
        g = np.zeros((h, w), bool)
        if rng.random() < p_anomalous:
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(0, h), rng.integers(0, w)
                g[r:r + rng.integers(1, 4), c:c + rng.integers(1, 5)] = True
            g |= rng.random((h, w)) < 0.03  # scattered single pixels, some diagonal neighbours
        m = rng.random((h, w)) + 0.7 * g * rng.random((h, w))
        if levels is not None:
            m = np.round(m * levels) / levels  # many ties
        maps.append(m.astype(np.float32))
        masks.append(g)
    return maps, masks


def accumulate(maps, masks, **kw):
    acc = PixelMetrics(**kw)
    for m, g in zip(maps, masks):
        acc.add(m, g)
    return acc


BACKENDS = [dict(device="cpu"), dict(device="cpu", chunk_pixels=37), dict(backend="torch", device="cpu"),
            dict(backend="torch", device="cpu", chunk_pixels=50)]


# ----------------------------------------------------------------------------- hand-checked cases

def test_hand_checked_binary_metrics():
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert auroc(s, y) == pytest.approx(0.75)  # 3 of 4 pairs ordered
    assert average_precision(s, y) == pytest.approx((1 * 1.0 + 1 * 2 / 3) / 2)  # recall steps at 0.8 and 0.35
    assert f1_max(s, y) == pytest.approx(0.8)  # threshold 0.35: TP 2, FP 1, FN 0
    # ties: positives {1, 1}, negatives {1, 0} -> U = (0.5 + 1) * 2 = 3 of 4 pairs
    assert auroc([1, 1, 0, 1], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert auroc([0.3, 0.3, 0.3], [1, 0, 0]) == 0.5  # all tied: a genuine 0.5, not an undefined value


def test_hand_checked_aupro_8_connected_regions():
    g = np.zeros((3, 4), bool)
    g[0, 0] = g[1, 1] = True  # one region: diagonal neighbours are 8-connected
    g[0, 3] = True            # a second region
    assert label_regions(g)[1] == 2
    m = np.full((3, 4), 0.1, np.float32)
    m[0, 0], m[1, 1], m[0, 3], m[2, 2] = 0.9, 0.2, 0.9, 0.5
    # curve (0,0) -> (0,.75) -> (1/9,.75) -> (1/9,1) -> (1,1); area to 0.3 = .75/9 + (.3 - 1/9)
    assert aupro([m], [g]) == pytest.approx((0.75 / 9 + 0.3 - 1 / 9) / 0.3, abs=1e-12)
    assert oracle_aupro([m], [g]) == pytest.approx((0.75 / 9 + 0.3 - 1 / 9) / 0.3, abs=1e-12)


def test_hand_checked_aupro_interpolates_on_a_tied_step():
    m = np.array([[0.5, 0.5, 0.5, 0.0]], np.float32)
    g = np.array([[True, False, False, False]])
    # (0,0) -> (2/3, 1) in one step; at FPR 0.3 the PRO is 0.45: area 0.3 * 0.45 / 2
    assert aupro([m], [g]) == pytest.approx(0.3 * 0.45 / 2 / 0.3, abs=1e-12)
    assert aupro([m], [g], fpr_limit=1.0) == pytest.approx((2 / 3 * 0.5 + 1 / 3) / 1.0, abs=1e-12)


def test_constant_maps_give_the_diagonal():
    maps = [np.full((6, 6), 0.25, np.float32) for _ in range(3)]
    masks = [np.zeros((6, 6), bool), np.eye(6, dtype=bool), np.zeros((6, 6), bool)]
    out = accumulate(maps, masks).compute()
    assert out["pixel_auroc"] == 0.5
    assert out["pixel_ap"] == pytest.approx(6 / 108)
    assert out["aupro"] == pytest.approx(0.15)  # PRO = FPR: area 0.3^2 / 2, / 0.3
    assert out["undefined"] == {}


# ----------------------------------------------------------------------------- randomised vs oracles

@pytest.fixture(params=[None, 3], ids=["one-block", "blocks-of-3"])
def block(request, monkeypatch):
    """Runs a test as is and with the metric loops cut into blocks of 3 distinct values."""
    if request.param is not None:
        monkeypatch.setattr(RankSummary, "BLOCK", request.param)
    return request.param


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 3, 12])
def test_flat_metrics_match_sklearn_and_sweep(seed, levels, block):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    y = rng.random(n) < rng.uniform(0.05, 0.6)
    y[0], y[1] = True, False
    s = rng.normal(size=n) + y
    if levels is not None:
        s = np.round(s * levels / 4) / levels
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert f1_max(s, y) == pytest.approx(oracle_f1_max(s, y), abs=1e-12)
    s32 = s.astype(np.float32)
    assert auroc(torch.from_numpy(s32), torch.from_numpy(y)) == pytest.approx(roc_auc_score(y, s32), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS, ids=["numpy", "numpy-chunks", "torch", "torch-chunks"])
@pytest.mark.parametrize("seed,levels", [(0, None), (1, 4), (2, 16), (3, 2), (4, None), (5, 7)])
def test_pixel_metrics_match_oracles(backend, seed, levels, block):
    rng = np.random.default_rng(seed)
    maps, masks = random_category(rng, levels=levels)
    masks[0][:] = False
    masks[1][2, 3] = True
    out = accumulate(maps, masks, **backend).compute()
    s = np.concatenate([m.ravel() for m in maps])
    y = np.concatenate([g.ravel() for g in masks])
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert out["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert out["pixel_f1_max"] == pytest.approx(oracle_f1_max(s, y), abs=1e-9)
    assert out["aupro"] == pytest.approx(oracle_aupro(maps, masks), abs=1e-9)
    assert out["undefined"] == {}


@pytest.mark.parametrize("limit", [0.05, 0.3, 0.77, 1.0])
def test_aupro_other_limits_match_sweep(limit, block):
    maps, masks = random_category(np.random.default_rng(11), n_maps=4, levels=6)
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(oracle_aupro(maps, masks, limit), abs=1e-9)


def test_single_positive_pixel():
    rng = np.random.default_rng(3)
    maps = [rng.random((8, 8)).astype(np.float32) for _ in range(3)]
    masks = [np.zeros((8, 8), bool) for _ in range(3)]
    masks[2][4, 5] = True
    out = accumulate(maps, masks).compute()
    s = np.concatenate([m.ravel() for m in maps])
    y = np.concatenate([g.ravel() for g in masks])
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["pixel_ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert out["aupro"] == pytest.approx(oracle_aupro(maps, masks), abs=1e-12)


def test_torch_inputs_and_add_after_compute():
    maps, masks = random_category(np.random.default_rng(5), n_maps=4, levels=5)
    acc = PixelMetrics(device="cpu", chunk_pixels=60)
    for m, g in zip(maps[:2], masks[:2]):
        acc.add(torch.from_numpy(m), torch.from_numpy(g))
    acc.compute()  # a mid-stream look must not disturb the stream
    for m, g in zip(maps[2:], masks[2:]):
        acc.add(m.astype(np.float64), g.astype(np.uint8))
    assert acc.compute() == accumulate(maps, masks).compute()


# ----------------------------------------------------------------------------- undefined and bad input

def test_undefined_metrics_are_none_with_reasons():
    maps = [np.random.default_rng(0).random((5, 5)).astype(np.float32) for _ in range(2)]
    out = accumulate(maps, [np.zeros((5, 5), bool)] * 2).compute()
    assert {k: out[k] for k in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro")} == dict.fromkeys(
        ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"))
    assert "no anomalous" in out["undefined"]["pixel_auroc"] and set(out["undefined"]) == {
        "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"}
    full = accumulate(maps, [np.ones((5, 5), bool)] * 2).compute()
    assert full["pixel_auroc"] is None and "no normal" in full["undefined"]["pixel_auroc"]
    assert full["aupro"] is None and "no normal" in full["undefined"]["aupro"]
    assert full["pixel_ap"] == 1.0 and full["pixel_f1_max"] == 1.0
    assert PixelMetrics().compute()["pixel_auroc"] is None
    no_pro = accumulate(maps, [np.eye(5, dtype=bool)] * 2, aupro=False).compute()
    assert "aupro" not in no_pro and no_pro["pixel_auroc"] is not None
    img = image_metrics([0.2, 0.9, 0.4], [0, 0, 0])
    assert img["image_auroc"] is None and img["image_ap"] is None and img["image_f1_max"] is None
    assert "no anomalous image" in img["undefined"]["image_auroc"]
    img = image_metrics([0.2, 0.9, 0.4], [0, 1, 0])
    assert img == {"image_auroc": 1.0, "image_ap": 1.0, "image_f1_max": 1.0, "undefined": {}}
    with pytest.raises(UndefinedMetric) as e:
        auroc([0.1, 0.2], [1, 1])
    assert "no normal" in e.value.reason


def test_bad_inputs_raise_clear_errors():
    acc = PixelMetrics()
    with pytest.raises(DataError, match="mask"):
        acc.add(np.zeros((4, 4), np.float32), np.zeros((4, 5), bool))
    bad = np.zeros((4, 4), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        acc.add(bad, np.zeros((4, 4), bool))
    with pytest.raises(FloatingPointError, match="NaN"):
        auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="labels"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="fpr_limit"):
        PixelMetrics(fpr_limit=0.0)
    with pytest.raises(ValueError, match="masks"):
        aupro([bad], [])
    assert "8-conn" in METRIC_VERSION and "0.3" in METRIC_VERSION


# ----------------------------------------------------------------------------- memory

def _stored_bytes(acc: PixelMetrics) -> int:
    neg = sum(c.nbytes for c in acc._neg.chunks) + sum(p.nbytes for p in acc._neg.pending)
    return neg + sum(p.nbytes for p in acc._pos) + sum(i.nbytes for i in acc._ids)


def test_store_is_one_float32_per_pixel_and_peak_is_bounded():
    rng = np.random.default_rng(0)
    n_maps, h = 24, 100
    masks = []
    for _ in range(n_maps):
        g = np.zeros((h, h), bool)
        r, c = rng.integers(0, 80, size=2)
        g[r:r + 15, c:c + 15] = True
        masks.append(g)
    map_bytes = n_maps * h * h * 4
    chunk = n_maps * h * h // 8
    tracemalloc.start()
    try:
        acc = PixelMetrics(device="cpu", chunk_pixels=chunk)
        for g in masks:
            m = rng.random((h, h), dtype=np.float32)
            acc.add(m, g)
            del m
        n_pos = sum(int(g.sum()) for g in masks)
        assert _stored_bytes(acc) == map_bytes + n_pos  # float32 each + a uint8 region id per anomalous pixel
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = acc.compute()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out["aupro"] is not None
    # compute() adds at most one chunk or ~100 bytes per anomalous pixel, never a copy of all the maps
    assert peak <= max(chunk * 4, 100 * n_pos) + (1 << 16), (peak, map_bytes)
