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

Modules: :mod:`.ranking` (the counts summary, AUROC / AP / F1-max, image
metrics), :mod:`.aupro` (regions and the PRO area), :mod:`.pixel` (the
streaming accumulator).
"""

from fsadbench.protocol.metrics.aupro import aupro, label_regions, pro_area
from fsadbench.protocol.metrics.pixel import DEFAULT_CHUNK_PIXELS, PixelMetrics
from fsadbench.protocol.metrics.ranking import (RankSummary, UndefinedMetric, auroc, average_precision, f1_max,
                                                image_metrics)

# The definitions above are unchanged since version 1 (records stay comparable).
METRIC_VERSION = "fsad-metrics/1 (exact ties; aupro: mvtec, 8-conn, fpr<=0.3, /0.3)"

__all__ = ["DEFAULT_CHUNK_PIXELS", "METRIC_VERSION", "PixelMetrics", "RankSummary", "UndefinedMetric", "aupro",
           "auroc", "average_precision", "f1_max", "image_metrics", "label_regions", "pro_area"]
