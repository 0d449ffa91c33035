"""``memory``: the vision-guidance branch alone, as a baseline.

Patch tokens of two intermediate blocks of the k shots form a memory; a test
patch scores min (1 - cos)/2 against it, averaged over the two blocks; the
image score is the max of the map. Needs at least one shot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fsadbench.core.errors import NotApplicable
from fsadbench.backbone.features import token_spec
from fsadbench.protocol.method import Method
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction

from fsadbench.methods.common.visual_memory import VisualMemory


class MemoryBank(Method):
    name = "memory"
    feature_specs = ("tokens",)
    variants = ("w/ VG",)
    min_shots = 1
    default_sigma = 4.0

    @dataclass
    class Options:
        layers: tuple[int, ...] = (3, 8)  # 1-indexed blocks, PromptAD's clean choice

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        self.layers = ctx.backbone.check_layers(self.options.layers)
        self.spec = token_spec(self.layers)
        self.memory = VisualMemory(self.layers)

    def _tokens(self, images: Sequence[ImageRef]):
        feats = self.ctx.features.get(images, self.spec)
        return {l: feats[f"layer{l}"] for l in self.layers}

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        if not normals:
            raise NotApplicable("memory needs at least one normal shot (shots=0 is zero-shot)")
        self.memory.fit(self._tokens(normals))

    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        scores = self.memory.score(self._tokens(images))  # B x N
        maps = scores.reshape(scores.shape[0], *self.ctx.backbone.grid)
        return {"w/ VG": Prediction(maps=maps, scores=maps.flatten(1).max(dim=1).values)}
