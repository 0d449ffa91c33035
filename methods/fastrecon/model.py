"""``fastrecon``: FastRecon as a method (the equations are in :mod:`.torch_model`).

Backbone: ``torchvision:wide_resnet50_2`` with ImageNet weights, the official code's (``main.py`` l. 240),
``layer2`` + ``layer3`` (l. 245-246); the pipeline check runs ``wide_resnet50_2-tiny`` (the same channels).
The k shots' patch rows (3 x 3 neighbourhood average, layer3 nearest-upsampled to layer2's grid) give a
greedy coreset S (``coreset_ratio`` 0.01, the README's command) and the per-position mean mu; each test
image's rows Q are reconstructed in closed form as W S with W = (Q S^T + lambda mu S^T)
[(1 + lambda) S S^T]^-1 (lambda 2, ``main.py`` l. 389-397, 453); the map is |Q - Q_hat| per position and
the image score its max (l. 400-410). The evaluator upsamples the map and smooths it with sigma 4 at the
224 px input (l. 412-413).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from fsadbench.protocol.optionranges import Range
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, BaselineOptions, WideResNet50Baseline
from fsadbench.methods.fastrecon import torch_model as core

#: the departures from the official code (``torch_model`` docstring), in every record and table note
POOL_NOTE = ("support pool and mu from all k shots (the paper's support feature pool); the official main.py "
             "l. 352-353 keeps only the last training batch, i.e. one shot")
RATIO_NOTE = ("coreset_ratio 0.01 from the official README's command; main.py's default 0.001 (l. 446) keeps "
              "no row of one 224 px shot")
SOLVE_NOTE = ("closed form with (S S^T)^-1 taken once per fit in float64, not [(1 + lambda) S S^T]^-1 in float32 "
              "per test image (the same equation)")


class FastReconMethod(WideResNet50Baseline):
    name = "fastrecon"
    paper = ("FastRecon (Fang et al., ICCV 2023): Few-shot Industrial Anomaly Detection via Fast Feature "
             "Reconstruction")
    reference_layers = core.LAYERS
    default_sigma = 4.0  # main.py l. 413: gaussian_filter(sigma=4)
    sigma_size = 224  # main.py l. 407-413: the map resized to the 224 px input (l. 445), then smoothed
    fidelity_notes = (POOL_NOTE, RATIO_NOTE, SOLVE_NOTE, SQUASH_224, SIGMA_AT_EVAL)

    @dataclass
    class Options(BaselineOptions):
        lam: float = core.LAMBDA  # weight of the distribution term (main.py l. 453, --lambde)
        coreset_ratio: float = core.CORESET_RATIO  # share of the shots' rows kept as S (README command)
        ranges: ClassVar[Mapping[str, Range]] = {
            "lam": Range(ge=0, why="(the weight of the distribution term)"),
            "coreset_ratio": Range(gt=0, le=1)}

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        self.core = core.FastRecon(lam=float(o.lam), coreset_ratio=float(o.coreset_ratio))

    def describe(self) -> dict[str, Any]:
        rec = self.core.reconstructor
        return {**super().describe(), "support_rows": int(rec.support.shape[0]) if rec is not None else 0,
                "score": "L2 norm of the residual Q - Q_hat of the closed-form reconstruction per position",
                "image_score": "max of the raw map (official main.py l. 410)"}
