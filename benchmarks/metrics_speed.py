"""Speed and memory of the metric engine against sklearn and plain references.

    python -m benchmarks.metrics_speed                       # 1e7 and 1e8 pixels, AUPRO at 1e7, memory
    python -m benchmarks.metrics_speed --sizes 1e7 --sklearn-max 1e7 --json out.json
    python -m benchmarks.metrics_speed --device cuda         # PixelMetrics with torch on the GPU

Data: a synthetic category of float32 maps (400x400, or 200x200 for sizes that
need it), uniform noise with 24-bit resolution (so 1e8 pixels carry heavy
ties), ~60 % of the maps with 1-3 elliptic defects of raised scores (~3 % of
all pixels anomalous). Each map is drawn from a generator seeded by (seed,
index), so the flat arrays for sklearn and the streamed maps are the same data.

Printed, all from one run (wall clock, best of ``--repeats``):

* pixel AUROC at each size: ``sklearn.metrics.roc_auc_score`` on the flat
  arrays vs ``metrics.auroc`` on the same arrays, and vs the streaming
  ``PixelMetrics(aupro=False)`` (add every map + compute AUROC, AP, F1-max);
  the ratio sklearn / ours and the absolute difference of the values.
  Above ``--sklearn-max`` pixels sklearn is not run; its time is then
  extrapolated from the largest measured size as ``t * (n / n0) * log(n) /
  log(n0)`` and labelled ``EXTRAPOLATED``.
* AUPRO at ``--aupro-pixels``: ``PixelMetrics`` vs the plain reference of the
  tests (a sweep over every distinct threshold: per threshold one pass over all
  pixels, FPR and per-region overlaps by bincount). A sweep over the ~1e7
  distinct float32 values is out of reach, so both run on the same maps
  quantised to ``--aupro-levels`` levels (8-bit, as saved maps are), where the
  sweep is exact, and the sweep's time for the unquantised maps is
  extrapolated (time per threshold x distinct values, labelled). The
  sort-based one-pass reference (argsort of all pixels, cumulative sums:
  the usual MVTec evaluation code) is timed on the unquantised maps too.
* memory: an MVTec-sized category (400 maps of 400x400, 256 MB of float32),
  maps produced one at a time as the evaluator does; tracemalloc peak of
  everything allocated from the first ``add`` to the end of ``compute``,
  divided by the bytes of the maps.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np

from fsadbench.protocol.metrics import DEFAULT_CHUNK_PIXELS, PixelMetrics, auroc, label_regions


# ----------------------------------------------------------------------------- data

def synthetic_map(seed: int, index: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One (float32 map, bool mask) pair, a function of (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    amap = rng.random((h, w), dtype=np.float32)
    mask = np.zeros((h, w), bool)
    if rng.random() < 0.6:
        yy, xx = np.ogrid[:h, :w]
        scale = h / 400
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.uniform(10, 60, size=2) * scale
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        amap[mask] += np.float32(0.3) + rng.random(int(mask.sum()), dtype=np.float32) * np.float32(0.4)
    return amap, mask


def category_shape(n_pixels: int) -> tuple[int, int]:
    """(number of maps, side) with maps of 400x400 (or 200x200) and exactly n_pixels in all."""
    for side in (400, 200, 100):
        if n_pixels % (side * side) == 0:
            return n_pixels // (side * side), side
    raise SystemExit(f"--sizes: {n_pixels} is not a multiple of 100x100 pixels; use e.g. 1e7 or 1e8")


def flat_category(n_pixels: int, seed: int, levels: int | None = None):
    n_maps, side = category_shape(n_pixels)
    scores = np.empty(n_pixels, np.float32)
    labels = np.empty(n_pixels, bool)
    maps, masks = [], []
    for i in range(n_maps):
        m, g = synthetic_map(seed, i, side, side)
        if levels is not None:
            m = quantise(m, levels)
        sl = slice(i * side * side, (i + 1) * side * side)
        scores[sl] = m.ravel()
        labels[sl] = g.ravel()
        maps.append(scores[sl].reshape(side, side))  # views: no second copy
        masks.append(labels[sl].reshape(side, side))
    return scores, labels, maps, masks


def quantise(m: np.ndarray, levels: int) -> np.ndarray:
    """Scores rounded onto ``levels`` steps over [0, 1.7] (the synthetic range), as float32."""
    return (np.round(m * ((levels - 1) / 1.7)) / ((levels - 1) / 1.7)).astype(np.float32)


# ----------------------------------------------------------------------------- references

def _region_ids(masks) -> tuple[np.ndarray, np.ndarray, int]:
    """Flat ids of the connected defect regions of all masks (0 = normal), their sizes, their count."""
    ids, sizes, offset = [], [], 0
    for g in masks:
        lab, n = label_regions(g)
        ids.append(np.where(lab > 0, lab + offset, 0).ravel())
        sizes.append(np.bincount(lab.ravel(), minlength=n + 1)[1:])
        offset += n
    return np.concatenate(ids), np.concatenate(sizes), offset


def aupro_sweep(maps, masks, fpr_limit: float = 0.3) -> tuple[float, int]:
    """The tests' plain PRO reference, vectorised per threshold: (AUPRO, thresholds swept)."""
    ids, sizes, offset = _region_ids(masks)
    scores = np.concatenate([m.ravel() for m in maps])
    normal = ids == 0
    n_normal = int(normal.sum())
    xs, ys = [0.0], [0.0]
    thresholds = np.unique(scores)[::-1]
    for t in thresholds:
        hit = scores >= t
        xs.append(np.count_nonzero(hit & normal) / n_normal)
        ys.append(float(np.mean(np.bincount(ids[hit], minlength=offset + 1)[1:] / sizes)))
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit, thresholds.size


