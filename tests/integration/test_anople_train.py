"""AnoPLe's training step and loop (methods/anople/train.py) with stubbed encoder and decoder: every
loss term recomputed from hand-made features, the loop's order, text, history and progress."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fixtures_layouts import random_image_refs

from fsadbench.core.errors import MethodError
from fsadbench.core.types import CategoryInfo
from fsadbench.methods.anople.losses import align_loss, image_loss, pixel_logits, pixel_loss
from fsadbench.methods.anople.model import AnoPLe
from fsadbench.methods.anople.prompts import ImageOut
from fsadbench.methods.anople.train import step_losses

pytestmark = pytest.mark.filterwarnings("error")  # an implicit softmax dimension warns: a failure here

INFO = CategoryInfo("synthetic", "disc", "disc")
CATS = {"a": CategoryInfo("synthetic", "a", "metal nut"), "b": CategoryInfo("synthetic", "b", "wood")}


class _Decoder(torch.nn.Module):
    def __init__(self, feats):
        super().__init__()
        self.feats = feats
        self.grids = []

    def forward(self, patches, grid):
        self.grids.append(grid)
        return self.feats


def test_step_losses_recomputed_from_hand_made_features(method_ctx):
    m = AnoPLe(method_ctx, multi_class=False, crop_grid=2, latent_sigma=0.3, latent_mu=0.05,
               label_smoothing=0.01, align_tau=1.5)
    m._setup([INFO])
    g = torch.Generator().manual_seed(0)
    e, n = 64, 225
    emb = torch.randn(10, e, generator=g)
    feats = torch.randn(10, e, 30, 30, generator=g)
    views = torch.randn(10, 3, 120, 120, generator=g)
    masks = torch.zeros(10, 120, 120)
    masks[5, :40, :30] = 1
    masks[7, 60:, 10:90] = 1
    masks[9, 50:70, 50:70] = 1  # views 6 and 8: the anomaly fell outside these crops (label 0)
    text = F.normalize(torch.randn(2, e, generator=g), dim=-1)
    seen = []

    def encode(px, signal_index, layers=()):
        seen.append((px, signal_index.tolist(), tuple(layers)))
        return ImageOut(embedding=emb, patches=torch.zeros(10, n, 8), layers={})

    m.encode = encode
    m.decoder = _Decoder(feats)
    got = step_losses(m, views, masks, text, torch.Generator().manual_seed(5))
    assert torch.equal(seen[0][0], views) and seen[0][1] == [0, 1, 2, 3, 4] * 2 and seen[0][2] == ()
    assert m.decoder.grids == [(15, 15)]
    s = m.scale
    logits = pixel_logits(feats, text, s)
    prob = F.softmax(F.interpolate(logits, size=(120, 120), mode="bilinear", align_corners=False), dim=1)[:, 1]
    assert got["pixel"].item() == pytest.approx(pixel_loss(prob, masks).item(), rel=1e-6)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 0, 1, 0, 1])
    z_pos = F.normalize(emb[:5], dim=-1)
    noise = torch.randn((5, e), generator=torch.Generator().manual_seed(5)) * 0.3 + 0.05
    latent = F.normalize(z_pos + noise, dim=-1)
    want_img = image_loss(s, emb, labels, latent, z_pos, text, 0.01)
    assert got["image"].item() == pytest.approx(want_img.item(), rel=1e-6)
    want_align = align_loss(emb, feats, logits[:, 1] - logits[:, 0], 1.5)
    assert got["align"].item() == pytest.approx(want_align.item(), rel=1e-6)
    assert got["total"].item() == pytest.approx((pixel_loss(prob, masks) + want_img + want_align).item(), rel=1e-6)
    # the defaults enter the same way: smoothing 0.003, tau 2, N(0, 0.015^2)
    d = AnoPLe(method_ctx, multi_class=False, crop_grid=2)
    d._setup([INFO])
    d.encode, d.decoder = encode, _Decoder(feats)
    got = step_losses(d, views, masks, text, torch.Generator().manual_seed(5))
    noise = torch.randn((5, e), generator=torch.Generator().manual_seed(5)) * 0.015
    latent = F.normalize(z_pos + noise, dim=-1)
    assert got["image"].item() == pytest.approx(image_loss(s, emb, labels, latent, z_pos, text, 0.003).item(),
                                                rel=1e-6)
    assert got["align"].item() == pytest.approx(align_loss(emb, feats, logits[:, 1] - logits[:, 0], 2.0).item(),
                                                rel=1e-6)


def _loop(method_ctx, tmp_path, monkeypatch, totals, **opts):
    """A 2-category fit whose step loss is replaced: returns the calls (category, shot, text)."""
    refs = {"a": random_image_refs(tmp_path, 3, 40, 40, seed=1, prefix="a"),
            "b": random_image_refs(tmp_path, 2, 40, 40, seed=2, prefix="b")}
    calls, progress, said, lrs = [], [], [], []
    real_views = AnoPLe.training_views

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            lrs.append([g["lr"] for g in self.param_groups])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)

    def views(self, c, i, pixels, gen):
        calls.append([c, i])
        return real_views(self, c, i, pixels, gen)

    def step_loss(self, views, masks, text, gen):
        calls[-1].append(text.detach().clone())
        calls[-1].append((self.learner.training, self.decoder.training))
        t = totals[len(calls) - 1] if len(calls) <= len(totals) else 1.0
        w = sum(p.sum() for p in self.learner.parameters()) * 0.0
        return {"pixel": w + t / 2, "image": w + t / 4, "align": w + t / 4, "total": w + t}

    monkeypatch.setattr(AnoPLe, "training_views", views)
    monkeypatch.setattr(AnoPLe, "step_loss", step_loss)
    ctx = method_ctx.__class__(**{**method_ctx.__dict__, "progress": lambda *a: progress.append(a),
                                  "show_values": lambda **v: progress.append(v), "log": said.append})
    m = AnoPLe(ctx, depth=2, crop_grid=1, **opts)
    m.said, m.lrs = said, lrs
    m.fit_dataset(refs, CATS)
    return m, calls, progress


def test_loop_visits_every_shot_once_per_epoch_with_its_text(method_ctx, tmp_path, monkeypatch):
    totals = [float(k) for k in range(1, 16)]
    m, calls, progress = _loop(method_ctx, tmp_path, monkeypatch, totals, epochs=3, class_text="own")
    assert len(calls) == 15
    epochs = [sorted((c, i) for c, i, *_ in calls[k * 5:(k + 1) * 5]) for k in range(3)]
    assert all(ep == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)] for ep in epochs)
    orders = [[(c, i) for c, i, *_ in calls[k * 5:(k + 1) * 5]] for k in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # a fresh random order per epoch
    items = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    first = torch.randperm(5, generator=torch.Generator().manual_seed(method_ctx.seed)).tolist()
    assert orders[0] == [items[t] for t in first]  # drawn from the cell's seeded generator
    assert all(train == (True, True) for *_, train in calls)
    # the loss history: per-epoch means of every term
    for k in range(3):
        mean = sum(totals[k * 5:(k + 1) * 5]) / 5
        assert m.history[k] == pytest.approx({"pixel": mean / 2, "image": mean / 4, "align": mean / 4,
                                              "total": mean})
    assert progress == [("epoch", 1, 3), {"loss": 3.0}, ("epoch", 2, 3), {"loss": 8.0}, ("epoch", 3, 3), {"loss": 13.0}]
    assert m.said == []  # epoch losses go to the progress line, not the log
    # "own": a shot's step sees its own class's text; the two classes differ
    a = [t for c, _, t, _ in calls if c == "a"]
    b = [t for c, _, t, _ in calls if c == "b"]
    assert not torch.allclose(a[0], b[0], atol=1e-4)


def test_loop_average_text_is_shared_by_the_classes(method_ctx, tmp_path, monkeypatch):
    m, calls, _ = _loop(method_ctx, tmp_path, monkeypatch, [1.0] * 5, epochs=1)
    texts = [t for *_, t, _ in calls]
    assert all(torch.allclose(t, texts[0]) for t in texts)  # the parameters do not move (zero gradient)
    per_class = m.class_texts(["metal nut", "wood"], m.learner.text_prompts())
    assert torch.allclose(texts[0], F.normalize(per_class.mean(0), dim=-1), atol=1e-5)


def test_loop_stops_on_a_non_finite_loss(method_ctx, tmp_path, monkeypatch):
    with pytest.raises(MethodError, match=r"training loss became nan at epoch 3; lower lr_prompt / lr_decoder"):
        _loop(method_ctx, tmp_path, monkeypatch, [1.0] * 10 + [math.nan] + [1.0] * 4, epochs=4)


@pytest.mark.parametrize("warmup, factors", [
    (0.0, [1.0] * 10),  # no warm-up: the base rates from the first step
    (0.5, [1 / 3, 2 / 3] + [1.0] * 8),  # ceil(0.5 x 5) = 3 steps: 1/3, 2/3, then 1
    (1.0, [0.2, 0.4, 0.6, 0.8] + [1.0] * 6),  # suppl. 6.2's warm-up from zero over one epoch (5 steps)
    (2.0, [k / 10 for k in range(1, 11)]),  # two epochs: still rising at the last step
    (0.1, [1.0] * 10),  # under one step: at least one, factor 1
])
def test_linear_warm_up_of_both_rates(method_ctx, tmp_path, monkeypatch, warmup, factors):
    m, *_ = _loop(method_ctx, tmp_path, monkeypatch, [1.0] * 10, epochs=2, warmup_epochs=warmup,
                  lr_prompt=0.01, lr_decoder=0.004)
    assert len(m.lrs) == 10
    for got, f in zip(m.lrs, factors):
        assert got == pytest.approx([0.01 * f, 0.004 * f], rel=1e-9)


# Equivalent mutants (mutmut, methods/anople/train.py): `python -m tools.mutation methods/anople/train.py`
EQUIVALENT_MUTANTS = {
    "step_losses: views / masks / noise .to(m.device) -> .to(None)": "device placement: the CPU tests cannot see "
                                                                      "a device",
    "step_losses: align 'none' zeros(device=l_img.device -> None / removed)": "device placement: the CPU tests "
                                                                              "cannot see a device",
}
