"""InCTRL (Zhu and Pang, CVPR 2024): in-context residual learning with few-shot normal sample prompts.

Toward Generalist Anomaly Detection via In-context Residual Learning with Few-shot Sample Prompts;
official code mala-lab/InCTRL. A frozen CLIP gives, for a query and its k normal prompts (the shots),
the patch residual map over three blocks and the text prior (``residual``); a small trained part
(adapter, image-level residual head, holistic head: ``head``) turns them into one anomaly score.
It is trained once on an auxiliary labelled dataset with its anomalies (``fit_scope = "auxiliary"``:
the harness's transfer protocol, ``--train-on``; ``train``), then meets each target category's k shots
without further training (``few_shot_transfer``). It makes no map: an image-level method
(``produces = ("image",)``), every pixel metric is "n/a, image-level method".

Defaults, official file and line: backbone open_clip ViT-B-16-plus-240 with laion400m_e32 weights at
240 px (``engine_IC.py`` l.143 and l.182, ``main.py`` l.85); blocks 7/9/11 (``open_clip/model.py``
l.478); adapter reduction 4 (l.466); 2 prompts per training query (``main.py`` l.83); 10 epochs of
100 steps (``engine_IC.py`` l.201, ``main.py`` l.81) of 16 queries (``defaults.py`` l.23); AdamW lr
1e-3 (``engine_IC.py`` l.188). Deterministic for a seed on CPU: the heads are initialised under
``manual_seed(seed)`` in a forked RNG and every draw comes from one generator seeded by the cell seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from fsadbench.backbone.features import token_spec
from fsadbench.core.defaults import TINY_MODEL
from fsadbench.core.errors import ConfigError, MethodError
from fsadbench.core.types import AuxiliarySet, CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import W_VG
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.inctrl.head import HolisticHead, focal_loss
from fsadbench.methods.inctrl.residual import (OFFICIAL_LAYERS, class_words, patch_residual, residual_of_each,
                                               scaled, state_features, text_prior)
from fsadbench.methods.inctrl.train import train_heads
from fsadbench.protocol.method import Method


class InCTRL(OwnBackbone, Method):
    name = "inctrl"
    paper = ("Zhu and Pang, CVPR 2024: Toward Generalist Anomaly Detection via In-context Residual Learning "
             "with Few-shot Sample Prompts")
    backbone_default = "open_clip:ViT-B-16-plus-240"  # engine_IC.py l.143 (its 240 px, main.py l.85)
    backbone_tiny = TINY_MODEL
    backbone_weights_default = "laion400m_e32"  # engine_IC.py l.182
    variants = (W_VG,)  # the shots are compared patch by patch: visual guidance
    produces = ("image",)
    fit_scope = "auxiliary"
    few_shot_transfer = True
    min_shots = 1  # the residuals need prompts
    feature_specs = ("tokens",)
    fidelity_notes = (
        "per-query residuals: the official forward reshapes its layer-major stacks as batch-major "
        "(open_clip/model.py l.536-540), which mixes queries, layers and shots when a batch holds more than "
        "one image (training batch 16); this port computes what it does at batch size 1 (its test batch)",
        "images squashed to the input size (the official code resizes the short side and centre-crops)",
        "training prompts drawn from the auxiliary category's normal test images (the official training "
        "json lists its own normal images)",
        "draws and initialisation seeded by the cell seed (the official code seeds 10)",
    )

    @dataclass
    class Options(BackboneOptions):
        layers: tuple[int, ...] | None = None  # None: blocks 7/9/11 of 12, scaled (open_clip/model.py l.478)
        train_shots: int = 2  # normal prompts per training query (main.py l.83 --shot)
        epochs: int = 10  # engine_IC.py l.201
        steps_per_epoch: int = 100  # main.py l.81
        batch_size: int = 16  # defaults.py l.23 TRAIN.BATCH_SIZE: half normal, half anomalous
        lr: float = 1e-3  # engine_IC.py l.188
        weight_decay: float = 0.01  # engine_IC.py l.188: AdamW's default
        reduction: int = 4  # open_clip/model.py l.466 Adapter(640, 4)

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        bb = ctx.backbone
        checks = [(o.epochs >= 1, "epochs", "an integer >= 1 (official: 10)"),
                  (o.steps_per_epoch >= 1, "steps_per_epoch", "an integer >= 1 (official: 100)"),
                  (o.batch_size >= 2, "batch_size", "an integer >= 2: one normal and one anomalous query at "
                                                    "least (official: 16)"),
                  (o.train_shots >= 1, "train_shots", "an integer >= 1 (official: 2)"),
                  (o.lr > 0, "lr", "> 0 (official: 0.001)"), (o.weight_decay >= 0, "weight_decay", ">= 0"),
                  (o.reduction >= 1, "reduction", "an integer >= 1 (official: 4)")]
        for ok, name, want in checks:
            if not ok:
                raise ConfigError(f"method 'inctrl': option {name!r} must be {want}")
        layers = OFFICIAL_LAYERS if o.layers is None else int_tuple(o.layers, self.name, "layers")
        self.layers = tuple(sorted(set(scaled(layers, bb.n_layers) if o.layers is None else bb.check_layers(layers))))
        self.spec = token_spec(self.layers)
        h, w = bb.grid
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.head = HolisticHead(int(bb.embed_dim), h * w, o.reduction).to(ctx.device)
        self.prompts: dict[str, tuple[str, dict[str, torch.Tensor]]] = {}  # category -> (class words, shots)
        self.current: str | None = None
        self._states: dict[str, torch.Tensor] = {}
        self.trained_on: str | None = None
        self.history: list[float] = []

    # -- evidence ----------------------------------------------------------------------------
    def states(self, words: str) -> torch.Tensor:
        """[t_n, t_a] of a class name, encoded once."""
        if words not in self._states:
            with torch.no_grad():
                self._states[words] = state_features(self.ctx.backbone.encode_text, words)
        return self._states[words]

    def features(self, refs: Sequence[ImageRef]) -> dict[Any, torch.Tensor]:
        """``embedding`` (B x E) and blocks ``l`` (B x N x D) of the frozen plain pass (cached)."""
        f = self.ctx.features.get(list(refs), self.spec)
        return {"embedding": f["embedding"].float(), **{l: f[f"layer{l}"].float() for l in self.layers}}

    def score(self, query: dict, shots: dict, words: Sequence[str], patch_map: torch.Tensor):
        """(final, image-level) scores of queries with their prompts' tokens ``shots`` (B x K x E)."""
        text = torch.stack([text_prior(query["embedding"][i:i + 1], self.states(w))[0] for i, w in enumerate(words)])
        return self.head(patch_map, text, query["embedding"], shots)

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        """The target category's k shots: its in-context prompts (nothing is trained on them)."""
        if not normals:
            raise MethodError("InCTRL needs k >= 1 normal prompts per category")
        with torch.no_grad():
            self.prompts[category.name] = (class_words(category.name), self.features(normals))
        self.current = category.name

    def set_category(self, category: CategoryInfo) -> None:
        self.current = category.name

    def fit_auxiliary(self, aux: AuxiliarySet) -> None:
        """Train the adapter and heads on the auxiliary set's queries and same-category normal prompts."""
        o = self.options
        if not aux.images or not aux.image_categories:
            raise MethodError(f"InCTRL: the auxiliary set {aux.dataset!r} has no images with their categories")
        cats = list(aux.image_categories)

        def loss_of(queries: list[int], prompts: list[list[int]]) -> torch.Tensor:
            q = self.features([aux.images[i] for i in queries])
            flat = self.features([aux.images[i] for p in prompts for i in p])
            k = len(prompts[0])
            s = {key: v.reshape(len(queries), k, *v.shape[1:]) for key, v in flat.items()}
            with torch.no_grad():
                patch_map = residual_of_each(q, s, self.layers)
            final, image = self.score(q, s["embedding"], [class_words(cats[i]) for i in queries], patch_map)
            y = torch.tensor([float(aux.labels[i]) for i in queries], device=final.device)
            return focal_loss(final, y) + focal_loss(image, y)

        def report(epoch: int, loss: float) -> None:
            self.ctx.step("epoch", epoch, o.epochs)
            self.ctx.show(loss=loss)

        self.history = train_heads(self.head, loss_of, aux.labels, cats, shots=o.train_shots, epochs=o.epochs,
                                   steps=o.steps_per_epoch, batch_size=o.batch_size, lr=o.lr,
                                   weight_decay=o.weight_decay, seed=self.ctx.seed, report=report)
        self.trained_on = aux.dataset

    # -- test -------------------------------------------------------------------------------------
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self.trained_on is None:
            raise MethodError("InCTRL.predict() before fit_auxiliary(): the heads are untrained")
        if self.current not in self.prompts:
            raise MethodError("InCTRL.predict() before fit(): no normal prompts for this category")
        words, shots = self.prompts[self.current]
        self.head.eval()
        with torch.no_grad():
            q = self.features(images)
            patch_map = patch_residual(q, shots, self.layers)
            ref = shots["embedding"].unsqueeze(0).expand(len(images), -1, -1)
            final, _ = self.score(q, ref, [words] * len(images), patch_map)
        return {W_VG: Prediction(None, final.cpu().numpy().astype(np.float32))}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"layers": list(self.layers), "trained_on": self.trained_on,
                  "final_loss": self.history[-1] if self.history else None})
        return d
