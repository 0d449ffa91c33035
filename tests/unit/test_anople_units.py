"""AnoPLe pieces: coupling, prompted encoders, losses, fusion, views (methods/anople_*.py)."""

from __future__ import annotations

import math

import pytest
import torch

from fsadbench.methods.anople.views import multi_scale_views
from fsadbench.methods.anople.losses import (align_loss, dice_loss, focal_loss, fuse_map, harmonic, image_loss,
                                             image_score, pixel_logits, pixel_loss, smoothed_ce)
from fsadbench.methods.anople.prompts import (Decoder, PromptLearner, encode_image_prompted, encode_text_prompted,
                                              slot_sentences)


def _learner(n_t=2, n_v=3, depth=4, signals=5, seed=0, d=64):
    torch.manual_seed(seed)
    return PromptLearner(d, d, n_t, n_v, depth, n_signals=signals, init_std=0.5)


# -- coupling (eq. 5-6) -------------------------------------------------------------------------------
def test_coupling_shapes_and_projection_by_hand():
    torch.manual_seed(0)
    pl = PromptLearner(d_text=6, d_visual=10, n_text=3, n_visual=2, depth=4, n_signals=5)
    assert pl.text_prompts().shape == (4, 5, 6)  # C_t own + C_v projected, text width
    assert pl.visual_prompts().shape == (4, 5, 10)
    assert pl.signal.shape == (5, 10) and pl.text_slots == 5
    with torch.no_grad():
        assert torch.allclose(pl.text_prompts()[2, 3:], pl.ctx_visual[2] @ pl.v2t.weight.T)
        assert torch.allclose(pl.visual_prompts()[1, 2:], pl.ctx_text[1] @ pl.t2v.weight.T)
        assert torch.equal(pl.text_prompts()[0, :3], pl.ctx_text[0])
    assert pl.v2t.bias is None and pl.t2v.bias is None


def _outputs(model, pl, tokens, px):
    sig = pl.signal[torch.tensor([4, 4])]
    return (encode_text_prompted(model, tokens, pl.text_prompts()),
            encode_image_prompted(model, px, pl.visual_prompts(), sig).embedding)


@pytest.mark.openclip_floor
@torch.no_grad()
def test_zero_projection_decouples_the_encoders(tiny_backbone):
    model = tiny_backbone.model
    pl = _learner()
    tokens = tiny_backbone.tokenizer(list(slot_sentences("bottle", pl.text_slots, "abnormal")))
    px = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(1))
    t0, v0 = _outputs(model, pl, tokens, px)
    gen = torch.Generator().manual_seed(5)
    # a random change (a constant shift would vanish in each block's LayerNorm)
    pl.ctx_visual.add_(torch.randn(pl.ctx_visual.shape, generator=gen))
    t1, v1 = _outputs(model, pl, tokens, px)
    assert not torch.allclose(t0, t1, atol=1e-4)  # coupled: text depends on the visual prompts
    assert not torch.allclose(v0, v1, atol=1e-4)
    pl.v2t.weight.zero_()
    pl.t2v.weight.zero_()
    t0, v0 = _outputs(model, pl, tokens, px)
    pl.ctx_visual.add_(torch.randn(pl.ctx_visual.shape, generator=gen))
    t1, v1 = _outputs(model, pl, tokens, px)
    assert torch.equal(t0, t1)  # text no longer sees the visual prompts
    assert not torch.allclose(v0, v1, atol=1e-4)
    pl.ctx_text.add_(torch.randn(pl.ctx_text.shape, generator=gen))
    t2, v2 = _outputs(model, pl, tokens, px)
    assert torch.equal(v1, v2)  # image no longer sees the text prompts
    assert not torch.allclose(t1, t2, atol=1e-4)


# -- plumbing: empty prompts give open_clip's own embeddings ----------------------------------------
@pytest.mark.openclip_floor
@torch.no_grad()
def test_empty_prompts_reproduce_open_clip(tiny_backbone):
    model = tiny_backbone.model
    pl = PromptLearner(64, 64, 0, 0, depth=9, n_signals=0)
    tokens = tiny_backbone.tokenizer(["bottle.", "abnormal metal nut.", "a photo of a pill with a crack."])
    ref_t = model.encode_text(tokens)
    assert torch.allclose(encode_text_prompted(model, tokens, pl.text_prompts()), ref_t, atol=1e-5)
    assert torch.allclose(encode_text_prompted(model, tokens, PromptLearner(64, 64, 2, 3, 0).text_prompts()), ref_t,
                          atol=1e-5)  # depth 0: no prompts whatever the context lengths
    px = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(0))
    out = encode_image_prompted(model, px, pl.visual_prompts(), None, layers=(3, 7))
    assert torch.allclose(out.embedding, model.encode_image(px), atol=1e-5)
    ref = tiny_backbone.encode_image_tokens(px, layers=(3, 7))
    assert torch.allclose(out.layers[3], ref["layer3"], atol=1e-5)
    assert torch.allclose(out.layers[7], ref["layer7"], atol=1e-5)
    assert torch.allclose(out.patches @ model.visual.proj, ref["tokens"], atol=1e-5)


