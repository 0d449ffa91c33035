"""AnomalyDINO (Damm et al., WACV 2025), functional core: patch memory, cosine 1-NN, top-1 % score.

Reference read: dammsi/AnomalyDINO (defaults taken from it, cited by line):

* features: the last block's patch tokens of DINOv2 ViT-S/14
  (``run_anomalydino.py`` l. 32 ``dinov2_vits14``; ``src/backbones.py`` l. 132
  ``get_intermediate_layers`` with its defaults: the last block, normed);
  the backbone side gives them here as S x N x D tokens on an h x w grid.
* memory: every (kept) patch token of the shots, each shot optionally
  augmented by rotations first (``src/detection.py`` l. 85-97): the default
  preprocessing ``agnostic`` (``run_anomalydino.py`` l. 35) rotates every
  category (``src/utils.py`` l. 136-137) by 0, 45, ..., 315 degrees (l. 7).
* distance: ``L2_normalized`` (``run_anomalydino.py`` l. 38), the squared L2
  of unit vectors halved (``detection.py`` l. 168-173) = 1 - cos; 1 neighbour
  (l. 39; with more, the mean of their distances, l. 171-172).
* masking (``backbones.py`` l. 159-174): the first principal component of an
  image's own tokens above 10; if at most 35 % of the centre crop (border 0.2
  of the grid each side) is kept the sign is flipped; then a 3x3 dilation and
  a 3x3 closing. Masked test patches score 0 (``detection.py`` l. 175-176);
  the shots are masked only with ``mask_ref_images`` (default False,
  ``run_anomalydino.py`` l. 44). Whether a category is masked is a
  per-category table there (``utils.py`` l. 101-116, 160-163):
  :func:`reference_masking`; the caller decides.
* image score: the mean of the top 1 % patch distances over all N patches
  (masked ones count as 0), the max when 1 % of N is under one patch
  (``post_eval.py`` l. 293-297).

PCA sign: sklearn >= 1.5 fixes the sign of a component so that its largest
loading is positive (``svd_flip(u_based_decision=False)``); done here the
same way. Rotation departs from OpenCV's ``warpAffine`` (centre (w/2, h/2),
BORDER_REFLECT_101): multiples of 90 degrees are exact ``rot90`` turns about
the image centre (of 180 only, when the image is not square), other angles
bilinear ``grid_sample`` with reflection at the pixel edges; the size is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.knn import DEFAULT_BLOCK, knn

ROTATION_ANGLES = (0, 45, 90, 135, 180, 225, 270, 315)  # src/utils.py l. 7
ROTATE_SHOTS = True  # preprocess 'agnostic' (run_anomalydino.py l. 35): rotation for every category (utils l. 137)
MASK_THRESHOLD = 10.0  # backbones.py l. 159, detection.py l. 96, 152
MASK_BORDER = 0.2  # backbones.py l. 159
MASK_CENTRE_MIN = 0.35  # backbones.py l. 167
MASK_KERNEL = 3  # backbones.py l. 159
MASK_SHOTS = False  # run_anomalydino.py l. 44 mask_ref_images
#: the categories the reference masks by default (preprocess 'agnostic'), by dataset: MVTec
#: src/utils.py l. 101-116 (capsule, hazelnut, pill, screw, toothbrush), VisA l. 160-163 (all 12, l. 145)
MASKED_CATEGORIES = {
    "mvtec": frozenset({"capsule", "hazelnut", "pill", "screw", "toothbrush"}),
    "visa": frozenset({"candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
                       "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum"}),
}
NUM_NEIGHBORS = 1  # run_anomalydino.py l. 39
TOP_FRACTION = 0.01  # post_eval.py l. 293-297


def _rotate_grid(images: torch.Tensor, angle: float) -> torch.Tensor:
    """Counter-clockwise rotation by ``angle`` degrees about the image centre, bilinear, reflected border."""
    b, _, h, w = images.shape
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    theta = images.new_tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]])
    grid = F.affine_grid(theta.expand(b, 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def rotate_images(images: torch.Tensor, angles: Sequence[float] = ROTATION_ANGLES) -> torch.Tensor:
    """(B * len(angles)) x C x H x W: each image rotated counter-clockwise by every angle, image-major."""
    out = []
    for image in images.split(1):
        for angle in angles:
            quarter = float(angle) / 90.0
            if quarter == int(quarter) and (int(quarter) % 2 == 0 or image.shape[3] == image.shape[2]):
                out.append(torch.rot90(image, int(quarter) % 4, dims=(2, 3)))
            else:
                out.append(_rotate_grid(image, float(angle)))
    return torch.cat(out)


def reference_masking(dataset: str, category: str) -> bool:
    """Whether the reference's table masks ``category`` of ``dataset`` (:data:`MASKED_CATEGORIES`); False
    for a dataset the table does not cover (the reference only knows MVTec and VisA, utils.py l. 169-170)."""
    return category in MASKED_CATEGORIES.get(dataset, frozenset())


def first_component(tokens: torch.Tensor) -> torch.Tensor:
    """N: projection of the centred tokens (N x D) on their first principal axis, largest loading positive."""
    x = tokens.double() - tokens.double().mean(dim=0)
    axis = torch.linalg.eigh(x.T @ x).eigenvectors[:, -1]  # largest eigenvalue last
    axis = axis * torch.sign(axis[axis.abs().argmax()])
    return (x @ axis).float()


def _dilate(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), kernel, stride=1, padding=(kernel - 1) // 2)[0, 0] > 0


def _erode(mask: torch.Tensor, kernel: int) -> torch.Tensor:
    return ~_dilate(~mask, kernel)


def background_mask(tokens: torch.Tensor, grid: tuple[int, int], threshold: float = MASK_THRESHOLD,
                    border: float = MASK_BORDER, kernel: int = MASK_KERNEL) -> torch.Tensor:
    """h x w bool foreground mask of one image's tokens (N x D), the reference's PCA rule (module docstring).

    Borders of the morphology do not count (OpenCV's defaults for dilate and erode).
    """
    h, w = grid
    pc = first_component(tokens).reshape(h, w)
    mask = pc > threshold
    centre = mask[int(h * border):int(h * (1 - border)), int(w * border):int(w * (1 - border))]
    if centre.sum() <= centre.numel() * MASK_CENTRE_MIN:
        mask = -pc > threshold
    dilated = _dilate(mask, kernel)
    return _erode(_dilate(dilated, kernel), kernel)  # dilate, then close = dilate + erode


def build_memory(tokens: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """M x D memory: every shot token (S x N x D), or those kept by ``masks`` (S x N bool)."""
    rows = tokens.reshape(-1, tokens.shape[-1])
    return rows if masks is None else rows[masks.reshape(-1).to(rows.device)]


def patch_distances(tokens: torch.Tensor, memory: torch.Tensor, masks: torch.Tensor | None = None,
                    num_neighbors: int = NUM_NEIGHBORS, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """B x N cosine distances 1 - cos to the nearest memory token (mean over ``num_neighbors``); masked -> 0."""
    b, n, d = tokens.shape
    dist, _ = knn(tokens.reshape(-1, d), memory, k=num_neighbors, metric="cosine", block=block)
    out = dist.mean(dim=1).reshape(b, n)
    return out if masks is None else out * masks.to(out.device)


def image_scores(distances: torch.Tensor, fraction: float = TOP_FRACTION) -> torch.Tensor:
    """B: mean of the top ``int(N * fraction)`` patch distances, the max when that is 0 (post_eval l. 293-297)."""
    top = int(distances.shape[1] * fraction)
    if top == 0:
        return distances.amax(dim=1)
    return distances.topk(top, dim=1).values.mean(dim=1)


@dataclass
class AnomalyDino:
    """Fit on the shots' patch tokens (S x N x D, rotations already in S), score test tokens.

    ``predict`` gives (distances B x N, 0 where a test mask drops the patch; image scores B).
    """

    num_neighbors: int = NUM_NEIGHBORS
    fraction: float = TOP_FRACTION
    block: int = DEFAULT_BLOCK
    memory: torch.Tensor | None = None

    def fit(self, tokens: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        memory = build_memory(tokens.float(), masks)
        if memory.shape[0] < self.num_neighbors:
            raise ValueError(f"anomalydino: the shots keep {memory.shape[0]} patches, fewer than "
                             f"num_neighbors={self.num_neighbors} (mask fewer shots or lower num_neighbors)")
        self.memory = memory

    def predict(self, tokens: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is None:
            raise ValueError("anomalydino: predict before fit (the memory of the shots is empty)")
        dist = patch_distances(tokens.float(), self.memory, masks, self.num_neighbors, self.block)
        return dist, image_scores(dist, self.fraction)
