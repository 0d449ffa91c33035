"""``anomalydino``: AnomalyDINO as a method (the equations are in :mod:`.torch_model`).

Backbone: ``timm:vit_small_patch14_dinov2@448`` with the DINOv2 weights (``lvd142m``; the reference's
``dinov2_vits14`` at its default resolution 448), the last block's normed patch tokens (32 x 32 grid);
the pipeline check runs ``dinov2-tiny``. Memory: the tokens of the k shots, each shot rotated by 0, 45,
..., 315 degrees first (``rotate_shots``, the reference's default ``agnostic`` preprocessing); a test
patch scores its cosine distance 1 - cos to the nearest memory token; the image score is the mean of
the top 1 % patch distances. ``masking`` applies the reference's PCA background mask to the test
images (and with ``mask_shots`` to the shots): ``"reference"`` (default) per the reference's table
(``run_anomalydino.py`` l. 65, 138; ``src/utils.py`` l. 101-116 for MVTec: capsule, hazelnut, pill,
screw, toothbrush; l. 160-163 for VisA: every category; no other dataset), or true / false for every
category. The Gaussian (sigma 4) applies at each test image's original size, as the reference's
``dists2map`` (``src/utils.py`` l. 25-30) does: ``sigma_size = "original"`` (the evaluator).

Choices against the reference, each a fidelity note (the official value named):

* preprocessing: a squash resize to 448 x 448 with the backbone's bicubic filter; the reference resizes
  the short side to 448 (bicubic, antialiased) keeping the aspect and trims the bottom / right edge to
  a multiple of 14 (``src/backbones.py`` l. 102-122): the same pixels on square images (MVTec), a
  squashed 32 x 32 grid instead of e.g. 48 x 32 on non-square ones (VisA);
* rotation order: the shots are rotated after preprocessing (the 448 px tensor); the reference rotates
  the original image, then preprocesses it (``src/detection.py`` l. 83-92);
* position embeddings: timm resamples the checkpoint's 37 x 37 grid to 32 x 32 once at load (bicubic,
  antialias on); the reference's DINOv2 interpolates at run time (bicubic, antialias off, scale factor
  (32 + 0.1) / 37: ``interpolate_antialias=False``, ``interpolate_offset=0.1`` of its hub models).

The test images' tokens come from the feature store (one encoder pass per image and backbone); the
rotated shots are new pixels, encoded at fit time (not cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from fsadbench.core.errors import ConfigError, MethodError
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import W_VG
from fsadbench.methods.anomalydino import torch_model as core
from fsadbench.methods.common.baseline import Baseline, BaselineOptions
from fsadbench.protocol.evaluator import ORIGINAL

REFERENCE = "reference"  # the masking option's default: the reference's per-category table


class AnomalyDINOMethod(Baseline):
    name = "anomalydino"
    paper = ("AnomalyDINO (Damm et al., WACV 2025): Boosting Patch-based Few-shot Anomaly Detection "
             "with DINOv2")
    backbone_default = "timm:vit_small_patch14_dinov2@448"
    backbone_tiny = "timm:dinov2-tiny"
    backbone_kinds = ("timm-vit",)  # one block's patch tokens on the ViT's grid
    default_sigma = 4.0  # the reference smooths the upsampled map with a Gaussian of sigma 4
    sigma_size = ORIGINAL  # src/utils.py l. 25-30: the map resized to the test image's own H x W, then sigma 4
    version = 2  # 2: masking per the reference's table by default (was off); sigma at the original size
    fidelity_notes = (
        "preprocessing: squash resize to 448 x 448; official: bicubic resize of the short side to 448, "
        "aspect kept, trimmed to a multiple of 14 (src/backbones.py l. 102-122; the same on square images)",
        "rotations of the shots applied to the preprocessed 448 px tensor; official: to the original "
        "image before preprocessing (src/detection.py l. 83-92)",
        "rotations other than multiples of 90 degrees: bilinear grid_sample with reflection, not OpenCV warpAffine",
        "position embeddings resampled once by timm (bicubic, antialias on, to the 32 x 32 grid); "
        "official: DINOv2's run-time interpolation (bicubic, antialias off, offset 0.1)",
        "masking 'reference' follows the official table for datasets named mvtec and visa only; "
        "any other dataset is unmasked (the official code covers only MVTec and VisA)",
    )

    @dataclass
    class Options(BaselineOptions):
        rotate_shots: bool = core.ROTATE_SHOTS  # run_anomalydino.py l. 35 'agnostic' -> rotations
        masking: bool | str = REFERENCE  # "reference": utils.py l. 101-116, 160-163; true / false: every category
        mask_shots: bool = core.MASK_SHOTS  # run_anomalydino.py l. 44
        num_neighbors: int = core.NUM_NEIGHBORS  # run_anomalydino.py l. 39
        top_fraction: float = core.TOP_FRACTION  # post_eval.py l. 293-297

    def __init__(self, ctx, **options):
        names = ctx.backbone.layer_names
        if not options.get("layers"):  # the reference reads the last block
            options = {**options, "layers": (names[-1],)}
        super().__init__(ctx, **options)
        o = self.options
        if len(self.layers) != 1 or ctx.backbone.grid is None:
            raise ConfigError(f"anomalydino reads one ViT block's patch tokens; got layers {list(self.layers)} "
                              f"on {ctx.backbone.spec.name}")
        if int(o.num_neighbors) < 1 or not 0.0 < float(o.top_fraction) <= 1.0:
            raise ConfigError(f"anomalydino options: num_neighbors must be >= 1 and top_fraction in (0, 1]; "
                              f"got {o.num_neighbors!r}, {o.top_fraction!r}")
        if not isinstance(o.masking, bool) and o.masking != REFERENCE:
            raise ConfigError(f"anomalydino option 'masking' must be {REFERENCE!r} (the reference's per-category "
                              f"table), true or false; got {o.masking!r}")
        self.core = core.AnomalyDino(num_neighbors=int(o.num_neighbors), fraction=float(o.top_fraction))
        self.masking = o.masking is True  # set per category at fit

    def masks(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x N foreground masks (the reference's PCA rule per image)."""
        grid = self.ctx.backbone.grid
        return torch.stack([core.background_mask(t, grid).reshape(-1) for t in tokens])

    def shot_tokens(self, normals: Sequence[ImageRef]) -> torch.Tensor:
        """S' x N x D: the shots' tokens, every rotation of every shot when ``rotate_shots``."""
        if not self.options.rotate_shots:
            return self.maps(normals)[0]
        pixels = core.rotate_images(self.ctx.features.pixels(normals))
        out = []
        with torch.no_grad():
            for chunk in pixels.split(max(1, self.ctx.batch_size)):
                out.append(self.ctx.backbone.encode(chunk, self.layers)[self.layers[0]].float())
        return torch.cat(out)

    def masking_for(self, category: CategoryInfo) -> bool:
        """Whether ``category`` is masked: the option's true / false, or the reference's table."""
        m = self.options.masking
        return m if isinstance(m, bool) else core.reference_masking(category.dataset, category.name)

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        self.need_shots(normals)
        self.masking = self.masking_for(category)
        tokens = self.shot_tokens(normals)
        self.core.fit(tokens, self.masks(tokens) if self.masking and self.options.mask_shots else None)

    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        tokens = self.maps(images)[0].float()
        masks = self.masks(tokens) if self.masking else None
        if masks is not None and not bool(masks.any()):  # was: every score 0, a 50.00 AUROC shown as ok
            raise MethodError(f"anomalydino: the background mask drops every patch of the {len(images)} test "
                              f"image(s) (every score would be 0, an AUROC of 50); rerun with --method-option "
                              f"anomalydino.masking=false")
        dist, scores = self.core.predict(tokens, masks)
        maps = dist.reshape(dist.shape[0], *self.ctx.backbone.grid)
        return {W_VG: Prediction(maps=maps, scores=scores)}

    def describe(self) -> dict[str, Any]:
        memory = self.core.memory
        return {**super().describe(), "memory_rows": int(memory.shape[0]) if memory is not None else 0,
                "score": "1 - cos to the nearest shot token", "image_score": "mean of the top 1 % patch distances",
                "masking_applied": self.masking,
                "smoothing": "sigma 4 at each test image's original size (official src/utils.py l. 25-30)"}
