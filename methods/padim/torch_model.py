"""PaDiM (Defard et al., ICPR 2021), functional core: random-subset embedding, per-position Gaussian.

References read (defaults taken from them, cited by file and line):

* the code the paper's authors point to, xiahaifeng1995/PaDiM-Anomaly-
  Detection-Localization-master ``main.py``: layers 1-3 of the backbone
  (l. 68-70), coarser maps brought to layer1's grid by repeating each cell
  (``embedding_concat`` l. 286-298: the nearest-neighbour upsampling),
  concatenated channels ``t_d`` = 448 (ResNet18) / 1792 (WRN-50), a random
  subset of ``d`` = 100 / 550 of them drawn by ``random.sample`` after
  ``random.seed(1024)`` (l. 45-60), per position the mean and the unbiased
  covariance plus ``0.01 I`` (l. 113-120), Mahalanobis distance (l. 158-168),
  image score = max of the map after upsampling and smoothing (l. 172-185;
  the Method class scores it so, ``model.py``; ``Padim.predict`` gives the raw map's max).
* anomalib ``models/image/padim/torch_model.py``: the same defaults
  (``_N_FEATURES_DEFAULTS`` l. 53-56), ``F.interpolate(mode="nearest")``
  (l. 215); ``multi_variate_gaussian.py`` l. 152 the same ``0.01 I`` (it adds a
  further ``1e-5 I`` before inverting, l. 155; not here).

``channel_subset(total, d)`` with the default seed returns the reference's
exact subset (Python's ``random.Random(1024).sample``).

With few shots: the covariance of n samples has rank <= n - 1, so the
``0.01 I`` regulariser is what makes it invertible, and the inverse is
computed by the Woodbury identity from the n centred samples (n x n systems
per position instead of d x d: exact, and no d x d x H x W tensor).
At k = 1 the unbiased estimator divides 0 by 0 (``np.cov`` of one
observation gives NaN in the reference); here the sample covariance of one
shot is taken as 0, so the Gaussian is N(shot, 0.01 I) and the Mahalanobis
distance is ``||x - shot|| / 0.1``: ten times the Euclidean distance to the
shot's embedding at the same position. For k >= 2 the regulariser still
dominates every direction the k - 1 centred shots do not span.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

LAYERS = ("layer1", "layer2", "layer3")  # main.py l. 68-70
N_FEATURES = {"resnet18": 100, "wide_resnet50_2": 550}  # main.py l. 45-52; anomalib torch_model.py l. 53-56
TOTAL_FEATURES = {"resnet18": 448, "wide_resnet50_2": 1792}  # main.py l. 47, 51: 64+128+256, 256+512+1024
SUBSET_SEED = 1024  # main.py l. 55: random.seed(1024)
REGULARISER = 0.01  # main.py l. 120; anomalib multi_variate_gaussian.py l. 152


def channel_subset(total: int, d: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """The d channel indices kept out of ``total``: ``random.sample(range(total), d)`` seeded as main.py l. 55-60."""
    if not 0 < d <= total:
        raise ValueError(f"padim: n_features={d} must be between 1 and the {total} concatenated channels")
    return torch.tensor(random.Random(seed).sample(range(total), d))  # int64


def embed(feature_maps: Sequence[torch.Tensor], subset: torch.Tensor | None = None) -> torch.Tensor:
    """B x C x H x W: maps resized (nearest) to the first map's grid, concatenated, channels ``subset``."""
    if not feature_maps:
        raise ValueError("padim.embed: no feature maps (expected layer1, layer2, layer3)")
    size = feature_maps[0].shape[2:]
    maps = [F.interpolate(m.float(), size=size, mode="nearest") for m in feature_maps]  # same size: identity
    emb = torch.cat(maps, dim=1)
    return emb if subset is None else emb.index_select(1, subset.to(emb.device))


