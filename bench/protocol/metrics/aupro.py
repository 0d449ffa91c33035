"""AUPRO, MVTec AD definition: 8-connected regions, per-region overlap, area up to an FPR limit.

:func:`label_regions` labels the regions of a mask (3x3 structure, per image);
:func:`pro_area` integrates the exact PRO polyline of a :class:`RankSummary`
up to ``fpr_limit`` (package docstring); :func:`aupro` is the list API over
maps and masks, through the streaming accumulator of :mod:`.pixel`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from fsadbench.protocol.metrics.ranking import RankSummary, UndefinedMetric


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean mask (MVTec AUPRO regions): (ids, count)."""
    from scipy import ndimage

    return ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=int))


def pro_area(s: RankSummary, region_weight_sums: np.ndarray, fpr_limit: float) -> float:
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
    if s.n_pos == 0:
        raise UndefinedMetric("no anomalous region in the masks")
    if s.n_neg == 0:
        raise UndefinedMetric("no normal pixel: FPR undefined")
    n = s.n_neg
    lim = fpr_limit * n
    area, p_last, e_last = 0.0, 0.0, 0.0
    for b in s.desc_blocks():
        e = (n - s.lt[b][::-1]).astype(np.float64)       # E_j, non-decreasing
        g = (n - s.le[b][::-1]).astype(np.float64)       # G_j
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


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition, package doc)."""
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    maps, masks = list(maps), list(masks)
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks: pass one mask per map")
    acc = PixelMetrics(device="cpu", fpr_limit=fpr_limit, aupro=True)
    for m, g in zip(maps, masks):
        acc.add(m, g)
    return acc.aupro_value()
