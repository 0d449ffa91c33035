"""One entry point for every backbone family: :func:`load_backbone` (spec -> adapter).

``open_clip`` -> :class:`fsadbench.backbone.clip.Backbone`; ``timm`` ->
:class:`fsadbench.backbone.timm_family.TimmBackbone`; ``torchvision`` ->
:class:`fsadbench.backbone.torchvision_family.TorchvisionBackbone`. Each is imported only when used.
"""

from __future__ import annotations

from fsadbench.backbone.spec import BackboneSpec


def load_backbone(spec: BackboneSpec, device="cpu", cache_dir: str | None = None, option_hint: str | None = None):
    """The frozen backbone ``spec`` names, on ``device`` (``cache_dir``: the harness's weights folder, searched
    after the standard caches; ``option_hint``: the option that sets this backbone's weights, written up to the
    file, e.g. ``--method-option anomalyclip.backbone_weights=``, named in the remedies)."""
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import TimmBackbone

        return TimmBackbone(spec, device=device, cache_dir=cache_dir, option_hint=option_hint)
    if spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import TorchvisionBackbone

        return TorchvisionBackbone(spec, device=device, cache_dir=cache_dir, option_hint=option_hint)
    from fsadbench.backbone.clip import Backbone

    return Backbone(spec, device=device, cache_dir=cache_dir, option_hint=option_hint)


def check_backbone_weights(spec: BackboneSpec, cache_dir: str | None = None, option_hint: str | None = None) -> None:
    """Fail before any cell (WeightsError naming the file and where to put it) when a tag's checkpoint
    is neither cached nor downloadable; random weights and existing files pass. A reachable host
    downloads timm / torchvision weights here, once."""
    from pathlib import Path

    if spec.is_random or Path(spec.pretrained).expanduser().is_file():
        return
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import tag_checkpoint

        tag_checkpoint(spec, cache_dir, option_hint)
    elif spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import tag_checkpoint as tv_checkpoint

        tv_checkpoint(spec, cache_dir, option_hint)
    else:
        from fsadbench.backbone.weights import check_weights

        check_weights(spec.model, spec.pretrained, cache_dir, option_hint)


def checkpoint_identity(spec: BackboneSpec, cache_dir: str | None = None) -> dict | None:
    """What the plan prints for ``spec``'s weights without loading a model: the one file (``file``,
    ``address``, ``hf_repo``), where it was found (``local_path``, ``found_in``: huggingface cache, torch hub
    cache, open_clip cache, harness cache, file given) and its ``sha256``, or ``hash on first load`` when not
    downloaded yet; None for random weights. WeightsError for a tag without a file of its own."""
    from pathlib import Path

    from fsadbench.backbone.checkpoints import find_checkpoint, identity, open_clip_source

    if spec.is_random:
        return None
    path = Path(spec.pretrained).expanduser()
    if path.is_file():
        return identity(None, path)
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import tag_source
    elif spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import tag_source
    else:
        def tag_source(s):
            return open_clip_source(s.model, s.pretrained)
    source = tag_source(spec)
    return identity(source, find_checkpoint(source, cache_dir)) if source is not None else None