@dataclass
class Gaussians:
    """Per position p: mean (P x C) and the Woodbury factors of (U^T U + reg I)^-1.

    ``u`` (P x n x C) are the centred samples over sqrt(max(n - 1, 1)) and
    ``small`` (P x n x n) is (reg I_n + U U^T)^-1, all float64.
    """

    mean: torch.Tensor
    u: torch.Tensor
    small: torch.Tensor
    reg: float
    grid: tuple[int, int]


def fit_gaussians(embedding: torch.Tensor, reg: float = REGULARISER) -> Gaussians:
    """Per-position mean and regularised covariance of the n shots' embeddings (n x C x H x W)."""
    n, c, h, w = embedding.shape
    x = embedding.double().reshape(n, c, h * w).permute(2, 0, 1)  # P x n x C
    mean = x.mean(dim=1)
    u = (x - mean[:, None, :]) / max(n - 1, 1) ** 0.5
    eye = torch.eye(n, dtype=torch.float64, device=x.device)
    small = torch.linalg.inv(reg * eye + u @ u.transpose(1, 2))
    return Gaussians(mean=mean, u=u, small=small, reg=reg, grid=(h, w))


def covariance(g: Gaussians) -> torch.Tensor:
    """The P x C x C covariance U^T U + reg I (for inspection and tests; the search never builds it)."""
    eye = torch.eye(g.mean.shape[1], dtype=torch.float64, device=g.mean.device)
    return g.u.transpose(1, 2) @ g.u + g.reg * eye


def mahalanobis(embedding: torch.Tensor, g: Gaussians) -> torch.Tensor:
    """B x H x W distances sqrt(delta^T Sigma^-1 delta) to each position's Gaussian.

    Sigma^-1 = (I - U^T (reg I + U U^T)^-1 U) / reg (Woodbury), so
    delta^T Sigma^-1 delta = (|delta|^2 - (U delta)^T small (U delta)) / reg.
    """
    b, c, h, w = embedding.shape
    if (h, w) != g.grid or c != g.mean.shape[1]:
        raise ValueError(f"padim: test embedding {c} x {h} x {w} does not match the fitted "
                         f"{g.mean.shape[1]} x {g.grid[0]} x {g.grid[1]}")
    delta = embedding.double().reshape(b, c, h * w).permute(2, 0, 1) - g.mean[:, None, :]  # P x B x C
    proj = delta @ g.u.transpose(1, 2)  # P x B x n
    quad = (delta * delta).sum(-1) - ((proj @ g.small) * proj).sum(-1)
    dist = (quad / g.reg).clamp_min(0.0).sqrt()  # P x B
    return dist.T.reshape(b, h, w).float()


@dataclass
class Padim:
    """Fit on the shots' layer1-3 maps, score test maps: ``maps`` B x H x W (layer1 grid), ``scores`` B (max).

    ``n_features`` None takes the backbone's default d, capped at the
    concatenated channels (tiny test backbones have fewer than 550).
    """

    backbone: str = "wide_resnet50_2"
    n_features: int | None = None
    reg: float = REGULARISER
    seed: int = SUBSET_SEED
    subset: torch.Tensor | None = None
    gaussians: Gaussians | None = None

    def fit(self, feature_maps: Sequence[torch.Tensor]) -> None:
        total = sum(m.shape[1] for m in feature_maps)
        d = self.n_features or N_FEATURES.get(self.backbone)
        if d is None:
            raise ValueError(f"padim: no n_features default for backbone {self.backbone!r} "
                             f"(defaults exist for {', '.join(sorted(N_FEATURES))}); set n_features")
        self.subset = channel_subset(total, min(d, total) if self.n_features is None else d, self.seed)
        self.gaussians = fit_gaussians(embed(feature_maps, self.subset), self.reg)

    def predict(self, feature_maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gaussians is None:
            raise ValueError("padim: predict before fit (no Gaussians of the shots)")
        maps = mahalanobis(embed(feature_maps, self.subset), self.gaussians)
        return maps, maps.flatten(1).amax(dim=1)
