"""WinCLIP and WinCLIP+ (Jeong et al., CVPR 2023): training-free zero/few-shot anomaly detection.

Text (Sec. 4.1, compositional prompt ensemble): every state phrase of
``NORMAL_STATES`` (7) and ``ANOMALOUS_STATES`` (4) with the class name, put
into every template of ``TEMPLATES`` (21): 147 normal and 84 anomalous
prompts. Each state's text embeddings (unnormalised) are averaged into one
normal t_n and one anomalous t_a. The class name is the category's
``CategoryInfo.class_name`` (words, underscores as spaces); option
``class_name="object"`` replaces it for every category.

Zero-shot score of an image/window embedding f (eq. 1-2):
``softmax([cos(f, t_n), cos(f, t_a)] / T)[anomalous]``, T = 0.07.

Windows (Sec. 4.2, ``fsadbench.methods.winclip.windows``): scales 2 and 3, stride 1,
plus the whole image. Window scores go to patches by harmonic aggregation
(eq. 4); the zero-shot map is the harmonic mean of [image score on every
patch, scale-2 map, scale-3 map]. "w/o VG" = this map; its image score is
the zero-shot score of the whole image.

Few-shot WinCLIP+ (Sec. 4.3), k normal shots: memories of the shots' patch
tokens (after ln_post, not projected) and of their window embeddings per
scale. A query vector scores min over its memory of (1 - cos)/2
(``visual_memory.min_cosine_distance``). Few-shot map = mean of [patch map,
harmonically aggregated scale-2 map, scale-3 map]; "w/ VG" map = (zero-shot
map + few-shot map)/2; image score = (zero-shot image score + max few-shot
map)/2. With 0 shots only "w/o VG" is returned.

Maps are returned on the 15 x 15 patch grid; the harness upsamples them
bilinearly and smooths with ``default_sigma`` = 4 evaluation pixels, the
Gaussian the WinCLIP protocol and the harness default share.

Everything that depends only on the image (full-image embedding, patch
tokens, window embeddings of both scales) comes from the feature cache
(one entry per image, shared across shots and seeds); text embeddings are
computed once per class name in ``fit`` and kept on the instance.
Choices where the paper is silent: the template list below (the one the
open re-implementations share), harmonic means clamp inputs at 1e-12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError, MethodError
from fsadbench.core.variants import W_VG, WO_VG
from fsadbench.backbone.features import FeatureSpec
from fsadbench.protocol.method import Method
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction

from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.common.visual_memory import min_cosine_distance
from fsadbench.methods.winclip.windows import encode_windows, harmonic_aggregate, harmonic_mean, window_mask

# -- compositional prompt ensemble (data) -----------------------------------------------------
NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)


def state_prompts(class_name: str, states: Sequence[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """Every state phrase of ``class_name`` in every template (states outer, templates inner)."""
    return [t.format(s.format(class_name)) for s in states for t in templates]


def ensemble_embeddings(encode, class_name: str) -> torch.Tensor:
    """Rows [t_n, t_a]: the mean of the unnormalised text embeddings of each state's prompts (Sec. 4.1).

    ``encode(list[str]) -> P x E``.
    """
    normal = encode(state_prompts(class_name, NORMAL_STATES)).float().mean(dim=0)
    anomalous = encode(state_prompts(class_name, ANOMALOUS_STATES)).float().mean(dim=0)
    return torch.stack([normal, anomalous])


def zero_shot_scores(features: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax over [cos(f, t_n), cos(f, t_a)] / T, anomalous probability (eq. 1-2): ... x E -> ..."""
    f = F.normalize(features.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1).to(f.device)
    return torch.softmax(f @ t.T / temperature, dim=-1)[..., 1]


def few_shot_map(patch_tokens: torch.Tensor, windows: dict[int, torch.Tensor],
                 patch_memory: torch.Tensor, window_memory: dict[int, torch.Tensor],
                 masks: dict[int, torch.Tensor]) -> torch.Tensor:
    """WinCLIP+ few-shot patch scores (Sec. 4.3): B x N.

    Mean of [min (1-cos)/2 of each patch token to the patch memory, and per
    scale s the harmonic aggregation (eq. 4) of each window's min (1-cos)/2 to
    the scale-s window memory].
    """
    b, n, d = patch_tokens.shape
    maps = [min_cosine_distance(patch_tokens.reshape(-1, d), patch_memory).reshape(b, n)]
    for s, emb in windows.items():
        nw, e = emb.shape[1], emb.shape[2]
        win = min_cosine_distance(emb.reshape(-1, e), window_memory[s]).reshape(b, nw)
        maps.append(harmonic_aggregate(win, masks[s]))
    return torch.stack(maps).mean(dim=0)


