"""What the classic few-shot baselines (PatchCore, PaDiM, SPADE, AnomalyDINO) share as methods.

Each runs on its own backbone (:mod:`fsadbench.methods.common.backbone_option`: the reference code's
default, the family's tiny random configuration in the pipeline check, or the ``backbone`` /
``backbone_weights`` options), reads that backbone's layer outputs through the feature store (encoder
path ``layers``, cached per image, so a test image is encoded once per backbone whatever the shots and
seeds), and hands them to its functional core (``<method>/torch_model.py``). One variant, ``w/ VG``
(the prediction from the memory of the k shots, the column the CLIP methods' vision-guided figures sit
in); at least one shot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from fsadbench.backbone.features import layer_spec
from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import W_VG
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.protocol.method import Method


def str_tuple(value: Any, method: str, name: str) -> tuple[str, ...]:
    """A layer list from YAML / CLI: ``[layer2, layer3]``, ``"layer2,layer3"`` or ``layer3`` -> a tuple."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{method} option {name!r} must be a list of layer names, e.g. [layer2, layer3]; "
                          f"got {value!r}")
    return tuple(v.strip() for v in items)


#: fidelity notes the torchvision baselines share
SQUASH_224 = "squash resize to 224 px instead of resize 256 + centre crop 224, so maps align with masks"
SIGMA_AT_EVAL = ("metrics at the protocol's evaluation size, not on the reference's 224 px crop; its Gaussian "
                 "(sigma 4 at 224 px) is applied as the equivalent sigma 4 x eval_size / 224 after upsampling")


@dataclass
class BaselineOptions(BackboneOptions):
    layers: tuple[str, ...] = ()  # empty: the method's reference layers (``Baseline.reference_layers``)


class Baseline(OwnBackbone, Method):
    """A method on its own backbone fed by named layers; subclasses fit and score in the core."""

    variants = (W_VG,)
    min_shots = 1
    feature_specs = ("layers",)
    #: feature maps by layer name: torchvision's ResNet layers or a timm CNN's stages (``layers`` option)
    backbone_kinds = ("torchvision", "timm-cnn")
    #: the layers the reference code reads (the ``layers`` option's default)
    reference_layers: ClassVar[tuple[str, ...]] = ()

    Options = BaselineOptions

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        chosen = self.options.layers or self.reference_layers
        self.options.layers = str_tuple(chosen, self.name, "layers")
        self.layers = ctx.backbone.check_layers(self.options.layers)
        self.spec = layer_spec(self.encoded_layers())

    def encoded_layers(self) -> tuple[str, ...]:
        """What the encoder pass must return (the layers, plus any the method derives more from)."""
        return self.layers

    def outputs(self, images: Sequence[ImageRef]) -> dict[str, torch.Tensor]:
        """``{layer: B x ...}`` of ``images`` from the feature store (encoded once per image)."""
        return self.ctx.features.get(images, self.spec)

    def maps(self, images: Sequence[ImageRef]) -> list[torch.Tensor]:
        """The layer outputs in the order of ``layers``."""
        out = self.outputs(images)
        return [out[n] for n in self.layers]

    def need_shots(self, normals: Sequence[ImageRef]) -> None:
        if not normals:
            raise NotApplicable(f"{self.name} needs at least one normal shot (shots=0 is zero-shot)")

    def inputs(self, images: Sequence[ImageRef]) -> tuple:
        """The arguments of the core's ``fit`` / ``predict`` for ``images`` (default: the layer maps)."""
        return (self.maps(images),)

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        self.need_shots(normals)
        self.core.fit(*self.inputs(normals))

    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        """The core's (maps B x h x w, image scores B) as the one variant."""
        maps, scores = self.core.predict(*self.inputs(images))
        return {W_VG: Prediction(maps=maps, scores=scores)}

    def describe(self) -> dict[str, Any]:
        b = self.ctx.backbone
        return {**super().describe(), "backbone": b.spec.name, "backbone_weights": b.spec.pretrained,
                "layers": list(self.layers)}


class WideResNet50Baseline(Baseline):
    """A baseline whose reference code runs torchvision's ``wide_resnet50_2`` with ImageNet weights
    (PatchCore, PaDiM, SPADE); the pipeline check runs its tiny random configuration (same channels)."""

    backbone_default = "torchvision:wide_resnet50_2"
    backbone_tiny = "torchvision:wide_resnet50_2-tiny"
