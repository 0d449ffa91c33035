"""PatchCore (Roth et al., CVPR 2022), functional core: embedding, memory, scores. Pure torch.

References read (defaults taken from them, cited by file and line):

* anomalib ``src/anomalib/models/image/patchcore/torch_model.py`` (commit
  b7233686): layers ``layer2`` + ``layer3`` of ``wide_resnet50_2`` (l. 17-18),
  3x3 local neighbourhood average ``AvgPool2d(3, 1, 1)`` of every map (l. 127,
  166), later maps bilinearly resized to the first map's grid and concatenated
  (l. 221-227; 512 + 1024 = 1536 channels for WRN-50), patch scores = distance
  to the nearest memory row (l. 185), image score re-weighted over
  ``num_neighbors = 9`` (l. 113, 385-442).
* the official code (amazon-science/patchcore-inspection): patch size 3
  (``bin/run_patchcore.py`` l. 252), per-layer adaptive average pooling of the
  channels to ``pretrain_embed_dimension = 1024`` then of the stacked layers to
  ``target_embed_dimension = 1024`` (``src/patchcore/common.py`` l. 145-183,
  ``run_patchcore.py`` l. 245-246): ``embed(..., target_dim=1024)``. Its
  MeanMapper pools each flattened C x 3 x 3 patch; here each channel's 3 x 3
  neighbourhood is averaged first (anomalib), then the channels are pooled.
  The default (``target_dim=None``) is anomalib's 1536-channel concatenation.
  Its coreset is 10 % (``run_patchcore.py`` l. 320).

Few-shot decision: ``CORESET_RATIO = 1.0`` keeps every patch of the k shots.
The WinCLIP paper's few-shot protocol compares PatchCore fitted on the k
shots only; its text (not in this repository) is not the ground for this: the
size is. With k <= 4 shots the memory holds at most 4 x 28 x 28 = 3,136 rows,
search over it is cheap, and a 10 % coreset of one shot (78 rows) would throw
away most of the little nominal evidence there is. ``coreset_ratio < 1``
applies anomalib's k-center-greedy (``methods/common/knn.py``).

Distances are exact Euclidean (``knn``); anomalib's expanded form
``|x|^2 + |y|^2 - 2xy`` (l. 286-319) can differ from them in the last digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.knn import DEFAULT_BLOCK, MemoryBank, compute_device, coreset_indices, knn

LAYERS = ("layer2", "layer3")  # anomalib torch_model.py l. 17-18, official README / sample_training.sh
NEIGHBOURHOOD = 3  # anomalib l. 127 AvgPool2d(3, 1, 1); official run_patchcore.py l. 252 patchsize 3
NUM_NEIGHBORS = 9  # anomalib l. 113
CORESET_RATIO = 1.0  # few-shot: the full memory (module docstring)
PRETRAIN_DIM = 1024  # official run_patchcore.py l. 245 (used only with target_dim)


def embed(feature_maps: Sequence[torch.Tensor], target_dim: int | None = None,
          pretrain_dim: int = PRETRAIN_DIM) -> torch.Tensor:
    """B x D x H x W patch embedding of per-layer maps (first map's grid H x W).

    Each map is averaged over its 3x3 neighbourhood (stride 1, zero padding
    counted, as ``AvgPool2d(3, 1, 1)``), later maps are bilinearly resized
    (``align_corners=False``) to the first map's grid, and the channels are
    concatenated. With ``target_dim`` each layer's channels are first average-
    pooled to ``pretrain_dim`` and the stacked layers to ``target_dim``
    (official ``common.py`` l. 163-183).
    """
    if not feature_maps:
        raise ValueError("patchcore.embed: no feature maps (expected layer2 and layer3)")
    size = feature_maps[0].shape[2:]
    pad = (NEIGHBOURHOOD - 1) // 2
    maps = [F.interpolate(F.avg_pool2d(m.float(), NEIGHBOURHOOD, stride=1, padding=pad), size=size, mode="bilinear",
                          align_corners=False) for m in feature_maps]  # the first map's size: identity
    if target_dim is None:
        return torch.cat(maps, dim=1)
    rows = [patches(m)[:, None, :] for m in maps]  # (B * H * W) x 1 x C_l
    pooled = torch.cat([F.adaptive_avg_pool1d(r, pretrain_dim) for r in rows], dim=2)
    out = F.adaptive_avg_pool1d(pooled, target_dim)
    return out.reshape(-1, *size, target_dim).permute(0, 3, 1, 2)


def patches(embedding: torch.Tensor) -> torch.Tensor:
    """B x D x H x W -> (B * H * W) x D, rows in image, row, column order (anomalib l. 230-251)."""
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])


def build_memory(embedding: torch.Tensor, coreset_ratio: float = CORESET_RATIO, seed: int = 0,
                 block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Memory bank M x D: every patch of the shots, or anomalib's greedy coreset of ``coreset_ratio``."""
    rows = patches(embedding)
    if coreset_ratio >= 1.0:
        return rows
    return rows[coreset_indices(rows, coreset_ratio, seed=seed, block=block)]


def patch_scores(embedding: torch.Tensor, memory: torch.Tensor,
                 block: int = DEFAULT_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance to the nearest memory row, its index), each B x H x W.

    The memory is prepared once; each image is searched as the transposed
    view D x (H W) -> (H W) x D of its map (rows in row, column order, no copy).
    """
    b, d, h, w = embedding.shape
    bank = MemoryBank(memory, "l2", compute_device(embedding))
    parts = [bank.search(embedding[i].reshape(d, h * w).T, k=1, block=block) for i in range(b)]
    dist, index = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return dist.reshape(b, h, w), index.reshape(b, h, w)


def image_scores(embedding: torch.Tensor, memory: torch.Tensor, scores: torch.Tensor, index: torch.Tensor,
                 num_neighbors: int = NUM_NEIGHBORS, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """The paper's re-weighted image score (anomalib l. 385-442), B.

    s* = the largest patch score of the image, at test patch m_test; m* = its
    nearest memory row; N_b(m*) = the ``b = min(num_neighbors, M)`` memory rows
    nearest to m* (m* first); weight = 1 - softmax over N_b(m*) of
    ||m_test - n|| taken at m*; score = weight * s*. With ``num_neighbors=1``
    the score is s* itself.
    """
    b = scores.shape[0]
    flat_scores, flat_index = scores.reshape(b, -1), index.reshape(b, -1)
    if num_neighbors == 1:
        return flat_scores.amax(dim=1)
    rows = torch.arange(b, device=scores.device)
    worst = flat_scores.argmax(dim=1)
    star = flat_scores[rows, worst]
    width = embedding.shape[3]
    test_patch = embedding[rows, :, worst // width, worst % width].to(memory.device)  # B x D, no full copy
    nearest = memory[flat_index[rows, worst].to(memory.device)]
    _, support = knn(nearest, memory, k=min(num_neighbors, memory.shape[0]), block=block)  # L2
    dist = torch.linalg.vector_norm(test_patch[:, None, :] - memory[support], dim=-1)
    weight = 1.0 - torch.softmax(dist, dim=1)[:, 0]
    return weight.to(star.device) * star


@dataclass
class PatchCore:
    """Fit on the shots' layer maps, score test maps: ``maps`` B x H x W and image ``scores`` B."""

    num_neighbors: int = NUM_NEIGHBORS
    coreset_ratio: float = CORESET_RATIO
    target_dim: int | None = None
    seed: int = 0
    block: int = DEFAULT_BLOCK
    memory: torch.Tensor | None = None

    def fit(self, feature_maps: Sequence[torch.Tensor]) -> None:
        emb = embed(feature_maps, self.target_dim)
        self.memory = build_memory(emb, self.coreset_ratio, self.seed, self.block)

    def predict(self, feature_maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is None:
            raise ValueError("patchcore: predict before fit (the memory of the shots is empty)")
        emb = embed(feature_maps, self.target_dim)
        maps, index = patch_scores(emb, self.memory, self.block)
        return maps, image_scores(emb, self.memory, maps, index, self.num_neighbors, self.block)