@pytest.mark.openclip_floor
@torch.no_grad()
def test_prompts_replace_the_stand_in_words_and_only_the_signal_row_matters(tiny_backbone):
    model = tiny_backbone.model
    pl = _learner()
    a = tiny_backbone.tokenizer(["X X X X X bottle."])
    b = tiny_backbone.tokenizer(["Y Y Y Y Y bottle."])
    assert torch.allclose(encode_text_prompted(model, a, pl.text_prompts()),
                          encode_text_prompted(model, b, pl.text_prompts()), atol=1e-6)
    px = torch.randn(1, 3, 120, 120, generator=torch.Generator().manual_seed(2))
    e4 = encode_image_prompted(model, px, pl.visual_prompts(), pl.signal[[4]]).embedding
    e0 = encode_image_prompted(model, px, pl.visual_prompts(), pl.signal[[0]]).embedding
    assert not torch.allclose(e0, e4, atol=1e-4)
    pl.signal.data[0] = pl.signal.data[4]
    assert torch.allclose(encode_image_prompted(model, px, pl.visual_prompts(), pl.signal[[0]]).embedding, e4)


def test_decoder_shapes():
    torch.manual_seed(0)
    d = Decoder(64, 32, scale=2)
    out = d(torch.randn(3, 225, 64), (15, 15))
    assert out.shape == (3, 32, 30, 30)
    assert Decoder(8, 4, scale=1)(torch.randn(1, 4, 8), (2, 2)).shape == (1, 4, 2, 2)


def test_views_crops_of_the_resize_then_the_image():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]
    v = multi_scale_views(x, 2, mode="nearest")
    assert v.shape == (1, 5, 1, 2, 2)
    for k, value in enumerate([1.0, 2.0, 3.0, 4.0]):  # the 2x nearest resize's quadrants are constant
        assert torch.equal(v[0, k, 0], torch.full((2, 2), value))
    assert torch.equal(v[0, 4], x[0])
    assert torch.equal(multi_scale_views(x, 1)[:, 0], x)


# -- losses (eq. 7-10) by hand --------------------------------------------------------------------------
def test_dice_and_focal_hand_values():
    prob = torch.tensor([[[0.8, 0.2], [0.4, 0.6]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # sum(p y) = 1.4, sum p = 2, sum y = 2: 1 - (2.8 + 1) / (4 + 1) = 0.24
    assert dice_loss(prob, target).item() == pytest.approx(0.24, abs=1e-6)
    # p_t = 0.8, 0.8, 0.6, 0.6
    fl = (2 * 0.2 ** 2 * -math.log(0.8) + 2 * 0.4 ** 2 * -math.log(0.6)) / 4
    assert focal_loss(prob, target).item() == pytest.approx(fl, abs=1e-6)
    assert pixel_loss(prob, target).item() == pytest.approx(0.24 + fl, abs=1e-6)
    # an empty mask: dice = 1 - 1 / (sum p + 1)
    assert dice_loss(prob, torch.zeros_like(prob)).item() == pytest.approx(1 - 1 / 3, abs=1e-6)
    assert focal_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-9)


def test_smoothed_ce_and_image_loss_hand_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    nll, uni = -math.log(0.75), -(math.log(0.25) + math.log(0.75)) / 2
    assert smoothed_ce(logits, torch.tensor([1]), 0.1).item() == pytest.approx(0.9 * nll + 0.1 * uni, abs=1e-6)
    assert smoothed_ce(logits, torch.tensor([0])).item() == pytest.approx(-math.log(0.25), abs=1e-6)

    text = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised to e1 (normal), e2 (abnormal)
    emb = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 0.0]])
    latent = torch.tensor([[0.6, 0.8]])
    got = image_loss(2.0, emb, torch.tensor([0, 1]), latent, z, text, smoothing=0.5)
    ce_hit = math.log(1 + math.exp(-2.0))  # right class by margin 2
    lp = [2 * 0.6 - math.log(math.exp(1.2) + math.exp(1.6)), 2 * 0.8 - math.log(math.exp(1.2) + math.exp(1.6))]
    latent_term = 0.5 * -lp[1] + 0.5 * -(lp[0] + lp[1]) / 2
    assert got.item() == pytest.approx(ce_hit + (ce_hit + latent_term) / 2, abs=1e-6)


def test_pixel_logits_and_alignment_hand_values():
    f = torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]]]])  # B=1, E=2, H=1, W=2: pixels (2, 0) and (0, 3)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    lg = pixel_logits(f, text, 10.0)
    assert torch.allclose(lg[0, :, 0, 0], torch.tensor([10.0, 0.0]))
    assert torch.allclose(lg[0, :, 0, 1], torch.tensor([0.0, 10.0]))
    g = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    w = torch.tensor([[[0.0, 2 * math.log(3.0)]]])  # softmax(w / 2) = (0.25, 0.75)
    # s = (0.25, 0.75); cos((1, 0), s) = 0.25 / sqrt(0.625)
    got = align_loss(torch.tensor([[1.0, 0.0]]), g, w, tau=2.0)
    assert got.item() == pytest.approx(1 - 0.25 / math.sqrt(0.625), abs=1e-6)


# -- inference fusion (eq. 12-14) ------------------------------------------------------------------------
def test_fusion_eq12_to_14():
    dec = torch.tensor([[[0.5, 1.0], [0.0, 0.2]]])
    mem = torch.tensor([[[0.5, 0.25], [0.3, 0.2]]])
    fused = fuse_map(dec, mem)
    assert torch.allclose(fused, torch.tensor([[[0.25, 0.2], [0.0, 0.1]]]), atol=1e-6)
    # eq. 14: 1 / (1 / p + 1 / max M_q) with max M_q = 0.25
    assert image_score(torch.tensor([0.5]), fused).item() == pytest.approx(1 / (2 + 4), abs=1e-6)
    assert harmonic(torch.tensor(0.0), torch.tensor(0.7)).item() == pytest.approx(0.0, abs=1e-11)  # no NaN
