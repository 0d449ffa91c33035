"""AnoPLe's prompt learner, sentences, prompted passes in reduced precision and the decoder by hand
(methods/anople/prompts.py); the coupling and layer tests are in test_anople_units.py and
tests/integration/test_anople_wiring.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError
from fsadbench.methods.anople.prompts import (Decoder, PromptLearner, encode_image_prompted, encode_text_prompted,
                                              slot_sentences)


def test_learner_defaults_shapes_and_init_scale():
    torch.manual_seed(0)
    pl = PromptLearner(256, 192, 3, 4, depth=9)
    assert pl.signal is None  # no multi-view signal unless asked
    assert pl.ctx_text.shape == (9, 3, 256) and pl.ctx_visual.shape == (9, 4, 192)
    # N(0, 0.02^2) initial contexts (the CoOp / MaPLe initialisation)
    assert pl.ctx_text.std().item() == pytest.approx(0.02, rel=0.05)
    assert pl.ctx_visual.std().item() == pytest.approx(0.02, rel=0.05)
    sig = PromptLearner(8, 512, 1, 1, depth=1, n_signals=20, init_std=0.5).signal
    assert sig.shape == (20, 512) and sig.std().item() == pytest.approx(0.5, rel=0.05)
    wide = PromptLearner(256, 192, 3, 4, depth=9, init_std=0.5)
    assert wide.ctx_text.std().item() == pytest.approx(0.5, rel=0.05)
    assert wide.ctx_visual.std().item() == pytest.approx(0.5, rel=0.05)
    assert {n for n, _ in pl.named_parameters()} == {"ctx_text", "ctx_visual", "v2t.weight", "t2v.weight"}


@pytest.mark.parametrize("field", ["depth", "n_text", "n_visual", "n_signals"])
def test_learner_refuses_each_negative_size(field):
    sizes = {"depth": 2, "n_text": 1, "n_visual": 1, "n_signals": 0, field: -1}
    with pytest.raises(ConfigError, match=r"^AnoPLe: depth, context lengths and the number of views must be >= 0$"):
        PromptLearner(8, 8, sizes["n_text"], sizes["n_visual"], sizes["depth"], n_signals=sizes["n_signals"])


def test_learner_accepts_zero_sizes():
    pl = PromptLearner(8, 8, 0, 0, 0, n_signals=0)
    assert pl.text_prompts().shape == (0, 0, 8) and pl.text_slots == 0


def test_slot_sentences_exact():
    assert slot_sentences("metal nut", 3, "abnormal") == ("X X X metal nut.", "X X X abnormal metal nut.")
    assert slot_sentences("wood", 0, "damaged") == ("wood.", "damaged wood.")


@pytest.mark.openclip_floor
@torch.no_grad()
def test_depth_zero_learner_is_open_clips_image_pass(tiny_backbone):
    model = tiny_backbone.model
    pl = PromptLearner(64, 64, 2, 3, depth=0)  # context lengths but no prompted block
    px = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(3))
    out = encode_image_prompted(model, px, pl.visual_prompts(), None, layers=(4,))
    assert torch.allclose(out.embedding, model.encode_image(px), atol=1e-5)
    assert torch.allclose(out.layers[4], tiny_backbone.encode_image_tokens(px, layers=(4,))["layer4"], atol=1e-5)


@pytest.mark.openclip_floor
@torch.no_grad()
def test_prompts_follow_the_encoders_precision(tiny_backbone):
    """Float32 prompts and signal in a bfloat16 encoder (the AMP path): cast to the encoder's dtype."""
    model = tiny_backbone.model
    half = copy.deepcopy(model).to(torch.bfloat16)
    torch.manual_seed(0)
    pl = PromptLearner(64, 64, 2, 2, depth=3, n_signals=2, init_std=0.5)
    tokens = tiny_backbone.tokenizer(list(slot_sentences("bottle", pl.text_slots, "abnormal")))
    px = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(1))
    t32 = encode_text_prompted(model, tokens, pl.text_prompts())
    t16 = encode_text_prompted(half, tokens, pl.text_prompts())
    assert t16.dtype == torch.bfloat16 and F.cosine_similarity(t16.float(), t32).min() > 0.98
    sig = pl.signal[torch.tensor([0, 1])]
    v32 = encode_image_prompted(model, px, pl.visual_prompts(), sig).embedding
    v16 = encode_image_prompted(half, px.to(torch.bfloat16), pl.visual_prompts(), sig).embedding
    assert v16.dtype == torch.bfloat16 and F.cosine_similarity(v16.float(), v32).min() > 0.98


