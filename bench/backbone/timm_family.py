"""The timm family: ViTs give patch tokens by block (``block1`` .. ``blockN``), CNNs feature maps by
stage (``stage1`` .. ``stageN``), both through timm's ``forward_intermediates`` (one forward, only up to
the deepest index asked for).

ViT tokens are the block outputs after the final norm (``norm=True``, as DINOv2's
``get_intermediate_layers(..., norm=True)`` that AnomalyDINO calls), prefix tokens (class, registers)
dropped: ``B x L x D`` on the ``grid`` ``S/patch x S/patch``. Preprocessing: squash resize to the
model's input size (or ``@size``), timm's interpolation for the model (bicubic for DINOv2), ImageNet
mean/std.

Random test configuration ``dinov2-tiny``: timm's ``vit_small_patch14_dinov2`` class at 112 px (patch 14
-> 8 x 8 grid), width 48, 4 blocks, 3 heads (never downloaded).

Tag weights: timm's Hugging Face repo for ``model.tag`` (``timm/vit_small_patch14_dinov2.lvd142m``,
``model.safetensors``) from the Hugging Face cache, or downloaded when the hub is reachable. A file's
weights go through timm's own checkpoint filter for the model (e.g. position embeddings resampled to
the input size) before a strict load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch

from fsadbench.backbone.checkpoints import Source, cache_hint, find_checkpoint, timm_source
from fsadbench.backbone.spec import check_patch_size
from fsadbench.backbone.vision import VisionBackbone, weights_remedy
from fsadbench.backbone.weights import reachable
from fsadbench.core.errors import ConfigError, WeightsError

TINY = {"dinov2-tiny": ("vit_small_patch14_dinov2", dict(img_size=112, embed_dim=48, depth=4, num_heads=3))}
HF_FILE = "model.safetensors"


def tag_checkpoint(spec, cache_dir: str | None = None, option: str | None = None) -> Path:
    """The local file of timm tag ``spec.pretrained``: from the caches in
    :func:`~fsadbench.backbone.checkpoints.cache_places` order (the standard Hugging Face cache before
    ``cache_dir``), or downloaded into ``cache_dir``; WeightsError with the remedy when offline."""
    source = tag_source(spec)
    repo, url = source.hf_repo, source.url
    hit = find_checkpoint(source, cache_dir)
    if hit is not None:
        return hit.path
    where = cache_hint(source, cache_dir)
    import huggingface_hub.constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE or not reachable("huggingface.co"):
        raise WeightsError(weights_remedy(spec, "no network and not in the local cache", url, HF_FILE, where,
                                          option))
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, HF_FILE, cache_dir=cache_dir))
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds; one line with the remedy
        raise WeightsError(weights_remedy(spec, f"download failed ({str(exc)[:200]})", url, HF_FILE, where,
                                          option)) from exc


def tag_source(spec) -> Source:
    """The one file of timm tag ``spec.pretrained``: ``timm/<model>.<tag>`` / ``model.safetensors``."""
    return timm_source(TINY.get(spec.model, (spec.model,))[0], spec.pretrained)


def is_vit(model: torch.nn.Module) -> bool:
    """A ViT-like timm model (patch embedding, prefix tokens): patch tokens by block, not maps by stage."""
    return hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed")


def timm_kind(spec) -> str:
    """``timm-vit`` or ``timm-cnn`` for ``spec``'s model, built on the meta device (no memory, no weights);
    ConfigError when timm has no such model."""
    import timm

    base, kwargs = TINY.get(spec.model, (spec.model, {}))
    if not timm.is_model(base):
        raise ConfigError(f"backbone {spec.name}: timm has no model {base!r} (timm.list_models() lists them)")
    with torch.device("meta"):
        model = timm.create_model(base, pretrained=False, **kwargs)
    if is_vit(model):
        check_patch_size(spec, int(model.patch_embed.patch_size[0]))
    return "timm-vit" if is_vit(model) else "timm-cnn"


class TimmBackbone(VisionBackbone):
    family = "timm"

    def __init__(self, spec, device="cpu", cache_dir=None, option=None):
        import timm

        self.library_version = timm.__version__
        base, kwargs = TINY.get(spec.model, (spec.model, {}))
        if base not in timm.list_models() and not timm.is_model(base):
            raise ConfigError(f"backbone {spec.name}: timm has no model {base!r} (timm.list_models() lists them)")
        self._base = base
        self._kwargs = dict(kwargs, **({"img_size": spec.image_size} if spec.image_size else {}))
        super().__init__(spec, device, cache_dir, option)
        cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        tag_cfg = None if not (self.checkpoint or {}).get("address") else timm.models.get_pretrained_cfg(
            f"{base}.{spec.pretrained}")
        if tag_cfg is not None:  # the tag's own preprocessing (timm's pretrained config of model.tag)
            cfg = tag_cfg.to_dict()
            self.mean, self.std = tuple(cfg.get("mean", self.mean)), tuple(cfg.get("std", self.std))
        self.interpolation = cfg.get("interpolation", "bicubic")
        self.is_vit = is_vit(self.model)
        if self.is_vit:
            self.image_size = int(self.model.patch_embed.img_size[0])
            patch = int(self.model.patch_embed.patch_size[0])
            self.grid = (self.image_size // patch, self.image_size // patch)
            self._n = len(self.model.blocks)
        else:
            self.image_size = int(spec.image_size or cfg.get("input_size", (3, 224, 224))[-1])
            self.grid = None
            self._n = len(self.model.feature_info)
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"backbone {spec.name}: this timm model has no forward_intermediates")

    def build(self) -> torch.nn.Module:
        """The timm model, random; ``img_size`` only reaches models that take one (ViTs: a CNN takes any)."""
        import timm

        try:
            return timm.create_model(self._base, pretrained=False, **self._kwargs)
        except TypeError:
            if "img_size" not in self._kwargs:
                raise
            return timm.create_model(self._base, pretrained=False,
                                     **{k: v for k, v in self._kwargs.items() if k != "img_size"})

    def load_weights(self, model, sd, path) -> None:
        filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        super().load_weights(model, filt(sd, model) if filt is not None else sd, path)

    def tag_checkpoint(self) -> Path:
        return tag_checkpoint(self.spec, self.cache_dir, self.option)

    def tag_source(self) -> Source:
        return tag_source(self.spec)

    @property
    def layer_names(self) -> tuple[str, ...]:
        prefix = "block" if self.is_vit else "stage"
        return tuple(f"{prefix}{i}" for i in range(1, self._n + 1))

    def encode(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{name: B x L x D}`` (ViT blocks, normed, prefix dropped) or ``{name: B x C x h x w}`` (CNN stages)."""
        wanted = self.check_layers(layers)
        if not wanted:
            return {}
        idx = sorted({self.layer_names.index(n) for n in wanted})
        kw = dict(norm=True, output_fmt="NLC") if self.is_vit else {}
        outs = self.model.forward_intermediates(pixels.to(self.device), indices=idx, intermediates_only=True, **kw)
        by_index = dict(zip(idx, outs))
        return {n: by_index[self.layer_names.index(n)] for n in wanted}
