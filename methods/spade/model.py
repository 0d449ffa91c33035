"""``spade``: SPADE as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights (SPADE-pytorch ``main.py``); the global
feature is layer4 average-pooled (the model's ``avgpool``), the pixel pyramid ``layer1``-``layer3``; the
pipeline check runs ``wide_resnet50_2-tiny``. The test image's K = min(5, k) nearest shots by the
global feature (Euclidean) give the image score (their mean distance); each test position scores its
distance to the nearest position of those shots' maps, per layer, the layers averaged on layer1's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.core.types import ImageRef
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.spade import torch_model as core

GLOBAL_LAYER = "layer4"  # main.py: avgpool after layer4 (the WRN's 2048-d global feature)


class SpadeMethod(WideResNet50Baseline):
    name = "spade"
    paper = "SPADE (Cohen and Hoshen, arXiv 2020): Sub-Image Anomaly Detection with Deep Pyramid Correspondences"
    reference_layers = core.LAYERS
    default_sigma = 4.0  # main.py: gaussian_filter(sigma=4) on the score map
    sigma_size = 224  # src/main.py l. 144-152: the map resized to the 224 px crop, then gaussian_filter
    fidelity_notes = (
        "the whole gallery of the K nearest shots is searched (the reference drops its last len % 100 rows)",
        SQUASH_224,
        SIGMA_AT_EVAL,
    )

    @dataclass
    class Options(BaselineOptions):
        top_k: int = core.TOP_K  # main.py l. 23
        global_layer: str = GLOBAL_LAYER

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        if int(self.options.top_k) < 1:
            raise ConfigError(f"spade option 'top_k' must be >= 1, got {self.options.top_k!r}")
        self.global_layer = ctx.backbone.check_layers([self.options.global_layer])[0]
        self.core = core.Spade(top_k=int(self.options.top_k))

    def encoded_layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.layers, self.options.global_layer)))

    def inputs(self, images: Sequence[ImageRef]) -> tuple:
        """(global features B x C: the global layer average-pooled, [pyramid maps])."""
        out = self.outputs(images)
        return out[self.global_layer].float().mean(dim=(2, 3)), [out[n] for n in self.layers]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "global_feature": f"{self.global_layer} average-pooled",
                "score": "L2 to the nearest position of the K nearest shots, mean over layers",
                "image_score": "mean L2 to the K nearest shots' global features"}
