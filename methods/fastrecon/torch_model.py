"""FastRecon (Fang et al., ICCV 2023), functional core: embedding, support coreset, closed-form reconstruction.

Pure torch. Reference read (defaults taken from it, cited by file and line): the official code
FzJun26th/FastRecon (commit fcffadb), ``main.py`` and ``sampling_methods/kcenter_greedy.py``.

* Backbone torchvision ``wide_resnet50_2`` with ImageNet weights (``main.py`` l. 240, torch hub
  ``pytorch/vision:v0.9.0``, ``pretrained=True``), outputs of ``layer2`` and ``layer3`` (forward hooks on
  their last blocks, l. 245-246), ImageNet mean / std (l. 151-152, 254-259).
* Embedding (l. 343-345, 379-382): every map averaged over its 3 x 3 neighbourhood (``AvgPool2d(3, 1, 1)``,
  zero padding counted), layer3 put on layer2's grid by PaDiM's ``embedding_concat`` (l. 119-132: each
  coarse cell repeated over the s x s fine cells it covers, i.e. nearest upsampling) and concatenated
  after layer2 (512 + 1024 = 1536 channels on WRN-50). Rows in image, row, column order (l. 346-347).
* Support pool and distribution (l. 346-353, 357-370): the shots' patch rows are the pool; ``mu`` is the
  per-position mean of the shots' embeddings over the shots (``Cal_Mu_Cor``, l. 289-291), H W x C.
* Coreset (l. 360-364): ``kCenterGreedy`` of ``int(rows * coreset_sampling_ratio)`` rows. Its
  ``SparseRandomProjection`` is built but never fitted, so ``model.transform`` raises and the greedy runs
  on the raw rows (``kcenter_greedy.py`` l. 92-101); its first pick is ``np.argmax(None)`` = row 0
  (l. 105-110), then the row farthest (L2) from the picks so far, first index on ties: exactly
  :func:`~fsadbench.methods.common.knn.k_center_greedy` from row 0 (sklearn's expanded-form distances
  there, the exact differences here: only a near tie can differ). Ratio 0.01, the README's command
  (``--coreset_sampling_ratio 0.01``); the argparse default 0.001 (l. 446, commented "0.01") leaves no row
  of one 224 px shot (int(784 x 0.001) = 0), where the official inverse of an empty matrix fails.
* The regression with distribution regularisation (l. 389-397), per test image with its rows Q (P x C),
  the coreset S (N x C), mu (P x C), lambda = 2 (``--lambde``, l. 453)::

      min_W |Q - W S|^2 + lambda |mu - W S|^2
      W = (Q S^T + lambda mu S^T) [(1 + lambda) S S^T]^-1,   Q_hat = W S

  i.e. Q_hat is the orthogonal projection of (Q + lambda mu) / (1 + lambda) onto the span of S's rows.
  Here the N x N inverse of S S^T is computed once per fit (float64) and shared by every test image;
  the products run over pieces of at most ``chunk`` entries (rows of several images, or part of one image),
  so memory is bounded by the chunk whatever the number of test images.
* Score map (l. 400-407): the L2 norm of Q - Q_hat per position on layer2's grid (input / 8); image
  score the max of that raw map (l. 410), before the map is resized to the input and smoothed with
  sigma 4 (l. 412-413; the evaluator does that, ``sigma_size`` 224 in the Method).

Departures (listed as the Method's fidelity notes): the official ``training_step`` overwrites the pool at
every batch (l. 352-353, ``batch_size`` 1 at l. 443), so only the last shot would remain; here every shot's
rows form the pool and mu is the mean over all k shots, the support feature pool of the paper (README
overview). The inverse is taken of S S^T in float64 once per fit, not of (1 + lambda) S S^T in float32 per
image (the same equation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.knn import DEFAULT_BLOCK, compute_device, k_center_greedy

LAYERS = ("layer2", "layer3")  # main.py l. 245-246: hooks on layer2[-1] and layer3[-1]
NEIGHBOURHOOD = 3  # main.py l. 343, 379: AvgPool2d(3, 1, 1)
LAMBDA = 2.0  # main.py l. 453: --lambde 2
CORESET_RATIO = 0.01  # README usage: --coreset_sampling_ratio 0.01 (main.py l. 446 default 0.001)
CORESET_START = 0  # kcenter_greedy.py l. 105-110: np.argmax(None) == 0, the first pick is row 0
DEFAULT_CHUNK = DEFAULT_BLOCK  # entries of one piece of query rows (16 MiB of float32)


def embed(feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """B x C x H x W: each map 3 x 3-averaged, the later ones nearest-upsampled to the first map's grid,
    channels concatenated in order (``main.py`` l. 343-345 with ``embedding_concat`` l. 119-132)."""
    if not feature_maps:
        raise ValueError("fastrecon.embed: no feature maps (expected layer2 and layer3)")
    size = feature_maps[0].shape[2:]
    pad = (NEIGHBOURHOOD - 1) // 2
    maps = [F.interpolate(F.avg_pool2d(m.float(), NEIGHBOURHOOD, stride=1, padding=pad), size=size, mode="nearest")
            for m in feature_maps]
    return torch.cat(maps, dim=1)


def pool_rows(embedding: torch.Tensor) -> torch.Tensor:
    """(B H W) x C: every patch row of the shots, image, row, column order (``main.py`` l. 346-347)."""
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])


def position_mean(embedding: torch.Tensor) -> torch.Tensor:
    """(H W) x C: the mean over the shots at each position (``Cal_Mu_Cor`` l. 289-291, transposed l. 390)."""
    return pool_rows(embedding.mean(dim=0, keepdim=True))


def coreset(rows: torch.Tensor, ratio: float = CORESET_RATIO, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """The ``int(n * ratio)`` rows the official greedy keeps: raw rows, first pick row 0 (module docstring)."""
    n = rows.shape[0]
    size = int(n * ratio)
    if ratio > 1.0 or size < 1:  # a ratio <= 0 keeps no row either
        raise ValueError(f"fastrecon: coreset_ratio {ratio} of {n} support rows keeps {size} rows; use a ratio "
                         f"in (0, 1] with int(rows * ratio) >= 1")
    return rows[k_center_greedy(rows, size, CORESET_START, block)]


def inverse_gram(support: torch.Tensor) -> torch.Tensor:
    """(S S^T)^-1, N x N in float64; a clear error when the support rows are linearly dependent."""
    n, c = support.shape
    s = support.double()
    inverse, info = torch.linalg.inv_ex(s @ s.T)
    if n > c or int(info) != 0:  # more rows than channels: rank <= c < n, whatever LU's rounding says
        raise ValueError(f"fastrecon: the {n} support rows ({c} channels) are linearly dependent, so S S^T has no "
                         f"inverse for the closed form; lower coreset_ratio")
    return inverse


@dataclass
class Reconstructor:
    """What a fit keeps: the coreset S (N x C), (S S^T)^-1, mu (P x C), lambda and the grid H x W."""

    support: torch.Tensor
    inverse: torch.Tensor
    mean: torch.Tensor
    lam: float
    grid: tuple[int, int]


def fit_reconstructor(embedding: torch.Tensor, ratio: float = CORESET_RATIO, lam: float = LAMBDA,
                      block: int = DEFAULT_BLOCK) -> Reconstructor:
    """The shots' embedding (k x C x H x W) -> coreset of their rows, its inverse Gram matrix, mu."""
    support = coreset(pool_rows(embedding), ratio, block)
    return Reconstructor(support=support, inverse=inverse_gram(support), mean=position_mean(embedding),
                         lam=float(lam), grid=(embedding.shape[2], embedding.shape[3]))


