"""Random per-layer feature maps for the baselines' functional-core tests."""

from __future__ import annotations

import torch


def pyramid(gen: torch.Generator, n: int, layers: list[tuple[int, int]]) -> list[torch.Tensor]:
    """n images' maps, one n x C x S x S tensor per (C, S) in ``layers``."""
    return [torch.randn(n, c, s, s, generator=gen) for c, s in layers]
