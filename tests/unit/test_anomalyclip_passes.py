"""AnomalyCLIP's DPAM image pass and prompt text pass against the official code's formulas.

The oracles restate, in this file's own code and in the official sequence-first
layout, ``AnomalyCLIP_lib/AnomalyCLIP.py`` (``Attention.forward`` l.71-94,
``ResidualAttentionBlock.forward`` l.135-168 with ``ffn=False``,
``Transformer.AnomalyCLIP_forward`` l.284-296, ``VisionTransformer.forward``
l.356-387, ``ResidualAttentionBlock_learnable_token.forward`` l.208-254,
``encode_text_learn`` l.497-515) and ``prompt_ensemble.py`` (the prompt
layout, l.156-254), run on the tiny random model's own weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError
from fsadbench.backbone.towers import ImageTower
from fsadbench.methods.anomalyclip.encoder import (OFFICIAL_DPAM_START, default_dpam_start, dpam_spec, encode_dpam,
                                                   named_layers, scaled)
from fsadbench.methods.anomalyclip.prompts import PromptLearner, deep_replacer, encode_prompts, templates
from fsadbench.methods.common.text_prompts import PromptTextEncoder


# -- oracles -------------------------------------------------------------------------------------------
def dual_attention_oracle(attn, x):
    """Attention.forward: x is N x B x C (sequence first); returns [v-v path, original path]."""
    x = x.transpose(0, 1)
    b, n, c = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scale = (c // h) ** -0.5
    a_ori = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    a_vv = ((v @ v.transpose(-2, -1)) * scale).softmax(dim=-1)
    x_ori = attn.out_proj((a_ori @ v).transpose(1, 2).reshape(b, n, c))
    x_vv = attn.out_proj((a_vv @ v).transpose(1, 2).reshape(b, n, c))
    return x_vv.transpose(0, 1), x_ori.transpose(0, 1)


def dpam_oracle(visual, pixels, dpam_layer, features):
    """VisionTransformer.forward after DAPM_replace(dpam_layer): (image feature, patch tokens per layer)."""
    blocks = list(visual.transformer.resblocks)
    dual = set(range(len(blocks) - dpam_layer + 1, len(blocks)))  # resblocks[-1] .. resblocks[-(dpam_layer-1)]
    x = visual.conv1(pixels).flatten(2).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(x.shape[0], 1, -1), x], dim=1)
    x = visual.ln_pre(x + visual.positional_embedding).permute(1, 0, 2)  # LND
    out = []
    for idx, r in enumerate(blocks):
        if idx in dual:
            if isinstance(x, list):
                xv, xo = x
                res, ores = dual_attention_oracle(r.attn, r.ln_1(xo))
                xo = xo + ores
                xo = xo + r.mlp(r.ln_2(xo))
                x = [xv + res, xo]
            else:
                res, ores = dual_attention_oracle(r.attn, r.ln_1(x))
                xo = x + ores
                xo = xo + r.mlp(r.ln_2(xo))
                x = [x + res, xo]
        else:
            x = x.permute(1, 0, 2)
            x = r(x).permute(1, 0, 2)  # open_clip blocks are batch first; the plain block is the same sum
        if idx + 1 in features:
            out.append((x[0] if isinstance(x, list) else x).clone())
    x_ori = x[1] if isinstance(x, list) else x
    patches = [visual.ln_post(t.permute(1, 0, 2)) @ visual.proj for t in out]
    return x_ori[0] @ visual.proj, patches


def text_oracle(model, tokenizer, ctx, deep, state):
    """prompt_ensemble + encode_text_learn: 'X'*n prefix, ctx after SOS, deep tokens at blocks 2..depth."""
    n = ctx.shape[0]
    ids = tokenizer([" ".join(["X"] * n) + " " + state + "."])
    emb = model.token_embedding(ids)
    x = torch.cat([emb[:, :1], ctx.unsqueeze(0), emb[:, 1 + n:]], dim=1)
    x = (x + model.positional_embedding).permute(1, 0, 2)  # LND
    counter = 0
    for i, r in enumerate(model.transformer.resblocks):
        if i > 0 and counter <= len(deep) - 1:
            t = deep.shape[1]
            x = torch.cat([x[:1], deep[counter].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + t:]], dim=0)
            counter += 1
        x = r(x.permute(1, 0, 2), attn_mask=model.attn_mask).permute(1, 0, 2)
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ model.text_projection


# -- cross-checks on the tiny model --------------------------------------------------------------------
@pytest.mark.parametrize("dpam_layer,features", [(11, (3, 6, 9, 12)), (20, (2, 5, 12)), (1, (4, 12))])
def test_dpam_pass_equals_the_official_formulas(tiny_backbone, dpam_layer, features):
    bb = tiny_backbone
    px = torch.randn(2, 3, bb.image_size, bb.image_size, generator=torch.Generator().manual_seed(3))
    dpam_layer = min(dpam_layer, bb.n_layers)
    start = bb.n_layers - dpam_layer + 2  # the first block DAPM_replace refines
    with torch.no_grad():
        got = encode_dpam(bb.image_tower, px, start, features)
        emb, patches = dpam_oracle(bb.model.visual, px, dpam_layer, set(features))
    assert torch.allclose(got["embedding"], emb, atol=1e-5)
    for i, want in zip(sorted(features), patches):
        assert torch.allclose(got[f"layer{i}"], want[:, 1:], atol=1e-5), i


def test_dpam_off_gives_the_plain_pass_and_the_embedding_skips_ln_post(tiny_backbone):
    bb = tiny_backbone
    px = torch.randn(1, 3, bb.image_size, bb.image_size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = encode_dpam(bb.image_tower, px, bb.n_layers + 1, (12,))
        plain = bb.encode_image_tokens(px)
    assert torch.allclose(got["layer12"], plain["tokens"], atol=1e-5)
    assert not torch.allclose(got["embedding"], plain["embedding"], atol=1e-3)  # no ln_post (l.387)
    with torch.no_grad():
        on = encode_dpam(bb.image_tower, px, 3, (12,))
    assert not torch.allclose(on["layer12"], plain["tokens"], atol=1e-3)


def test_dpam_checks_and_spec(tiny_backbone):
    tower, px = tiny_backbone.image_tower, torch.zeros(1, 3, 120, 120)
    for bad in (0, 14):
        with pytest.raises(ConfigError, match=rf"^AnomalyCLIP: dpam_start {bad} out of range: 1\.\.12 "
                                              rf"\(or 13 for no DPAM\)$"):
            encode_dpam(tower, px, bad, (3,))
    with pytest.raises(ConfigError, match=r"^AnomalyCLIP feature layers \[13\] out of range"):
        encode_dpam(tower, px, 3, (13,))
    with torch.no_grad():
        all_blocks = encode_dpam(tower, px, 1, (1,))  # DPAM on every block is valid
        spec = dpam_spec(3, (12, 3, 3))
        got = spec.compute(tiny_backbone, px)
        want = encode_dpam(tower, px, 3, (3, 12))
    assert all_blocks["layer1"].shape == (1, 225, 64)
    assert set(got) == {"embedding", "layer3", "layer12"} and all(torch.equal(got[k], want[k]) for k in want)
    assert spec.name == "anomalyclip-dpam" and dict(spec.params) == {"dpam_start": 3, "layers": (3, 12)}
    assert dpam_spec(4, (3,)).key != dpam_spec(3, (3,)).key


def test_scaled_blocks():
    assert scaled((6, 12, 18, 24), 24) == (6, 12, 18, 24)
    assert scaled((6, 12, 18, 24), 12) == (3, 6, 9, 12)
    assert scaled((6,), 12) == (3,) and scaled((6,), 2) == (1,) and scaled((1,), 4) == (1,)
    assert scaled((18,), 32) == (24,) and scaled((6,), 10) == (3,)  # 2.5 rounds up


def test_dpam_start_and_layers_on_a_24_block_tower():
    """The official depth: DAPM_replace(DPAM_layer=20) refines resblocks[-1] .. resblocks[-19], so the
    first refined block is 6 (1-indexed) and block 5 is plain. On the 12-block tiny model blocks 5 and
    6 of 24 both scale to block 3, so an off-by-one in the start shows only on 24 blocks."""
    from open_clip.transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        visual = VisionTransformer(image_size=16, patch_size=8, width=16, layers=24, heads=2, mlp_ratio=2.0,
                                   output_dim=8).eval()
    tower = ImageTower(visual)
    official_refined = {tower.n_layers - i + 1 for i in range(1, 20)}  # resblocks[-i], i = 1 .. 19, 1-indexed
    assert min(official_refined) == OFFICIAL_DPAM_START == default_dpam_start(24) == 6
    assert named_layers("last", 24) == (24,) and named_layers("multiscale", 24) == (6, 12, 18, 24)
    assert scaled((5,), 12) == scaled((6,), 12) == (default_dpam_start(12),) == (3,)  # the tiny model's blind spot
    px = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = encode_dpam(tower, px, default_dpam_start(24), (5, 6, 24))
        emb, patches = dpam_oracle(visual, px, 20, {5, 6, 24})
        early = encode_dpam(tower, px, default_dpam_start(24) - 1, (6, 24))
    assert torch.allclose(got["embedding"], emb, atol=1e-5)
    for i, want in zip((5, 6, 24), patches):
        assert torch.allclose(got[f"layer{i}"], want[:, 1:], atol=1e-5), i
    assert not torch.allclose(early["layer6"], got["layer6"], atol=1e-4)  # DPAM from 5: not the official pass


def test_named_layers_choices():
    assert named_layers("last", 12) == (12,) and named_layers("last", 7) == (7,)
    assert named_layers("multiscale", 12) == (3, 6, 9, 12) and named_layers("multiscale", 2) == (1, 2)
    with pytest.raises(ConfigError, match=r"^method 'anomalyclip': option 'layers' must be one of \('last', "
                                          r"'multiscale'\) or a list of block numbers; got 'first'$"):
        named_layers("first", 12)


def test_fp16_cast_rounds_the_tokens_and_each_prompts_gradient():
    """AnomalyCLIP.py l.246 casts the expanded deep tokens to fp16: each prompt's copy and its gradient
    are rounded to fp16 before the copies' gradients are summed. Where the two prompts' gradients
    (nearly) cancel, the official gradient is exactly 0 and the fp32 one is not."""
    deep = torch.nn.Parameter(torch.full((1, 2, 3), 1.0 / 3.0))
    x = torch.zeros(2, 5, 3)

    def run(fp16, g0, g1):
        deep.grad = None
        y = deep_replacer(deep, fp16)(1, x)
        ((y[0, 1:3] * g0).sum() + (y[1, 1:3] * g1).sum()).backward()
        return deep.grad[0].clone(), y.detach()

    g0 = torch.full((2, 3), 1.0 / 3.0)
    g1 = -(g0 + 1e-6)
    g16, y16 = run(True, g0, g1)
    g32, y32 = run(False, g0, g1)
    assert torch.equal(g16, torch.zeros(2, 3))  # the official: r16(g0) + r16(g1) = 0 exactly
    assert (g32 != 0).all() and torch.allclose(g32, torch.full((2, 3), -1e-6), atol=1e-7)
    assert torch.equal(y16[:, 1:3], deep.detach()[0].half().float().expand(2, -1, -1)) and not torch.equal(y16, y32)
    assert torch.equal(y32[:, 1:3], deep.detach()[0].expand(2, -1, -1))
    assert torch.equal(deep_replacer(deep)(1, x).detach(), y32)  # the default: no cast (1/3 is not fp16-exact)
    gen = torch.Generator().manual_seed(6)
    h0, h1 = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen) * 1e-3
    g16, _ = run(True, h0, h1)
    assert torch.equal(g16, h0.half().float() + h1.half().float())  # each copy's gradient rounded, then summed
    assert not torch.equal(g16, run(False, h0, h1)[0])


def test_text_pass_fp16_equals_the_official_cast(tiny_backbone):
    bb = tiny_backbone
    enc = PromptTextEncoder(bb.model, bb.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        learner = PromptLearner(enc.width, 5, 4, 2, init_std=0.3)
    with torch.no_grad():
        got = encode_prompts(enc, learner, templates(enc, 5), fp16=True)
        deep16 = learner.deep.half().float()
        want = torch.cat([text_oracle(bb.model, bb.tokenizer, learner.ctx_normal, deep16, "object"),
                          text_oracle(bb.model, bb.tokenizer, learner.ctx_abnormal, deep16, "damaged object")])
        plain = encode_prompts(enc, learner, templates(enc, 5))
    assert torch.allclose(got, F.normalize(want, dim=-1), atol=1e-5) and not torch.equal(got, plain)


def test_prompt_layout(tiny_backbone):
    enc = PromptTextEncoder(tiny_backbone.model, tiny_backbone.tokenizer)
    normal, abnormal = templates(enc, 12)
    assert normal.text == " ".join(["*"] * 12) + " object." and abnormal.text.endswith("* damaged object.")
    assert normal.slots["ctx"].tolist() == list(range(1, 13))
    want = tiny_backbone.tokenizer(["X " * 12 + "damaged object."])[0]
    assert abnormal.ids.tolist() == want.tolist() and abnormal.eot == int(want.argmax())


def test_text_pass_equals_the_official_formulas(tiny_backbone):
    bb = tiny_backbone
    enc = PromptTextEncoder(bb.model, bb.tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        learner = PromptLearner(enc.width, 12, 9, 4, init_std=0.5)
    with torch.no_grad():
        got = encode_prompts(enc, learner, templates(enc, 12))
        want = torch.cat([text_oracle(bb.model, bb.tokenizer, learner.ctx_normal, learner.deep, "object"),
                          text_oracle(bb.model, bb.tokenizer, learner.ctx_abnormal, learner.deep, "damaged object")])
    assert got.shape == (2, bb.embed_dim)
    assert torch.allclose(got, F.normalize(want, dim=-1), atol=1e-5)


def test_deep_tokens_replace_rows_after_sos_in_blocks_2_to_depth():
    deep = torch.arange(2 * 2 * 3.0).reshape(2, 2, 3) + 100
    before = deep_replacer(deep)
    x = torch.zeros(1, 5, 3)
    assert torch.equal(before(0, x), x) and torch.equal(before(3, x), x)
    y = before(1, x)
    assert torch.equal(y[0, 1:3], deep[0]) and torch.equal(y[0, [0, 3, 4]], x[0, [0, 3, 4]])
    assert torch.equal(before(2, x)[0, 1:3], deep[1])
    assert torch.equal(deep_replacer(torch.zeros(2, 0, 3))(1, x), x)
    one = deep_replacer(torch.full((2, 1, 3), 7.0))(2, x)  # one deep token: row 1 only
    assert torch.equal(one[0, 1], torch.full((3,), 7.0)) and torch.equal(one[0, 2:], x[0, 2:])


def test_learner_shapes_init_and_checks():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pl = PromptLearner(64, 12, 9, 4)
    assert pl.ctx_normal.shape == pl.ctx_abnormal.shape == (12, 64) and pl.deep.shape == (8, 4, 64)
    for p in (pl.deep, pl.ctx_normal, pl.ctx_abnormal):  # N(0, 0.02^2)
        assert 0.015 < float(p.detach().std()) < 0.025
    assert {n for n, _ in pl.named_parameters()} == {"ctx_normal", "ctx_abnormal", "deep"}
    first = r"^AnomalyCLIP: n_ctx and depth must be >= 1, t_n_ctx >= 0 \(the official code: 12, 9, 4\)$"
    for bad in [dict(n_ctx=0), dict(depth=0), dict(t_n_ctx=-1)]:
        kw = {"n_ctx": 12, "depth": 9, "t_n_ctx": 4, **bad}
        with pytest.raises(ConfigError, match=first):
            PromptLearner(8, **kw)
    with pytest.raises(ConfigError, match=r"^AnomalyCLIP: t_n_ctx \(4\) must not exceed n_ctx \(3\): "
                                          r"the deep text tokens replace context rows$"):
        PromptLearner(8, 3, 9, 4)
    assert PromptLearner(8, 4, 1, 4).deep.shape == (0, 4, 8)
    assert PromptLearner(8, 1, 2, 0).deep.shape == (1, 0, 8) and PromptLearner(8, 1, 2, 1).n_ctx == 1


EQUIVALENT_MUTANTS = {
    "deep_replacer: rows.to(x.dtype) -> .to(None)": "torch.cat promotes an fp16 row to x's fp32 and casts its "
                                                     "gradient back to fp16: the same values and rounding",
    "encode_prompts: eot device=x.device -> None / dropped": "CPU tests: the device is the default one",
    "encode_prompts: F.normalize(dim=-1) -> dropped / dim=+1": "the features are 2 x E: dim 1 is the last "
                                                              "(F.normalize's default)",
}