def weights(query: torch.Tensor, mean: torch.Tensor, support: torch.Tensor, inverse: torch.Tensor,
            lam: float) -> torch.Tensor:
    """... x N: W = (Q S^T + lambda mu S^T) [(1 + lambda) S S^T]^-1 for query rows Q (... x C), mu (... x C)."""
    target = query + lam * mean
    return (target @ support.T) @ inverse / (1.0 + lam)


def reconstruct(query: torch.Tensor, mean: torch.Tensor, support: torch.Tensor, inverse: torch.Tensor,
                lam: float) -> torch.Tensor:
    """Q_hat = W S, the reconstruction of the query rows from the support rows (``main.py`` l. 396-397)."""
    return weights(query, mean, support, inverse, lam) @ support


def residual_map(embedding: torch.Tensor, rec: Reconstructor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """B x H x W: |Q - Q_hat| per position, in pieces of at most ``chunk`` query entries (whole images when
    they fit, else part of one image), on CUDA when present; returned on the embedding's device."""
    b, c, h, w = embedding.shape
    if (h, w) != rec.grid or c != rec.support.shape[1]:
        raise ValueError(f"fastrecon: test embedding {c} x {h} x {w} does not match the fitted "
                         f"{rec.support.shape[1]} x {rec.grid[0]} x {rec.grid[1]}")
    dev = compute_device(embedding)
    support, mean = rec.support.to(dev, torch.float32), rec.mean.to(dev, torch.float32)
    inverse = rec.inverse.to(dev, torch.float32)
    positions = h * w
    rows = max(1, chunk // c)
    images, span = max(1, rows // positions), min(positions, rows)
    flat = embedding.flatten(2)  # B x C x P, a view
    out = torch.empty(b, positions, device=dev)
    for s in range(0, b, images):
        for t in range(0, positions, span):
            q = flat[s:s + images, :, t:t + span].transpose(1, 2).to(dev, torch.float32).contiguous()  # m x r x C
            q_hat = reconstruct(q, mean[t:t + span], support, inverse, rec.lam)
            out[s:s + images, t:t + span] = torch.linalg.vector_norm(q - q_hat, dim=-1)
    return out.reshape(b, h, w).to(embedding.device)


@dataclass
class FastRecon:
    """Fit on the shots' layer maps, score test maps: ``maps`` B x H x W (layer2 grid), ``scores`` B (max)."""

    lam: float = LAMBDA
    coreset_ratio: float = CORESET_RATIO
    chunk: int = DEFAULT_CHUNK
    reconstructor: Reconstructor | None = None

    def fit(self, feature_maps: Sequence[torch.Tensor]) -> None:
        self.reconstructor = fit_reconstructor(embed(feature_maps), self.coreset_ratio, self.lam)

    def predict(self, feature_maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reconstructor is None:
            raise ValueError("fastrecon: predict before fit (no support rows of the shots)")
        maps = residual_map(embed(feature_maps), self.reconstructor, self.chunk)
        return maps, maps.flatten(1).amax(dim=1)
