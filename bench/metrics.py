"""Threshold-free detection metrics, exact with ties.

Every metric is computed from the curve of (true positives, false positives)
at each *distinct* score, taken in decreasing order, so tied scores move
together (this is the Mann-Whitney form of AUROC, and the thresholds sklearn
uses for AP).

AUPRO follows the MVTec AD definition (Bergmann et al., IJCV 2021):
ground-truth regions are the 8-connected components of each mask
(``scipy.ndimage.label`` with a 3x3 structure); at a threshold t, the
per-region overlap is the fraction of the region's pixels scoring >= t, PRO(t)
is its mean over all regions of the category and FPR(t) the fraction of the
category's normal pixels scoring >= t. The curve (starting at (0, 0)) is
integrated over FPR in [0, fpr_limit] with linear interpolation at the limit,
and divided by fpr_limit.

A metric that is undefined (one class only, no region) is reported as None
with a reason, never as 0 or 0.5.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRIC_VERSION = "fsad-metrics/1 (exact ties; aupro: mvtec, 8-conn, fpr<=0.3, /0.3)"


class UndefinedMetric(Exception):
    """The metric has no value for these inputs; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _as_np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_two_classes(labels: np.ndarray, what: str) -> tuple[int, int]:
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0:
        raise UndefinedMetric(f"one class only: no anomalous {what}")
    if n_neg == 0:
        raise UndefinedMetric(f"one class only: no normal {what}")
    return n_pos, n_neg


def binary_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tps, fps) at each distinct score, highest score first.

    Returns ``(thresholds, tps, fps)``; ``tps[i]`` counts positives with score >=
    ``thresholds[i]``.
    """
    s = _as_np(scores).ravel()
    y = _as_np(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in size")
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    y = y[order]
    # last index of each group of equal scores
    ends = np.flatnonzero(np.diff(s)) if s.size else np.empty(0, dtype=np.int64)
    ends = np.r_[ends, s.size - 1]
    tps = np.cumsum(y, dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    return s[ends], tps, fps


def auroc(scores, labels) -> float:
    """Area under the ROC curve; trapezoids over distinct thresholds = Mann-Whitney U / (P N)."""
    y = _as_np(labels).ravel().astype(bool)
    n_pos, n_neg = _check_two_classes(y, "sample")
    _, tps, fps = binary_curve(scores, y)
    tpr = np.r_[0, tps] / n_pos
    fpr = np.r_[0, fps] / n_neg
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1])) / 2.0)


def average_precision(scores, labels) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds (sklearn's definition)."""
    y = _as_np(labels).ravel().astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise UndefinedMetric("no anomalous sample: precision/recall undefined")
    _, tps, fps = binary_curve(scores, y)
    precision = tps / (tps + fps)
    recall = np.r_[0, tps] / n_pos
    return float(np.sum((recall[1:] - recall[:-1]) * precision))


def f1_max(scores, labels) -> float:
    """max over distinct thresholds of F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P)."""
    y = _as_np(labels).ravel().astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise UndefinedMetric("no anomalous sample: F1 undefined")
    _, tps, fps = binary_curve(scores, y)
    return float(np.max(2.0 * tps / (tps + fps + n_pos)))


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask (MVTec AUPRO regions)."""
    from scipy import ndimage

    return ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=int))


def pro_curve(scores: np.ndarray, region_ids: np.ndarray, n_regions: int,
              region_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at each distinct score, highest first, over flattened pixels.

    ``region_ids`` is 0 for normal pixels and 1..n_regions for region pixels.
    PRO(t) = (1 / R) sum_r |{p in r : s_p >= t}| / |r|, which is the cumulative
    sum of the per-pixel weights 1 / (R |r(p)|).
    """
    s = scores.ravel()
    ids = region_ids.ravel()
    order = np.argsort(s, kind="stable")[::-1]
    s = s[order]
    ids = ids[order]
    normal = ids == 0
    n_normal = int(normal.sum())
    weights = np.zeros(n_regions + 1, dtype=np.float64)
    weights[1:] = 1.0 / (n_regions * region_sizes.astype(np.float64))
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    pro = np.cumsum(weights[ids])[ends]
    fpr = np.cumsum(normal, dtype=np.int64)[ends] / n_normal
    return fpr, pro


