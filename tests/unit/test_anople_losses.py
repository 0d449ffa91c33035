"""AnoPLe's losses (eq. 7-10) against plain per-image / per-pixel loops on batched, non-square inputs.

The hand-checked single-image cases are in test_anople_units.py; here every reduction is checked
on B > 1 images of H != W pixels (a sum over the wrong axis, a mean where a per-image ratio is
due, a normalisation over the wrong dimension all change these numbers), every default is pinned
by calling without it, and deprecated implicit dimensions are errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from fsadbench.methods.anople.losses import (align_loss, dice_loss, focal_loss, image_loss, pixel_logits,
                                             pixel_loss, smoothed_ce, unit)

pytestmark = pytest.mark.filterwarnings("error")  # an implicit softmax dimension warns: a failure here


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _norm(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def _probs_and_masks(seed=0, b=3, h=2, w=5):
    prob = torch.rand(b, h, w, generator=_g(seed), dtype=torch.float64)
    target = (torch.rand(b, h, w, generator=_g(seed + 1)) > 0.6).double()
    target[0] = 0.0  # an image without anomaly
    return prob, target


def test_unit_is_l2_along_the_last_dimension():
    x = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, -2.0]]])
    got = unit(x)
    assert torch.allclose(got, torch.tensor([[[0.6, 0.8], [0.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]]]))
    assert got.shape == x.shape


def test_dice_per_image_then_mean():
    prob, target = _probs_and_masks()
    per_image = []
    for p, y in zip(prob, target):
        inter = sum(float(a) * float(b) for a, b in zip(p.flatten(), y.flatten()))
        per_image.append(1 - (2 * inter + 1) / (float(p.sum()) + float(y.sum()) + 1))
    assert dice_loss(prob, target).item() == pytest.approx(sum(per_image) / 3, abs=1e-12)
    assert dice_loss(prob, target, smooth=0.5).item() != pytest.approx(sum(per_image) / 3, abs=1e-6)
    # the loss keeps the probability dtype (a float64 mask does not promote a float32 loss)
    assert dice_loss(prob.float(), target).dtype == torch.float32
    assert dice_loss(prob, target.bool()).item() == pytest.approx(sum(per_image) / 3, abs=1e-12)


def test_focal_per_pixel_mean_and_clamp():
    prob, target = _probs_and_masks(seed=4)
    terms = []
    for p, y in zip(prob.flatten().tolist(), target.flatten().tolist()):
        pt = p if y == 1 else 1 - p
        terms.append(-((1 - pt) ** 2) * math.log(pt))
    assert focal_loss(prob, target).item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)
    g3 = [t * (1 - (p if y == 1 else 1 - p)) for t, p, y in zip(terms, prob.flatten().tolist(),
                                                                 target.flatten().tolist())]
    assert focal_loss(prob, target, gamma=3.0).item() == pytest.approx(sum(g3) / len(g3), abs=1e-12)
    assert focal_loss(prob.float(), target).dtype == torch.float32
    # a confident miss: p_t = 0 is clamped at 1e-6 (finite), a sure hit costs nothing
    miss = focal_loss(torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0]))
    assert miss.item() == pytest.approx((1 - 1e-6) ** 2 * -math.log(1e-6), rel=1e-9)
    assert pixel_loss(prob, target).item() == pytest.approx(dice_loss(prob, target).item()
                                                            + focal_loss(prob, target).item(), abs=1e-12)


def test_smoothed_ce_rows_by_hand():
    logits = torch.randn(4, 3, generator=_g(7), dtype=torch.float64)
    target = torch.tensor([2, 0, 1, 2])
    eps = [0.0, 0.1, 0.3, 0.7]
    want = 0.0
    for row, t, e in zip(logits.tolist(), target.tolist(), eps):
        lse = math.log(sum(math.exp(v) for v in row))
        logp = [v - lse for v in row]
        want += -(1 - e) * logp[t] - e * sum(logp) / 3
    got = smoothed_ce(logits, target, torch.tensor(eps, dtype=torch.float64))
    assert got.item() == pytest.approx(want / 4, abs=1e-12)
    # a scalar smoothing is every row's, computed in the logits' precision (0.1 is not a float32)
    one = smoothed_ce(logits, target, 0.1)
    rows = [-(0.9) * (r[t] - math.log(sum(math.exp(v) for v in r)))
            - 0.1 * sum(v - math.log(sum(math.exp(u) for u in r)) for v in r) / 3
            for r, t in zip(logits.tolist(), target.tolist())]
    assert one.item() == pytest.approx(sum(rows) / 4, abs=1e-14)
    assert smoothed_ce(logits, target).item() == pytest.approx(
        sum(-(r[t] - math.log(sum(math.exp(v) for v in r))) for r, t in zip(logits.tolist(), target.tolist())) / 4,
        abs=1e-12)


def test_image_loss_against_a_loop():
    g = _g(11)
    emb = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    normal = torch.randn(3, 4, generator=g, dtype=torch.float64)
    latent = torch.randn(3, 4, generator=g, dtype=torch.float64)
    text = torch.randn(2, 4, generator=g, dtype=torch.float64)  # rows of different norms, not diagonal
    w = [_norm(t) for t in text.tolist()]

    def ce(z, y, e, scale=5.0):
        z = _norm(z)
        lg = [scale * _dot(z, wc) for wc in w]
        lse = math.log(sum(math.exp(v) for v in lg))
        return -(1 - e) * (lg[y] - lse) - e * sum(v - lse for v in lg) / 2

    first = sum(ce(z, y, 0.0) for z, y in zip(emb.tolist(), labels.tolist())) / 6
    second = (sum(ce(z, 0, 0.0) for z in normal.tolist()) + sum(ce(z, 1, 0.2) for z in latent.tolist())) / 6
    got = image_loss(5.0, emb, labels, latent, normal, text, smoothing=0.2)
    assert got.item() == pytest.approx(first + second, abs=1e-12)
    # the default smoothing is the paper's 0.003 (sec. 3.4.2)
    second = (sum(ce(z, 0, 0.0) for z in normal.tolist()) + sum(ce(z, 1, 0.003) for z in latent.tolist())) / 6
    assert image_loss(5.0, emb, labels, latent, normal, text).item() == pytest.approx(first + second, abs=1e-12)


def test_pixel_logits_against_a_loop():
    g = _g(13)
    f = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64)  # B x E x H x W
    text = torch.randn(2, 3, generator=g, dtype=torch.float64)
    got = pixel_logits(f, text, 7.0)
    assert got.shape == (2, 2, 2, 4)
    w = [_norm(t) for t in text.tolist()]
    for b in range(2):
        for i in range(2):
            for j in range(4):
                z = _norm(f[b, :, i, j].tolist())
                for c in range(2):
                    assert got[b, c, i, j].item() == pytest.approx(7.0 * _dot(z, w[c]), abs=1e-12)


def test_align_loss_against_a_loop():
    g = _g(17)
    emb = torch.randn(3, 4, generator=g, dtype=torch.float64)
    f = torch.randn(3, 4, 2, 3, generator=g, dtype=torch.float64)
    lg = torch.randn(3, 2, 3, generator=g, dtype=torch.float64) * 3

    def want(tau):
        total = 0.0
        for b in range(3):
            flat = [v / tau for v in lg[b].flatten().tolist()]
            den = sum(math.exp(v) for v in flat)
            wts = [math.exp(v) / den for v in flat]
            feats = f[b].flatten(1).tolist()  # E x HW
            s = [sum(wt * x for wt, x in zip(wts, row)) for row in feats]
            total += 1 - _dot(_norm(emb[b].tolist()), _norm(s))
        return total / 3

    assert align_loss(emb, f, lg, tau=0.5).item() == pytest.approx(want(0.5), abs=1e-12)
    assert align_loss(emb, f, lg).item() == pytest.approx(want(2.0), abs=1e-12)  # suppl. 6.2: tau = 2


# Equivalent mutants (mutmut, methods/anople/losses.py): `python -m tools.mutation methods/anople/losses.py`
EQUIVALENT_MUTANTS = {
    "smoothed_ce: log_softmax(dim=-1 -> +1), logp.mean(dim=-1 -> +1)": "the logits are N x C: dim 1 is the last",
    "align_loss: softmax(dim=-1 -> +1), sum(dim=-1 -> +1)": "the weights are B x HW and the products B x E: "
                                                          "dim 1 is the last",
}
