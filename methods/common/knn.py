"""Exact nearest-neighbour search and k-center-greedy coreset selection, chunked.

Shared by the memory-bank baselines (PatchCore, SPADE, AnomalyDINO).

``knn(query, memory, k, metric)`` returns, for each query row, the k smallest
distances to the memory rows (ascending) and their indices. The work is split
in blocks of at most ``block`` distance entries (query rows x memory rows), so
the extra memory is bounded by the block size, never by queries x memory:

* ``"l2"``: Euclidean distance. Candidates are ranked on the expanded form
  ``|m|^2 - 2 q.m`` (one matrix product per block, the ``|q|^2`` term does not
  change the ranking), then the k winners' distances are recomputed from the
  differences ``||q - m||`` so that no cancellation error of the expanded form
  reaches the returned values (anomalib ``patchcore/torch_model.py`` l. 286-319
  keeps the expanded form; its values can differ from ours in the last digits).
* ``"cosine"``: ``1 - cos(q, m)`` of the L2-normalised rows, AnomalyDINO's
  ``L2_normalized`` metric (``src/detection.py`` l. 168-173: the squared L2 of
  unit vectors halved, which is the same number).

Everything runs on ``device`` (default: CUDA when present, else the query's
device); results come back on the query's device.

``k_center_greedy`` is the exact greedy k-center selection of anomalib's
``KCenterGreedy`` (``components/sampling/k_center_greedy.py`` l. 112-141 at
commit b7233686): start from one index (kept in the coreset, gh-3459), then
repeatedly add the row farthest (``torch.max``, first index on ties) from the
selected set, distances by ``torch.linalg.vector_norm`` of the difference as
there. Given the same start index and the same projected features it selects
the same indices (tests/unit/test_knn.py ports anomalib's loop as the oracle).
``coreset_indices`` adds what anomalib does around it: the very sparse random
projection (Li, Hastie, Church 2006; anomalib ``random_projection.py`` l.
72-141 with ``eps=0.9`` from ``k_center_greedy.py`` l. 58): Johnson-
Lindenstrauss dimension ``int(4 ln n / (eps^2/2 - eps^3/3))``, density
``1/sqrt(d)``, entries +-sqrt(1/density)/sqrt(n_components), drawn from a
seeded ``torch.Generator`` (anomalib draws from the global torch/sklearn RNGs,
so the same seed does not give anomalib's matrix); the random start index
from the same generator; size ``int(n * ratio)``. Departure: when the JL
dimension is not below the feature dimension the rows are used unprojected
(anomalib would project up), and so when it is 0 (one row).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

METRICS = ("l2", "cosine")
DEFAULT_BLOCK = 1 << 22  # distance entries per block: 16 MiB of float32
CORESET_EPS = 0.9  # anomalib k_center_greedy.py l. 58: SparseRandomProjection(eps=0.9)


def compute_device(tensor: torch.Tensor, device: torch.device | str | None = None) -> torch.device:
    """The device the search runs on: ``device`` if given, else CUDA when present, else the tensor's."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda") if torch.cuda.is_available() else tensor.device


def _check(query: torch.Tensor, memory: torch.Tensor, k: int, metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"knn: metric {metric!r} is not one of {', '.join(METRICS)}")
    if query.ndim != 2 or memory.ndim != 2 or query.shape[1] != memory.shape[1]:
        raise ValueError(f"knn: query {tuple(query.shape)} and memory {tuple(memory.shape)} must be Q x D and M x D")
    if not 1 <= k <= memory.shape[0]:
        raise ValueError(f"knn: k={k} must be between 1 and the memory size {memory.shape[0]}")


