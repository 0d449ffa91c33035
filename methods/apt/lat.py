"""APT's LAT: Locality-Aware Transformer (Chen et al. 2025, Sec. 3.5, eq. 12-13).

Locality attention adds a k-neighbour mask to the attention logits (eq. 12):

    M[(i,j),(m,n)] = 0     if sqrt((i-m)^2 + (j-n)^2) <= k
                     -inf  otherwise                          (eq. 13)

over the patch grid, with (i, j) the row and column of a patch. "Neighbour and
CLS only": the CLS token's row and column stay open (0), so every patch also
sees CLS and CLS sees every patch. Token order is open_clip's: CLS first, then
the patches row by row. Adding the mask before or after the 1/sqrt(d) scaling
of eq. 12 is the same (0 and -inf are unchanged by scaling).

The mask goes on the second path of the dual-path encoder (V-V attention, the
2024 paper's best variant VV-LAA); the original path is untouched, so the CLIP
image embedding and the intermediate block outputs used by VG are unchanged.
"""

from __future__ import annotations

import torch

from fsadbench.core.errors import ConfigError


def locality_mask(grid: tuple[int, int], k: float, n_prefix: int = 1, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    """Additive attention mask of eq. 13, (n_prefix + h*w) square; prefix (CLS) rows/columns open.

    The distance test is done on squared integer distances, (i-m)^2 + (j-n)^2 <= k^2,
    which is exact for k >= 0.
    """
    if k is None or float(k) < 0:
        raise ConfigError(f"apt option 'k' (locality radius in patches) must be >= 0, got {k!r}")
    h, w = int(grid[0]), int(grid[1])
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ii, jj = ii.flatten(), jj.flatten()
    d2 = (ii[:, None] - ii[None, :]) ** 2 + (jj[:, None] - jj[None, :]) ** 2
    patch = torch.zeros(d2.shape, dtype=dtype)
    patch[d2.to(torch.float64) > float(k) ** 2] = float("-inf")
    n = n_prefix + h * w
    mask = torch.zeros(n, n, dtype=dtype)
    mask[n_prefix:, n_prefix:] = patch
    return mask


def covering_k(grid: tuple[int, int]) -> float:
    """The smallest k whose mask opens every pair of the grid (its diagonal length)."""
    h, w = grid
    return float(((h - 1) ** 2 + (w - 1) ** 2) ** 0.5)
