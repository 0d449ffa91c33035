"""``padim``: PaDiM as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights, the default of the code the paper's
authors point to (``main.py --arch wide_resnet50_2``), ``layer1``-``layer3``, a fixed random subset of
d = 550 channels (d = 100 with ``backbone=resnet18``); the pipeline check runs ``wide_resnet50_2-tiny``
(the same channel counts). Per layer1 position a Gaussian of the k shots' embeddings, covariance
regularised by 0.01 I; a test position scores its Mahalanobis distance; the image score is the max of
the map. With k = 1 the Gaussian is N(shot, 0.01 I): the distance is 10 x the Euclidean distance to the
shot's embedding at that position (:mod:`.torch_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.padim import torch_model as core


class PadimMethod(WideResNet50Baseline):
    name = "padim"
    paper = ("PaDiM (Defard et al., ICPR 2020 workshops): a Patch Distribution Modeling Framework for Anomaly "
             "Detection and Localization")
    reference_layers = core.LAYERS
    default_sigma = 4.0  # main.py: gaussian_filter(sigma=4) on the score map
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

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        base = ctx.backbone.spec.model.removesuffix("-tiny")  # a tiny config has its model's channel counts
        self.core = core.Padim(backbone=base, n_features=None if o.n_features is None else int(o.n_features),
                               reg=float(o.reg))

    def describe(self) -> dict[str, Any]:
        subset = self.core.subset
        return {**super().describe(), "n_features": int(subset.numel()) if subset is not None else None,
                "score": "Mahalanobis distance per position", "image_score": "max of the map"}
