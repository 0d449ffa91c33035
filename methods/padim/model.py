"""``padim``: PaDiM as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights, the default of the code the paper's
authors point to (``main.py --arch wide_resnet50_2``), ``layer1``-``layer3``, a fixed random subset of
d = 550 channels (d = 100 with ``backbone=resnet18``); the pipeline check runs ``wide_resnet50_2-tiny``
(the same channel counts). Per layer1 position a Gaussian of the k shots' embeddings, covariance
regularised by 0.01 I; a test position scores its Mahalanobis distance; the image score is the max of
the map as the reference smooths it: upsampled bilinearly to its 224 px input and smoothed with sigma 4
(``main.py`` l. 172-185; anomalib's ``pred_score`` is the max of its upsampled, blurred map too), by the
evaluator's own upsampling and Gaussian (:func:`fsadbench.protocol.evaluator.postprocess`); the raw
56 x 56 map goes to the evaluator, which smooths it the same way at its own size. With k = 1 the
Gaussian is N(shot, 0.01 I): the distance is 10 x the Euclidean distance to the shot's embedding at
that position (:mod:`.torch_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from fsadbench.core.types import ImageRef, Prediction
from fsadbench.core.variants import W_VG
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.padim import torch_model as core
from fsadbench.protocol.evaluator import postprocess
from fsadbench.protocol.optionranges import Range


def smoothed_max(maps: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """B: the max of each map upsampled bilinearly to ``size`` x ``size`` and smoothed with ``sigma``
    (PaDiM ``main.py`` l. 172-185: the image score after upsampling and gaussian_filter)."""
    return postprocess(maps, size, sigma).flatten(1).amax(dim=1)


class PadimMethod(WideResNet50Baseline):
    name = "padim"
    paper = ("PaDiM (Defard et al., ICPR 2020 workshops): a Patch Distribution Modeling Framework for Anomaly "
             "Detection and Localization")
    reference_layers = core.LAYERS
    default_sigma = 4.0  # main.py: gaussian_filter(sigma=4) on the score map
    sigma_size = 224  # main.py l. 172-177: the map upsampled to the 224 px crop (datasets/mvtec.py l. 20)
    version = 2  # 2: the image score is the max of the smoothed, upsampled map (was: of the raw map)
    fidelity_notes = (
        "k = 1: the sample covariance of one shot is taken as 0 (the reference's np.cov gives NaN), so the "
        "Gaussian is N(shot, 0.01 I)",
        SQUASH_224,
        SIGMA_AT_EVAL,
    )

    @dataclass
    class Options(BaselineOptions):
        n_features: int | None = None  # None: 550 (WRN-50) / 100 (ResNet-18), main.py l. 45-52
        reg: float = core.REGULARISER  # main.py l. 120
        ranges: ClassVar[Mapping[str, Range]] = {"n_features": Range(ge=1), "reg": Range(gt=0)}

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        base = ctx.backbone.spec.model.removesuffix("-tiny")  # a tiny config has its model's channel counts
        self.core = core.Padim(backbone=base, n_features=None if o.n_features is None else int(o.n_features),
                               reg=float(o.reg))

    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        """The core's Mahalanobis map; the image score is :func:`smoothed_max` of it at ``sigma_size``."""
        maps, _ = self.core.predict(*self.inputs(images))
        return {W_VG: Prediction(maps=maps, scores=smoothed_max(maps, self.sigma_size, self.default_sigma))}

    def describe(self) -> dict[str, Any]:
        subset = self.core.subset
        return {**super().describe(), "n_features": int(subset.numel()) if subset is not None else None,
                "score": "Mahalanobis distance per position",
                "image_score": (f"max of the map upsampled to {self.sigma_size} px and smoothed with sigma "
                                f"{self.default_sigma:g} (official main.py l. 172-185)")}
