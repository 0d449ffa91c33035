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
  24 (``DPAM_layer`` 20), patch features of blocks 6/12/18/24, cached;
* ``losses``: focal + dice on the maps of every layer (x4) + the image CE;
* ``train``: Adam lr 0.001, betas (0.5, 0.999), batch 8, 15 epochs.

Test (``test.py`` l.73-111): text features once; image score = abnormal
probability of the image feature; map = sum over the 4 layers of the abnormal
patch probability, returned on the patch grid (bilinear upsampling is linear,
so summing before or after it is the same), Gaussian sigma 4 (l.192) by the
evaluator.

Block numbers on another depth: ``layers`` and ``dpam_start`` default to the
official ones scaled by n_layers / 24 (the 12-block tiny model: layers
3/6/9/12, DPAM from 3), so the test model keeps the official proportions.
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
from fsadbench.methods.anomalyclip.encoder import OFFICIAL_DPAM_START, OFFICIAL_LAYERS, dpam_spec, scaled
from fsadbench.methods.anomalyclip.losses import anomaly_map, image_logits
from fsadbench.methods.anomalyclip.prompts import PromptLearner, encode_prompts, templates
from fsadbench.methods.anomalyclip.train import train_epochs
from fsadbench.core.defaults import TINY_MODEL
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.common.text_prompts import PromptTextEncoder
from fsadbench.protocol.method import Method


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
    fidelity_notes = (
        "the Gaussian (sigma 4) is applied at the evaluation size, not at the 518 px image size",
        "fp32 text pass (the official code casts the deep text tokens to fp16, AnomalyCLIP.py l.246)",
        "shuffles and initialisation seeded by the cell seed (the official code seeds 111)",
        "positional embedding resized to the 518 px grid once by open_clip (bicubic); the official code "
        "interpolates it bilinearly at run time (AnomalyCLIP.py l.366-370)",
    )

    learner: PromptLearner
    history: list[dict[str, float]]

    @dataclass
    class Options(BackboneOptions):
        n_ctx: int = 12  # train.py l.125
        depth: int = 9  # train.py l.124
        t_n_ctx: int = 4  # train.py l.126
        layers: tuple[int, ...] | None = None  # None: 6/12/18/24 scaled to the tower (train.py l.128)
        dpam_start: int | None = None  # None: block 6 of 24, scaled (DPAM_layer 20, train.py l.42/69)
        epochs: int = 15  # train.py l.130
        lr: float = 1e-3  # train.py l.131
        beta1: float = 0.5  # train.py l.44
        beta2: float = 0.999  # train.py l.44
        batch_size: int = 8  # train.py l.132

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        bb = ctx.backbone
        checks = [(o.epochs >= 1, "epochs", "an integer >= 1 (official: 15)"),
                  (o.batch_size >= 1, "batch_size", "an integer >= 1 (official: 8)"),
                  (o.lr > 0, "lr", "> 0 (official: 0.001)"),
                  (0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "beta1/beta2", "in [0, 1) (official: 0.5, 0.999)"),
                  (1 <= o.depth <= len(PromptTextEncoder(bb.model, bb.tokenizer).text.blocks), "depth",
                   "between 1 and the text encoder's blocks (official: 9)")]
        for ok, name, want in checks:
            if not ok:
                raise ConfigError(f"method 'anomalyclip': option {name!r} must be {want}")
        n = bb.n_layers
        layers = OFFICIAL_LAYERS if o.layers is None else int_tuple(o.layers, self.name, "layers")
        self.layers = tuple(sorted(set(scaled(layers, n) if o.layers is None else bb.check_layers(layers))))
        self.dpam_start = scaled((OFFICIAL_DPAM_START,), n)[0] if o.dpam_start is None else int(o.dpam_start)
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
        return encode_prompts(self.encoder, self.learner, self.layout)

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
        d.update({"layers": list(self.layers), "dpam_start": self.dpam_start, "trained_on": self.trained_on,
                  "final_losses": self.history[-1] if self.history else None})
        return d
