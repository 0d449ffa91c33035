"""One entry point for every backbone family: :func:`load_backbone` (spec -> adapter).

``open_clip`` -> :class:`fsadbench.backbone.clip.Backbone`; ``timm`` ->
:class:`fsadbench.backbone.timm_family.TimmBackbone`; ``torchvision`` ->
:class:`fsadbench.backbone.torchvision_family.TorchvisionBackbone`. Each is imported only when used.
"""

from __future__ import annotations

from fsadbench.backbone.spec import BackboneSpec


def load_backbone(spec: BackboneSpec, device="cpu", cache_dir: str | None = None):
    """The frozen backbone ``spec`` names, on ``device`` (``cache_dir``: where tag weights are looked for)."""
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import TimmBackbone

        return TimmBackbone(spec, device=device, cache_dir=cache_dir)
    if spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import TorchvisionBackbone

        return TorchvisionBackbone(spec, device=device, cache_dir=cache_dir)
    from fsadbench.backbone.clip import Backbone

    return Backbone(spec, device=device, cache_dir=cache_dir)


def check_backbone_weights(spec: BackboneSpec, cache_dir: str | None = None) -> None:
    """Fail before any cell (WeightsError naming the file and where to put it) when a tag's checkpoint
    is neither cached nor downloadable; random weights and existing files pass. A reachable host
    downloads timm / torchvision weights here, once."""
    from pathlib import Path

    if spec.is_random or Path(spec.pretrained).expanduser().is_file():
        return
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import tag_checkpoint

        tag_checkpoint(spec, cache_dir)
    elif spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import tag_checkpoint as tv_checkpoint

        tv_checkpoint(spec)
    else:
        from fsadbench.backbone.weights import check_weights

        check_weights(spec.model, spec.pretrained, cache_dir)