def integrate_to(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Trapezoid area under (fpr, pro) from (0, 0) to fpr = limit, interpolating at the limit."""
    x = np.r_[0.0, fpr]
    y = np.r_[0.0, pro]
    keep = x <= limit
    xs, ys = x[keep], y[keep]
    if xs[-1] < limit and keep.sum() < x.size:
        j = int(np.argmax(~keep))  # first point beyond the limit
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        yl = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        xs, ys = np.r_[xs, limit], np.r_[ys, yl]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1])) / 2.0)


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition, see module doc)."""
    acc = PixelMetrics(fpr_limit=fpr_limit, aupro=True)
    for m, g in zip(maps, masks):
        acc.add(m, g)
    return acc._aupro()


class PixelMetrics:
    """Streaming accumulator of one category's anomaly maps and ground truth.

    Maps are kept as float32 (the 1x of the memory bound); masks as region ids
    only where a region exists.
    """

    def __init__(self, device=None, fpr_limit: float = 0.3, aupro: bool = True):
        self.device = device
        self.fpr_limit = float(fpr_limit)
        self.with_aupro = aupro
        self._maps: list[np.ndarray] = []
        self._ids: list[np.ndarray | None] = []
        self._sizes: list[np.ndarray] = []
        self._n_regions = 0

    def add(self, amap, mask) -> None:
        a = _as_np(amap).astype(np.float32, copy=False)
        g = _as_np(mask).astype(bool, copy=False)
        if a.shape != g.shape:
            raise ValueError(f"anomaly map {a.shape} and mask {g.shape} differ in shape")
        self._maps.append(a.ravel())
        if g.any():
            ids, n = label_regions(g)
            ids = ids.astype(np.int32).ravel()
            sizes = np.bincount(ids, minlength=n + 1)[1:]
            ids[ids > 0] += self._n_regions
            self._n_regions += n
            self._ids.append(ids)
            self._sizes.append(sizes)
        else:
            self._ids.append(None)

    def _flat(self) -> tuple[np.ndarray, np.ndarray]:
        scores = np.concatenate(self._maps) if self._maps else np.empty(0, np.float32)
        ids = np.concatenate([i if i is not None else np.zeros(m.size, np.int32)
                              for i, m in zip(self._ids, self._maps)]) if self._maps else np.empty(0, np.int32)
        return scores, ids

    def _aupro(self) -> float:
        scores, ids = self._flat()
        if self._n_regions == 0:
            raise UndefinedMetric("no anomalous region in the masks")
        if not (ids == 0).any():
            raise UndefinedMetric("no normal pixel: FPR undefined")
        fpr, pro = pro_curve(scores, ids, self._n_regions, np.concatenate(self._sizes))
        return integrate_to(fpr, pro, self.fpr_limit) / self.fpr_limit

    def compute(self) -> dict:
        scores, ids = self._flat()
        labels = ids > 0
        out: dict = {}
        undefined: dict[str, str] = {}
        for key, fn in (("pixel_auroc", auroc), ("pixel_ap", average_precision), ("pixel_f1_max", f1_max)):
            try:
                out[key] = fn(scores, labels)
            except UndefinedMetric as exc:
                out[key] = None
                undefined[key] = exc.reason
        if self.with_aupro:
            try:
                out["aupro"] = self._aupro()
            except UndefinedMetric as exc:
                out["aupro"] = None
                undefined["aupro"] = exc.reason
        out["undefined"] = undefined
        return out


def image_metrics(scores, labels) -> dict:
    """Image-level AUROC, AP and F1-max, with undefined ones as None plus reasons."""
    s = _as_np(scores).astype(np.float64).ravel()
    y = _as_np(labels).astype(bool).ravel()
    out: dict = {}
    undefined: dict[str, str] = {}
    for key, fn in (("image_auroc", auroc), ("image_ap", average_precision), ("image_f1_max", f1_max)):
        try:
            out[key] = fn(s, y)
        except UndefinedMetric as exc:
            out[key] = None
            undefined[key] = exc.reason
    out["undefined"] = undefined
    return out
