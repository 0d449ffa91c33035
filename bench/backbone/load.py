"""One entry point for every backbone family: :func:`load_backbone` (spec -> adapter).

``open_clip`` -> :class:`fsadbench.backbone.clip.Backbone`; ``timm`` ->
:class:`fsadbench.backbone.timm_family.TimmBackbone`; ``torchvision`` ->
:class:`fsadbench.backbone.torchvision_family.TorchvisionBackbone`. Each is imported only when used.

Before any model is built, planning asks three things of a spec: :func:`backbone_kind` (what it gives a
method; an unknown model fails here), :func:`weights_text` (the plan's "where the weights come from") and
:func:`check_backbone_weights` (a WeightsError naming the file when it cannot be had).
"""

from __future__ import annotations

import functools

from fsadbench.backbone.spec import BackboneSpec


def load_backbone(spec: BackboneSpec, device="cpu", cache_dir: str | None = None, option: str | None = None):
    """The frozen backbone ``spec`` names, on ``device`` (``cache_dir``: the harness's weights folder, searched
    after the standard caches; ``option``: the flags that set this backbone's weights, ``{file}`` where the path goes, e.g.
    ``--method-option anomalyclip.backbone_weights={file}``, named in the remedies)."""
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import TimmBackbone

        return TimmBackbone(spec, device=device, cache_dir=cache_dir, option=option)
    if spec.family == "torchvision":
        from fsadbench.backbone.torchvision_family import TorchvisionBackbone

        return TorchvisionBackbone(spec, device=device, cache_dir=cache_dir, option=option)
    from fsadbench.backbone.clip import Backbone

    return Backbone(spec, device=device, cache_dir=cache_dir, option=option)


def check_backbone_weights(spec: BackboneSpec, cache_dir: str | None = None, option: str | None = None) -> None:
    """Fail before any cell (WeightsError naming the file and where to put it) when a tag's checkpoint
    is neither cached nor downloadable, or a checkpoint path names no file; random weights and existing
    files pass. A reachable host downloads timm / torchvision weights here, once. ``option``: the flags
    that pass a file for this backbone, ``{file}`` where the path goes (default: the family's own)."""
    from pathlib import Path

    from fsadbench.backbone.spec import looks_like_file
    from fsadbench.core.errors import WeightsError

    if spec.is_random or Path(spec.pretrained).expanduser().is_file():
        return
    if looks_like_file(spec.pretrained):
        set_by = f" (set by {option.format(file=spec.pretrained)})" if option else ""
        raise WeightsError(f"checkpoint file {spec.pretrained} does not exist (backbone {spec.name}){set_by}; "
                           f"pass an existing file, a tag, or none")
    if spec.family in ("timm", "torchvision"):
        if spec.family == "timm":
            from fsadbench.backbone.timm_family import tag_checkpoint
        else:
            from fsadbench.backbone.torchvision_family import tag_checkpoint
        tag_checkpoint(spec, cache_dir, option)
    else:
        from fsadbench.backbone.weights import check_weights

        check_weights(spec.model, spec.pretrained, cache_dir, option=option)


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


@functools.lru_cache(maxsize=64)
def backbone_kind(spec: BackboneSpec) -> str:
    """What ``spec`` gives a method (a key of :data:`fsadbench.backbone.spec.KINDS`), found without loading
    weights (a timm model is built on the meta device); a model its family does not have is a ConfigError
    naming it."""
    if spec.family == "timm":
        from fsadbench.backbone.timm_family import timm_kind

        return timm_kind(spec)
    if spec.family == "torchvision":
        return "torchvision"
    known_open_clip(spec.model)
    import open_clip

    from fsadbench.backbone.spec import check_patch_size

    patch = (open_clip.get_model_config(spec.model) or {}).get("vision_cfg", {}).get("patch_size")
    if isinstance(patch, int):
        check_patch_size(spec, patch)
    return "open_clip"


def known_open_clip(model: str) -> None:
    """ConfigError naming ``model`` and the closest names when open_clip (with the shipped configs) has
    no such model."""
    import difflib

    import open_clip

    from fsadbench.backbone.clip import register_model_configs
    from fsadbench.backbone.spec import KNOWN_FAMILY
    from fsadbench.core.errors import ConfigError

    register_model_configs()
    names = open_clip.list_models()
    if model in names:
        return
    qualified = {n.lower(): n for n in names} | {k.lower(): f"{f}:{k}" for k, f in KNOWN_FAMILY.items()}
    close = [qualified[n] for n in difflib.get_close_matches(model.lower(), list(qualified), n=3, cutoff=0.75)]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(f"backbone open_clip:{model}: open_clip has no model {model!r}; {hint}"
                      f"(open_clip.list_models() lists them; a timm or torchvision model is written timm:NAME "
                      f"or torchvision:NAME)")


def weights_text(spec: BackboneSpec, cache_dir: str | None = None) -> str:
    """Where ``spec``'s weights come from, looked up on disk without loading or downloading anything: the
    plan's weights text for every backbone of a sweep: the one file of a tag (:func:`checkpoint_identity`),
    the cache it was found in and its sha256, or the address it is downloaded from on first use."""
    from pathlib import Path

    from fsadbench.backbone.spec import looks_like_file
    from fsadbench.core.errors import WeightsError

    if spec.is_random:
        return "RANDOM init (a pipeline check, not a benchmark)"
    path = Path(spec.pretrained).expanduser()
    if not path.is_file() and looks_like_file(spec.pretrained):
        return f"file {path}, which does NOT exist"
    try:
        ident = checkpoint_identity(spec, cache_dir)
    except WeightsError as exc:
        return f"{spec.family} tag {spec.pretrained}: {str(exc).splitlines()[0]}"
    if path.is_file():
        return f"file {path} ({path.stat().st_size / 1e6:,.0f} MB, sha256 {ident['sha256'][:16]})"
    if ident is None:  # a tag whose family gives no file (an unknown tag: the backbone says so itself)
        return f"{spec.family} tag {spec.pretrained}"
    if ident.get("local_path"):
        return (f"{spec.family} tag {spec.pretrained} = {ident['file']}, found in the {ident['found_in']} "
                f"({ident['local_path']}), sha256 {ident['sha256'][:16]}")
    size = ""
    if spec.family == "open_clip":
        from fsadbench.backbone.weights import checkpoint_facts

        facts = checkpoint_facts(spec.model, spec.pretrained)
        size = f", about {facts['size_mb']:,.0f} MB" if facts.get("size_mb") else ""
    return (f"{spec.family} tag {spec.pretrained} = {ident['file']}, NOT in any cache: downloaded on first use "
            f"from {ident['address']}{size}; sha256 on first load")
