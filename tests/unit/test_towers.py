"""The open_clip adapter (bench/backbone/towers.py) against open_clip's own forward passes.

References are open_clip's public passes (``encode_image``, ``encode_text``,
``forward_intermediates`` where the installed release has it) with forward hooks
that copy what they see; on the tiny random model the adapter must give the
same bits. Runs in CI against the oldest supported open_clip too (marker
``openclip_floor``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fsadbench.backbone.towers import (Block, ImageTower, TextTower, attention_output, attention_values,
                                       check_block_numbers)
from fsadbench.core.errors import ConfigError

pytestmark = pytest.mark.openclip_floor


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(7))


def _open_clip_pass(model, pixels, layers):
    """open_clip's encode_image with hooks: transformer input, block outputs (1-indexed), ln_post output."""
    visual, seen = model.visual, {}
    hooks = [visual.transformer.register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("input", args[0].clone())),
        visual.ln_post.register_forward_hook(lambda _m, _i, out: seen.__setitem__("ln_post", out.clone()))]
    hooks += [visual.transformer.resblocks[i - 1].register_forward_hook(
        lambda _m, _i, out, i=i: seen.__setitem__(i, out.clone())) for i in layers]
    try:
        with torch.no_grad():
            seen["embedding"] = model.encode_image(pixels)
    finally:
        for h in hooks:
            h.remove()
    return seen


# -- image tower ---------------------------------------------------------------------------------
def test_embed_is_what_open_clip_feeds_block_1(tiny_backbone, pixels):
    ref = _open_clip_pass(tiny_backbone.model, pixels, ())
    with torch.no_grad():
        got = tiny_backbone.image_tower.embed(pixels)
    assert got.shape == (2, 226, 64) and torch.equal(got, ref["input"])


def test_plain_pass_equals_open_clip_encode_image(tiny_backbone, pixels):
    ref = _open_clip_pass(tiny_backbone.model, pixels, (3, 8))
    out = tiny_backbone.image_tower.encode_tokens(pixels, (8, 3))
    assert set(out) == {"embedding", "tokens", "layer3", "layer8"}
    assert torch.equal(out["embedding"], ref["embedding"])
    assert torch.equal(out["tokens"], ref["ln_post"][:, 1:] @ tiny_backbone.model.visual.proj)
    assert torch.equal(out["layer3"], ref[3][:, 1:]) and torch.equal(out["layer8"], ref[8][:, 1:])


def test_plain_pass_equals_forward_intermediates(tiny_backbone, pixels):
    visual = tiny_backbone.model.visual
    if not hasattr(visual, "forward_intermediates"):
        pytest.skip(f"open_clip {tiny_backbone.open_clip_version} has no forward_intermediates (2.32+)")
    with torch.no_grad():
        ref = visual.forward_intermediates(pixels, indices=[2, 7], output_fmt="NLC")
    out = tiny_backbone.image_tower.encode_tokens(pixels, (3, 8))
    assert torch.equal(out["layer3"], ref["image_intermediates"][0])
    assert torch.equal(out["layer8"], ref["image_intermediates"][1])
    assert torch.equal(out["embedding"], ref["image_features"])


def test_block_outputs_are_copies(tiny_backbone, pixels):
    out = tiny_backbone.image_tower.encode_tokens(pixels, (12,))
    t = out["layer12"]
    assert t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    before = out["tokens"].clone()
    t.add_(1.0)  # a caller writing into one output changes no other
    assert torch.equal(out["tokens"], before)


def test_run_blocks_calls_before_and_after_each_block(tiny_backbone, pixels):
    tower = tiny_backbone.image_tower
    calls = []

    def before(i, x):
        calls.append(("before", i))
        return x

    with torch.no_grad():
        x = tower.embed(pixels)
        got = tower.run_blocks(x, before=before, after=lambda i, _o: calls.append(("after", i)))
        ref = tiny_backbone.model.visual.transformer(x)
    assert torch.equal(got, ref)
    assert calls == [c for i in range(12) for c in (("before", i), ("after", i + 1))]


def test_block_parts_recompose_the_block(tiny_backbone, pixels):
    blk = tiny_backbone.image_tower.blocks[4]
    with torch.no_grad():
        x = tiny_backbone.image_tower.embed(pixels)
        parts = blk.mlp_residual(x + blk.scale1(blk.attend(blk.norm1(x))))
        assert torch.equal(parts, blk(x))
        assert torch.equal(blk(x), tiny_backbone.model.visual.transformer.resblocks[4](x))


def test_geometry(tiny_backbone):
    t = tiny_backbone.image_tower
    assert (t.n_layers, t.width, t.embed_dim, t.grid, t.image_size, t.patch_size) == (12, 64, 64, (15, 15), 120, 8)
    assert t.mlp_ratio == 4.0


