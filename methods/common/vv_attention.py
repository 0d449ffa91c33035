"""Dual-path V-V attention (CLIP Surgery style) on the CLIP ViT image tower.

Used by PromptAD (V-V patch tokens for text alignment) and APT's LAT (the same
second path with a locality mask). Per head, with the block's fused
in-projection giving q, k, v (with bias) and ``scale = head_dim ** -0.5``:

    original path:  softmax(q k^T * scale) v          -> out_proj
    V-V path:       softmax(v v^T * scale + M) v      -> out_proj (shared)

``M`` is an optional additive mask (L x L over CLS + patch tokens) applied to
the V-V path only. Block equations (x = block input, ``attn`` reads ln_1):

* first modified block b0::

      x_ori = x + attn_ori(ln_1(x));  x_ori = x_ori + mlp(ln_2(x_ori))
      x_vv  = x + attn_vv(ln_1(x))

* every later modified block (both paths read ln_1 of the ORIGINAL stream)::

      x_vv  = x_vv + attn_vv(ln_1(x_ori))            # no MLP, no extra LayerNorm
      x_ori = x_ori + attn_ori(ln_1(x_ori)); x_ori = x_ori + mlp(ln_2(x_ori))

Outputs: CLS of the original stream -> ln_post -> @proj (identical to
``model.encode_image``), patch tokens of the V-V stream -> ln_post -> @proj.

Choices where the references are silent:

* ``blocks`` may be any set of 1-indexed blocks; an unmodified block after b0
  runs as usual on the original stream and leaves ``x_vv`` unchanged (the
  references only ever modify one contiguous run ending at the last block).
* The block's LayerScale ``ls_1`` (identity in CLIP ViTs) scales both paths.
* An empty ``blocks`` gives the original stream's patch tokens.
* A mask row that is all ``-inf`` yields NaN (softmax of nothing): masks must
  keep at least one open entry per row (APT's keeps CLS open).

The tower's parts (embedding, block parts, ``ln_post``, projection, the
attention's value and output projections) come from
:mod:`fsadbench.backbone.towers`; this module holds the equations only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn as nn

from fsadbench.backbone.features import FeatureSpec
from fsadbench.backbone.towers import ImageTower, attention_output, attention_values, check_block_numbers
from fsadbench.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.backbone.clip import Backbone

MaskFn = Callable[[tuple[int, int]], torch.Tensor]


def vv_attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """V-V self-attention of batch-first ``x`` (B x L x W): out_proj(softmax(v v^T * scale + mask) v).

    ``scale`` is ``head_dim ** -0.5`` per head, as the original attention's q k^T.
    ``mask``: additive float tensor broadcastable to L x L (0 = open, -inf = closed).
    """
    v = attention_values(attn, x)  # B H L hd
    logits = (v @ v.transpose(-1, -2)) * (v.shape[-1] ** -0.5)
    if mask is not None:
        logits = logits + mask.to(device=logits.device, dtype=logits.dtype)
    return attention_output(attn, logits.softmax(dim=-1) @ v)


def resolve_blocks(n_layers: int, blocks: Sequence[int] | str | None) -> tuple[int, ...]:
    """None or "all" -> (1..n_layers); else the sorted 1-indexed blocks, range-checked."""
    if blocks is None or blocks == "all":
        return tuple(range(1, n_layers + 1))
    return tuple(sorted(set(check_block_numbers(n_layers, blocks, "V-V blocks"))))


def encode_image_vv(visual: nn.Module | ImageTower, pixels: torch.Tensor, blocks: Sequence[int] | str | None = None,
                    mem_layers: Sequence[int] = (), mask: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
    """Run the image tower (an open_clip ViT or its :class:`ImageTower`) with the dual path on
    ``blocks`` (1-indexed; default all).

    Returns ``embedding`` (B x E, original-stream CLS = ``encode_image``),
    ``tokens`` (B x N x E, V-V patch tokens after ln_post @ proj) and
    ``layer{i}`` for i in ``mem_layers`` (B x N x W, cloned original-stream
    block outputs without CLS, for the VG memory).
    """
    tower = visual if isinstance(visual, ImageTower) else ImageTower(visual)
    blocks = set(resolve_blocks(tower.n_layers, blocks))
    mem_layers = tuple(sorted(set(check_block_numbers(tower.n_layers, mem_layers, "memory layers"))))
    x = tower.embed(pixels)
    if mask is not None and mask.shape[-2:] != (x.shape[1], x.shape[1]):
        raise ConfigError(f"V-V mask has shape {tuple(mask.shape)}; expected ({x.shape[1]}, {x.shape[1]}) "
                          "over CLS + patch tokens")
    x_vv = None
    captured: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(tower.blocks, 1):
        if i in blocks:
            h = blk.norm1(x)
            a_vv = blk.scale1(vv_attention(blk.attn, h, mask))
            x_vv = (x if x_vv is None else x_vv) + a_vv
            x = x + blk.scale1(blk.attend(h))
            x = blk.mlp_residual(x)
        else:
            x = blk(x)
        if i in mem_layers:
            captured[i] = x[:, 1:].clone()
    cls = tower.post_norm(x[:, 0])
    patches = tower.post_norm(x_vv[:, 1:] if x_vv is not None else x[:, 1:])
    out = {"embedding": tower.project(cls), "tokens": tower.project(patches)}
    for i in mem_layers:
        out[f"layer{i}"] = captured[i]
    return out


def vv_spec(blocks: Sequence[int] | str | None = None, mem_layers: Sequence[int] = (),
            mask_name: str | None = None, mask_fn: MaskFn | None = None) -> FeatureSpec:
    """A cacheable FeatureSpec (``vv``, its version in ``SPEC_VERSIONS``) for :func:`encode_image_vv`.

    ``mask_fn(grid) -> (L, L)`` builds the V-V mask for the backbone's patch grid
    (L = 1 + h*w); ``mask_name`` names it in the cache key and is required with it
    (e.g. ``"locality_k2"``).
    """
    if (mask_fn is None) != (mask_name is None):
        raise ConfigError("vv_spec: give mask_name and mask_fn together (the name keys the feature cache)")
    blocks_key = "all" if blocks is None or blocks == "all" else tuple(sorted({int(i) for i in blocks}))
    mem = tuple(sorted({int(i) for i in mem_layers}))
    masks: dict[tuple[int, int], torch.Tensor] = {}

    def compute(backbone: "Backbone", pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = None
        if mask_fn is not None:
            grid = tuple(backbone.grid)
            if grid not in masks:
                masks[grid] = mask_fn(grid)
            mask = masks[grid]
        return encode_image_vv(backbone.image_tower, pixels, blocks_key, mem, mask)

    return FeatureSpec.make("vv", compute, blocks=blocks_key, mem_layers=mem, mask=mask_name)