class WinCLIP(Method):
    name = "winclip"
    feature_specs = ("winclip-windows",)
    variants = (WO_VG, W_VG)
    min_shots = 0
    fidelity_notes = (
        "no official code: prompts, windows and aggregation follow the paper and the open re-implementations "
        "(each choice in methods/winclip/model.py's docstring)",
        "harmonic means clamp their inputs at 1e-12 (a zero score gives ~0, not NaN)",
    )
    #: the WinCLIP protocol's Gaussian (sigma 4 evaluation pixels), equal to the harness default
    default_sigma = 4.0
    sigma_size = None  # no official code; the spec hands the upsampled map to the harness's protocol
    #: sequences per transformer call when encoding windows (memory bound only; results do not depend on it)
    window_chunk = 2048

    @dataclass
    class Options:
        scales: tuple[int, ...] = (2, 3)
        temperature: float = 0.07
        class_name: str = ""  # "" = the category's class name; e.g. "object" for a fixed word

    def __init__(self, ctx, **options: Any):
        super().__init__(ctx, **options)
        o = self.options
        o.scales = int_tuple(o.scales, "method 'winclip'", "scales", what="window sizes in patches, e.g. [2, 3]")
        grid = ctx.backbone.grid
        if not o.scales or any(not 1 <= s <= min(grid) for s in o.scales):
            raise ConfigError(f"method 'winclip': option scales={list(o.scales)} must be window sizes in "
                              f"1..{min(grid)} patches for the {grid[0]}x{grid[1]} grid (paper: 2,3)")
        if not o.temperature > 0:
            raise ConfigError(f"method 'winclip': option temperature={o.temperature} must be > 0 (paper: 0.07)")
        scales = o.scales
        self.spec = FeatureSpec.make(
            "winclip-windows", lambda bb, px: encode_windows(bb, px, scales, self.window_chunk),
            scales=scales, version=1)
        self.masks = {s: window_mask(grid, s).to(ctx.device) for s in scales}
        self.text_cache: dict[str, torch.Tensor] = {}
        self.text: torch.Tensor | None = None
        self.class_name = ""
        self.patch_memory: torch.Tensor | None = None
        self.window_memory: dict[int, torch.Tensor] = {}

    # -- fit -----------------------------------------------------------------------------------
    def _text_for(self, class_name: str) -> torch.Tensor:
        if class_name not in self.text_cache:
            self.text_cache[class_name] = ensemble_embeddings(self.ctx.backbone.encode_text, class_name)
        return self.text_cache[class_name]

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        self.class_name = self.options.class_name or category.class_name or category.name.replace("_", " ")
        self.text = self._text_for(self.class_name)
        self.patch_memory, self.window_memory = None, {}
        if normals:
            f = self.ctx.features.get(list(normals), self.spec)
            self.patch_memory = f["patch_tokens"].reshape(-1, f["patch_tokens"].shape[-1])
            self.window_memory = {s: f[f"win{s}"].reshape(-1, f[f"win{s}"].shape[-1]) for s in self.options.scales}

    # -- predict ---------------------------------------------------------------------------------
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self.text is None:
            raise MethodError("winclip: predict() called before fit()")
        f = self.ctx.features.get(list(images), self.spec)
        grid = self.ctx.backbone.grid
        b, n = f["patch_tokens"].shape[:2]
        t = self.options.temperature
        image_score = zero_shot_scores(f["embedding"], self.text, t)                # B
        maps = [image_score[:, None].expand(b, n)]
        for s in self.options.scales:
            maps.append(harmonic_aggregate(zero_shot_scores(f[f"win{s}"], self.text, t), self.masks[s]))
        zs_map = harmonic_mean(maps)                                                 # B x N
        out = {WO_VG: Prediction(maps=zs_map.reshape(b, *grid), scores=image_score)}
        if self.patch_memory is not None:
            windows = {s: f[f"win{s}"] for s in self.options.scales}
            fs_map = few_shot_map(f["patch_tokens"], windows, self.patch_memory, self.window_memory, self.masks)
            final = (zs_map + fs_map) / 2
            score = (image_score + fs_map.max(dim=1).values) / 2
            out[W_VG] = Prediction(maps=final.reshape(b, *grid), scores=score)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "class_name": self.class_name,
            "prompts": {"normal": len(NORMAL_STATES) * len(TEMPLATES),
                        "anomalous": len(ANOMALOUS_STATES) * len(TEMPLATES), "templates": len(TEMPLATES)},
            "windows": {f"scale{s}": int(m.shape[0]) for s, m in self.masks.items()},
            "temperature": self.options.temperature,
            "memory": 0 if self.patch_memory is None else int(self.patch_memory.shape[0]),
        }