def test_only_cls_pooled_clip_vits(tiny_backbone, monkeypatch):
    with pytest.raises(ConfigError, match="VisionTransformer"):
        ImageTower(nn.Linear(2, 2))
    monkeypatch.setattr(tiny_backbone.model.visual, "pool_type", "avg")
    with pytest.raises(ConfigError, match="CLS-token pooling"):
        ImageTower(tiny_backbone.model.visual)


def test_check_block_numbers():
    assert check_block_numbers(12, [3, "8"]) == (3, 8)
    with pytest.raises(ConfigError, match=r"memory layers \[0, 13\] out of range.*1..12"):
        check_block_numbers(12, (0, 3, 13), "memory layers")


# -- attention parts -----------------------------------------------------------------------------
def test_attention_values_and_output_by_hand():
    """2 heads of width 1: values are x W_v^T + b_v split per channel; output is out_proj of the concat."""
    attn = nn.MultiheadAttention(2, 2, batch_first=True)
    with torch.no_grad():
        attn.in_proj_weight[4:] = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
        attn.in_proj_bias[4:] = torch.tensor([0.5, 1.0])
        attn.out_proj.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        attn.out_proj.bias.copy_(torch.tensor([0.0, -1.0]))
        x = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])  # B=1, L=2
        v = attention_values(attn, x)
        # token 1: (1 + 2 + 0.5, -1 + 1) = (3.5, 0); token 2: (2 + 0.5, 0 + 1) = (2.5, 1)
        assert v.shape == (1, 2, 2, 1)
        assert torch.equal(v[0, 0, :, 0], torch.tensor([3.5, 2.5])) and torch.equal(v[0, 1, :, 0], torch.tensor([0.0, 1.0]))
        out = attention_output(attn, v)  # (a, b) -> (a + b, 2b - 1)
        assert torch.equal(out[0], torch.tensor([[3.5, -1.0], [3.5, 1.0]]))


def test_attention_values_with_separate_projections():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(4, 2, batch_first=True, kdim=3, vdim=3)
    assert attn.in_proj_weight is None
    x = torch.randn(2, 5, 3)
    want = F.linear(x, attn.v_proj_weight, attn.in_proj_bias[8:]).reshape(2, 5, 2, 2).transpose(1, 2)
    assert torch.equal(attention_values(attn, x), want)


# -- text tower ------------------------------------------------------------------------------------
SENTENCES = ["a photo of a metal nut.", "bottle.", "a photo of a pill with a long crack on its side."]


def test_text_encode_equals_open_clip_encode_text(tiny_backbone):
    text = TextTower(tiny_backbone.model)
    ids = tiny_backbone.tokenizer(SENTENCES)
    with torch.no_grad():
        want = tiny_backbone.model.encode_text(ids)
        got = text.encode(text.token_embeddings(ids), ids.argmax(dim=-1))
        same = text.encode(text.token_embeddings(ids), ids.argmax(dim=-1), before=lambda _i, x: x)
        unit = text.encode(text.token_embeddings(ids), ids.argmax(dim=-1), normalize=True)
    assert got.shape == (3, tiny_backbone.embed_dim)
    assert torch.allclose(got, want, atol=1e-5)  # cut at the last [EOT]: same values, not the same bits
    assert torch.equal(same, got)
    assert torch.allclose(unit, F.normalize(want, dim=-1), atol=1e-5)
    assert (text.width, text.context_length) == (64, 77)


def test_text_encode_before_replaces_block_inputs(tiny_backbone):
    """``before`` sees each block's input in order; a zeroed row changes only later positions (causal)."""
    text = TextTower(tiny_backbone.model)
    ids = tiny_backbone.tokenizer(SENTENCES[:1])
    seen = []

    def zero_row_6(i, x):
        seen.append(i)
        return torch.cat([x[:, :6], torch.zeros_like(x[:, 6:7]), x[:, 7:]], dim=1) if i == 3 else x

    with torch.no_grad():
        emb = text.token_embeddings(ids)
        plain = text.encode(emb, ids.argmax(dim=-1))
        changed = text.encode(emb, ids.argmax(dim=-1), before=zero_row_6)
        early = text.encode(emb, torch.tensor([5]), before=zero_row_6)  # pooled before row 6: untouched
        early_ref = text.encode(emb, torch.tensor([5]))
    assert seen == list(range(12)) * 2  # once per block, per call
    assert not torch.allclose(plain, changed, atol=1e-4)
    assert torch.equal(early, early_ref)


def test_text_tower_refuses_other_pooling(tiny_backbone, monkeypatch):
    monkeypatch.setattr(tiny_backbone.model, "text_pool_type", "last")
    with pytest.raises(ConfigError, match="argmax"):
        TextTower(tiny_backbone.model)


def test_block_wraps_text_blocks_too(tiny_backbone):
    text = TextTower(tiny_backbone.model)
    assert all(isinstance(b, Block) for b in text.blocks) and len(text.blocks) == 12
