"""Window machinery of WinCLIP (Jeong et al., CVPR 2023, Sec. 4.2 / 4.3).

A *window* of scale s is an s x s block of patches of the ViT grid, moved with
stride 1: an H x W grid has (H - s + 1) x (W - s + 1) windows (196 of scale 2
and 169 of scale 3 on 15 x 15). Its embedding is the CLIP image embedding of
the token sequence [CLS, the window's patch tokens] taken after the positional
embedding, run through the whole transformer, ln_post on CLS and the
projection (the paper's "mask" of the token sequence, Fig. 4).

Window scores are put back on patches with the harmonic mean over the windows
covering a patch (paper eq. 4): ``agg(p) = n_p / sum_{w ∋ p} 1 / s_w``.

All windows of all images of a batch go through the transformer together,
one call per scale (sequences of equal length), chunked to bound memory. The
tower's parts (embedding, blocks, ``ln_post``, projection) come from
:class:`fsadbench.backbone.towers.ImageTower`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fsadbench.backbone.towers import ImageTower

#: Harmonic means clamp their inputs at this value: a zero score (a window
#: identical to a memory entry) then gives an aggregate of ~0 instead of the
#: NaN of 0 * inf in the masked sum. Chosen here; the paper is silent.
HARMONIC_EPS = 1e-12


def window_index(grid: tuple[int, int], scale: int) -> torch.Tensor:
    """Patch indices (row-major on the grid) of every window: (nw x scale²), windows in row-major order."""
    h, w = int(grid[0]), int(grid[1])
    if not 1 <= scale <= min(h, w):
        raise ValueError(f"window scale {scale} does not fit a {h}x{w} patch grid (1..{min(h, w)})")
    rows = torch.arange(h - scale + 1)
    cols = torch.arange(w - scale + 1)
    dy = torch.arange(scale)
    # window (r, c) covers patches (r + i, c + j), i, j < scale
    py = rows[:, None, None, None] + dy[None, None, :, None]          # R x 1 x s x 1
    px = cols[None, :, None, None] + dy[None, None, None, :]          # 1 x C x 1 x s
    idx = py * w + px                                                 # R x C x s x s
    return idx.reshape(-1, scale * scale)


def window_mask(grid: tuple[int, int], scale: int) -> torch.Tensor:
    """0/1 matrix (nw x N): row w marks the patches window w covers."""
    idx = window_index(grid, scale)
    m = torch.zeros(idx.shape[0], int(grid[0]) * int(grid[1]))
    m.scatter_(1, idx, 1.0)
    return m


def harmonic_aggregate(scores: torch.Tensor, mask: torch.Tensor, eps: float = HARMONIC_EPS) -> torch.Tensor:
    """Window scores (B x nw) -> patch scores (B x N): n_p / sum over covering windows of 1/s_w (eq. 4)."""
    mask = mask.to(scores.device, scores.dtype)
    inv = 1.0 / scores.clamp_min(eps)
    return mask.sum(0) / (inv @ mask)


def harmonic_mean(maps: Sequence[torch.Tensor], eps: float = HARMONIC_EPS) -> torch.Tensor:
    """Element-wise harmonic mean n / sum 1/x of equally shaped tensors."""
    inv = sum(1.0 / m.clamp_min(eps) for m in maps)
    return len(maps) / inv


@torch.no_grad()
def window_embeddings(tower: ImageTower, embeds: torch.Tensor, index: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """CLIP embeddings of windows: B x nw x E.

    ``embeds`` is ``tower.embed(pixels)`` (B x (1+N) x W): the positional
    embedding added, then ``ln_pre``. ``ln_pre`` is a LayerNorm over the width of
    each token on its own, so keeping the window's tokens after it equals keeping
    them before it and then normalising (pinned by a unit test); patch dropout is
    the identity in eval. Each sequence [CLS, window tokens] then runs through the
    transformer (no attention mask: the window's tokens only see each other),
    ln_post on CLS, @proj. ``chunk`` bounds the number of sequences per transformer call.
    """
    b, _, width = embeds.shape
    index = index.to(embeds.device)
    nw, length = index.shape
    patches = embeds[:, 1:][:, index]                                  # B x nw x L x W
    cls = embeds[:, :1, None].expand(b, nw, 1, width)                  # B x nw x 1 x W
    seqs = torch.cat([cls, patches], dim=2).reshape(b * nw, length + 1, width)
    out = []
    for s in range(0, seqs.shape[0], chunk):
        x = tower.run_blocks(seqs[s:s + chunk])
        out.append(tower.project(tower.post_norm(x[:, 0])))
    return torch.cat(out).reshape(b, nw, -1)


@torch.no_grad()
def encode_windows(backbone, pixels: torch.Tensor, scales: Sequence[int], chunk: int = 2048) -> dict[str, torch.Tensor]:
    """Everything WinCLIP takes from one image (the feature-cache compute fn).

    * ``embedding``: full-image CLIP embedding (the ordinary encoder pass), B x E
    * ``patch_tokens``: patch tokens of that pass after ln_post, not projected, B x N x W
    * ``win{s}``: window embeddings of scale s, B x nw_s x E
    """
    tower = backbone.image_tower
    x = tower.embed(pixels.to(backbone.device))
    full = tower.post_norm(tower.run_blocks(x))
    out = {"embedding": tower.project(full[:, 0]), "patch_tokens": full[:, 1:]}
    for s in scales:
        out[f"win{s}"] = window_embeddings(tower, x, window_index(backbone.grid, s), chunk)
    return out


@torch.no_grad()
def window_embeddings_loop(tower: ImageTower, embeds: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The naive reference: one transformer call per window per image (what batching must beat)."""
    rows = []
    for i in range(embeds.shape[0]):
        per = []
        for w in range(index.shape[0]):
            seq = torch.cat([embeds[i, :1], embeds[i, 1:][index[w]]])[None]
            x = tower.run_blocks(seq)
            per.append(tower.project(tower.post_norm(x[:, 0])))
        rows.append(torch.cat(per))
    return torch.stack(rows)


def vit_flops(n_tokens: int, width: int, layers: int, mlp_ratio: float = 4.0) -> float:
    """Multiply-add FLOPs (x2) of one sequence through a ViT transformer.

    Per block and token: qkv + out projections 4 W², MLP 2 * mlp_ratio W²;
    attention scores and weighted sum 2 L W per token. Norms, softmax and
    biases are left out (a few percent).
    """
    per_token = (4 + 2 * mlp_ratio) * width * width + 2 * n_tokens * width
    return 2.0 * layers * n_tokens * per_token
