"""``patchcore``: PatchCore as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights (anomalib's and the official code's
default), ``layer2`` + ``layer3``; the pipeline check runs ``wide_resnet50_2-tiny``. The k shots' patch
embeddings (3 x 3 neighbourhood average, layer3 resized to layer2's grid, concatenated) form the memory:
all of them (``coreset_ratio = 1``, the few-shot decision in :mod:`.torch_model`) or a greedy coreset;
a test patch scores its L2 distance to the nearest memory row; the image score is the paper's
re-weighted maximum over ``num_neighbors = 9`` (anomalib).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.patchcore import torch_model as core
from fsadbench.protocol.optionranges import Range


class PatchCoreMethod(WideResNet50Baseline):
    name = "patchcore"
    paper = "PatchCore (Roth et al., CVPR 2022): Towards Total Recall in Industrial Anomaly Detection"
    reference_layers = core.LAYERS
    default_sigma = 4.0  # anomalib anomaly_map.py / official RescaleSegmentor: Gaussian sigma 4
    sigma_size = 224  # both smooth the map at the 224 px input (official resize 256 + crop 224; anomalib's too)
    fidelity_notes = (
        "few-shot: the memory keeps every patch of the k shots (coreset_ratio 1; the full-data papers use 10 %)",
        SQUASH_224,
        "exact Euclidean distances instead of anomalib's expanded |x|^2 + |y|^2 - 2xy form",
        SIGMA_AT_EVAL,
    )

    @dataclass
    class Options(BaselineOptions):
        num_neighbors: int = core.NUM_NEIGHBORS  # anomalib torch_model.py l. 113
        coreset_ratio: float = core.CORESET_RATIO  # few-shot: the full memory
        target_dim: int | None = None  # None: anomalib's concatenation; 1024: the official code's pooling
        ranges: ClassVar[Mapping[str, Range]] = {"target_dim": Range(ge=1)}

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        if not 0.0 < float(o.coreset_ratio) <= 1.0:
            raise ConfigError(f"patchcore option 'coreset_ratio' must be in (0, 1], got {o.coreset_ratio!r}")
        if int(o.num_neighbors) < 1:
            raise ConfigError(f"patchcore option 'num_neighbors' must be >= 1, got {o.num_neighbors!r}")
        self.core = core.PatchCore(num_neighbors=int(o.num_neighbors), coreset_ratio=float(o.coreset_ratio),
                                   target_dim=None if o.target_dim is None else int(o.target_dim), seed=ctx.seed)

    def describe(self) -> dict[str, Any]:
        memory = self.core.memory
        return {**super().describe(), "memory_rows": int(memory.shape[0]) if memory is not None else 0,
                "score": "L2 to the nearest memory patch", "image_score": "re-weighted max (anomalib)"}
