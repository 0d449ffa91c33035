"""Threshold-free detection metrics: exact with ties, streamed, bounded memory.

Definitions (all exact, ties grouped: every metric is a function of the curve
of ``(TP(t), FP(t))`` at the distinct scores ``t``, with ``TP(t) = #{positive
with score >= t}``; a group of tied scores moves as one step):

* AUROC = trapezoidal area under ROC = Mann-Whitney ``U / (P N)`` with
  ``U = sum_pos (#neg < s + 0.5 #neg == s)``.
* AP = ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (the definition of
  sklearn's ``average_precision_score``).
* F1-max = ``max_t 2 TP / (TP + FP + P)`` over distinct thresholds.
* AUPRO, MVTec AD definition (Bergmann et al., IJCV 2021, Sec. "PRO"): regions
  are the 8-connected components of each ground-truth mask
  (``scipy.ndimage.label``, 3x3 structure, labelled per image); the per-region
  overlap at ``t`` is the fraction of the region's pixels scoring ``>= t``,
  ``PRO(t)`` its mean over all regions of the category, ``FPR(t)`` the fraction
  of ALL normal pixels of the category (normal images and the normal part of
  anomalous images) scoring ``>= t``. The curve through ``(0, 0)`` and the points
  at every distinct threshold is integrated with trapezoids up to
  ``FPR = fpr_limit`` (linear interpolation at the limit) and divided by
  ``fpr_limit`` (default 0.3).

How (no loop over pixels or thresholds). Every quantity above only changes at
a distinct *positive* score ``u_j``: between two of them only ``FP`` (and FPR)
moves, which is a horizontal ROC / PRO segment. So it suffices to know, for each
distinct positive score, ``c_j`` (positives equal to it), ``lt_j = #neg < u_j``
and ``le_j = #neg <= u_j``: the ROC / PRO curve is exactly the polyline
``(#neg > u_j, before) -> (#neg >= u_j, after)`` for ``j`` in decreasing order.
Negatives are kept as sorted float32 chunks; ``lt`` / ``le`` are
``searchsorted`` counts summed over chunks.

Memory bound (``PixelMetrics``; M = 4 bytes x pixels = the float32 maps, P =
anomalous pixels, m <= P their distinct scores): the store holds each normal
pixel once as float32 and each anomalous pixel as float32 plus a 1-2 byte
region id: <= M + 2 P bytes. While adding, filling a chunk copies at most
``chunk_pixels`` values once (<= 64 MiB by default). ``compute()`` first sorts
the last partial chunk, then allocates only arrays over the m distinct
anomalous scores (value, count, two negative counts, region-weight sum: 36 bytes
each, plus one 8-byte searchsorted result) and work arrays of ``BLOCK`` = 2^18
values (~20 MiB); no float64 copy, argsort or concatenation of all maps.
Peak <= M + 2 P + max(64 MiB, 44 m + 20 MiB) bytes: for an MVTec-sized
category (400 maps of 400x400, M = 256 MB) it stays below 2 M while fewer than
~5e6 pixels (~8 %) are anomalous; ``python -m benchmarks.metrics_speed`` prints
the measured tracemalloc peak (1.28 M at 2.6 % anomalous).

Undefined metrics (one class only, no region) raise ``UndefinedMetric`` in the
functions and come back as ``None`` plus a reason from the dict-returning
APIs, never as 0 or 0.5.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fsadbench.core.errors import DataError

# The definitions above are unchanged since version 1 (records stay comparable).
METRIC_VERSION = "fsad-metrics/1 (exact ties; aupro: mvtec, 8-conn, fpr<=0.3, /0.3)"

DEFAULT_CHUNK_PIXELS = 1 << 24  # 64 MiB of float32 per sorted chunk of normal pixels


class UndefinedMetric(Exception):
    """The metric has no value for these inputs; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------- inputs