@pytest.mark.openclip_floor
def test_gradient_reaches_every_prompt_layer_both_couplings_and_the_used_signal(tiny_backbone):
    """Training moves what the paper learns: each block's contexts, both f maps, the view's c_i."""
    model = tiny_backbone.model
    torch.manual_seed(0)
    pl = PromptLearner(64, 64, 2, 2, depth=3, n_signals=3, init_std=0.5)
    tokens = tiny_backbone.tokenizer(list(slot_sentences("bottle", pl.text_slots, "abnormal")))
    encode_text_prompted(model, tokens, pl.text_prompts()).pow(2).sum().backward()
    assert all(pl.ctx_text.grad[j].abs().sum() > 0 for j in range(3))
    assert all(pl.ctx_visual.grad[j].abs().sum() > 0 for j in range(3))  # through f_{v->t}
    assert pl.v2t.weight.grad.abs().sum() > 0 and pl.t2v.weight.grad is None and pl.signal.grad is None
    pl.zero_grad(set_to_none=True)
    px = torch.randn(1, 3, 120, 120, generator=torch.Generator().manual_seed(1))
    out = encode_image_prompted(model, px, pl.visual_prompts(), pl.signal[torch.tensor([1])])
    out.embedding.pow(2).sum().backward()
    assert all(pl.ctx_visual.grad[j].abs().sum() > 0 for j in range(3))
    assert all(pl.ctx_text.grad[j].abs().sum() > 0 for j in range(3))  # through f_{t->v}
    assert pl.t2v.weight.grad.abs().sum() > 0 and pl.v2t.weight.grad is None
    assert pl.signal.grad[1].abs().sum() > 0 and pl.signal.grad[[0, 2]].abs().sum() == 0


# -- decoder ------------------------------------------------------------------------------------
def test_decoder_by_hand_on_a_non_square_grid():
    torch.manual_seed(0)
    d = Decoder(6, 4, hidden=5, scale=2)
    b, h, w = 2, 3, 4
    patches = torch.randn(b, h * w, 6)
    got = d(patches, (h, w))
    assert got.shape == (b, 4, 6, 8)
    # patch n = row-major grid position (n // w, n % w); channels first
    grid = torch.stack([patches[:, n] for n in range(h * w)], dim=-1).reshape(b, 6, h, w)
    assert torch.equal(grid[1, :, 2, 1], patches[1, 2 * w + 1])
    up = F.interpolate(grid, size=(6, 8), mode="bilinear", align_corners=False)
    x = F.relu(F.conv2d(up, d.conv1.weight, d.conv1.bias, padding=1))
    x = F.relu(F.conv2d(x, d.conv2.weight, d.conv2.bias, padding=1))
    want = F.conv2d(x, d.conv3.weight, d.conv3.bias)
    assert torch.allclose(got, want, atol=1e-5)
    assert (d.conv1.kernel_size, d.conv2.kernel_size, d.conv3.kernel_size) == ((3, 3), (3, 3), (1, 1))


def test_decoder_defaults_hidden_width_and_scale():
    d = Decoder(6, 4)
    assert d.scale == 2 and d.conv1.out_channels == 4 and d.conv2.out_channels == 4 and d.conv3.in_channels == 4
    assert d(torch.randn(1, 6, 6), (2, 3)).shape == (1, 4, 4, 6)
    one = Decoder(6, 4, scale=1)
    assert one(torch.randn(1, 6, 6), (2, 3)).shape == (1, 4, 2, 3)


# Equivalent mutants (mutmut, methods/anople/prompts.py): `python -m tools.mutation methods/anople/prompts.py`
EQUIVALENT_MUTANTS = {
    "PromptLearner: nn.Linear(bias=False -> None)": "None is falsy: nn.Linear builds no bias either way",
    "encode_text_prompted: cut after eot + 2 (not + 1)": "the causal mask keeps tokens after [EOT] from reaching "
                                                         "it: one more padding column changes nothing",
}