def aupro_sorted_reference(maps, masks, fpr_limit: float = 0.3) -> float:
    """One-pass reference: argsort every pixel (float64), cumulative FPR / PRO at distinct scores."""
    ids, sizes, offset = _region_ids(masks)
    sizes = sizes.astype(np.float64)
    scores = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    order = np.argsort(scores, kind="stable")[::-1]
    scores, ids = scores[order], ids[order]
    weights = np.r_[0.0, 1.0 / (offset * sizes)]
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    pro = np.r_[0.0, np.cumsum(weights[ids])[ends]]
    fpr = np.r_[0.0, np.cumsum(ids == 0)[ends] / np.count_nonzero(ids == 0)]
    j = int(np.searchsorted(fpr, fpr_limit, side="right"))
    xs, ys = fpr[:j], pro[:j]
    if j < fpr.size and xs[-1] < fpr_limit:
        y = pro[j - 1] + (pro[j] - pro[j - 1]) * (fpr_limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        xs, ys = np.r_[xs, fpr_limit], np.r_[ys, y]
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2) / fpr_limit


# ----------------------------------------------------------------------------- timing

def best_of(fn, repeats: int):
    best, value = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def stream(maps, masks, device, aupro: bool) -> dict:
    acc = PixelMetrics(device=device, aupro=aupro)
    for m, g in zip(maps, masks):
        acc.add(m, g)
    out = acc.compute()
    _sync(device)
    return out


def _sync(device) -> None:
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def warm_up(args) -> None:
    """One tiny PixelMetrics run, so lazy imports (torch, scipy.ndimage) and device set-up are not timed."""
    warm = PixelMetrics(device=args.device, aupro=True)
    warm.add(*synthetic_map(args.seed, 0, 16, 16))
    warm.add(np.eye(16, dtype=np.float32), np.eye(16, dtype=bool))
    warm.compute()


def bench_auroc(n: int, args, sklearn_fit: list) -> dict:
    from sklearn.metrics import roc_auc_score

    scores, labels, maps, masks = flat_category(n, args.seed)
    row = {"pixels": n, "anomalous_fraction": float(labels.mean())}
    t_ours, v_ours = best_of(lambda: auroc(scores, labels), args.repeats)
    t_stream, out = best_of(lambda: stream(maps, masks, args.device, aupro=False), args.repeats)
    row.update(ours_s=t_ours, ours_auroc=v_ours, stream_s=t_stream, stream_auroc=out["pixel_auroc"])
    if n <= args.sklearn_max:
        t_sk, v_sk = best_of(lambda: roc_auc_score(labels, scores), args.sklearn_repeats)
        sklearn_fit.append((n, t_sk))
        row.update(sklearn_s=t_sk, sklearn_auroc=float(v_sk), sklearn_measured=True,
                   abs_diff=abs(v_ours - v_sk), abs_diff_stream=abs(out["pixel_auroc"] - v_sk))
    elif sklearn_fit:
        n0, t0 = sklearn_fit[-1]
        row.update(sklearn_s=t0 * (n / n0) * math.log(n) / math.log(n0), sklearn_measured=False)
    if "sklearn_s" in row:
        row.update(ratio=row["sklearn_s"] / t_ours, ratio_stream=row["sklearn_s"] / t_stream)
    return row


def bench_aupro(args) -> dict:
    n = args.aupro_pixels
    _, _, maps_q, masks = flat_category(n, args.seed, levels=args.aupro_levels)
    t_ours_q, out_q = best_of(lambda: stream(maps_q, masks, args.device, aupro=True), args.repeats)
    t_sweep, (v_sweep, n_thr) = best_of(lambda: aupro_sweep(maps_q, masks), 1)
    del maps_q
    _, _, maps, masks = flat_category(n, args.seed)
    t_ours, out = best_of(lambda: stream(maps, masks, args.device, aupro=True), args.repeats)
    t_sorted, v_sorted = best_of(lambda: aupro_sorted_reference(maps, masks), 1)
    n_distinct = int(np.unique(np.concatenate([m.ravel() for m in maps])).size)
    return {
        "pixels": n, "levels": args.aupro_levels,
        "quantised": {"ours_s": t_ours_q, "sweep_s": t_sweep, "thresholds": n_thr, "ratio": t_sweep / t_ours_q,
                      "ours_aupro": out_q["aupro"], "sweep_aupro": v_sweep,
                      "abs_diff": abs(out_q["aupro"] - v_sweep)},
        "full": {"ours_s": t_ours, "sorted_reference_s": t_sorted, "ratio_sorted": t_sorted / t_ours,
                 "ours_aupro": out["aupro"], "sorted_aupro": v_sorted, "abs_diff": abs(out["aupro"] - v_sorted),
                 "distinct_values": n_distinct,
                 "sweep_s_extrapolated": t_sweep / n_thr * n_distinct,
                 "ratio_sweep_extrapolated": t_sweep / n_thr * n_distinct / t_ours},
    }


