"""AnomalyCLIP's frozen image pass: DPAM (V-V attention) on the deep blocks, patch tokens of the chosen blocks.

Official code (zqhang/AnomalyCLIP): ``AnomalyCLIP_lib/AnomalyCLIP.py``.

* DPAM: ``VisionTransformer.DAPM_replace(DPAM_layer=20)`` (l.345-353, called
  in ``train.py`` l.42 and ``test.py`` l.71) gives ``resblocks[-1] ..
  resblocks[-(DPAM_layer - 1)]`` the dual-path attention, i.e. blocks 6..24 of
  the 24-block ViT-L/14 (``train.py`` l.69: "Apply DPAM to the layer from 6 to
  24"). ``start`` below is that first refined block (1-indexed). The dual path
  (l.58-94, l.135-168 with ``ffn=False``) is the CLIP-Surgery V-V path of
  :mod:`fsadbench.methods.common.vv_attention`: at the first refined block
  ``x_vv = x + vv(ln_1 x)``; later ``x_vv = x_vv + vv(ln_1 x_ori)`` (no MLP);
  the original stream runs as usual. ``vv`` = out_proj(softmax(v v^T * hd^-0.5) v)
  with the block's own fused projections and biases.
* Patch features: the outputs of blocks ``layers`` (the last block: ``--features_list 24``
  of the official runs, ``train.sh`` l.16/35, ``test.sh`` l.17/36; the argparse default
  6/12/18/24 of ``train.py`` l.128 as ``layers="multiscale"``), the V-V stream for a refined block
  and the plain stream otherwise (l.284-296), each through ``ln_post`` and
  ``@ proj`` (l.381-385), [CLS] dropped (``similarity[:, 1:, :]``,
  ``train.py`` l.93).
* Image feature: the original stream's [CLS] after the last block ``@ proj``
  WITHOUT ``ln_post`` (l.387: ``x_ori[0, :, :] @ self.proj``), as the official
  code computes it (open_clip's ``encode_image`` applies ``ln_post``).

The pass is frozen (``torch.no_grad`` in ``train.py`` l.68-73): its outputs are
cached per image by the feature store under the spec ``anomalyclip-dpam``
(version in ``SPEC_VERSIONS``), so an auxiliary image is encoded once per fit
at most, once per sweep when the cache is warm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from fsadbench.backbone.features import FeatureSpec
from fsadbench.backbone.towers import ImageTower, check_block_numbers
from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.vv_attention import vv_attention

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.backbone.clip import Backbone

SPEC = "anomalyclip-dpam"

#: the official code's tower: the 24-block ViT-L/14
OFFICIAL_BLOCKS = 24
#: ``--features_list`` of train.py l.128 / test.py l.184 (argparse default); the official runs, every
#: published figure and the released checkpoints pass ``--features_list 24`` instead (train.sh l.16 and
#: l.35, test.sh l.17 and l.36): the last block only, the ``layers`` default ("last")
MULTISCALE_LAYERS = (6, 12, 18, 24)
#: ``DAPM_replace(DPAM_layer=20)`` (train.py l.42, test.py l.71; AnomalyCLIP.py l.345-353) refines
#: ``resblocks[-i]`` for i = 1 .. DPAM_layer - 1, i.e. the last 19 blocks
OFFICIAL_DPAM_LAYER = 20
OFFICIAL_DPAM_START = OFFICIAL_BLOCKS - (OFFICIAL_DPAM_LAYER - 1) + 1  # block 6 (1-indexed) of 24
#: named ``layers`` values: the last block of any tower, or 6/12/18/24 scaled to it
LAYER_CHOICES = ("last", "multiscale")


def scaled(blocks: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Official block numbers of the 24-block tower scaled to ``n_layers`` blocks, rounded half up,
    at least 1 (12 blocks: 6/12/18/24 -> 3/6/9/12, DPAM from 6 -> from 3)."""
    return tuple(max(1, int(b * n_layers / OFFICIAL_BLOCKS + 0.5)) for b in blocks)


def default_dpam_start(n_layers: int) -> int:
    """The first DPAM block of the official rule on ``n_layers`` blocks: 6 on 24 (the official tower),
    scaled to other depths (3 on the 12-block tiny model)."""
    return scaled((OFFICIAL_DPAM_START,), n_layers)[0]


def named_layers(choice: str, n_layers: int) -> tuple[int, ...]:
    """``"last"`` -> (n_layers,); ``"multiscale"`` -> 6/12/18/24 scaled to ``n_layers`` blocks."""
    if choice == "last":
        return (n_layers,)
    if choice == "multiscale":
        return tuple(sorted(set(scaled(MULTISCALE_LAYERS, n_layers))))
    raise ConfigError(f"method 'anomalyclip': option 'layers' must be one of {LAYER_CHOICES} or a list of "
                      f"block numbers; got {choice!r}")


def encode_dpam(tower: ImageTower, pixels: torch.Tensor, start: int, layers: Sequence[int]
                ) -> dict[str, torch.Tensor]:
    """``embedding`` (B x E: CLS, no ln_post, @proj) and ``layer{i}`` (B x N x E patch tokens,
    ln_post @proj) with the V-V dual path on blocks ``start..n`` (``start = n + 1``: none)."""
    n = tower.n_layers
    if not 1 <= start <= n + 1:
        raise ConfigError(f"AnomalyCLIP: dpam_start {start} out of range: 1..{n} (or {n + 1} for no DPAM)")
    want = set(check_block_numbers(n, layers, "AnomalyCLIP feature layers"))
    x = tower.embed(pixels)
    x_vv = None
    kept: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(tower.blocks, 1):
        if i >= start:
            h = blk.norm1(x)
            x_vv = (x if x_vv is None else x_vv) + blk.scale1(vv_attention(blk.attn, h))
            x = blk.mlp_residual(x + blk.scale1(blk.attend(h)))
        else:
            x = blk(x)
        if i in want:
            kept[i] = x_vv if x_vv is not None else x
    out = {"embedding": tower.project(x[:, 0])}
    for i in sorted(want):
        out[f"layer{i}"] = tower.project(tower.post_norm(kept[i][:, 1:]))
    return out


def dpam_spec(start: int, layers: Sequence[int]) -> FeatureSpec:
    """The cacheable FeatureSpec of :func:`encode_dpam`."""
    start, layers = int(start), tuple(sorted({int(i) for i in layers}))

    def compute(backbone: "Backbone", pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return encode_dpam(backbone.image_tower, pixels, start, layers)

    return FeatureSpec.make(SPEC, compute, dpam_start=start, layers=layers)
