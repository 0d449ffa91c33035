"""Learnable text prompts (bench/text_prompts.py)."""

from __future__ import annotations

import pytest
import torch

from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.text_prompts import PromptTextEncoder, Slot, build_template

pytestmark = pytest.mark.openclip_floor  # CI runs these against the oldest supported open_clip too

SOS, EOT, X = 49406, 49407, 343  # CLIP BPE: start, end, the word "x"
METAL, NUT, DOT = 4044, 6491, 269  # "metal</w>", "nut</w>", ".</w>"


@pytest.fixture(scope="module")
def enc(tiny_backbone):
    return PromptTextEncoder(tiny_backbone.model, tiny_backbone.tokenizer)


def test_promptad_layout(enc):
    tpl = enc.template([Slot("ctx", 4), "metal nut."])
    assert tpl.ids[:10].tolist() == [SOS, X, X, X, X, METAL, NUT, DOT, EOT, 0]
    assert tpl.ids.shape == (77,) and int(tpl.ids[9:].abs().sum()) == 0
    assert tpl.slots["ctx"].tolist() == [1, 2, 3, 4]
    assert tpl.eot == 8 == int(tpl.ids.argmax())
    assert tpl.text == "* * * * metal nut."


def test_apt_layout(enc):
    tpl = enc.template([Slot("g", 2), "metal nut", Slot("n", 3), "."])
    assert tpl.ids[:10].tolist() == [SOS, X, X, METAL, NUT, X, X, X, DOT, EOT]
    assert tpl.slots["g"].tolist() == [1, 2] and tpl.slots["n"].tolist() == [5, 6, 7]
    assert tpl.eot == 9


def test_real_words_in_slots_equal_encode_text(tiny_backbone, enc):
    sentences = ["a photo of a metal nut.", "a photo of metal nut with a scratch."]
    prompts = [
        (enc.template([Slot("ctx", 4), "metal nut."]), {"ctx": enc.word_embeddings("a photo of a")}),
        (enc.template([Slot("g", 3), "metal nut", Slot("n", 3), "."]),
         {"g": enc.word_embeddings("a photo of"), "n": enc.word_embeddings("with a scratch")}),
    ]
    with torch.no_grad():
        got = enc.encode(prompts)
        want = tiny_backbone.model.encode_text(tiny_backbone.tokenizer(sentences))
    assert got.shape == (2, tiny_backbone.embed_dim)
    assert torch.allclose(got, want, atol=1e-5)
    with torch.no_grad():
        other = enc.encode([(prompts[0][0], {"ctx": enc.word_embeddings("a photo of the")})])
    assert not torch.allclose(other[0], want[0], atol=1e-3)


def test_gradients_reach_slots_only(tiny_backbone, enc):
    ctx = torch.nn.Parameter(torch.randn(4, enc.width) * 0.02)
    out = enc.encode([(enc.template([Slot("ctx", 4), "metal nut."]), {"ctx": ctx})], normalize=True)
    out.sum().backward()
    assert ctx.grad is not None and float(ctx.grad.abs().sum()) > 0
    assert all(p.grad is None for p in tiny_backbone.model.parameters())
    assert torch.allclose(out.norm(dim=-1), torch.ones(1))


def test_errors(tiny_backbone, enc):
    tpl = enc.template([Slot("ctx", 4), "metal nut."])
    with pytest.raises(ConfigError, match="ctx"):
        enc.encode([(tpl, {})])
    with pytest.raises(ConfigError, match="4 x"):
        enc.encode([(tpl, {"ctx": torch.zeros(3, enc.width)})])
    with pytest.raises(ConfigError, match="tokens"):
        build_template(tiny_backbone.tokenizer, [Slot("ctx", 80), "x"])
    with pytest.raises(ConfigError, match="once"):
        build_template(tiny_backbone.tokenizer, [Slot("a", 1), Slot("a", 1)])
