"""Benchmark: what do extra shots and seeds cost once the encoder outputs are cached?

    python -m benchmarks.sweep_speed                       # ViT-B-16-plus-240, random weights, 320 test images
    python -m benchmarks.sweep_speed --test-images 60      # a quick version on a small CPU
    python -m benchmarks.sweep_speed --executor gpus --amp # on GPUs, bf16 encoder

On one MVTec-sized synthetic category it times, each with a cold feature cache,

1. a single cell (1-shot, seed 0) and
2. a sweep of 3 shot counts x 3 seeds (9 cells) of the same method,

and prints the encoder passes, the wall times and their ratio. With the feature
cache every test image is encoded once per sweep and the 8 extra cells only add
their new shot images plus the method's own work (fit, predict from cached
tokens, evaluation), so the ratio is near 1 + 8 x (per-cell method time) /
(single-cell time), far below the 9x of re-encoding. The data set is generated
once into ``--data-dir`` (not timed); the backbone is built before the clock
starts (its build time is printed apart).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig, default_cache_dir
from fsadbench.results.records import RecordStore


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ViT-B-16-plus-240")
    p.add_argument("--pretrained", default="none", help="none (random weights: timing only), a tag or a file")
    p.add_argument("--method", default="memory")
    p.add_argument("--category", default="stripes", help="synthetic category")
    p.add_argument("--test-images", type=int, default=320, help="test images (a quarter normal, MVTec-like)")
    p.add_argument("--train-images", type=int, default=16)
    p.add_argument("--image-size", type=int, default=256, help="side of the generated images (px)")
    p.add_argument("--shots", default="1,2,4")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--eval-size", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on GPU")
    p.add_argument("--executor", default="local", choices=["local", "gpus"])
    p.add_argument("--workers", type=int)
    p.add_argument("--data-dir", help=f"where the category is generated (default {default_cache_dir()}/bench_sweep)")
    p.add_argument("--keep", action="store_true", help="keep the results and feature caches (printed)")
    return p


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.test_images < 2:
        print("--test-images must be at least 2 (one normal, one anomalous)", file=sys.stderr)
        return 2
    from fsadbench.datasets.synthetic import generate_synthetic
    from fsadbench.run.executors import GpuPoolExecutor, LocalExecutor
    from fsadbench.run.resources import Resources

    n_good = max(1, a.test_images // 4)
    syn = {"size": a.image_size, "n_train": a.train_images, "n_test_good": n_good,
           "n_test_bad": a.test_images - n_good, "seed": 0}
    data_dir = Path(a.data_dir) if a.data_dir else default_cache_dir() / "bench_sweep"
    root = data_dir / f"{a.category}-s{a.image_size}-n{a.train_images}-{n_good}-{a.test_images - n_good}"
    t = time.perf_counter()
    generate_synthetic(root, [a.category], **syn)
    print(f"data: synthetic/{a.category}, {a.train_images} train + {a.test_images} test images "
          f"({n_good} normal) of {a.image_size} px in {root} ({time.perf_counter() - t:.1f} s, not timed)")

    work = Path(tempfile.mkdtemp(prefix="fsad-bench-sweep-"))
    shots, seeds = _ints(a.shots), _ints(a.seeds)
    rows = []
    try:
        for label, k, s in (("single cell", shots[:1], seeds[:1]), ("sweep", shots, seeds)):
            cfg = RunConfig(methods=[MethodSpec(a.method)],
                            datasets=[DatasetSpec("synthetic", root=str(root), categories=[a.category],
                                                  options=dict(syn))],
                            shots=k, seeds=s, model=a.model, pretrained=a.pretrained,
                            protocol=Protocol(eval_size=a.eval_size), results_dir=str(work / label / "results"),
                            cache_dir=str(work / label / "cache"), device=a.device, batch_size=a.batch_size,
                            amp=a.amp)
            log = lambda m: print(f"  {m}", file=sys.stderr)  # noqa: E731
            res = Resources(cfg, log)
            t = time.perf_counter()
            if a.executor == "local":
                res.backbone  # noqa: B018 - build before the clock (workers build their own)
            setup = time.perf_counter() - t
            ex = LocalExecutor() if a.executor == "local" else GpuPoolExecutor(a.workers)
            t = time.perf_counter()
            summary = ex.run(cfg, log=log, resources=res)
            wall = time.perf_counter() - t
            recs = sorted(RecordStore(cfg.results_dir), key=lambda r: (r.key["shots"], r.key["seed"]))  # run order
            if summary.failed or not recs:
                print(f"{label}: {summary.line()}", file=sys.stderr)
                for f in summary.failures:
                    print(f"  {f}", file=sys.stderr)
                return 1
            rows.append({"label": label, "cells": len(recs), "wall": wall, "setup": setup,
                         "encoded": summary.encoded_images,
                         "decoded": sum(int(r.encoder.get("decoded", 0)) for r in recs),
                         "per_cell": [(r.key["shots"], r.key["seed"], r.encoder.get("encoded", 0),
                                       r.timings.get("total_s", 0.0), r.timings.get("fit_s", 0.0),
                                       r.timings.get("predict_s", 0.0), r.timings.get("eval_s", 0.0))
                                      for r in recs],
                         "precision": recs[0].backbone.get("precision"),
                         "device": recs[0].provenance.get("device")})
    finally:
        if a.keep:
            print(f"results and caches kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    one, sweep = rows
    print(f"backbone: {a.model} ({a.pretrained}), method {a.method}, executor {a.executor}, "
          f"precision {one['precision']}, eval size {a.eval_size}")
    if a.executor == "local":
        print(f"backbone build: {one['setup']:.1f} s (before the clock)")
    for r in rows:
        print(f"{r['label']:>11}: {r['cells']} cell(s), wall {r['wall']:7.1f} s, encoder passes "
              f"{r['encoded']} image(s), decoded {r['decoded']} image file(s)")
    print("sweep cells (shots, seed): encoder passes, cell time = fit + predict (incl. encoding) + evaluation")
    for k, s, enc, tot, fit, pred, ev in sweep["per_cell"]:
        print(f"  k={k} seed={s}: {enc:4d} image(s) encoded, {tot:6.1f} s = {fit:5.1f} + {pred:6.1f} + {ev:5.1f} s")
    extra = sweep["per_cell"][1:]
    extra_time = sum(x[3] for x in extra)
    n = sweep["cells"]
    ratio = sweep["wall"] / one["wall"]
    print(f"ratio sweep / single cell: {ratio:.2f} for {n} cells (re-encoding every cell would be ~{n}x)")
    if extra:
        print(f"the {len(extra)} cells after the first: {extra_time:.1f} s in all, {extra_time / len(extra):.1f} s "
              f"each (fit {sum(x[4] for x in extra):.1f} s, predict from cached tokens "
              f"{sum(x[5] for x in extra):.1f} s, evaluation {sum(x[6] for x in extra):.1f} s in all), "
              f"{sum(x[2] for x in extra)} new encoder passes (their new shot images)")
        print(f"expected ratio if extra cells cost only the method's work: "
              f"{(one['wall'] + extra_time) / one['wall']:.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
