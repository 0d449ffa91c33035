"""AnomalyCLIP's maps, losses and scores: hand-checked cases and the official formulas as oracles.

The oracles below restate, in this file's own code, what zqhang/AnomalyCLIP
computes (``loss.py`` FocalLoss / BinaryDiceLoss, ``model_load.py``
compute_similarity / get_similarity_map, ``train.py`` l.82-104).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fsadbench.methods.anomalyclip import losses as L


# -- oracles (the official formulas, restated) ----------------------------------------------------------
def focal_oracle(probs, target, gamma=2.0, smooth=1e-5):
    """loss.py FocalLoss (alpha None, balance_index 0): rows = pixels in (batch, h, w) order."""
    n, c = probs.shape[:2]
    rows = probs.reshape(n, c, -1).permute(0, 2, 1).reshape(-1, c)
    tgt = target.reshape(-1).long()
    total = 0.0
    for r, t in zip(rows, tgt):
        key = torch.full((c,), smooth / (c - 1))
        key[t] = 1.0 - smooth
        pt = float((key * r).sum()) + smooth
        total += -1.0 * (1 - pt) ** gamma * math.log(pt)
    return total / rows.shape[0]


def dice_oracle(pred, target):
    n = target.shape[0]
    p, t = pred.reshape(n, -1), target.reshape(n, -1)
    eff = (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return float(1 - eff.sum() / n)


def similarity_oracle(patches, text):
    """model_load.compute_similarity on normalised inputs: per patch, per text, softmax(sum(f*g)/0.07)."""
    b, n, c = patches.shape
    sim = (patches.reshape(b, n, 1, c) * text.reshape(1, 1, text.shape[0], c)).sum(-1)
    return (sim / 0.07).softmax(-1)


def similarity_map_oracle(sm, size):
    side = int(sm.shape[1] ** 0.5)
    sm = sm.reshape(sm.shape[0], side, side, -1).permute(0, 3, 1, 2)
    return F.interpolate(sm, size, mode="bilinear").permute(0, 2, 3, 1)


# -- hand-checked cases --------------------------------------------------------------------------------
def test_constants_pinned_with_their_source():
    # model_load.py l.235 / train.py l.83; loss.py l.21 (gamma 2, smooth 1e-5); loss.py l.97; train.py l.50
    assert (L.TEMPERATURE, L.FOCAL_GAMMA, L.FOCAL_SMOOTH, L.DICE_SMOOTH, L.MAP_WEIGHT) == (0.07, 2.0, 1e-5, 1.0, 4.0)


def test_focal_loss_hand_checked():
    probs = torch.tensor([0.8, 0.2]).reshape(1, 2, 1, 1)
    pt = 0.8 * (1 - 1e-5) + 0.2 * 1e-5 + 1e-5  # clamped one-hot (1 - s, s), + smooth
    want = -(1 - pt) ** 2 * math.log(pt)
    assert L.focal_loss(probs, torch.zeros(1, 1, 1)).item() == pytest.approx(want, rel=1e-6)
    pt1 = 0.2 * (1 - 1e-5) + 0.8 * 1e-5 + 1e-5
    want1 = -(1 - pt1) ** 2 * math.log(pt1)
    assert L.focal_loss(probs, torch.ones(1, 1, 1)).item() == pytest.approx(want1, rel=1e-6)
    # mean over pixels; gamma and smooth are used
    two = torch.tensor([[0.8, 0.2], [0.2, 0.8]]).t().reshape(1, 2, 1, 2)
    assert L.focal_loss(two, torch.tensor([[[0.0, 0.0]]])).item() == pytest.approx((want + want1) / 2, rel=1e-6)
    assert L.focal_loss(probs, torch.zeros(1, 1, 1), gamma=0.0).item() == pytest.approx(-math.log(pt), rel=1e-6)
    pt_s = 0.8 * 0.9 + 0.2 * 0.1 + 0.1
    assert L.focal_loss(probs, torch.zeros(1, 1, 1), smooth=0.1).item() == pytest.approx(
        -(1 - pt_s) ** 2 * math.log(pt_s), rel=1e-6)


def test_dice_loss_hand_checked():
    pred = torch.tensor([[1.0, 0.0, 0.5, 0.5]])
    tgt = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert L.dice_loss(pred, tgt).item() == pytest.approx(1 - 4 / 5)  # (2*1.5+1)/(2+2+1)
    # mean over images, not over pixels; smooth enters both terms
    pred2 = torch.stack([pred[0], torch.zeros(4)])
    assert L.dice_loss(pred2, torch.stack([tgt[0], torch.zeros(4)])).item() == pytest.approx(1 - (0.8 + 1.0) / 2)
    assert L.dice_loss(pred, tgt, smooth=0.0).item() == pytest.approx(1 - 3 / 4)


def test_map_loss_is_weighted_sum_over_layers():
    m = torch.tensor([0.8, 0.2]).reshape(1, 2, 1, 1)
    gt = torch.zeros(1, 1, 1)
    one = L.focal_loss(m, gt) + L.dice_loss(m[:, 1], gt) + L.dice_loss(m[:, 0], 1 - gt)
    # hand: dice(abnormal 0.2 vs 0) = 1 - 1/1.2; dice(normal 0.8 vs 1) = 1 - 2.6/2.8
    assert (L.dice_loss(m[:, 1], gt) + L.dice_loss(m[:, 0], 1 - gt)).item() == pytest.approx(
        (1 - 1 / 1.2) + (1 - 2.6 / 2.8), rel=1e-6)
    assert L.map_loss([m], gt).item() == pytest.approx(4 * one.item(), rel=1e-6)
    # an anomalous pixel: the normal map is scored against 1 - gt = 0
    anom = torch.ones(1, 1, 1)
    want = L.focal_loss(m, anom) + L.dice_loss(m[:, 1], anom) + (1 - 1 / 1.8)  # dice(0.8 vs 0) = 1 - 1/1.8
    assert L.map_loss([m], anom, weight=1.0).item() == pytest.approx(want.item(), rel=1e-6)
    assert L.map_loss([m, m], gt, weight=1.0).item() == pytest.approx(2 * one.item(), rel=1e-6)


def test_image_logits_and_loss_hand_checked():
    text = torch.eye(2)
    emb = torch.tensor([[3.0, 0.0], [0.0, 0.5]])  # normalised inside
    logits = L.image_logits(emb, text)
    assert torch.allclose(logits, torch.tensor([[1 / 0.07, 0.0], [0.0, 1 / 0.07]]))
    want = math.log(1 + math.exp(-1 / 0.07)) + math.log(1 + math.exp(1 / 0.07))
    assert L.image_loss(emb, text, torch.tensor([0, 0])).item() == pytest.approx(want / 2, rel=1e-5)


def test_patch_probs_and_maps_hand_checked():
    text = torch.eye(2)
    probs = L.patch_probs(torch.tensor([[[3.0, 4.0]]]), text)
    e = torch.tensor([0.6, 0.8]) / 0.07
    assert torch.allclose(probs[0, 0], e.softmax(0))
    grid = torch.arange(8.0).reshape(1, 4, 2)  # 2x2 patches, row-major, 2 classes
    maps = L.prob_maps(grid, 2)
    assert maps.shape == (1, 2, 2, 2) and maps[0, 1, 1, 0] == grid[0, 2, 1] and maps[0, 0, 0, 1] == grid[0, 1, 0]
    up = L.prob_maps(grid, 4)  # bilinear, align_corners False: the corner keeps the corner value
    assert up[0, 0, 0, 0] == grid[0, 0, 0] and up[0, 0, 0, 1] == pytest.approx(0.75 * 0 + 0.25 * 2)


def test_anomaly_map_sums_the_abnormal_probability_over_layers():
    text = torch.eye(2)
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    b = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    pa, pb = L.patch_probs(a, text)[..., 1], L.patch_probs(b, text)[..., 1]
    assert torch.allclose(L.anomaly_map([a, b], text), pa + pb)
    # test.py l.102: (p_abn + 1 - p_norm) / 2 equals p_abn
    full = L.patch_probs(a, text)
    assert torch.allclose((full[..., 1] + 1 - full[..., 0]) / 2, pa, atol=1e-6)


# -- the official formulas on random inputs -------------------------------------------------------------
def test_losses_equal_the_official_formulas_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 2, 5, 5, generator=gen).softmax(dim=1)
    gt = (torch.rand(3, 5, 5, generator=gen) > 0.6).float()
    assert L.focal_loss(probs, gt).item() == pytest.approx(focal_oracle(probs, gt), rel=1e-5)
    assert L.dice_loss(probs[:, 1], gt).item() == pytest.approx(dice_oracle(probs[:, 1], gt), rel=1e-5)


def test_maps_equal_the_official_similarity_on_random_inputs():
    gen = torch.Generator().manual_seed(1)
    patches = torch.randn(2, 9, 6, generator=gen)
    text = F.normalize(torch.randn(2, 6, generator=gen), dim=-1)
    want = similarity_oracle(F.normalize(patches, dim=-1), text)
    assert torch.allclose(L.patch_probs(patches, text), want, atol=1e-6)
    got = L.prob_maps(L.patch_probs(patches, text), 7)
    assert torch.allclose(got.permute(0, 2, 3, 1), similarity_map_oracle(want, 7), atol=1e-6)


EQUIVALENT_MUTANTS = {
    "prob_maps: align_corners=False -> None / dropped": "torch's bilinear default is align_corners=False",
    "focal_loss: one_hot.to(p.dtype) -> .to(None)": "clamp with float bounds promotes the int one-hot to float",
    "focal_loss: smooth / (c - 1) -> smooth * (c - 1)": "c = 2 (normal, abnormal): both are smooth",
}
