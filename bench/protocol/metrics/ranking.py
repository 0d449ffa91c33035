"""Ranking metrics over one flat set of scores: exact AUROC, AP and F1-max with ties.

:class:`RankSummary` holds the counts at the distinct positive scores (the
polyline of the package docstring) and evaluates each metric in closed form
over blocks of ``BLOCK`` distinct values; :func:`auroc`, :func:`average_precision`,
:func:`f1_max` and :func:`image_metrics` build it from flat arrays. The pixel
accumulator (:mod:`.pixel`) builds the same summary from streamed maps, and
:mod:`.aupro` integrates the PRO curve over it.
"""

from __future__ import annotations

import numpy as np


class UndefinedMetric(Exception):
    """The metric has no value for these inputs; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = as_array(scores).ravel()
    y = as_array(labels).ravel()
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


def distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class RankSummary:
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

    def desc_blocks(self):
        """Slices of the ascending arrays, highest values first; each block is reversed by the caller."""
        for stop in range(self.u.size, 0, -self.BLOCK):
            yield slice(max(0, stop - self.BLOCK), stop)

    def auroc(self, what: str = "sample") -> float:
        if self.n_pos == 0:
            raise UndefinedMetric(f"one class only: no anomalous {what}")
        if self.n_neg == 0:
            raise UndefinedMetric(f"one class only: no normal {what}")
        # 2U = sum_j c_j (lt_j + le_j): ties count 1/2 (Mann-Whitney); integers, exact.
        u2 = sum(int(np.dot(self.c[b], self.lt[b] + self.le[b])) for b in self.desc_blocks())
        return u2 / (2 * self.n_pos * self.n_neg)

    def _tp_fp_blocks(self):
        """Per block, descending: (c_j, TP at u_j = positives >= u_j, FP at u_j = negatives >= u_j)."""
        tp_before = 0
        for b in self.desc_blocks():
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


def summary_flat(scores, labels) -> RankSummary:
    s, y = scores_labels(scores, labels)
    neg = s[~y]
    neg.sort()
    pos = s[y]
    pos.sort()
    u, c = distinct(pos)
    lt = np.searchsorted(neg, u, side="left")
    le = np.searchsorted(neg, u, side="right")
    return RankSummary(u, c, lt, le, pos.size, neg.size)


def auroc(scores, labels) -> float:
    """Exact AUROC with ties (Mann-Whitney U / (P N)); raises UndefinedMetric for one class."""
    return summary_flat(scores, labels).auroc()


def average_precision(scores, labels) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds (= sklearn's average_precision_score)."""
    return summary_flat(scores, labels).average_precision()


def f1_max(scores, labels) -> float:
    """Maximum over distinct thresholds of F1 = 2 TP / (TP + FP + P) (ties grouped)."""
    return summary_flat(scores, labels).f1_max()


def image_metrics(scores, labels) -> dict:
    """Image-level AUROC, AP and F1-max (None when undefined) plus ``undefined`` reasons."""
    s = summary_flat(scores, labels)
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
