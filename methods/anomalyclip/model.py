"""AnomalyCLIP (Zhou et al., ICLR 2024): object-agnostic prompts trained on an auxiliary dataset.

The zero-shot transfer protocol: the prompts are trained once on the labelled
test split of another dataset (``fit_scope = "auxiliary"``: the harness hands
an :class:`~fsadbench.core.types.AuxiliarySet` to :meth:`fit_auxiliary`), then
every category of the target is evaluated with 0 shots. Pieces, each in its
module with the official code's file and line for every default
(zqhang/AnomalyCLIP):

* ``prompts``: the two object-agnostic prompts, contexts of length 12, deep
  text tokens of length 4 in the first 9 text blocks;
* ``encoder``: the frozen image pass, DPAM (V-V attention) from block 6 of
  24 (``DPAM_layer`` 20), patch features of the last block, cached;
* ``losses``: focal + dice on the map of each feature layer + the image CE;
* ``train``: Adam lr 0.001, betas (0.5, 0.999), batch 8, 15 epochs.

Test (``test.py`` l.73-111): text features once; image score = abnormal
probability of the image feature; map = sum over the feature layers of the
abnormal patch probability, returned on the patch grid (bilinear upsampling is linear,
so summing before or after it is the same), Gaussian sigma 4 (l.192) by the
evaluator.

Feature layers (``layers``): ``"last"`` (default), the last block of the tower,
block 24 of the official ViT-L/14: the official runs pass ``--features_list 24``
(``train.sh`` l.16 and l.35, ``test.sh`` l.17 and l.36), every published figure
and the released checkpoints come from it (the author, zqhang/AnomalyCLIP
issue #82). ``"multiscale"`` is the argparse default 6/12/18/24 (``train.py``
l.128) scaled by n_layers / 24 (3/6/9/12 on the 12-block tiny model); a list
names blocks. Any other choice than the last block alone adds a fidelity note:
each map adds its focal + dice to the map loss, so N layers weigh the map loss
N times against the image loss, and the test map sums N probabilities.
DPAM (``dpam_start``) defaults to the official first refined block (6 of 24,
``encoder.OFFICIAL_DPAM_START``) scaled by n_layers / 24 (3 on 12 blocks).

Text precision (``text_fp16_grad``, default true): the official code casts
the deep text tokens to fp16 where it inserts them (``AnomalyCLIP.py``
l.246: ``expand(...).half()``), so their values and each prompt's gradient
are rounded to fp16 before the two prompts' gradients are summed (where
those cancel, the official gradient is exactly 0). The option does the same
cast; the rest of the text pass stays fp32 (the official model runs the whole
tower in fp16 on CUDA), which is a fidelity note.
The method runs on its own backbone (``OwnBackbone``): open_clip ViT-L-14-336
with OpenAI weights at 518 px by default, the tiny random CLIP in the offline
pipeline check, any other through the ``backbone`` / ``backbone_weights`` options.

Few shots: the official code has no few-shot use, so a cell with shots > 0
is not applicable. Deterministic for a seed on CPU: the learner is initialised
under ``manual_seed(seed)`` in a forked RNG and the shuffles come from one
generator seeded by the cell seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.core.types import AuxiliarySet, CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import WO_VG
from fsadbench.methods.anomalyclip.encoder import default_dpam_start, dpam_spec, named_layers
from fsadbench.methods.anomalyclip.losses import anomaly_map, image_logits
from fsadbench.methods.anomalyclip.prompts import PromptLearner, encode_prompts, templates
from fsadbench.methods.anomalyclip.train import train_epochs
from fsadbench.core.defaults import TINY_MODEL
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.common.text_prompts import PromptTextEncoder
from fsadbench.protocol.method import Method


TEXT_FP16_NOTE = ("text pass in fp32 except the deep text tokens, cast to fp16 where they are inserted as in the "
                  "official code (AnomalyCLIP.py l.246: values and each prompt's gradient rounded to fp16); the "
                  "official model runs the whole text tower in fp16 on CUDA")
FP32_TOKENS_NOTE = ("deep text tokens kept in fp32 (text_fp16_grad=false): the official code casts them to fp16 "
                    "(AnomalyCLIP.py l.246), rounding their values and each prompt's gradient, so where the two "
                    "prompts' gradients cancel its gradient is exactly 0 and Adam's first step differs by up to lr")
BASE_NOTES = (
    "shuffles and initialisation seeded by the cell seed (the official code seeds 111)",
    "positional embedding resized to the 518 px grid once by open_clip (bicubic); the official code "
    "interpolates it bilinearly at run time (AnomalyCLIP.py l.366-370)",
)


def layer_notes(layers: tuple[int, ...], n_layers: int) -> tuple[str, ...]:
    """The fidelity note of feature layers other than the official last block alone (none for it)."""
    if layers == (n_layers,):
        return ()
    return (f"feature layers {'/'.join(map(str, layers))} of {n_layers} blocks; the official runs and every "
            "published figure read the last block only (--features_list 24: train.sh l.16/35, test.sh l.17/36; "
            f"zqhang/AnomalyCLIP issue #82): the map loss sums {len(layers)} layers, weighing {len(layers)}x "
            "against the image loss, and the test map sums their probabilities",)


def fp16_notes(fp16: bool) -> tuple[str, ...]:
    """The note on the precision of the text pass for ``text_fp16_grad``."""
    return (TEXT_FP16_NOTE,) if fp16 else (FP32_TOKENS_NOTE,)


class AnomalyCLIP(OwnBackbone, Method):
    name = "anomalyclip"
    #: its own backbone (``train.py`` l.32 ``ViT-L/14@336px``, OpenAI weights; l.133 image size 518);
    #: the tiny random CLIP in the offline pipeline check; option ``backbone`` / ``backbone_weights``
    backbone_default = "open_clip:ViT-L-14-336@518"
    backbone_tiny = TINY_MODEL
    backbone_weights_default = "openai"
    variants = (WO_VG,)
    fit_scope = "auxiliary"
    auxiliary_needs_masks = True  # focal + dice on the auxiliary masks (train.py)
    feature_specs = ("anomalyclip-dpam", "anomalyclip-text")
    min_shots = 0
    default_sigma = 4.0  # test.py l.192
    sigma_size = 518  # test.py l. 101, 111, 185: the map at --image_size 518 (test.sh), then gaussian_filter
    version = 2  # 2: the last block only by default (was 6/12/18/24 scaled), deep text tokens cast to fp16
    #: the notes of the defaults; an instance's (``describe()``) add those of its options
    fidelity_notes = (TEXT_FP16_NOTE,) + BASE_NOTES

    learner: PromptLearner
    history: list[dict[str, float]]

    @dataclass
    class Options(BackboneOptions):
        n_ctx: int = 12  # train.py l.125
        depth: int = 9  # train.py l.124
        t_n_ctx: int = 4  # train.py l.126
        layers: Any = "last"  # the last block (train.sh l.16/35, test.sh l.17/36); "multiscale": 6/12/18/24
        dpam_start: int | None = None  # None: block 6 of 24, scaled (DPAM_layer 20, train.py l.42/69)
        epochs: int = 15  # train.py l.130
        lr: float = 1e-3  # train.py l.131
        beta1: float = 0.5  # train.py l.44
        beta2: float = 0.999  # train.py l.44
        batch_size: int = 8  # train.py l.132
        text_fp16_grad: bool = True  # AnomalyCLIP.py l.246: deep text tokens (and their gradients) in fp16

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        bb = ctx.backbone
        checks = [(o.epochs >= 1, "epochs", "an integer >= 1 (official: 15)"),
                  (o.batch_size >= 1, "batch_size", "an integer >= 1 (official: 8)"),
                  (o.lr > 0, "lr", "> 0 (official: 0.001)"),
                  (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "beta1/beta2", "in [0, 1) (official: 0.5, 0.999)"),
                  (isinstance(o.text_fp16_grad, bool), "text_fp16_grad", "true or false (official: true)"),
                  (1 <= o.depth <= len(PromptTextEncoder(bb.model, bb.tokenizer).text.blocks), "depth",
                   "between 1 and the text encoder's blocks (official: 9)")]
        for ok, name, want in checks:
            if not ok:
                raise ConfigError(f"method 'anomalyclip': option {name!r} must be {want}")
        n = bb.n_layers
        if isinstance(o.layers, str):
            self.layers = named_layers(o.layers, n)
        else:
            self.layers = tuple(sorted(set(bb.check_layers(int_tuple(o.layers, self.name, "layers")))))
        self.dpam_start = default_dpam_start(n) if o.dpam_start is None else int(o.dpam_start)
        self.fidelity_notes = layer_notes(self.layers, n) + fp16_notes(o.text_fp16_grad) + BASE_NOTES
        self.spec = dpam_spec(self.dpam_start, self.layers)
        self.device = ctx.device
        self.encoder = PromptTextEncoder(bb.model, bb.tokenizer)
        self.layout = templates(self.encoder, o.n_ctx)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.learner = PromptLearner(self.encoder.width, o.n_ctx, o.depth, o.t_n_ctx).to(self.device)
        self.trained_on: str | None = None
        self.history = []
        self._text: torch.Tensor | None = None

    def text_features(self) -> torch.Tensor:
        """2 x E normalised (normal, abnormal) text features of the current prompts."""
        return encode_prompts(self.encoder, self.learner, self.layout, fp16=bool(self.options.text_fp16_grad))

    # -- training ---------------------------------------------------------------------------
    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        """The target category: nothing to learn from it (zero-shot); shots are not used."""
        if normals:
            raise NotApplicable("AnomalyCLIP is zero-shot: the official code has no few-shot use; run --shots 0")

    def fit_auxiliary(self, aux: AuxiliarySet) -> None:
        """Train the prompts on the auxiliary labelled split (its images, labels and masks)."""
        if not aux.images:
            raise MethodError(f"AnomalyCLIP: the auxiliary set {aux.dataset!r} has no images")
        size = self.ctx.backbone.image_size

        def batch(idx: list[int]):
            feats = self.ctx.features.get([aux.images[i] for i in idx], self.spec)
            labels = torch.tensor([int(aux.labels[i]) for i in idx])
            masks = self.ctx.features.masks([aux.masks[i] for i in idx], size)
            return feats, labels, masks

        train_epochs(self, len(aux.images), batch)
        self.trained_on = aux.dataset
        with torch.no_grad():
            self._text = self.text_features()

    # -- test ------------------------------------------------------------------------------------
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self._text is None:
            raise MethodError("AnomalyCLIP.predict() before fit_auxiliary(): the prompts are untrained")
        with torch.no_grad():
            feats = self.ctx.features.get(list(images), self.spec)
            scores = image_logits(feats["embedding"], self._text).softmax(dim=-1)[:, 1]
            flat = anomaly_map([feats[f"layer{i}"] for i in self.layers], self._text)
        h, w = self.ctx.backbone.grid
        maps = flat.reshape(len(images), h, w)
        return {WO_VG: Prediction(maps.cpu().numpy().astype(np.float32), scores.cpu().numpy().astype(np.float32))}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        n, fp16 = self.ctx.backbone.n_layers, bool(self.options.text_fp16_grad)
        d["choices"] = {
            "layers": f"blocks {list(self.layers)} of {n} (official: the last block, --features_list 24, "
                      "train.sh l.16, test.sh l.17)",
            "dpam_start": f"block {self.dpam_start} of {n} (official: block 6 of 24, DPAM_layer 20, train.py l.42)",
            "text_fp16_grad": f"{fp16} (official: true, the deep text tokens cast to fp16, AnomalyCLIP.py l.246)"}
        d.update({"layers": list(self.layers), "dpam_start": self.dpam_start, "trained_on": self.trained_on,
                  "final_losses": self.history[-1] if self.history else None})
        return d