def _as_np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = _as_np(scores).ravel()
    y = _as_np(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores has {s.size} values but labels has {y.size}: pass one label per score")
    if s.dtype.kind not in "fiub":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f":
        n_nan = int(np.count_nonzero(np.isnan(s)))
        if n_nan:
            raise FloatingPointError(f"scores contain {n_nan} NaN value(s): a NaN has no rank; fix the method's output")
    if y.dtype != bool:
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError("labels must be 0/1 or bool (1 = anomalous), got values outside {0, 1}")
        y = y.astype(bool)
    return s, y


# ----------------------------------------------------------------------------- core

def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an ascending array and how many times each occurs."""
    n = sorted_values.size
    if n == 0:
        return sorted_values[:0], np.zeros(0, np.int64)
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    first = np.flatnonzero(new)
    del new
    counts = np.diff(np.append(first, n))
    return sorted_values[first], counts


class _Summary:
    """Counts at the distinct positive scores ``u`` (ascending).

    ``c[j]`` positives equal ``u[j]``; ``lt[j]`` / ``le[j]`` negatives ``<`` /
    ``<=`` ``u[j]``; ``n_pos`` / ``n_neg`` the class sizes.
    """

    def __init__(self, u, c, lt, le, n_pos: int, n_neg: int):
        self.u, self.c, self.lt, self.le = u, c, lt, le
        self.n_pos, self.n_neg = int(n_pos), int(n_neg)

    # Each metric below is the closed form of its module-doc definition on the
    # exact polyline described there, evaluated over blocks of BLOCK distinct
    # values from the highest down (carrying the running sums), so the work
    # arrays stay O(BLOCK); the tests check them against sklearn and a
    # threshold-sweep oracle.
    BLOCK = 1 << 18

    def _desc_blocks(self):
        """Slices of the ascending arrays, highest values first; each block is reversed by the caller."""
        for stop in range(self.u.size, 0, -self.BLOCK):
            yield slice(max(0, stop - self.BLOCK), stop)

    def auroc(self, what: str = "sample") -> float:
        if self.n_pos == 0:
            raise UndefinedMetric(f"one class only: no anomalous {what}")
        if self.n_neg == 0:
            raise UndefinedMetric(f"one class only: no normal {what}")
        # 2U = sum_j c_j (lt_j + le_j): ties count 1/2 (Mann-Whitney); integers, exact.
        u2 = sum(int(np.dot(self.c[b], self.lt[b] + self.le[b])) for b in self._desc_blocks())
        return u2 / (2 * self.n_pos * self.n_neg)

    def _tp_fp_blocks(self):
        """Per block, descending: (c_j, TP at u_j = positives >= u_j, FP at u_j = negatives >= u_j)."""
        tp_before = 0
        for b in self._desc_blocks():
            c = self.c[b][::-1]
            tp = tp_before + np.cumsum(c)
            tp_before = int(tp[-1])
            yield c, tp, self.n_neg - self.lt[b][::-1]

    def average_precision(self, what: str = "sample") -> float:
        if self.n_pos == 0:
            raise UndefinedMetric(f"no anomalous {what}: recall undefined")
        # recall steps by c_j / P at u_j; precision there = TP / (TP + FP)
        total = sum(float(np.dot(c, tp / (tp + fp))) for c, tp, fp in self._tp_fp_blocks())
        return total / self.n_pos

    def f1_max(self, what: str = "sample") -> float:
        if self.n_pos == 0:
            raise UndefinedMetric(f"no anomalous {what}: F1 undefined")
        # For a fixed TP, F1 falls as FP grows, so the maximum over all distinct
        # thresholds is reached at a distinct positive score.
        return max(float(np.max(2.0 * tp / (tp + fp + self.n_pos))) for _, tp, fp in self._tp_fp_blocks())

    def aupro(self, region_weight_sums: np.ndarray, fpr_limit: float) -> float:
        """Area under the exact PRO polyline up to ``fpr_limit``, divided by it.

        ``region_weight_sums[j]`` = sum over positives equal to ``u_j`` of
        ``1 / (R |region|)``, so ``PRO(u_j) = p_j`` is its cumulative sum in
        decreasing ``u``. In negative counts (x = count / N), step j is a
        horizontal segment ``[E_{j-1}, G_j]`` at ``p_{j-1}`` and a straight one
        ``[G_j, E_j]`` from ``p_{j-1}`` to ``p_j`` (``G_j = #neg > u_j``,
        ``E_j = #neg >= u_j``); after the last step the curve stays at ``p`` to
        x = N. The area stops at ``L = fpr_limit N``, cutting the segment that
        crosses L with linear interpolation.
        """
        if self.n_pos == 0:
            raise UndefinedMetric("no anomalous region in the masks")
        if self.n_neg == 0:
            raise UndefinedMetric("no normal pixel: FPR undefined")
        n = self.n_neg
        lim = fpr_limit * n
        area, p_last, e_last = 0.0, 0.0, 0.0
        for b in self._desc_blocks():
            e = (n - self.lt[b][::-1]).astype(np.float64)       # E_j, non-decreasing
            g = (n - self.le[b][::-1]).astype(np.float64)       # G_j
            p = p_last + np.cumsum(region_weight_sums[b][::-1])
            p_prev = np.concatenate(([p_last], p[:-1]))
            e_prev = np.concatenate(([e_last], e[:-1]))
            full = int(np.searchsorted(e, lim, side="right"))   # steps ending at or before L
            f = slice(0, full)
            area += float(np.dot(g[f] - e_prev[f], p_prev[f]) + np.dot(e[f] - g[f], p_prev[f] + p[f]) / 2.0)
            if full < e.size:                                   # step `full` crosses L: cut it there
                j = full
                area += (min(g[j], lim) - e_prev[j]) * p_prev[j]
                if lim > g[j]:
                    y_lim = p_prev[j] + (p[j] - p_prev[j]) * (lim - g[j]) / (e[j] - g[j])
                    area += (lim - g[j]) * (p_prev[j] + y_lim) / 2.0
                return area / lim
            p_last, e_last = float(p[-1]), float(e[-1])
        area += (lim - e_last) * p_last                         # every step ends before L: flat tail
        return area / lim


def _summary_flat(scores, labels) -> _Summary:
    s, y = _scores_labels(scores, labels)
    neg = s[~y]
    neg.sort()
    pos = s[y]
    pos.sort()
    u, c = _distinct(pos)
    lt = np.searchsorted(neg, u, side="left")
    le = np.searchsorted(neg, u, side="right")
    return _Summary(u, c, lt, le, pos.size, neg.size)


def auroc(scores, labels) -> float:
    """Exact AUROC with ties (Mann-Whitney U / (P N)); raises UndefinedMetric for one class."""
    return _summary_flat(scores, labels).auroc()


def average_precision(scores, labels) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds (= sklearn's average_precision_score)."""
    return _summary_flat(scores, labels).average_precision()


def f1_max(scores, labels) -> float:
    """Maximum over distinct thresholds of F1 = 2 TP / (TP + FP + P) (ties grouped)."""
    return _summary_flat(scores, labels).f1_max()


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask (MVTec AUPRO regions): (ids, count)."""
    from scipy import ndimage

    return ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=int))


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition, module doc)."""
    maps, masks = list(maps), list(masks)
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks: pass one mask per map")
    acc = PixelMetrics(device="cpu", fpr_limit=fpr_limit, aupro=True)
    for m, g in zip(maps, masks):
        acc.add(m, g)
    return acc.aupro_value()


# ----------------------------------------------------------------------------- storage of normal pixels

class _NegativeStore:
    """Normal-pixel scores as sorted chunks (numpy on CPU, torch on an accelerator).

    New values wait in ``pending`` until ``chunk`` of them are there, then are
    concatenated and sorted once (in place for numpy), so each value is stored
    once and only one chunk is ever copied at a time.
    """

    def __init__(self, chunk: int, device=None):
        if chunk < 1:
            raise ValueError(f"chunk_pixels must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self.device = device  # None: numpy; a torch.device: torch tensors there
        self.pending: list = []
        self.n_pending = 0
        self.chunks: list = []
        self.n = 0

    def add(self, values) -> None:
        k = int(values.numel() if self.device is not None else values.size)
        if k == 0:
            return
        self.pending.append(values)
        self.n_pending += k
        self.n += k
        if self.n_pending >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.device is None:
            # the pieces are the store's own copies (``a[~mask]``): a single one is sorted in place
            block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            self.pending.clear()
            block.sort()
        else:
            import torch

            block = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending.clear()
            block = torch.sort(block).values
        self.n_pending = 0
        self.chunks.append(block)

    def count(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(#stored < u, #stored <= u)`` for each value of ``u`` (int64)."""
        self.flush()
        lt = np.zeros(u.size, dtype=np.int64)
        le = np.zeros(u.size, dtype=np.int64)
        if self.device is None:
            for ch in self.chunks:
                lt += np.searchsorted(ch, u, side="left")
                le += np.searchsorted(ch, u, side="right")
        else:
            import torch

            ut = torch.from_numpy(np.ascontiguousarray(u)).to(self.device)
            for ch in self.chunks:
                lt += torch.searchsorted(ch, ut, right=False).cpu().numpy()
                le += torch.searchsorted(ch, ut, right=True).cpu().numpy()
        return lt, le


def _resolve_backend(device, backend: str | None):
    """None for numpy, else the torch.device to keep normal pixels on."""
    if backend not in (None, "numpy", "torch"):
        raise ValueError(f"backend must be 'numpy', 'torch' or None (auto), got {backend!r}")
    if backend == "numpy":
        return None
    import torch

    if device is None:
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
    if backend == "torch":
        return dev
    # auto: torch on an accelerator, numpy on CPU (numpy's sort is the faster one there)
    return None if dev.type == "cpu" else dev


# ----------------------------------------------------------------------------- streaming accumulator

class PixelMetrics:
    """Streaming pixel AUROC / AP / F1-max / AUPRO for one category (module doc: bound).

    ``add(amap, mask)`` takes one H x W map (numpy or torch; stored as float32)
    and its boolean mask (None = all normal). ``device=None`` uses CUDA when
    present, else numpy on CPU; ``backend`` forces 'numpy' or 'torch'.
    ``chunk_pixels`` sets the sorted-chunk size of normal pixels.
    """

    def __init__(self, device=None, fpr_limit: float = 0.3, aupro: bool = True, *,
                 backend: str | None = None, chunk_pixels: int = DEFAULT_CHUNK_PIXELS):
        if not 0.0 < float(fpr_limit) <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        self.fpr_limit = float(fpr_limit)
        self.with_aupro = bool(aupro)
        self.device = _resolve_backend(device, backend)
        self._neg = _NegativeStore(chunk_pixels, self.device)
        self._pos: list[np.ndarray] = []        # float32 scores of anomalous pixels, per image
        self._ids: list[np.ndarray] = []        # their 1-based region id within the image
        self._sizes: list[np.ndarray] = []      # region sizes of that image
        self._n_regions = 0
        self._n_maps = 0

    @property
    def n_pixels(self) -> int:
        return self._neg.n + sum(p.size for p in self._pos)

    def add(self, amap, mask) -> None:
        where = f"map #{self._n_maps}"
        if self.device is not None and hasattr(amap, "detach"):
            a_t = amap.detach().to(self.device, dtype=_torch_float32())
            shape = tuple(a_t.shape)
        else:
            a = _as_np(amap)
            if a.dtype != np.float32:
                a = a.astype(np.float32)
            shape = a.shape
        g = np.zeros(shape, dtype=bool) if mask is None else _as_np(mask)
        if g.dtype != bool:
            g = g != 0
        if len(shape) != 2 or g.shape != shape:
            raise DataError(f"{where}: anomaly map is {shape} but its mask is {g.shape}; both must be the same "
                            "H x W (resize the mask to the map, as the evaluator does)")
        if self.device is not None:
            import torch

            if not hasattr(amap, "detach"):
                a_t = torch.from_numpy(a).to(self.device)
            if bool(torch.isnan(a_t).any()):
                raise FloatingPointError(f"{where}: anomaly map has NaN values; fix the method's output")
            g_t = torch.from_numpy(g).to(self.device)
            self._neg.add(a_t[~g_t])
            pos = a_t[g_t].cpu().numpy()
        else:
            if np.isnan(a).any():
                raise FloatingPointError(f"{where}: anomaly map has NaN values; fix the method's output")
            self._neg.add(a[~g])
            pos = a[g]
        self._n_maps += 1
        if pos.size == 0:
            return
        self._pos.append(pos)
        if self.with_aupro:
            ids, n = label_regions(g)
            dtype = np.uint8 if n < 256 else (np.uint16 if n < 65536 else np.int32)
            self._ids.append(ids[g].astype(dtype))
            self._sizes.append(np.bincount(ids.ravel(), minlength=n + 1)[1:])
            self._n_regions += n

    def _summary(self) -> _Summary:
        self._neg.flush()  # before the positive-side arrays exist: peaks do not add up
        if self._pos:
            pos = np.concatenate(self._pos) if len(self._pos) > 1 else self._pos[0].copy()
        else:
            pos = np.zeros(0, np.float32)
        pos.sort()
        u, c = _distinct(pos)
        n_pos = pos.size
        del pos
        lt, le = self._neg.count(u)
        return _Summary(u, c, lt, le, n_pos, self._neg.n)

    def _region_weight_sums(self, u: np.ndarray) -> np.ndarray:
        """Sum of ``1 / (R |r(p)|)`` over the anomalous pixels p with score ``u[j]``, per j."""
        sw = np.zeros(u.size, dtype=np.float64)
        for pos, ids, sizes in zip(self._pos, self._ids, self._sizes):
            w = 1.0 / (self._n_regions * sizes.astype(np.float64))
            np.add.at(sw, np.searchsorted(u, pos), w[ids.astype(np.intp) - 1])
        return sw

    def aupro_value(self, summary: _Summary | None = None) -> float:
        """AUPRO of what was added; raises UndefinedMetric (see module doc)."""
        if not self.with_aupro:
            raise ValueError("this PixelMetrics was built with aupro=False")
        s = self._summary() if summary is None else summary
        if s.n_pos == 0:
            raise UndefinedMetric("no anomalous region in the masks")
        return s.aupro(self._region_weight_sums(s.u), self.fpr_limit)

    def compute(self) -> dict:
        """Dict of pixel_auroc, pixel_ap, pixel_f1_max, aupro (None when undefined) and ``undefined`` reasons."""
        s = self._summary()
        out: dict = {}
        undefined: dict[str, str] = {}
        jobs = [("pixel_auroc", lambda: s.auroc("pixel")),
                ("pixel_ap", lambda: s.average_precision("pixel")),
                ("pixel_f1_max", lambda: s.f1_max("pixel"))]
        if self.with_aupro:
            jobs.append(("aupro", lambda: self.aupro_value(s)))
        for key, fn in jobs:
            try:
                out[key] = fn()
            except UndefinedMetric as exc:
                out[key] = None
                undefined[key] = exc.reason
        out["undefined"] = undefined
        return out


def _torch_float32():
    import torch

    return torch.float32


def image_metrics(scores, labels) -> dict:
    """Image-level AUROC, AP and F1-max (None when undefined) plus ``undefined`` reasons."""
    s = _summary_flat(scores, labels)
    out: dict = {}
    undefined: dict[str, str] = {}
    for key, fn in (("image_auroc", s.auroc), ("image_ap", s.average_precision), ("image_f1_max", s.f1_max)):
        try:
            out[key] = fn("image")
        except UndefinedMetric as exc:
            out[key] = None
            undefined[key] = exc.reason
    out["undefined"] = undefined
    return out
