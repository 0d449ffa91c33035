"""``memory``: the vision-guidance branch alone, as a baseline.

Patch tokens of two intermediate blocks (``memory_layers``, default 3 and 8,
1-indexed: PromptAD's clean choice of its hooked blocks, vv-attention spec) of
the k shots form a memory; a test patch scores min (1 - cos)/2 against it
(``VisualMemory``), averaged over the blocks; the image score is the max of
the map. Needs at least one shot. Option ``layers`` is the deprecated name of
``memory_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fsadbench.core.errors import NotApplicable
from fsadbench.core.variants import W_VG
from fsadbench.backbone.features import token_spec
from fsadbench.protocol.method import Method
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction

from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.common.visual_memory import VisualMemory


class MemoryBank(Method):
    name = "memory"
    feature_specs = ("tokens",)
    variants = (W_VG,)
    min_shots = 1
    default_sigma = 4.0
    sigma_size = None  # the harness's own method: sigma 4 at the evaluation size
    option_aliases = {"layers": "memory_layers"}
    fidelity_notes = (
        "not a published method: the VG branch of PromptAD/APT alone, plain (not V-V) encoder pass",
        "memory features are cloned block outputs (PromptAD's code keeps a view the next block overwrites)",
    )

    @dataclass
    class Options:
        memory_layers: tuple[int, ...] = (3, 8)  # 1-indexed blocks, PromptAD's clean choice

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        self.options.memory_layers = int_tuple(self.options.memory_layers, self.name, "memory_layers")
        self.layers = ctx.backbone.check_layers(self.options.memory_layers)
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
        return {W_VG: Prediction(maps=maps, scores=maps.flatten(1).max(dim=1).values)}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "memory_layers": list(self.layers), "score": "min (1 - cos)/2, mean over blocks",
                "image_score": "max of the map"}
