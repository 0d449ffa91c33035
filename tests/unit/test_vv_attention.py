"""Dual-path V-V attention (methods/common/vv_attention.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.vv_attention import encode_image_vv, vv_attention, vv_spec

pytestmark = pytest.mark.openclip_floor  # CI runs these against the oldest supported open_clip too


def _hand_attn(w_v, b_v, w_o, b_o, heads=1):
    d = len(w_v)
    attn = nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        torch.manual_seed(1)
        attn.in_proj_weight.normal_()  # q, k rows random: the V-V path must ignore them
        attn.in_proj_bias.normal_()
        attn.in_proj_weight[2 * d:] = torch.tensor(w_v, dtype=torch.float32)
        attn.in_proj_bias[2 * d:] = torch.tensor(b_v, dtype=torch.float32)
        attn.out_proj.weight.copy_(torch.tensor(w_o, dtype=torch.float32))
        attn.out_proj.bias.copy_(torch.tensor(b_o, dtype=torch.float32))
    return attn


def _manual_vv(x, w_v, b_v, w_o, b_o):
    """softmax(v v^T / sqrt(d)) v, then out_proj, in plain Python floats (one head)."""
    d = len(w_v)
    v = [[sum(w_v[r][c] * xi[c] for c in range(d)) + b_v[r] for r in range(d)] for xi in x]
    out = []
    for vi in v:
        logits = [sum(a * b for a, b in zip(vi, vj)) / math.sqrt(d) for vj in v]
        m = max(logits)
        e = [math.exp(z - m) for z in logits]
        p = [z / sum(e) for z in e]
        o = [sum(p[j] * v[j][c] for j in range(len(v))) for c in range(d)]
        out.append([sum(w_o[r][c] * o[c] for c in range(d)) + b_o[r] for r in range(d)])
    return out


def test_vv_attention_hand_case():
    w_v, b_v = [[2.0, 0.0], [1.0, 1.0]], [0.0, 1.0]
    w_o, b_o = [[1.0, 0.0], [0.0, 2.0]], [0.5, 0.0]
    x = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-0.5, 0.25]]
    attn = _hand_attn(w_v, b_v, w_o, b_o)
    got = vv_attention(attn, torch.tensor([x]))[0]
    want = torch.tensor(_manual_vv(x, w_v, b_v, w_o, b_o))
    assert torch.allclose(got, want, atol=1e-5)
    # the first row by hand: v = (2,2),(0,2),(2,3),(-1,0.75); logits = v_0.v_j/sqrt2 = (8, 4, 10, -0.5)/sqrt2
    e = [math.exp(z / math.sqrt(2)) for z in (8.0, 4.0, 10.0, -0.5)]
    p = [z / sum(e) for z in e]
    o = [2 * p[0] + 0 * p[1] + 2 * p[2] - 1 * p[3], 2 * p[0] + 2 * p[1] + 3 * p[2] + 0.75 * p[3]]
    assert torch.allclose(got[0], torch.tensor([o[0] + 0.5, 2 * o[1]]), atol=1e-5)


def test_vv_attention_mask():
    w_v, b_v = [[1.0, 0.5], [0.0, 1.0]], [0.1, -0.2]
    w_o, b_o = [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]
    attn = _hand_attn(w_v, b_v, w_o, b_o)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    plain = vv_attention(attn, x)
    assert torch.equal(vv_attention(attn, x, torch.zeros(3, 3)), plain)
    # only the diagonal open: each token attends to itself, output = v_i
    diag = torch.full((3, 3), float("-inf")).fill_diagonal_(0.0)
    v = x[0] @ torch.tensor(w_v).T + torch.tensor(b_v)
    assert torch.allclose(vv_attention(attn, x, diag)[0], v, atol=1e-6)
    assert not torch.allclose(plain[0], v, atol=1e-3)


def test_two_heads_split_channels():
    """With 2 heads each head attends over its own channel slice (scale 1/sqrt(head_dim))."""
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(2, 5, 4)
    v = x @ attn.in_proj_weight[8:].T + attn.in_proj_bias[8:]
    heads = []
    for h in range(2):
        vh = v[..., 2 * h:2 * h + 2]
        heads.append(torch.softmax(vh @ vh.transpose(1, 2) / math.sqrt(2), -1) @ vh)
    want = attn.out_proj(torch.cat(heads, -1))
    assert torch.allclose(vv_attention(attn, x), want, atol=1e-6)


@pytest.fixture(scope="module")
def pixels():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, 120, 120, generator=g)


def test_original_path_unchanged(tiny_backbone, pixels):
    model = tiny_backbone.model
    with torch.no_grad():
        out = encode_image_vv(model.visual, pixels, mem_layers=(3, 8))
        ref = tiny_backbone.encode_image_tokens(pixels, layers=(3, 8))
        assert torch.equal(out["embedding"], model.encode_image(pixels))
    assert torch.equal(out["layer3"], ref["layer3"]) and torch.equal(out["layer8"], ref["layer8"])
    assert out["tokens"].shape == (2, 225, tiny_backbone.embed_dim)
    assert not torch.allclose(out["tokens"], ref["tokens"], atol=1e-3)  # V-V tokens differ
    with torch.no_grad():
        none = encode_image_vv(model.visual, pixels, blocks=())
    assert torch.equal(none["tokens"], ref["tokens"])


def test_block_equations(tiny_backbone, pixels):
    """First modified block vs later ones, written out from the spec for blocks 10..12."""
    v = tiny_backbone.model.visual
    with torch.no_grad():
        x = tiny_backbone.image_tower.embed(pixels)
        for blk in v.transformer.resblocks[:9]:
            x = blk(x)
        b10, b11, b12 = v.transformer.resblocks[9:12]
        x_vv = x + vv_attention(b10.attn, b10.ln_1(x))
        x_ori = b10(x)
        for blk in (b11, b12):
            x_vv = x_vv + vv_attention(blk.attn, blk.ln_1(x_ori))
            x_ori = blk(x_ori)
        want = v.ln_post(x_vv[:, 1:]) @ v.proj
        got = encode_image_vv(v, pixels, blocks=(10, 11, 12))
    assert torch.allclose(got["tokens"], want, atol=1e-5)
    assert torch.allclose(got["embedding"], v.ln_post(x_ori[:, 0]) @ v.proj, atol=1e-6)


def test_zero_mask_equals_no_mask_and_mask_checks(tiny_backbone, pixels):
    v = tiny_backbone.model.visual
    with torch.no_grad():
        a = encode_image_vv(v, pixels[:1])
        b = encode_image_vv(v, pixels[:1], mask=torch.zeros(226, 226))
    assert torch.equal(a["tokens"], b["tokens"])
    with pytest.raises(ConfigError, match="226"):
        encode_image_vv(v, pixels[:1], mask=torch.zeros(10, 10))
    with pytest.raises(ConfigError, match="out of range"):
        encode_image_vv(v, pixels[:1], blocks=(0, 13))


def test_vv_spec_cached(method_ctx):
    from fsadbench.core.types import ImageRef
    from PIL import Image
    import numpy as np

    path = method_ctx.features.dir.parent / "img.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(120 * 120 * 3) % 251).astype(np.uint8).reshape(120, 120, 3)).save(path)
    ref = ImageRef(path=path, digest="d1")
    calls = []

    def mask_fn(grid):
        calls.append(grid)
        return torch.zeros(1 + grid[0] * grid[1], 1 + grid[0] * grid[1])

    spec = vv_spec(mem_layers=(3, 8), mask_name="zeros", mask_fn=mask_fn)
    f1 = method_ctx.features.get([ref], spec)
    f2 = method_ctx.features.get([ref], spec)
    assert method_ctx.features.stats.encoded == 1 and calls == [(15, 15)]
    assert set(f1) == {"embedding", "tokens", "layer3", "layer8"} and torch.equal(f1["tokens"], f2["tokens"])
    assert vv_spec().key != spec.key and vv_spec(blocks=(12, 11)).key == vv_spec(blocks=[11, 12]).key
    with pytest.raises(ConfigError, match="mask_name"):
        vv_spec(mask_fn=mask_fn)


# -- other attention layouts, refusals, block ranges, the spec's key -------------------------------------
def test_separate_value_weights_no_bias_and_float64_masks():
    torch.manual_seed(2)
    fused = nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(1, 5, 4)
    want = vv_attention(fused, x)
    split = nn.MultiheadAttention(4, 2, batch_first=True)
    split.load_state_dict(fused.state_dict())
    split._qkv_same_embed_dim = False
    split.v_proj_weight = nn.Parameter(fused.in_proj_weight[8:].detach().clone())
    split.in_proj_weight = None
    assert torch.allclose(vv_attention(split, x), want, atol=1e-6)
    no_bias = nn.MultiheadAttention(4, 2, batch_first=True, bias=False)
    v = x @ no_bias.in_proj_weight[8:].T
    heads = [torch.softmax(v[..., 2 * h:2 * h + 2] @ v[..., 2 * h:2 * h + 2].transpose(1, 2) / math.sqrt(2), -1)
             @ v[..., 2 * h:2 * h + 2] for h in range(2)]
    assert torch.allclose(vv_attention(no_bias, x), no_bias.out_proj(torch.cat(heads, -1)), atol=1e-6)
    m64 = torch.zeros(5, 5, dtype=torch.float64).fill_diagonal_(float("-inf"))
    out = vv_attention(fused, x, m64)
    assert out.dtype == torch.float32 and torch.allclose(out, vv_attention(fused, x, m64.float()))


def test_unsupported_visual_towers_are_refused(tiny_backbone):
    import copy
    import types

    from fsadbench.methods.common.vv_attention import resolve_blocks

    v = tiny_backbone.model.visual
    px = torch.zeros(1, 3, 120, 120)
    # the refusals are the image tower adapter's (fsadbench.backbone.towers); V-V attention reaches them
    fakes = [types.SimpleNamespace(), types.SimpleNamespace(transformer=types.SimpleNamespace(batch_first=False)),
             types.SimpleNamespace(transformer=types.SimpleNamespace(batch_first=True,
                                                                     resblocks=[v.transformer.resblocks[0],
                                                                                nn.Identity()]))]
    bad_attn = copy.deepcopy(v.transformer.resblocks[0])
    bad_attn.attn = nn.Identity()
    fakes.append(types.SimpleNamespace(transformer=types.SimpleNamespace(batch_first=True, resblocks=[bad_attn])))
    for attr, value in (("attn_pool", nn.Identity()), ("pool_type", "avg"), ("final_ln_after_pool", True)):
        fakes.append(types.SimpleNamespace(transformer=v.transformer, **{attr: value}))
    for fake in fakes:
        with pytest.raises(ConfigError):
            encode_image_vv(fake, px)
    assert resolve_blocks(3, None) == (1, 2, 3) == resolve_blocks(3, "all") and resolve_blocks(3, [3, 1]) == (1, 3)


def test_memory_layer_range_mask_shapes_and_no_projection(tiny_backbone, pixels):
    import copy

    v = tiny_backbone.model.visual
    with torch.no_grad():
        edge = encode_image_vv(v, pixels[:1], blocks=(12,), mem_layers=(1, 12))
        assert set(edge) == {"embedding", "tokens", "layer1", "layer12"}
        for bad in ((0,), (13,)):
            with pytest.raises(ConfigError, match=rf"^memory layers \[{bad[0]}\] out of range: the encoder has blocks "
                                                  r"1\.\.12$"):
                encode_image_vv(v, pixels[:1], mem_layers=bad)
        a = encode_image_vv(v, pixels[:1], blocks=(12,))
        b = encode_image_vv(v, pixels[:1], blocks=(12,), mask=torch.zeros(1, 226, 226))  # broadcastable
        assert torch.equal(a["tokens"], b["tokens"])
        with pytest.raises(ConfigError, match=r"^V-V mask has shape \(5, 5\); expected \(226, 226\) over CLS \+ "
                                              r"patch tokens$"):
            encode_image_vv(v, pixels[:1], mask=torch.zeros(5, 5))
        unprojected = copy.deepcopy(v)
        unprojected.proj = None
        raw = encode_image_vv(unprojected, pixels[:1], blocks=(12,))
    assert raw["embedding"].shape == (1, 64) and raw["tokens"].shape == (1, 225, 64)
    assert torch.allclose(raw["embedding"] @ v.proj, a["embedding"], atol=1e-5)
    assert torch.allclose(raw["tokens"] @ v.proj, a["tokens"], atol=1e-5)


def test_vv_spec_key_and_compute_use_the_blocks(tiny_backbone, pixels):
    assert vv_spec().key == 'vv@v1:{"blocks": "all", "mask": null, "mem_layers": []}'
    assert vv_spec(blocks=[12, 11], mem_layers=[8, 3], mask_name="m", mask_fn=lambda g: None).key == \
        'vv@v1:{"blocks": [11, 12], "mask": "m", "mem_layers": [3, 8]}'
    spec = vv_spec(blocks=(11, 12), mem_layers=(3,))
    with torch.no_grad():
        got = spec.compute(tiny_backbone, pixels[:1])
        want = encode_image_vv(tiny_backbone.model.visual, pixels[:1], (11, 12), (3,))
        every = encode_image_vv(tiny_backbone.model.visual, pixels[:1], "all", (3,))
    assert set(got) == {"embedding", "tokens", "layer3"} and torch.equal(got["tokens"], want["tokens"])
    assert not torch.allclose(got["tokens"], every["tokens"], atol=1e-4)
    with pytest.raises(ConfigError, match=r"^vv_spec: give mask_name and mask_fn together \(the name keys the "
                                          r"feature cache\)$"):
        vv_spec(mask_name="m")


# Equivalent mutants (mutmut, methods/common/vv_attention.py), with the reason they cannot be killed:
def test_block_errors_name_the_v_v_blocks():
    from fsadbench.methods.common.vv_attention import resolve_blocks

    assert resolve_blocks(4, None) == resolve_blocks(4, "all") == (1, 2, 3, 4)
    assert resolve_blocks(4, [3, 1, 3]) == (1, 3)
    with pytest.raises(ConfigError, match=r"^V-V blocks \[5\] out of range: the encoder has blocks 1\.\.4$"):
        resolve_blocks(4, [1, 5])


@torch.no_grad()
def test_vv_spec_applies_its_mask_built_once_per_grid(tiny_backbone):
    calls = []

    def self_only(grid):  # every patch attends to CLS and itself only
        calls.append(grid)
        n = 1 + grid[0] * grid[1]
        m = torch.full((n, n), float("-inf"))
        m[0], m[:, 0] = 0.0, 0.0
        m[torch.arange(n), torch.arange(n)] = 0.0
        return m

    px = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(0))
    spec = vv_spec((2, 3), (3,), mask_name="self_only", mask_fn=self_only)
    got = spec.compute(tiny_backbone, px)
    tower = tiny_backbone.image_tower
    want = encode_image_vv(tower, px, (2, 3), (3,), self_only((15, 15)))
    assert set(got) == set(want) and all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)
    plain = encode_image_vv(tower, px, (2, 3), (3,))
    assert not torch.allclose(got["tokens"], plain["tokens"], atol=1e-4)  # the mask changes the output
    spec.compute(tiny_backbone, px)
    assert calls == [(15, 15), (15, 15)]  # one build in the spec (cached), one here


EQUIVALENT_MUTANTS = {
    "vv_attention: v.transpose(-1, +2)": "transpose(-1, +2) of the 4-D B x H x L x hd values is transpose(-1, -2)",
    "vv_attention: mask.to(device=None / omitted)": "mask device: the CPU tests cannot see a device",
}