def _block_shape(n_query: int, n_memory: int, k: int, block: int) -> tuple[int, int]:
    """(query rows, memory rows) of one block: at most ``block`` entries, memory rows >= k."""
    mem_rows = min(n_memory, max(k, block))
    return max(1, min(n_query, block // mem_rows)), mem_rows


def _exact_l2(query: torch.Tensor, memory: torch.Tensor, index: torch.Tensor, block: int) -> torch.Tensor:
    """||q_i - m_index[i, j]|| from the differences, in row chunks of at most ``block`` entries."""
    k, dim = index.shape[1], query.shape[1]
    rows = max(1, block // (k * dim))
    out = torch.empty_like(index, dtype=torch.float32)
    for s in range(0, query.shape[0], rows):
        diff = query[s:s + rows, None, :] - memory[index[s:s + rows]]
        out[s:s + rows] = torch.linalg.vector_norm(diff, dim=-1)
    return out


def _merge(best_v: torch.Tensor | None, best_i: torch.Tensor | None, score: torch.Tensor, offset: int,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest of the running best and one block's scores (columns offset + j); k = 1 by ``min``."""
    if k == 1:
        v, i = score.min(dim=1, keepdim=True)
    else:
        v, i = score.topk(min(k, score.shape[1]), dim=1, largest=False)
    i += offset
    if best_v is None:
        return v, i
    if k == 1:
        better = v < best_v
        return torch.where(better, v, best_v), torch.where(better, i, best_i)
    v, j = torch.cat((best_v, v), dim=1).topk(k, dim=1, largest=False)
    return v, torch.cat((best_i, i), dim=1).gather(1, j)


def knn(query: torch.Tensor, memory: torch.Tensor, k: int = 1, metric: str = "l2", block: int = DEFAULT_BLOCK,
        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest memory rows of each query row: (distances Q x k ascending, indices Q x k), exact."""
    _check(query, memory, k, metric)
    dev = compute_device(query, device)
    mem = memory.to(dev, torch.float32)
    if metric == "cosine":
        mem = F.normalize(mem, dim=-1)
    mem_sq = (mem * mem).sum(dim=1)
    q_rows, m_rows = _block_shape(query.shape[0], mem.shape[0], k, block)
    dists = torch.empty(query.shape[0], k, device=dev)
    index = torch.empty(query.shape[0], k, dtype=torch.long, device=dev)
    for s in range(0, query.shape[0], q_rows):
        q = query[s:s + q_rows].to(dev, torch.float32)
        if metric == "cosine":
            q = F.normalize(q, dim=-1)
        best_v = best_i = None
        for t in range(0, mem.shape[0], m_rows):
            m = mem[t:t + m_rows]
            if metric == "l2":  # rank on |m|^2 - 2 q.m: |q|^2 is the same for the whole row
                score = torch.addmm(mem_sq[t:t + m_rows], q, m.T, alpha=-2.0)
            else:
                score = torch.mm(q, m.T).neg_()
            best_v, best_i = _merge(best_v, best_i, score, t, k)
        if metric == "l2":
            exact = _exact_l2(q, mem, best_i, block)
            if k > 1:
                exact, order = exact.sort(dim=1, stable=True)
                best_i = best_i.gather(1, order)
            dists[s:s + q_rows], index[s:s + q_rows] = exact, best_i
        else:
            dists[s:s + q_rows], index[s:s + q_rows] = best_v + 1.0, best_i
    return dists.to(query.device), index.to(query.device)


def jl_dimension(n_samples: int, eps: float = CORESET_EPS) -> int:
    """Johnson-Lindenstrauss 'safe' dimension int(4 ln n / (eps^2/2 - eps^3/3)) (anomalib l. 122-141)."""
    return int(4.0 * math.log(n_samples) / (eps ** 2 / 2.0 - eps ** 3 / 3.0))


def sparse_random_projection(n_components: int, n_features: int, generator: torch.Generator) -> torch.Tensor:
    """Very sparse random matrix (n_components x n_features): density 1/sqrt(d), +-sqrt(1/density)/sqrt(n_c)."""
    density = 1.0 / math.sqrt(n_features)
    scale = math.sqrt(1.0 / density) / math.sqrt(n_components)
    keep = torch.rand(n_components, n_features, generator=generator) < density
    positive = torch.rand(n_components, n_features, generator=generator) < 0.5
    return torch.where(keep, torch.where(positive, scale, -scale), 0.0)


def k_center_greedy(features: torch.Tensor, n_select: int, start: int, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Indices (n_select,) of the greedy k-center selection from ``start``, anomalib's order exactly (CPU)."""
    n = features.shape[0]
    if not 1 <= n_select <= n:
        raise ValueError(f"k_center_greedy: n_select={n_select} must be between 1 and the number of rows {n}")
    if not 0 <= start < n:
        raise ValueError(f"k_center_greedy: start={start} is not a row index of {n} rows")
    rows = max(1, block // features.shape[1])
    min_d = torch.full_like(features[:, 0], math.inf)
    dist = torch.empty_like(min_d)
    picks, idx = [], start
    for _ in range(1, n_select):
        center = features[idx]
        for s in range(0, n, rows):
            torch.linalg.vector_norm(features[s:s + rows] - center, dim=1, out=dist[s:s + rows])
        torch.minimum(min_d, dist, out=min_d)
        idx = torch.max(min_d, dim=0).indices  # anomalib then zeroes min_d[idx] (l. 138): the next update does
        picks.append(idx)
    rest = torch.stack(picks).tolist() if picks else []
    return torch.tensor([start, *rest])


def coreset_indices(features: torch.Tensor, ratio: float, seed: int = 0, block: int = DEFAULT_BLOCK,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Indices of anomalib's coreset of ``int(n * ratio)`` rows: sparse projection, random start, greedy."""
    n, dim = features.shape
    size = int(n * ratio)
    if ratio > 1.0 or size < 1:
        raise ValueError(f"coreset: ratio {ratio} of {n} rows gives {size} rows; use a ratio in (0, 1] "
                         f"with int(rows * ratio) >= 1")
    gen = torch.Generator().manual_seed(seed)
    dev = compute_device(features, device)
    feats = features.to(dev, torch.float32)
    n_comp = jl_dimension(n)
    if 0 < n_comp < dim:
        feats = feats @ sparse_random_projection(n_comp, dim, gen).to(dev).T
    start = int(torch.randint(n, (1,), generator=gen))
    return k_center_greedy(feats, size, start, block).to(features.device)
