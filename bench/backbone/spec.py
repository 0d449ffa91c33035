"""What a backbone is, before any model is built: (family, model, weights), and its identity.

Families (one adapter each, one interface: :mod:`fsadbench.backbone.load`):

* ``open_clip``: the CLIP methods' encoder (:mod:`fsadbench.backbone.clip`);
* ``timm``: any timm model; ViTs give patch tokens by block (``block12``), CNNs feature maps by stage
  (``stage3``) (:mod:`fsadbench.backbone.timm_family`);
* ``torchvision``: ResNet-style CNNs, feature maps by layer (``layer2``)
  (:mod:`fsadbench.backbone.torchvision_family`).

A backbone is named as text ``[family:]model[@size]`` (a method's ``backbone`` option):
``torchvision:wide_resnet50_2``, ``timm:vit_small_patch14_dinov2@448``, ``open_clip:ViT-L-14-336@518``.
The family may be left out for the names in :data:`KNOWN_FAMILY`; any other bare name is an open_clip
model. Names are case-sensitive (open_clip's are): a family or a known name written in another case
(``RESNET18-TINY``, ``Timm:x``) is refused with the name meant, never taken as an open_clip model.
``@size`` sets the input resolution (default: the model's own).

What a backbone gives a method is its kind (:data:`KINDS`): an open_clip CLIP model, a torchvision
ResNet-style CNN, a timm CNN or a timm ViT; each method declares the kinds it accepts
(``Method.backbone_kinds``) and planning refuses any other.

Weights (``pretrained``): a tag (open_clip tag, torchvision weights name ``IMAGENET1K_V1``, timm
pretrained tag ``lvd142m``), a local checkpoint file, or ``none`` (seeded random initialisation, said in
every table). Torch-free: the run layer plans and keys cells with it without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM, TINY_MODEL
from fsadbench.core.errors import ConfigError

FAMILIES = ("open_clip", "timm", "torchvision")
OPEN_CLIP = "open_clip"

#: Bare names whose family need not be written. The ``-tiny`` names are the random configurations for
#: tests and the offline pipeline check (built by their family's adapter, never downloaded).
KNOWN_FAMILY = {
    "wide_resnet50_2": "torchvision",
    "resnet18": "torchvision",
    "wide_resnet50_2-tiny": "torchvision",
    "resnet18-tiny": "torchvision",
    "vit_small_patch14_dinov2": "timm",
    "dinov2-tiny": "timm",
}

#: What a backbone gives a method, by kind (``fsadbench.backbone.load.backbone_kind``); the text says it in
#: planning's refusals.
KINDS = {
    "open_clip": "an open_clip CLIP model (image and text towers)",
    "torchvision": "a torchvision ResNet-style CNN (feature maps layer1..layer4)",
    "timm-cnn": "a timm CNN (feature maps by stage)",
    "timm-vit": "a timm ViT (patch tokens by block)",
}

#: The weights a family's ``pretrained`` defaults to: torchvision's ImageNet weights the reference codes
#: load (``wide_resnet50_2(pretrained=True)`` = IMAGENET1K_V1) and timm's DINOv2 tag; open_clip has no
#: family default (the sweep's tag is used).
DEFAULT_WEIGHTS = {"torchvision": "IMAGENET1K_V1", "timm": "lvd142m"}


def is_random(pretrained: str) -> bool:
    """``none`` / ``random`` / empty: seeded random initialisation."""
    return pretrained.lower() in (RANDOM, "random", "")


def is_tiny(model: str) -> bool:
    """A shipped random test configuration (``fsad-tiny-vit``, ``*-tiny``)."""
    return model == TINY_MODEL or model.endswith("-tiny")


def looks_like_file(pretrained: str) -> bool:
    """A path (not a tag): has a separator or a checkpoint suffix."""
    return any(sep in pretrained for sep in ("/", "\\")) or pretrained.endswith(
        (".pt", ".pth", ".bin", ".safetensors"))


@dataclass(frozen=True)
class BackboneSpec:
    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED  # tag, local file path, or "none"
    init_seed: int = 0  # seed of the random initialisation when pretrained == "none"
    family: str = OPEN_CLIP
    image_size: int | None = None  # None: the model's own input size

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"backbone family {self.family!r} is unknown; one of {', '.join(FAMILIES)}")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"backbone {self.model!r}: image size must be >= 1 pixel, got {self.image_size}")

    @property
    def name(self) -> str:
        """The text form, ``family:model[@size]`` (what tables and records print)."""
        size = f"@{self.image_size}" if self.image_size else ""
        return f"{self.family}:{self.model}{size}"

    @property
    def is_random(self) -> bool:
        return is_random(self.pretrained)


def parse_backbone(text: str, pretrained: str, where: str = "backbone") -> BackboneSpec:
    """``[family:]model[@size]`` and weights -> a :class:`BackboneSpec`; bad text fails naming ``where``."""
    text = str(text).strip()
    name, _, size = text.partition("@")
    family, sep, model = name.partition(":")
    if not sep:
        family, model = KNOWN_FAMILY.get(name, OPEN_CLIP), name
    meant = case_variant(family if sep else name, FAMILIES if sep else KNOWN_FAMILY)
    if meant:
        fix = f"{meant}:{model}" if sep else f"{KNOWN_FAMILY[meant]}:{meant}"
        raise ConfigError(f"{where}: {text!r}: names are case-sensitive; did you mean {fix}?")
    if family not in FAMILIES or not model:
        raise ConfigError(f"{where}: {text!r} is not [family:]model[@size] with family one of "
                          f"{', '.join(FAMILIES)} (e.g. torchvision:wide_resnet50_2, timm:vit_small_patch14_dinov2@448)")
    if size and not (size.isascii() and size.isdigit()):  # "²".isdigit() holds, int("²") fails
        raise ConfigError(f"{where}: {text!r}: the size after '@' must be a whole number of pixels (digits 0-9)")
    return BackboneSpec(model=model, pretrained=str(pretrained), family=family,
                        image_size=int(size) if size else None)



def check_patch_size(spec: BackboneSpec, patch: int) -> None:
    """ConfigError when ``spec``'s ``@size`` is below its ViT's patch size (no patch token at all)."""
    if spec.image_size is not None and spec.image_size < patch:
        raise ConfigError(f"backbone {spec.name}: image size {spec.image_size} is below the model's patch size "
                          f"{patch}; give @SIZE of at least {patch} pixels (a multiple of {patch})")


def case_variant(name: str, known) -> str | None:
    """The name of ``known`` that ``name`` spells in another case, or None (an exact name, or none)."""
    if name in known:
        return None
    return next((k for k in known if k.lower() == name.lower()), None)
