"""SPADE (Cohen & Hoshen, 2020), functional core: image kNN, then pixel kNN in the nearest normals.

Reference read: byungjae89/SPADE-pytorch ``src/main.py`` (the implementation
the few-shot papers reproduce; defaults from it, cited by line):

* image level: Euclidean distance between the global average-pooled features
  (``avgpool`` of WRN-50, l. 47, 111-112, ``calc_dist_matrix`` l. 187-195),
  the ``top_k = 5`` nearest normal images (l. 23, 115), image score = the mean
  of their distances (l. 116);
* pixel level, per test image and per layer of ``layer1``-``layer3`` (l.
  44-46, 128): the gallery is every position of the K nearest normal images'
  maps, each test position scores its distance to the nearest gallery feature
  (k = 1, l. 130-143), each layer's map is resized bilinearly
  (``align_corners=False``) to a common size (224 there, l. 144-145) and the
  layers are averaged (l. 149).

With k shots the image kNN keeps ``K = min(top_k, k)``: every shot when k <= 5.
Departures: the reference computes the gallery distances in chunks of 100 and
drops the last ``len(gallery) % 100`` gallery rows (l. 137: e.g. 80 of 980 at
layer3 with K = 5); here the whole gallery is searched. Its
``torch.pairwise_distance`` adds 1e-6 to the difference; here the plain norm.
The common size is ``out_size`` (default: the first layer's grid); the
evaluator's upsampling to the image follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.knn import DEFAULT_BLOCK, knn

LAYERS = ("layer1", "layer2", "layer3")  # main.py l. 44-46, 128
TOP_K = 5  # main.py l. 23


def image_knn(query: torch.Tensor, normals: torch.Tensor, top_k: int = TOP_K,
              block: int = DEFAULT_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(image scores B, indices B x K) of the K = min(top_k, N) nearest normal global features (L2)."""
    if top_k < 1:
        raise ValueError(f"spade: top_k={top_k} must be >= 1")
    dist, index = knn(query.flatten(1), normals.flatten(1), k=min(top_k, normals.shape[0]), block=block)  # L2
    return dist.mean(dim=1), index


def _rows(fmap: torch.Tensor) -> torch.Tensor:
    """... x C x H x W -> (... * H * W) x C."""
    return fmap.movedim(-3, -1).reshape(-1, fmap.shape[-3])


def pixel_scores(query_maps: Sequence[torch.Tensor], normal_maps: Sequence[torch.Tensor], neighbours: torch.Tensor,
                 out_size: tuple[int, int] | None = None, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """B x H x W: per layer, 1-NN L2 of each position in the neighbours' maps; resized, averaged over layers.

    ``query_maps[l]`` is B x C_l x H_l x W_l, ``normal_maps[l]`` N x C_l x H_l x W_l,
    ``neighbours`` B x K indices into the N normals (``image_knn``).
    """
    if not query_maps or len(query_maps) != len(normal_maps):
        raise ValueError(f"spade: {len(query_maps)} query layers and {len(normal_maps)} normal layers "
                         f"(expected the same layers, e.g. layer1-3)")
    size = tuple(out_size) if out_size is not None else tuple(query_maps[0].shape[-2:])
    total = None
    for qmap, nmap in zip(query_maps, normal_maps):
        b, _, h, w = qmap.shape
        layer = torch.empty(b, 1, h, w)
        for i in range(b):
            gallery = _rows(nmap[neighbours[i].to(nmap.device)])
            dist, _ = knn(_rows(qmap[i]), gallery, block=block)  # L2, k = 1
            layer[i, 0] = dist[:, 0].reshape(h, w).cpu()
        layer = F.interpolate(layer, size=size, mode="bilinear", align_corners=False)
        total = layer if total is None else total + layer
    return (total / len(query_maps))[:, 0]


@dataclass
class Spade:
    """Fit on the shots' global features and layer maps; ``predict`` gives (maps B x H x W, scores B)."""

    top_k: int = TOP_K
    out_size: tuple[int, int] | None = None
    block: int = DEFAULT_BLOCK
    normal_global: torch.Tensor | None = None
    normal_maps: tuple[torch.Tensor, ...] = ()

    def fit(self, global_features: torch.Tensor, feature_maps: Sequence[torch.Tensor]) -> None:
        if global_features.shape[0] == 0:
            raise ValueError("spade: no normal shots to fit")
        self.normal_global = global_features.float().flatten(1)
        self.normal_maps = tuple(m.float() for m in feature_maps)

    def predict(self, global_features: torch.Tensor,
                feature_maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.normal_global is None:
            raise ValueError("spade: predict before fit (no normal shots)")
        scores, neighbours = image_knn(global_features.float(), self.normal_global, self.top_k, self.block)
        maps = pixel_scores([m.float() for m in feature_maps], self.normal_maps, neighbours, self.out_size,
                            self.block)
        return maps, scores