def bench_memory(args) -> dict:
    n_maps, side = args.memory_maps, 400
    map_bytes = n_maps * side * side * 4
    warm_up(args)  # lazy imports (torch, scipy.ndimage) before tracing
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        acc = PixelMetrics(device=args.device, aupro=True)
        n_pos = 0
        for i in range(n_maps):
            m, g = synthetic_map(args.seed, i, side, side)
            n_pos += int(g.sum())
            acc.add(m, g)
            del m, g
        out = acc.compute()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"maps": n_maps, "side": side, "map_bytes": map_bytes, "peak_bytes": peak,
            "peak_over_maps": peak / map_bytes, "anomalous_fraction": n_pos / (n_maps * side * side),
            "chunk_bytes": DEFAULT_CHUNK_PIXELS * 4, "seconds_with_tracemalloc": seconds,
            "aupro": out["aupro"], "pixel_auroc": out["pixel_auroc"]}


# ----------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.metrics_speed", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[1e7, 1e8], help="pixel counts for pixel AUROC")
    p.add_argument("--sklearn-max", type=float, default=1e8,
                   help="largest size sklearn is run at (~40 bytes per pixel of RAM); larger sizes extrapolate")
    p.add_argument("--aupro-pixels", type=float, default=1e7)
    p.add_argument("--aupro-levels", type=int, default=256, help="levels of the quantised maps for the sweep")
    p.add_argument("--memory-maps", type=int, default=400, help="maps of 400x400 in the memory run (0: skip)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sklearn-repeats", type=int, default=1)
    p.add_argument("--device", default="cpu", help="PixelMetrics device: cpu (numpy) or cuda (torch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=["auroc", "aupro", "memory"])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes]
    args.aupro_pixels = int(args.aupro_pixels)
    args.sklearn_max = int(args.sklearn_max)
    result: dict = {"device": args.device, "repeats": args.repeats}
    warm_up(args)

    if "auroc" not in args.skip:
        fit: list = []
        result["auroc"] = []
        for n in sorted(args.sizes):
            r = bench_auroc(n, args, fit)
            result["auroc"].append(r)
            sk = ("sklearn %.2fs%s" % (r["sklearn_s"], "" if r.get("sklearn_measured") else " EXTRAPOLATED")
                  if "sklearn_s" in r else "sklearn not run")
            line = (f"pixel AUROC n={n:.0e} ({100 * r['anomalous_fraction']:.1f}% anomalous): {sk}; "
                    f"auroc() {r['ours_s']:.3f}s; PixelMetrics add+compute(AUROC,AP,F1) {r['stream_s']:.3f}s")
            if "ratio" in r:
                line += f"; ratio sklearn/auroc() {r['ratio']:.1f}x, sklearn/PixelMetrics {r['ratio_stream']:.1f}x"
            if "abs_diff" in r:
                line += f"; |diff| {r['abs_diff']:.1e} / {r['abs_diff_stream']:.1e}"
            print(line, flush=True)

    if "aupro" not in args.skip:
        a = bench_aupro(args)
        result["aupro"] = a
        q, f = a["quantised"], a["full"]
        print(f"AUPRO n={a['pixels']:.0e}, maps quantised to {a['levels']} levels: threshold sweep "
              f"({q['thresholds']} thresholds) {q['sweep_s']:.2f}s vs PixelMetrics (all 4 metrics) "
              f"{q['ours_s']:.3f}s: ratio {q['ratio']:.1f}x; |diff| {q['abs_diff']:.1e}", flush=True)
        print(f"AUPRO n={a['pixels']:.0e}, float32 maps ({f['distinct_values']} distinct values): sorted one-pass "
              f"reference {f['sorted_reference_s']:.2f}s vs PixelMetrics {f['ours_s']:.3f}s: ratio "
              f"{f['ratio_sorted']:.1f}x; |diff| {f['abs_diff']:.1e}; threshold sweep EXTRAPOLATED "
              f"{f['sweep_s_extrapolated']:.3g}s = ratio {f['ratio_sweep_extrapolated']:.3g}x", flush=True)

    if "memory" not in args.skip and args.memory_maps > 0:
        m = bench_memory(args)
        result["memory"] = m
        print(f"memory, {m['maps']} maps of {m['side']}x{m['side']} ({m['map_bytes'] / 2**20:.0f} MiB float32, "
              f"{100 * m['anomalous_fraction']:.1f}% anomalous): tracemalloc peak from first add to end of "
              f"compute {m['peak_bytes'] / 2**20:.0f} MiB = {m['peak_over_maps']:.2f}x the maps "
              f"(chunk {m['chunk_bytes'] / 2**20:.0f} MiB); {m['seconds_with_tracemalloc']:.1f}s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
