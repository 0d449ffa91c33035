"""A method on its own backbone: the ``backbone`` / ``backbone_weights`` options and their resolution.

A method that does not share the sweep's CLIP model lists :class:`BackboneOptions` as a base of its
``Options`` and :class:`OwnBackbone` as a base of the method, and names:

* ``backbone_default``: its reference code's backbone, ``[family:]model[@size]``
  (:func:`fsadbench.backbone.spec.parse_backbone`);
* ``backbone_tiny``: the random test configuration of the same family, used by the offline pipeline
  check (the sweep on the tiny random CLIP, ``fsad-tiny-vit`` / ``none``);
* ``backbone_weights_default``: the weights when the option is empty (None: the family's default,
  ``IMAGENET1K_V1`` for torchvision, ``lvd142m`` for timm; an open_clip backbone must name its tag).

Resolution (:meth:`OwnBackbone.backbone_for`, recorded and keyed per method):

* ``backbone``: the option when set, else ``backbone_tiny`` in the pipeline check, else ``backbone_default``;
* ``backbone_weights``: the option when set; else ``none`` when the sweep's weights are random (a
  pipeline check stays random everywhere, said in every table) or the backbone is a tiny configuration;
  else the default weights.

So ``--method-option patchcore.backbone=resnet18 --method-option patchcore.backbone_weights=/ckpt.pth``
is the per-method equivalent of ``--model`` / ``--pretrained``; a CLIP method may name its own open_clip
model the same way (``backbone=open_clip:ViT-L-14-336@518``, ``backbone_weights=openai``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from fsadbench.backbone.spec import DEFAULT_WEIGHTS, BackboneSpec, is_tiny, parse_backbone
from fsadbench.core.errors import ConfigError


@dataclass
class BackboneOptions:
    backbone: str = ""  # [family:]model[@size]; empty: the method's default (tiny in the pipeline check)
    backbone_weights: str = ""  # tag, checkpoint file, or none; empty: see the module docstring


class OwnBackbone:
    """Mixin for a :class:`~fsadbench.protocol.method.Method` with its own backbone."""

    name: ClassVar[str]
    backbone_default: ClassVar[str] = ""
    backbone_tiny: ClassVar[str] = ""
    backbone_weights_default: ClassVar[str | None] = None

    @classmethod
    def backbone_flags(cls, name: str) -> tuple[str, str]:
        """``--method-option NAME.backbone=`` / ``--method-option NAME.backbone_weights=`` (the value follows;
        ``name``: the name the method is registered under, which ``--method-option`` takes)."""
        return f"--method-option {name}.backbone=", f"--method-option {name}.backbone_weights="

    @classmethod
    def backbone_for(cls, options: Any, sweep: BackboneSpec) -> BackboneSpec:
        pipeline_check = sweep.is_random and is_tiny(sweep.model)
        text = options.backbone or (cls.backbone_tiny if pipeline_check else cls.backbone_default)
        spec = parse_backbone(text, options.backbone_weights, where=f"method {cls.name!r} option backbone")
        if spec.pretrained:  # the option's weights
            return spec
        if sweep.is_random or is_tiny(spec.model):
            return replace(spec, pretrained="none")
        weights = cls.backbone_weights_default or DEFAULT_WEIGHTS.get(spec.family)
        if not weights:
            raise ConfigError(f"method {cls.name!r}: backbone {spec.name} needs backbone_weights (an open_clip "
                              f"tag, a checkpoint file, or none)")
        return replace(spec, pretrained=weights)
