"""The one boundary to open_clip's towers: every image and text pass of the harness runs through here.

open_clip is read through public attributes only, the same in every release
since 2.26.1 (``VisionTransformer._embeds`` first exists in 2.32.0 and
``forward_intermediates`` too; ``text_global_pool`` changed its return type in
2.30), so this module writes those steps itself and tests pin them to open_clip's
own ``encode_image`` / ``encode_text`` / ``forward_intermediates``:

* :class:`ImageTower` (a CLS-pooled CLIP ViT): ``embed`` = conv1 -> patch
  tokens, [CLS] in front, + positional embedding, patch dropout, ``ln_pre``
  (the tokens block 1 reads); ``run_blocks`` = the residual blocks in order, with
  optional calls before / after each block (deep prompts, block outputs);
  ``post_norm`` = ``ln_post``; ``project`` = ``@ proj``. ``encode_tokens`` is the
  plain pass (embedding, projected patch tokens, block outputs).
* :class:`TextTower` (CLIP's causal text transformer, [EOT]-pooled):
  ``encode(x, eot)`` = + positional embedding, blocks under the causal mask,
  ``ln_final``, the row at [EOT], the text projection. Both learnable-context
  prompts (CoOp style) and deep prompts (MaPLe style) call it.
* :class:`Block`: one residual block, ``x + ls_1(attn(ln_1 x))`` then
  ``x + ls_2(mlp(ln_2 x))``, in parts for the dual-path (V-V) pass;
  :func:`attention_values` / :func:`attention_output` are the value projection
  per head and the output projection of its ``nn.MultiheadAttention``.

Methods keep their equations and compose these parts; they never touch
open_clip attributes themselves. Each path a method's numbers depend on has a
version in ``fsadbench.backbone.features.SPEC_VERSIONS``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError

BlockCall = Callable[[int, torch.Tensor], torch.Tensor]  # (0-indexed block, tokens) -> tokens
BlockSeen = Callable[[int, torch.Tensor], None]  # (1-indexed block, its output) -> None


def check_block_numbers(n_layers: int, blocks: Sequence[int], what: str = "layers") -> tuple[int, ...]:
    """1-indexed block numbers, range-checked (``what`` names them in the error)."""
    blocks = tuple(int(i) for i in blocks)
    bad = [i for i in blocks if not 1 <= i <= n_layers]
    if bad:
        raise ConfigError(f"{what} {bad} out of range: the encoder has blocks 1..{n_layers}")
    return blocks


def _check_transformer(transformer: Any, where: str) -> None:
    from open_clip.transformer import ResidualAttentionBlock

    if transformer is None or not getattr(transformer, "batch_first", False):
        raise ConfigError(f"{where}: needs open_clip's batch-first Transformer (open_clip >= 2.26.1); "
                          f"found {type(transformer).__name__}")
    for i, blk in enumerate(transformer.resblocks, 1):
        if not isinstance(blk, ResidualAttentionBlock) or not isinstance(blk.attn, nn.MultiheadAttention):
            raise ConfigError(f"{where}: block {i} is a {type(blk).__name__}; only open_clip's "
                              "ResidualAttentionBlock with nn.MultiheadAttention is supported (a CLIP ViT)")


class Block:
    """One open_clip residual block: ``x + ls_1(attn(ln_1 x))``, then ``x + ls_2(mlp(ln_2 x))``."""

    def __init__(self, block: nn.Module):
        self.block = block
        self.attn: nn.MultiheadAttention = block.attn

    def __call__(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The whole block, as open_clip runs it."""
        return self.block(x, attn_mask=attn_mask)

    def norm1(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_1``: what the attention reads."""
        return self.block.ln_1(x)

    def attend(self, h: torch.Tensor) -> torch.Tensor:
        """The block's own (q k^T) self-attention of ``h = ln_1(x)``, no mask, before ``ls_1``."""
        return self.block.attention(q_x=h)

    def scale1(self, a: torch.Tensor) -> torch.Tensor:
        """LayerScale ``ls_1`` of the attention branch (identity in CLIP ViTs)."""
        return self.block.ls_1(a)

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + ls_2(mlp(ln_2 x))``."""
        return x + self.block.ls_2(self.block.mlp(self.block.ln_2(x)))


def attention_values(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-head values of batch-first ``x`` (B x L x vdim): ``x W_v^T + b_v`` as B x H x L x E/H."""
    b, n, _ = x.shape
    e, h = attn.embed_dim, attn.num_heads
    if attn.in_proj_weight is not None:  # fused q, k, v in-projection (CLIP)
        weight = attn.in_proj_weight[2 * e:3 * e]
    else:
        weight = attn.v_proj_weight
    bias = attn.in_proj_bias[2 * e:3 * e] if attn.in_proj_bias is not None else None
    return F.linear(x, weight, bias).reshape(b, n, h, e // h).transpose(1, 2)


def attention_output(attn: nn.MultiheadAttention, heads: torch.Tensor) -> torch.Tensor:
    """Heads (B x H x L x W/H) -> concatenated (B x L x W) -> ``out_proj``."""
    b, h, n, hd = heads.shape
    return attn.out_proj(heads.transpose(1, 2).reshape(b, n, h * hd))


class ImageTower:
    """A CLS-pooled open_clip VisionTransformer (``ln_post`` before pooling, no attention pool)."""

    def __init__(self, visual: nn.Module):
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise ConfigError(f"image tower: the harness' encoder passes need open_clip's VisionTransformer "
                              f"(a CLIP ViT); this model's is a {type(visual).__name__}")
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok" \
                or getattr(visual, "final_ln_after_pool", False):
            raise ConfigError("image tower: only CLS-token pooling with ln_post before pooling (CLIP ViTs) "
                              "is supported; this ViT pools otherwise")
        _check_transformer(visual.transformer, "image tower")
        self.visual = visual
        self.blocks = tuple(Block(b) for b in visual.transformer.resblocks)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def width(self) -> int:
        return int(self.visual.conv1.out_channels)

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.visual.grid_size)

    @property
    def image_size(self) -> int:
        s = self.visual.image_size
        return int(s[0] if isinstance(s, (tuple, list)) else s)

    @property
    def patch_size(self) -> int:
        p = self.visual.patch_size
        return int(p[0] if isinstance(p, (tuple, list)) else p)

    @property
    def mlp_ratio(self) -> float:
        """MLP hidden width / token width (4 in CLIP ViTs)."""
        return self.blocks[0].block.mlp.c_fc.out_features / self.width

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        return dict(getattr(self.visual, "preprocess_cfg", None) or {})

    # -- the pass in parts -------------------------------------------------------------------
    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B x 3 x S x S) -> the tokens block 1 reads, B x (1 + N) x W (open_clip's ``_embeds``)."""
        v = self.visual
        x = v.conv1(pixels)  # B x W x h x w
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # B x N x W
        cls = v.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1)
        x = x + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)  # the identity in eval mode
        return v.ln_pre(x)

    def run_blocks(self, x: torch.Tensor, before: BlockCall | None = None,
                   after: BlockSeen | None = None) -> torch.Tensor:
        """All residual blocks in order. ``before(i, x)`` (0-indexed block) may replace its input;
        ``after(i, out)`` (1-indexed block) sees its output."""
        for i, blk in enumerate(self.blocks):
            if before is not None:
                x = before(i, x)
            x = blk(x)
            if after is not None:
                after(i + 1, x)
        return x

    def post_norm(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_post`` (per token)."""
        return self.visual.ln_post(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``@ proj`` into the joint embedding space (unchanged when the tower has none)."""
        proj = self.visual.proj
        return x @ proj if proj is not None else x

    # -- the plain pass ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_tokens(self, pixels: torch.Tensor, layers: Sequence[int] = ()) -> dict[str, torch.Tensor]:
        """One encoder pass. Returns, per image:

        * ``embedding``: the CLIP image embedding (CLS, ln_post, @proj), B x E (= ``encode_image``)
        * ``tokens``: patch tokens after ln_post and @proj, B x N x E
        * ``layer{i}``: patch tokens output by block i (1-indexed; a copy, no CLS), B x N x W
        """
        want = set(check_block_numbers(self.n_layers, layers))
        captured: dict[int, torch.Tensor] = {}

        def keep(i: int, out: torch.Tensor) -> None:
            if i in want:
                captured[i] = out[:, 1:].clone()

        x = self.post_norm(self.run_blocks(self.embed(pixels), after=keep))
        out = {"embedding": self.project(x[:, 0]), "tokens": self.project(x[:, 1:])}
        for i in sorted(want):
            out[f"layer{i}"] = captured[i]
        return out


class TextTower:
    """CLIP's text transformer, [EOT]-pooled: of a ``CLIP`` model, or ``model.text`` of a ``CustomTextCLIP``."""

    def __init__(self, model: nn.Module):
        tower = getattr(model, "text", None)
        if tower is not None:  # CustomTextCLIP: a TextTransformer
            if not hasattr(tower, "token_embedding"):
                raise ConfigError(f"text tower: a {type(tower).__name__} (not CLIP's text transformer) "
                                  "is not supported")
            if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
                raise ConfigError("text tower: towers with a CLS embedding or pad mask are not supported")
            pool = getattr(tower, "pool_type", "argmax")
        else:
            tower = model
            pool = getattr(model, "text_pool_type", "argmax")
        if pool != "argmax":
            raise ConfigError(f"text tower: needs CLIP's [EOT] (argmax) pooling; this one pools {pool!r}")
        _check_transformer(getattr(tower, "transformer", None), "text tower")
        self.tower = tower
        self.blocks = tuple(Block(b) for b in tower.transformer.resblocks)

    @property
    def width(self) -> int:
        return int(self.tower.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        return int(self.tower.positional_embedding.shape[0])

    @property
    def device(self) -> torch.device:
        return self.tower.token_embedding.weight.device

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen word embeddings of token ids (... x W), no positional embedding."""
        return self.tower.token_embedding(ids.to(self.device))

    def encode(self, x: torch.Tensor, eot: torch.Tensor, before: BlockCall | None = None,
               normalize: bool = False) -> torch.Tensor:
        """Text features (K x E) of token embeddings ``x`` (K x L x W) with [EOT] at ``eot`` (K,).

        ``x + pos -> blocks (causal mask) -> ln_final -> row eot -> text projection``, as
        open_clip's ``encode_text``. The causal mask means tokens after [EOT] never reach
        it, so the batch is cut at the last [EOT] + 1 (same result, less compute).
        ``before(i, x)`` may replace the input of block i (0-indexed; deep prompts).
        """
        t = self.tower
        cast = t.transformer.get_cast_dtype()
        eot = eot.to(x.device)
        n = int(eot.max()) + 1
        x = x[:, :n].to(cast) + t.positional_embedding[:n].to(cast)
        mask = t.attn_mask[:n, :n] if t.attn_mask is not None else None
        for i, blk in enumerate(self.blocks):
            if before is not None:
                x = before(i, x)
            x = blk(x, attn_mask=mask)
        x = t.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        proj = t.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1) if normalize else x
