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


# -- other open_clip text towers, limits and messages -----------------------------------------------------
def _tower(model, **overrides):
    import types

    parts = dict(token_embedding=model.token_embedding, positional_embedding=model.positional_embedding,
                 transformer=model.transformer, ln_final=model.ln_final, text_projection=model.text_projection,
                 attn_mask=model.attn_mask, pool_type="argmax", cls_emb=None, use_pad_mask=False)
    parts.update(overrides)
    return types.SimpleNamespace(**parts)


def test_custom_text_tower_and_linear_projection_give_the_same_features(tiny_backbone, enc):
    import types

    model = tiny_backbone.model
    lin = torch.nn.Linear(model.text_projection.shape[0], model.text_projection.shape[1], bias=False)
    with torch.no_grad():
        lin.weight.copy_(model.text_projection.T)
    custom = PromptTextEncoder(types.SimpleNamespace(text=_tower(model, text_projection=lin)), tiny_backbone.tokenizer)
    tpls = [enc.template([Slot("ctx", 2), "metal nut."]), enc.template([Slot("ctx", 2), "pill."])]
    ctx = torch.randn(2, enc.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = enc.encode([(t, {"ctx": ctx}) for t in tpls], normalize=True)
        got = custom.encode([(t, {"ctx": ctx}) for t in tpls], normalize=True)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(want.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(want[0], want[1], atol=1e-3)
    short = PromptTextEncoder(types.SimpleNamespace(text=_tower(model, positional_embedding=model.positional_embedding[:20])),
                              tiny_backbone.tokenizer)
    assert short.context_length == 20 and short.template([Slot("ctx", 3), "nut."]).ids.shape == (20,)
    with pytest.raises(ConfigError, match="takes 20"):
        short.template([Slot("ctx", 19), "nut."])
    no_mask = PromptTextEncoder(types.SimpleNamespace(text=_tower(model, attn_mask=None)), tiny_backbone.tokenizer)
    with torch.no_grad():
        assert torch.isfinite(no_mask.encode([(tpls[0], {"ctx": ctx})])).all()


def test_unsupported_towers_are_refused(tiny_backbone):
    import types

    model, tok = tiny_backbone.model, tiny_backbone.tokenizer
    for bad in (dict(cls_emb=torch.zeros(3)), dict(use_pad_mask=True)):
        with pytest.raises(ConfigError, match=r"^learnable prompts: text tower: towers with a CLS embedding or pad mask "
                                              r"are not supported$"):
            PromptTextEncoder(types.SimpleNamespace(text=_tower(model, **bad)), tok)
    with pytest.raises(ConfigError, match=r"^learnable prompts: text tower: needs CLIP's \[EOT\] \(argmax\) pooling; "
                                          r"this one pools 'first'$"):
        PromptTextEncoder(types.SimpleNamespace(text=_tower(model, pool_type="first")), tok)
    plain = types.SimpleNamespace(**vars(_tower(model)), text_pool_type="mean")
    with pytest.raises(ConfigError, match="pools 'mean'"):
        PromptTextEncoder(plain, tok)
    enc = PromptTextEncoder(model, tok)
    with pytest.raises(ConfigError, match=r"^encode\(\) needs at least one prompt$"):
        enc.encode([])


def test_template_limits_defaults_and_tokenizer_check(tiny_backbone):
    tok = tiny_backbone.tokenizer
    assert build_template(tok, [Slot("a", 1), "nut"]).slots["a"].tolist() == [1]  # one-token slot
    assert build_template(tok, [Slot("a", 2)]).ids.shape == (77,)  # the tokenizer's context length
    assert build_template(tok, [Slot("a", 75)]).eot == 76  # exactly the 77 tokens fit
    with pytest.raises(ConfigError, match=r"^prompt '\* \* \*.*' has 78 tokens; the text encoder takes 77: "):
        build_template(tok, [Slot("a", 76)])
    with pytest.raises(ConfigError, match=r"^prompt slot 'a': needs n >= 1"):
        build_template(tok, [Slot("a", 0)])
    with pytest.raises(ConfigError, match=r"^learnable text prompts need open_clip's SimpleTokenizer \(CLIP BPE\); "
                                          r"object has no 'encode'$"):
        build_template(object(), [Slot("a", 1)])


# Equivalent mutants (mutmut, methods/common/text_prompts.py), with the reason they cannot be killed:
class _Tok:
    """A stand-in BPE: one id per word (ids from 10), [SOS] 1, [EOT] 2; ``context_length`` optional."""

    sot_token_id, eot_token_id = 1, 2

    def __init__(self, context_length=None):
        if context_length is not None:
            self.context_length = context_length

    def encode(self, text):
        return [10 + (sum(map(ord, w.lower())) % 1000) for w in text.split()]


def test_template_context_length_from_argument_tokenizer_or_clip_default():
    assert build_template(_Tok(9), ["a b c"]).ids.shape == (9,)  # the tokenizer's context length
    assert build_template(_Tok(), ["a b c"]).ids.shape == (77,)  # CLIP's 77 when the tokenizer has none
    assert build_template(_Tok(9), ["a b c"], context_length=6).ids.shape == (6,)
    words = " ".join(["w"] * 75)  # 75 words + [SOS] + [EOT] = 77 tokens: fits CLIP's 77, not 76
    assert build_template(_Tok(), [words]).eot == 76
    with pytest.raises(ConfigError, match=r"^prompt 'a b c \* \*' has 7 tokens; the text encoder takes 6: "
                                          r"shorten the class name, states or context$"):
        build_template(_Tok(), ["a b", "c", Slot("ctx", 2)], context_length=6)


EQUIVALENT_MUTANTS = {
    "build_template: stand-in word 'x' for 'X'": "CLIP's BPE lower-cases: 'x' and 'X' are one token id",
    "PromptTextEncoder.word_embeddings / embed / encode (.to(device) or device= removed or None)":
        "device placement: the CPU tests cannot see a device",
    "PromptTextEncoder.embed / encode (.to(dtype) -> .to(None))": "dtype casts: open_clip's token embedding has the "
                                                                  "transformer's cast dtype already",
    "PromptTextEncoder.encode: cut after the last EOT + 2 or not at all": "the same features: the causal mask hides "
                                                                          "later tokens",
    "PromptTextEncoder.encode: normalize dim default / +1": "the last dim of the P x E features",
}
