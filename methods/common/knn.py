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
device); results come back on the query's device. ``MemoryBank(memory,
metric).search(query, k)`` is the same search with the memory prepared once
(PatchCore searches image by image). Speed: on a CPU the search is bound by
its matrix products (``benchmarks/knn_speed.py`` prints the bare products'
time as the floor), so it can beat plain ``cdist`` + ``topk`` only by the
passes that plain spends around them.

``k_center_greedy`` is the exact greedy k-center selection of anomalib's
``KCenterGreedy`` (``components/sampling/k_center_greedy.py`` l. 112-141 at
commit b7233686): start from one index (kept in the coreset, gh-3459), then
repeatedly add the row farthest (``torch.max``, first index on ties) from the
selected set, distances by ``torch.linalg.vector_norm`` of the difference
there. Given the same start index and the same projected features it selects
the same indices (tests/unit/test_knn.py ports anomalib's loop as the oracle),
at a fraction of the cost: ranking on the expanded form by one matrix-vector
product per step over the farthest rows only (``_Greedy``), anomalib's own
distances deciding whenever the expanded form leaves a tie within its proven
rounding window (``greedy_window``).
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
ACTIVE_FRACTION = 8  # k-center greedy: about 1/8 of the rows kept current (speed only, benchmarks/knn_speed.py)
ACTIVE_MIN = 64  # >= 2: each step compares the best two active rows


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
    """(query rows, memory rows) of one block: at most ``block`` entries, memory rows >= k.

    Square-ish (sqrt(block) a side) when both sides are long: the matrix
    product then reuses each packed memory panel for many query rows
    (benchmarks/knn_speed.py: 2048 x 2048 beats 128 x 32768 on a CPU); a short
    side leaves the rest of the block to the other.
    """
    mem_rows = min(n_memory, max(k, block // min(n_query, math.isqrt(block))))
    return max(1, min(n_query, block // mem_rows)), mem_rows


def _exact_l2(query: torch.Tensor, memory: torch.Tensor, index: torch.Tensor, block: int) -> torch.Tensor:
    """||q_i - m_index[i, j]|| from the differences, in row chunks of at most ``block`` entries."""
    k, dim = index.shape[1], query.shape[1]
    rows = max(1, block // (k * dim))
    out = torch.empty_like(index, dtype=torch.float32)
    for s in range(0, query.shape[0], rows):
        part = index[s:s + rows]
        diff = memory.index_select(0, part.reshape(-1)).view(*part.shape, dim)
        out[s:s + rows] = torch.linalg.vector_norm(diff.sub_(query[s:s + rows, None, :]), dim=-1)  # |m - q|
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


class MemoryBank:
    """Memory rows prepared once for many searches (``knn`` builds one per call).

    The rows go to ``device`` in float32 once. L2 keeps their squared norms;
    cosine keeps the unit rows negated, so that ``q . (-m) = -cos`` (negation
    is exact) and the smallest score is the nearest row with no extra pass.
    """

    def __init__(self, memory: torch.Tensor, metric: str = "l2", device: torch.device | str | None = None):
        _check(memory, memory, 1, metric)
        self.metric, self.device = metric, compute_device(memory, device)
        rows = memory.to(self.device, torch.float32)
        self.rows = F.normalize(rows, dim=-1).neg_() if metric == "cosine" else rows
        self.sq = (rows * rows).sum(dim=1) if metric == "l2" else None

    def search(self, query: torch.Tensor, k: int = 1,
               block: int = DEFAULT_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
        """k nearest rows of each query row: (distances Q x k ascending, indices Q x k), exact."""
        _check(query, self.rows, k, self.metric)
        mem, dev = self.rows, self.device
        q_rows, m_rows = _block_shape(query.shape[0], mem.shape[0], k, block)
        dists = torch.empty(query.shape[0], k, device=dev)
        index = torch.empty(query.shape[0], k, dtype=torch.long, device=dev)
        for s in range(0, query.shape[0], q_rows):
            q = query[s:s + q_rows].to(dev, torch.float32)
            if self.metric == "cosine":
                q = F.normalize(q, dim=-1)
            best_v = best_i = None
            for t in range(0, mem.shape[0], m_rows):
                m = mem[t:t + m_rows]
                if self.metric == "l2":  # rank on |m|^2 - 2 q.m: |q|^2 is the same for the whole row
                    score = torch.addmm(self.sq[t:t + m_rows], q, m.T, alpha=-2.0)
                else:  # -cos
                    score = torch.mm(q, m.T)
                best_v, best_i = _merge(best_v, best_i, score, t, k)
            if self.metric == "l2":
                exact = _exact_l2(q, mem, best_i, block)
                if k > 1:
                    exact, order = exact.sort(dim=1, stable=True)
                    best_i = best_i.gather(1, order)
                dists[s:s + q_rows], index[s:s + q_rows] = exact, best_i
            else:
                dists[s:s + q_rows], index[s:s + q_rows] = best_v + 1.0, best_i
        return dists.to(query.device), index.to(query.device)


def knn(query: torch.Tensor, memory: torch.Tensor, k: int = 1, metric: str = "l2", block: int = DEFAULT_BLOCK,
        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest memory rows of each query row: (distances Q x k ascending, indices Q x k), exact."""
    _check(query, memory, k, metric)
    return MemoryBank(memory, metric, compute_device(query, device)).search(query, k, block)


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


def greedy_window(dim: int, dtype: torch.dtype, largest_sq: float) -> tuple[float, float]:
    """(absolute, relative) parts of the gap that makes the expanded-form winner anomalib's winner.

    d = dim, B = the largest |x|^2. The expanded form |x|^2 - 2 x.c + |c|^2 of
    a squared distance s, evaluated in float64 (unit roundoff v), is within
    E = (4d + 16) v B of s (the dot and the two squares carry gamma_d = d v
    each, three sums one v each, |x||c| <= B); anomalib's fl(||x - c||) in
    ``dtype`` (unit roundoff u), squared, is within (d + 6) u s of s
    (differences, squares, the sum, the square root). So when the best
    expanded value ``top`` beats every other by more than
    2E + 2 (d + 6) u (top + E) = absolute + relative * top, the same row has
    anomalib's largest value.
    """
    v, u = torch.finfo(torch.float64).eps / 2.0, torch.finfo(dtype).eps / 2.0
    error, relative = (4 * dim + 16) * v * largest_sq, 2.0 * (dim + 6) * u
    return 2.0 * error + relative * error, relative


def _exact_min_distances(features: torch.Tensor, rows: torch.Tensor, centers: torch.Tensor,
                         block: int) -> torch.Tensor:
    """anomalib's min over the centers of ||x - c|| (difference, then norm) for the given rows, chunked."""
    step = max(1, block // (centers.shape[0] * centers.shape[1]))
    out = [torch.linalg.vector_norm(features[rows[s:s + step], None, :] - centers, dim=-1).amin(dim=1)
           for s in range(0, rows.shape[0], step)]
    return torch.cat(out)


class _Greedy:
    """State of one k-center-greedy run: expanded-form minimum squared distances, an active set of rows.

    ``min_sq[i]`` is the minimum of the expanded form over the first
    ``folded[i]`` centers, so at least the true minimum over all centers minus
    E (rows outside the active set miss the latest centers: their values are
    upper bounds). The active rows (the largest values; ``value`` holds theirs)
    are kept current with one matrix-vector product per center over a
    column-major copy of them; the others wait below ``outside``, the largest
    of their values, and are caught up (one matrix product per chunk of
    ``block`` entries) only when the active best comes within the window of it.
    """

    def __init__(self, features: torch.Tensor, n_select: int, start: int, block: int):
        self.x, self.block = features, block
        wide = features.to(torch.float64)  # the expanded form in float64: its window is negligible
        self.sq = torch.linalg.vector_norm(wide, dim=1).square_()
        self.absolute, self.relative = greedy_window(features.shape[1], features.dtype, float(self.sq.max()))
        self.min_sq = torch.full_like(self.sq, math.inf)
        self.folded = torch.zeros_like(self.sq)  # counts of centers (exact in floating point)
        self.centers = torch.empty(n_select, features.shape[1], dtype=torch.float64, device=features.device)
        self.sq_list = self.sq.tolist()
        self.picks, self.picked_sq = [start], [self.sq_list[start]]
        self.centers[0] = features[start]
        self.target = min(features.shape[0], max(ACTIVE_MIN, features.shape[0] // ACTIVE_FRACTION))
        self.rows = torch.arange(features.shape[0], device=features.device)  # the first step: every row, as given
        self.columns, self.rows_sq, self.value = wide, self.sq, self.min_sq.clone()  # ``outside``: activate
        self.step = torch.empty_like(self.sq)

    def window(self, top: float) -> float:
        return self.absolute + self.relative * top

    def activate(self, size: int, chosen: int) -> None:
        """The ``size`` largest values become the active set, caught up with centers 0 .. chosen - 1."""
        self.min_sq[self.rows], self.folded[self.rows] = self.value, chosen
        top = torch.topk(self.min_sq, size).indices.sort().values
        stale = top[self.folded[top] < chosen]
        if stale.numel():
            first = int(self.folded[stale].min())
            centers, sq_c = self.centers[first:chosen], self.sq.new_tensor(self.picked_sq[first:chosen])
            rows = max(1, self.block // centers.shape[0])
            for s in range(0, stale.shape[0], rows):
                part = stale[s:s + rows]
                dist = torch.addmm(sq_c[None, :], self.x[part].to(torch.float64), centers.T, alpha=-2.0)
                dist += self.sq[part, None]
                self.min_sq[part] = torch.minimum(self.min_sq[part], dist.amin(dim=1))
            self.folded[stale] = chosen
        rest = torch.ones_like(self.min_sq, dtype=torch.bool)
        rest[top] = False
        self.outside = float(self.min_sq[rest].max()) if size < rest.shape[0] else -math.inf
        self.rows, self.row_list, self.columns = top, top.tolist(), self.x[top].to(torch.float64).T.contiguous().T
        self.rows_sq, self.value = self.sq[top], self.min_sq[top]
        self.step = torch.empty_like(self.value)

    def next(self, chosen: int) -> int:
        """The row anomalib selects once center ``chosen - 1`` is in: fold it into the active rows, decide."""
        torch.addmv(self.rows_sq, self.columns, self.centers[chosen - 1], alpha=-2.0, out=self.step)
        self.step += self.picked_sq[-1]
        torch.minimum(self.value, self.step, out=self.value)
        size = self.target
        if chosen == 1:
            self.activate(size, chosen)
        best = torch.topk(self.value, 2)  # at least min(n, ACTIVE_MIN) >= 2 rows: n >= n_select >= 2 here
        top, second = best.values.tolist()
        while top - self.outside <= self.window(top):
            size = min(2 * size, self.min_sq.shape[0])
            self.activate(size, chosen)
            best = torch.topk(self.value, 2)
            top, second = best.values.tolist()
        if top - second > self.window(top):
            return self.row_list[best.indices.tolist()[0]]
        rows = self.rows[self.value >= top - self.window(top)]  # ascending: argmax keeps the first on ties
        centers = self.centers[:chosen].to(self.x.dtype)  # the rows' own values: float64 held them exactly
        return int(rows[_exact_min_distances(self.x, rows, centers, self.block).argmax()])

    def select(self, chosen: int, idx: int) -> None:
        self.picks.append(idx)
        self.picked_sq.append(self.sq_list[idx])
        self.centers[chosen] = self.x[idx]


def k_center_greedy(features: torch.Tensor, n_select: int, start: int, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """Indices (n_select,) of the greedy k-center selection from ``start``, anomalib's order exactly.

    Each step costs one matrix-vector product over the active rows (``_Greedy``)
    instead of anomalib's N x D difference. When the best row beats every
    other by more than the rounding window (``greedy_window``) it is the row
    anomalib picks; else the rows inside the window get anomalib's own
    distances (difference, then norm, to every center so far; at most
    ``block`` entries at a time) and the largest, first index on ties, wins.
    Extra memory (anomalib allocates an N x D difference per step): one
    float64 copy of the rows for the first step, then of the active rows, a
    few N-vectors, the centers (n_select x D) and blocks of ``block`` entries.
    """
    n = features.shape[0]
    if not 1 <= n_select <= n:
        raise ValueError(f"k_center_greedy: n_select={n_select} must be between 1 and the number of rows {n}")
    if not 0 <= start < n:
        raise ValueError(f"k_center_greedy: start={start} is not a row index of {n} rows")
    state = _Greedy(features, n_select, start, block)
    for chosen in range(1, n_select):
        state.select(chosen, state.next(chosen))
    return torch.tensor(state.picks)


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
