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
