"""PatchCore (Roth et al., CVPR 2022), functional core: embedding, memory, scores. Pure torch.

References read (defaults taken from them, cited by file and line):

* anomalib ``src/anomalib/models/image/patchcore/torch_model.py`` (commit
  b7233686): layers ``layer2`` + ``layer3`` of ``wide_resnet50_2`` (l. 17-18),
  3x3 local neighbourhood average ``AvgPool2d(3, 1, 1)`` of every map (l. 127,
  166), later maps bilinearly resized to the first map's grid and concatenated
  (l. 221-227; 512 + 1024 = 1536 channels for WRN-50), patch scores = distance
  to the nearest memory row (l. 185), image score re-weighted over
  ``num_neighbors = 9`` (l. 113, 385-442).
* the official code (amazon-science/patchcore-inspection), the DEFAULT
  (``scoring="official"``, ``target_dim=1024``): each layer's 3 x 3 patches
  (``PatchMaker.patchify``, zero padding, ``patchcore.py`` l. 282-308; patch
  size 3, README l. 29) flattened channel-major to C x 9 values and
  adaptive-average pooled to ``pretrain_embed_dimension = 1024``
  (``common.py`` l. 145-170 ``Preprocessing`` / ``MeanMapper``), later layers
  bilinearly resized to the first layer's grid (``patchcore.py`` l. 112-135),
  the stacked layers pooled to ``target_embed_dimension = 1024``
  (``common.py`` l. 173-183 ``Aggregator``; README l. 29 and
  ``run_patchcore.py`` l. 245-246); patch score = the squared L2 distance to
  the nearest memory row (``FaissNN`` on ``faiss.IndexFlatL2``, which
  returns squared distances, ``common.py`` l. 43-48, 66-80;
  ``anomaly_scorer_num_nn 1``, README l. 29, the mean over that one
  neighbour, l. 348-349); image score = the plain maximum of the patch
  scores (``PatchMaker.score``, ``patchcore.py`` l. 313-319). Resizing
  after the channel pooling instead of before is the same linear map
  (rounding aside). Its coreset is 10 % (``sampler -p 0.1``, README l. 30).
* ``scoring="anomalib"`` with ``target_dim=None``: anomalib's L2 distances,
  re-weighted image score and 1536-channel concatenation, as listed above.

Default decision (official vs anomalib): the few-shot PatchCore figures of
the WinCLIP paper, copied into AnoPLe's Table 1 (``bench/data/published.yaml``),
name no implementation, neither in AnoPLe's text nor, as far as this project
holds it, in WinCLIP's; the WinCLIP authors (AWS AI Labs) and the official
PatchCore code (amazon-science) come from one organisation, and the project's
rule is that defaults follow the official code unless a published table is
shown to have used another. So the default is the official scoring; anomalib's
is the named alternative (``scoring="anomalib"``, ``target_dim=None``).

Few-shot decision: ``CORESET_RATIO = 1.0`` keeps every patch of the k shots.
The WinCLIP paper's few-shot protocol compares PatchCore fitted on the k
shots only; its text (not in this repository) is not the ground for this: the
size is. With k <= 4 shots the memory holds at most 4 x 28 x 28 = 3,136 rows,
search over it is cheap, and a 10 % coreset of one shot (78 rows) would throw
away most of the little nominal evidence there is. ``coreset_ratio < 1``
applies anomalib's k-center-greedy (``methods/common/knn.py``).

Distances are exact (``knn``, squared for the official scoring); anomalib's
and faiss's expanded form ``|x|^2 + |y|^2 - 2xy`` (anomalib l. 286-319) can
differ from them in the last digits.
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
PRETRAIN_DIM = 1024  # official README l. 29 / run_patchcore.py l. 245 (used only with target_dim)
TARGET_DIM = 1024  # official README l. 29 / run_patchcore.py l. 246
#: "official": squared L2, plain max (patchcore-inspection); "anomalib": L2, re-weighted max
SCORINGS = ("official", "anomalib")


def embed(feature_maps: Sequence[torch.Tensor], target_dim: int | None = None,
          pretrain_dim: int = PRETRAIN_DIM) -> torch.Tensor:
    """B x D x H x W patch embedding of per-layer maps (first map's grid H x W).

    Each map is averaged over its 3x3 neighbourhood (stride 1, zero padding
    counted, as ``AvgPool2d(3, 1, 1)``), later maps are bilinearly resized
    (``align_corners=False``) to the first map's grid, and the channels are
    concatenated (anomalib, ``target_dim=None``). With ``target_dim``: the
    official pooling, :func:`official_embed`.
    """
    if not feature_maps:
        raise ValueError("patchcore.embed: no feature maps (expected layer2 and layer3)")
    if target_dim is not None:
        return official_embed(feature_maps, target_dim, pretrain_dim)
    size = feature_maps[0].shape[2:]
    pad = (NEIGHBOURHOOD - 1) // 2
    maps = [F.interpolate(F.avg_pool2d(m.float(), NEIGHBOURHOOD, stride=1, padding=pad), size=size, mode="bilinear",
                          align_corners=False) for m in feature_maps]  # the first map's size: identity
    return torch.cat(maps, dim=1)


def official_embed(feature_maps: Sequence[torch.Tensor], target_dim: int = TARGET_DIM,
                   pretrain_dim: int = PRETRAIN_DIM) -> torch.Tensor:
    """B x ``target_dim`` x H x W: the official Preprocessing + Aggregator (module docstring).

    Per layer, each position's zero-padded 3 x 3 patch (C x 3 x 3, channel-major) is average-pooled
    to ``pretrain_dim`` values (``adaptive_avg_pool1d``: windows of C * 9 / pretrain_dim values,
    which cut across channels), then resized to the first layer's grid; the layers' vectors, in
    layer order, are pooled to ``target_dim``. One image at a time: the unfolded patches are 9x
    the map.
    """
    size = feature_maps[0].shape[2:]
    pad = (NEIGHBOURHOOD - 1) // 2
    out = []
    for image in zip(*feature_maps):  # one image: its C x h x w map of each layer
        layers = []
        for m in image:
            h, w = m.shape[1:]
            cols = F.unfold(m[None].float(), NEIGHBOURHOOD, padding=pad)  # 1 x (C * 9) x (h * w)
            pooled = F.adaptive_avg_pool1d(cols[0].T[:, None, :], pretrain_dim)  # (h * w) x 1 x P
            grid = pooled.reshape(1, h, w, pretrain_dim).permute(0, 3, 1, 2)
            layers.append(F.interpolate(grid, size=size, mode="bilinear", align_corners=False))
        stacked = torch.cat(layers, dim=1)  # 1 x (L * P) x H x W, layer-major as the official stack
        rows = F.adaptive_avg_pool1d(patches(stacked)[:, None, :], target_dim)  # (H * W) x 1 x T
        out.append(rows.reshape(1, *size, target_dim).permute(0, 3, 1, 2))
    return torch.cat(out)


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


def patch_scores(embedding: torch.Tensor, memory: torch.Tensor, block: int = DEFAULT_BLOCK,
                 squared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance to the nearest memory row, its index), each B x H x W; ``squared``: the squared
    L2 distance (the official faiss ``IndexFlatL2``).

    The memory is prepared once; each image is searched as the transposed
    view D x (H W) -> (H W) x D of its map (rows in row, column order, no copy).
    """
    b, d, h, w = embedding.shape
    bank = MemoryBank(memory, "l2", compute_device(embedding))
    parts = [bank.search(embedding[i].reshape(d, h * w).T, k=1, block=block) for i in range(b)]
    dist, index = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    if squared:
        dist = dist.square()
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
    """Fit on the shots' layer maps, score test maps: ``maps`` B x H x W and image ``scores`` B.

    ``scoring="official"``: squared L2 patch scores, image score their maximum; ``"anomalib"``: L2
    patch scores, the re-weighted image score over ``num_neighbors``."""

    num_neighbors: int = NUM_NEIGHBORS
    coreset_ratio: float = CORESET_RATIO
    target_dim: int | None = TARGET_DIM
    scoring: str = "official"
    pretrain_dim: int = PRETRAIN_DIM
    seed: int = 0
    block: int = DEFAULT_BLOCK
    memory: torch.Tensor | None = None

    def fit(self, feature_maps: Sequence[torch.Tensor]) -> None:
        emb = embed(feature_maps, self.target_dim, self.pretrain_dim)
        self.memory = build_memory(emb, self.coreset_ratio, self.seed, self.block)

    def predict(self, feature_maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory is None:
            raise ValueError("patchcore: predict before fit (the memory of the shots is empty)")
        emb = embed(feature_maps, self.target_dim, self.pretrain_dim)
        if self.scoring == "official":
            maps, _ = patch_scores(emb, self.memory, self.block, squared=True)
            return maps, maps.flatten(1).amax(dim=1)
        maps, index = patch_scores(emb, self.memory, self.block)
        return maps, image_scores(emb, self.memory, maps, index, self.num_neighbors, self.block)
