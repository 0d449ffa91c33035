"""Vision guidance (VG): a memory bank of the k shots' patch tokens.

Shared by every CLIP method here (WinCLIP+, PromptAD, AnoPLe, APT) and by the
``memory`` baseline. For each query patch token f of block l:

    s_l(f) = min_{m in M_l} (1 - cos(f, m)) / 2          (PromptAD / APT VG)

and the visual map is the mean of s_l over the chosen blocks.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F


def min_cosine_distance(query: torch.Tensor, memory: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """min over memory rows of (1 - cos(q, m)) / 2 for each query row (Q x D, M x D -> Q).

    Chunked over queries so memory stays bounded for large banks.
    """
    m = F.normalize(memory.float(), dim=-1)
    q = F.normalize(query.float(), dim=-1)
    out = torch.empty(q.shape[0], device=q.device)
    for s in range(0, q.shape[0], chunk):
        sim = q[s:s + chunk] @ m.T
        out[s:s + chunk] = (1.0 - sim.max(dim=1).values) / 2.0
    return out


class VisualMemory:
    """Patch-token memory per block; ``score`` gives B x N patch scores."""

    def __init__(self, layers: Sequence[int]):
        self.layers = tuple(int(i) for i in layers)
        self.bank: dict[int, torch.Tensor] = {}

    def fit(self, tokens: Mapping[int, torch.Tensor]) -> None:
        """tokens[l]: k x N x D patch tokens of block l from the k shots."""
        self.bank = {l: tokens[l].reshape(-1, tokens[l].shape[-1]) for l in self.layers}

    @property
    def empty(self) -> bool:
        return not self.bank or any(b.shape[0] == 0 for b in self.bank.values())

    def score(self, tokens: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Mean over blocks of the min cosine distance: B x N."""
        per_layer = []
        for l in self.layers:
            q = tokens[l]
            b, n, d = q.shape
            per_layer.append(min_cosine_distance(q.reshape(-1, d), self.bank[l]).reshape(b, n))
        return torch.stack(per_layer).mean(dim=0)
