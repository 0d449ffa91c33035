"""``patchcore``: PatchCore as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights (anomalib's and the official code's
default), ``layer2`` + ``layer3``; the pipeline check runs ``wide_resnet50_2-tiny``. The k shots' patch
embeddings form the memory: all of them (``coreset_ratio = 1``, the few-shot decision in
:mod:`.torch_model`) or a greedy coreset.

Scoring (``scoring``, ``target_dim``): the default is the official code's (amazon-science/patchcore-inspection):
3 x 3 patches pooled to 1024 values per layer and the layers to ``target_dim = 1024``, the squared L2
distance to the nearest memory row (faiss ``IndexFlatL2``) as patch score, their plain maximum as image
score. ``scoring="anomalib"`` with ``target_dim=None`` is anomalib's: the 1536-channel concatenation of the
3 x 3 neighbourhood averages, L2 distances, the paper's re-weighted maximum over ``num_neighbors = 9``.
Why the official one is the default for the WinCLIP / AnoPLe few-shot figures: :mod:`.torch_model`
(no published source names anomalib; the rule is to follow the official code). Each departure of the
options in force from the official code is a fidelity note; ``describe()["choices"]`` names each choice
with the official value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.patchcore import torch_model as core
from fsadbench.protocol.optionranges import Range


#: the official values of the choices (patchcore-inspection file and line)
OFFICIAL_SCORING = ("squared L2 to the nearest memory patch (faiss IndexFlatL2, common.py l.43-48, "
                    "anomaly_scorer_num_nn 1, README l.29), image score = max of the patch scores "
                    "(PatchMaker.score, patchcore.py l.313-319)")
OFFICIAL_EMBEDDING = ("3 x 3 patches pooled to 1024 per layer, the layers to 1024 (Preprocessing / Aggregator, "
                      "common.py l.145-183; README l.29 --pretrain_embed_dimension 1024 --target_embed_dimension 1024)")
ANOMALIB_SCORING_NOTE = ("anomalib's scoring (scoring=anomalib): L2 distances and the re-weighted maximum over "
                         "num_neighbors nearest memory rows as image score; official: " + OFFICIAL_SCORING)
CONCAT_NOTE = ("anomalib's embedding (target_dim=None): the 3 x 3 neighbourhood averages of layer2 and layer3 "
               "concatenated (1536 channels for WRN-50); official: " + OFFICIAL_EMBEDDING)


CORESET_NOTE = ("coreset (coreset_ratio < 1) by anomalib's k-center greedy on the full embedding; official: "
                "ApproximateGreedyCoresetSampler (sampler.py l.118-128: 10 random starting points, features "
                "projected to 128 dimensions; README l.30 approx_greedy_coreset)")


def choice_notes(scoring: str, target_dim: int | None, pretrain_dim: int,
                 coreset_ratio: float) -> tuple[str, ...]:
    """The fidelity notes of the scoring options that depart from the official code (none for its values)."""
    notes = (ANOMALIB_SCORING_NOTE,) if scoring == "anomalib" else ()
    notes += (CORESET_NOTE,) if coreset_ratio < 1.0 else ()
    if target_dim is None:
        return notes + (CONCAT_NOTE,)
    if (target_dim, pretrain_dim) != (core.TARGET_DIM, core.PRETRAIN_DIM):
        notes += (f"embedding pooled to {pretrain_dim} per layer and {target_dim} in all; official: 1024 and 1024 "
                  "(README l.29)",)
    return notes


class PatchCoreMethod(WideResNet50Baseline):
    name = "patchcore"
    paper = "PatchCore (Roth et al., CVPR 2022): Towards Total Recall in Industrial Anomaly Detection"
    version = 2  # 2: the official scoring and 1024-d pooling by default (was anomalib's)
    reference_layers = core.LAYERS
    default_sigma = 4.0  # anomalib anomaly_map.py / official RescaleSegmentor: Gaussian sigma 4
    sigma_size = 224  # both smooth the map at the 224 px input (official resize 256 + crop 224; anomalib's too)
    fidelity_notes = (
        "few-shot: the memory keeps every patch of the k shots (coreset_ratio 1; the full-data papers use 10 %)",
        SQUASH_224,
        "exact (squared) Euclidean distances instead of faiss's / anomalib's expanded |x|^2 + |y|^2 - 2xy form",
        SIGMA_AT_EVAL,
    )

    @dataclass
    class Options(BaselineOptions):
        scoring: str = "official"  # official: squared L2, plain max (patchcore-inspection); "anomalib"
        num_neighbors: int = core.NUM_NEIGHBORS  # anomalib torch_model.py l. 113 (scoring=anomalib only)
        coreset_ratio: float = core.CORESET_RATIO  # few-shot: the full memory
        target_dim: int | None = core.TARGET_DIM  # official README l.29; None: anomalib's concatenation
        pretrain_dim: int = core.PRETRAIN_DIM  # official README l.29 (with target_dim only)
        ranges: ClassVar[Mapping[str, Range]] = {"target_dim": Range(ge=1), "pretrain_dim": Range(ge=1)}

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        if not 0.0 < float(o.coreset_ratio) <= 1.0:
            raise ConfigError(f"patchcore option 'coreset_ratio' must be in (0, 1], got {o.coreset_ratio!r}")
        if int(o.num_neighbors) < 1:
            raise ConfigError(f"patchcore option 'num_neighbors' must be >= 1, got {o.num_neighbors!r}")
        if o.scoring not in core.SCORINGS:
            raise ConfigError(f"patchcore option 'scoring' must be one of {core.SCORINGS} (official: 'official'), "
                              f"got {o.scoring!r}")
        if o.scoring == "official" and int(o.num_neighbors) != core.NUM_NEIGHBORS:
            raise ConfigError(f"patchcore option 'num_neighbors' ({o.num_neighbors!r}) is used by scoring=anomalib "
                              f"only (the official image score is the plain max); add scoring=anomalib or drop it")
        target = None if o.target_dim is None else int(o.target_dim)
        pretrain = int(o.pretrain_dim)
        self.core = core.PatchCore(num_neighbors=int(o.num_neighbors), coreset_ratio=float(o.coreset_ratio),
                                   target_dim=target, scoring=o.scoring, pretrain_dim=pretrain, seed=ctx.seed)
        self.fidelity_notes = (choice_notes(o.scoring, target, pretrain, float(o.coreset_ratio))
                               + type(self).fidelity_notes)

    def describe(self) -> dict[str, Any]:
        memory = self.core.memory
        c = self.core
        official = c.scoring == "official"
        embedding = ("anomalib's concatenation of the 3 x 3 neighbourhood averages" if c.target_dim is None
                     else f"3 x 3 patches pooled to {c.pretrain_dim} per layer, the layers to {c.target_dim}")
        return {**super().describe(), "memory_rows": int(memory.shape[0]) if memory is not None else 0,
                "score": "squared L2 to the nearest memory patch" if official else "L2 to the nearest memory patch",
                "image_score": "max of the patch scores" if official
                else f"re-weighted max over {c.num_neighbors} neighbours (anomalib)",
                "choices": {"scoring": f"{c.scoring} (official: {OFFICIAL_SCORING})",
                            "embedding": f"{embedding} (official: {OFFICIAL_EMBEDDING})",
                            "coreset_ratio": f"{c.coreset_ratio} (official: 0.1, README l.30 sampler -p 0.1)"}}
