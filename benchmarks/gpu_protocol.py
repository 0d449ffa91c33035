"""Benchmark: the shape of the APT Table 1 protocol on one GPU (issue 19), measured and extrapolated.

    python -m benchmarks.gpu_protocol --reduced                  # CPU: 2 categories, tiny model (a few minutes)
    python -m benchmarks.gpu_protocol --device cuda --amp both   # GPU: 15 categories, ViT-B-16-plus-240

MVTec-sized synthetic stand-ins (the 15 MVTec AD category names with their real
test-set sizes, ``--images-per-category`` caps them; a few train normals for
the shots; textures and objects drawn by the built-in synthetic generator at
``--image-size`` px, smaller than MVTec's 700-1024 px, so decoding is cheaper
than on the real set) are read through the ``mvtec`` dataset plugin and
evaluated at 400 px. The backbone has RANDOM weights (``--pretrained none``):
the figures are times, never accuracies. Methods apt, winclip, promptad,
anople, memory with their paper options (``--reduced``: few epochs); shots 1,
2, 4; ``--seeds`` (1 on the GPU).

Printed per method and precision (fp32; bf16 autocast with ``--amp bf16|both``,
CUDA only): fit, predict and evaluation time per cell, the sweep's wall time,
encoder passes, GPU memory peak (``torch.cuda.max_memory_allocated``) and the
whole protocol's GPU-hours, EXTRAPOLATED: 5 datasets (MVTec 15 categories /
1,725 test images, VisA 12 / 2,162, MPDD 6 / 458, KolektorSDD 1 / ~100,
CVC-ColonDB 1 / 380) x 5 methods x 3 shots x 5 seeds, from the measured
per-cell fit time and per-test-image rest of the wall time (encoding,
prediction, evaluation, records); the measured seeds are scaled to 5 (each
method encodes once per cold cache, so this overestimates). Also the image
tower's own throughput (images/s, batch on the device), the metric engine on
CUDA vs CPU for one category, and four checks (PASS / FAIL, SKIPPED without
CUDA): CUDA metrics equal CPU metrics exactly; bf16 maps within BF16_TOL of the
fp32 maps' range; the ``gpus`` executor's records equal ``local``'s; at most one
host<->device copy of maps per batch (see :mod:`benchmarks.gpu_checks`).
``--deadline-s`` skips the blocks that would start after it (listed); the JSON
(``--output``) is rewritten after every block, so a timeout keeps what ran.

The prepared GPU run (one H200, about 8 minutes: a timeout of 470 s, no block
starts after 400 s). Five categories (bottle, carpet, pill, screw, transistor:
627 of MVTec's 1,725 test images, both kinds of stand-in) are meant to keep
the ten (method, precision) sweeps inside it (not yet measured on a GPU); the extrapolation scales by
categories and test images. open_clip_torch, ftfy, wcwidth and this package
travel as wheels; prepare them once in the repo root (``.whl/`` ignored)::

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d .whl open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
    python3 -m pip wheel --no-deps --no-build-isolation -w .whl .

then run, carrying ``.whl``::

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site \
      && PYTHONUNBUFFERED=1 timeout 470 python3 -m benchmarks.gpu_protocol --device cuda --amp both --seeds 0 \
      --categories bottle,carpet,pill,screw,transistor --deadline-s 400 --data-dir /tmp/fsad-gpu \
      --output $OUT/gpu_protocol.json 2>&1 | tee $OUT/gpu_protocol.log

(all 15 categories: drop ``--categories``, with a longer timeout and deadline.)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks import gpu_checks
from benchmarks.gpu_report import extrapolate, method_figures, print_report
from fsadbench.core.io import atomic_write_text
from fsadbench.datasets.base import atomic_dir
from fsadbench.datasets.mvtec import MVTecAD
from fsadbench.datasets.synthetic import generate_category
from fsadbench.results.records import RecordStore
from fsadbench.run.executors import LocalExecutor
from fsadbench.run.config import TINY_MODEL, DatasetSpec, MethodSpec, Protocol, RunConfig, default_cache_dir
from fsadbench.run.resources import Resources

METHODS = ("apt", "winclip", "promptad", "anople", "memory")
#: normal test images per MVTec AD category (the test totals are MVTecAD.expected_counts)
MVTEC_TEST_GOOD = {"bottle": 20, "cable": 58, "capsule": 23, "carpet": 28, "grid": 21, "hazelnut": 40,
                   "leather": 32, "metal_nut": 22, "pill": 26, "screw": 41, "tile": 33, "toothbrush": 12,
                   "transistor": 60, "wood": 19, "zipper": 32}
TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
#: ``--reduced``: fewer epochs (the paper values are the methods' defaults)
REDUCED_OPTIONS = {"apt": {"epochs": 2, "meta_rounds": 1}, "promptad": {"epochs": 2}, "anople": {"epochs": 1}}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_protocol", description=__doc__.split("\n\n")[0])
    p.add_argument("--reduced", action="store_true",
                   help="CPU-sized: 2 categories, 12 test images each, tiny random model, 128 px, 1 seed, "
                        "few epochs (explicit flags still win)")
    p.add_argument("--categories", help="comma list of MVTec names (default: all 15)")
    p.add_argument("--images-per-category", type=int, help="cap on test images per category (default: real size)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--shots", default="1,2,4")
    p.add_argument("--seeds", default="0")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "both"],
                   help="off: fp32; bf16: bf16 autocast only; both: fp32 then bf16 (CUDA only)")
    p.add_argument("--model", help="default ViT-B-16-plus-240 (--reduced: the tiny random model)")
    p.add_argument("--pretrained", default="none", help="none = random weights (timing only)")
    p.add_argument("--eval-size", type=int, help="default 400 (--reduced: 128)")
    p.add_argument("--image-size", type=int, help="side of the generated images (default 320; --reduced: 128)")
    p.add_argument("--train-images", type=int, default=8, help="normal train images per category (shot pool)")
    p.add_argument("--batch-size", type=int, help="method / evaluation / encoder batch (default 32; --reduced 8)")
    p.add_argument("--encoder-batch", type=int, help="batch of the throughput measurement (default 256 on CUDA, "
                                                     "8 on CPU)")
    p.add_argument("--skip-checks", default="", help="comma list of: engine, copies, bf16, executor")
    p.add_argument("--deadline-s", type=float, help="start no block after this many seconds (listed as skipped)")
    p.add_argument("--data-dir", help=f"where the stand-ins are generated (default {default_cache_dir()}/bench_gpu)")
    p.add_argument("--output", help="JSON file of every figure and check")
    return p


def _resolve(a: argparse.Namespace) -> argparse.Namespace:
    red = a.reduced
    a.categories = (a.categories.split(",") if a.categories else (["bottle", "carpet"] if red else list(MVTEC_TEST_GOOD)))
    bad = [c for c in a.categories if c not in MVTEC_TEST_GOOD]
    if bad:
        raise SystemExit(f"--categories: unknown {bad}; MVTec names: {', '.join(MVTEC_TEST_GOOD)}")
    a.methods = [m for m in a.methods.split(",") if m]
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    a.images_per_category = a.images_per_category or (12 if red else None)
    if a.images_per_category is not None and a.images_per_category < 2:
        raise SystemExit("--images-per-category must be at least 2 (one normal, one anomalous)")
    a.model = a.model or (TINY_MODEL if red else "ViT-B-16-plus-240")
    a.eval_size = a.eval_size or (128 if red else 400)
    a.image_size = a.image_size or (128 if red else 320)
    a.batch_size = a.batch_size or (8 if red else 32)
    a.shots = [int(x) for x in a.shots.split(",") if x]
    a.seeds = [int(x) for x in a.seeds.split(",") if x]
    a.skip_checks = {x for x in a.skip_checks.split(",") if x}
    return a


def _sizes(cat: str, cap: int | None) -> tuple[int, int]:
    """(normal, anomalous) test images of the stand-in: the real split, scaled down to ``cap``."""
    total, good = MVTecAD.expected_counts[cat][1], MVTEC_TEST_GOOD[cat]
    if cap is None or cap >= total:
        return good, total - good
    g = min(cap - 1, max(1, round(cap * good / total)))
    return g, cap - g


def _generate_one(args: tuple) -> str:
    root, cat, size, n_train, good, bad = args
    pattern = ("stripes", "grain", "checker")[TEXTURES.index(cat) % 3] if cat in TEXTURES else (
        "disc", "pill")[sorted(MVTEC_TEST_GOOD).index(cat) % 2]
    target = Path(root) / cat
    if not target.is_dir():
        with atomic_dir(target) as tmp:
            generate_category(tmp, pattern, size, n_train, good, bad, seed=0)
    return cat


def make_standins(a: argparse.Namespace) -> tuple[Path, dict[str, Any], float]:
    base = Path(a.data_dir) if a.data_dir else default_cache_dir() / "bench_gpu"
    root = base / f"mvtec-standin-s{a.image_size}-t{a.train_images}-c{a.images_per_category or 'full'}"
    root.mkdir(parents=True, exist_ok=True)
    sizes = {c: _sizes(c, a.images_per_category) for c in a.categories}
    jobs = [(str(root), c, a.image_size, a.train_images, *sizes[c]) for c in a.categories]
    t = time.perf_counter()
    if len(jobs) > 1:
        with ProcessPoolExecutor(min(len(jobs), 16)) as pool:
            list(pool.map(_generate_one, jobs))
    else:
        list(map(_generate_one, jobs))
    info = {c: {"test": g + b, "normal": g, "anomalous": b} for c, (g, b) in sizes.items()}
    return root, info, time.perf_counter() - t


def peak_memory(device: torch.device) -> dict[str, Any]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"gpu_peak_bytes": gpu, "process_max_rss_bytes": rss}


def protocol_block(a, base_cfg: RunConfig, method: str, amp: bool, work: Path, log) -> dict[str, Any]:
    """One (method, precision) sweep over every category, shot and seed; figures from its records."""
    opts = dict(REDUCED_OPTIONS.get(method, {})) if a.reduced else {}
    tag = f"{method}-{'bf16' if amp else 'fp32'}"
    cfg = RunConfig(**{**vars(base_cfg), "methods": [MethodSpec(method, opts)], "amp": amp,
                       "results_dir": str(work / tag / "results"), "cache_dir": str(work / tag / "cache")})
    res = Resources(cfg, log)
    if res.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(res.device)
    t = time.perf_counter()
    res.backbone  # noqa: B018 - built before the clock, timed apart
    build = time.perf_counter() - t
    t = time.perf_counter()
    summary = LocalExecutor().run(cfg, log=log, resources=res)  # what fsadbench.run.sweep runs, on this res
    wall = time.perf_counter() - t
    recs = list(RecordStore(cfg.results_dir))
    return {**method_figures(recs, wall), "backbone_build_s": build, "summary": summary.line(),
            "failures": list(summary.failures),
            "options": opts, **peak_memory(res.device)}


def write(a: argparse.Namespace, out: dict[str, Any]) -> None:
    if a.output:
        atomic_write_text(a.output, json.dumps(out, indent=1, sort_keys=True, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    a = _resolve(_parser().parse_args(argv))
    t0 = time.monotonic()
    log = lambda m: print(f"  {m}", file=sys.stderr, flush=True)  # noqa: E731
    root, cats, gen_s = make_standins(a)
    ds = DatasetSpec("mvtec", root=str(root), categories=list(a.categories))
    work = Path(tempfile.mkdtemp(prefix="fsad-bench-gpu-"))
    base = RunConfig(methods=[MethodSpec(a.methods[0])], datasets=[ds], shots=a.shots, seeds=a.seeds,
                     model=a.model, pretrained=a.pretrained, protocol=Protocol(eval_size=a.eval_size),
                     results_dir=str(work / "base" / "results"), cache_dir=str(work / "base" / "cache"),
                     device=a.device, batch_size=a.batch_size)
    res = Resources(base, log)
    dev = res.device
    precisions = {"off": [False], "bf16": [True], "both": [False, True]}[a.amp]
    out: dict[str, Any] = {
        "benchmark": "gpu_protocol", "random_weights": a.pretrained == "none", "model": a.model,
        "pretrained": a.pretrained, "device": str(dev), "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda" else platform.processor() or platform.machine(), "torch": torch.__version__,
        "reduced": a.reduced, "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(a).items()},
        "data": {"root": str(root), "image_size": a.image_size, "categories": cats, "generation_s": gen_s,
                 "test_images": sum(c["test"] for c in cats.values())},
        "encoder": {}, "methods": {}, "checks": {}, "skipped_blocks": []}
    # the bf16 and executor checks fit one cell per method with the reduced epochs (they compare, not time)
    small = RunConfig(**{**vars(base), "methods": [MethodSpec(m, dict(REDUCED_OPTIONS.get(m, {})))
                                                   for m in a.methods],
                         "datasets": [DatasetSpec("mvtec", root=str(root), categories=a.categories[:1])],
                         "shots": a.shots[:1], "seeds": a.seeds[:1]})
    cat0 = a.categories[0]
    blocks: list[tuple[str, Any]] = [
        ("encoder fp32", lambda: out["encoder"].__setitem__("fp32", gpu_checks.encoder_throughput(
            res, a.encoder_batch or (256 if dev.type == "cuda" else 8), 10 if dev.type == "cuda" else 2, False))),
        ("encoder bf16", lambda: out["encoder"].__setitem__("bf16", gpu_checks.encoder_throughput(
            res, a.encoder_batch or 256, 10, True)))]
    if "engine" not in a.skip_checks:
        blocks.append(("metric engine", lambda: out["checks"].__setitem__(
            "cuda_metrics_equal_cpu", gpu_checks.metric_engine(res, ds, cat0, a.batch_size))))
    if "copies" not in a.skip_checks:
        blocks.append(("map copies", lambda: out["checks"].__setitem__(
            "map_copies_per_batch", gpu_checks.map_copies(res, ds, cat0, "memory", {}, a.batch_size))))
    if "bf16" not in a.skip_checks:
        blocks.append(("bf16 maps", lambda: out["checks"].__setitem__(
            "bf16_maps_within_tol", gpu_checks.bf16_maps(small, small.datasets[0], cat0, small.methods,
                                                         a.batch_size, log))))
    if "executor" not in a.skip_checks:
        blocks.append(("gpus vs local", lambda: out["checks"].__setitem__(
            "gpus_executor_equals_local", gpu_checks.executor_records(small, work / "executors", log))))
    for amp in precisions:  # every method in fp32 first: a deadline cuts bf16 before it cuts a method
        for m in a.methods:
            prec = "bf16" if amp else "fp32"
            if amp and dev.type != "cuda":
                out["methods"].setdefault(m, {})[prec] = gpu_checks.skipped("no CUDA: amp changes nothing on CPU")
                continue
            blocks.append((f"protocol {m} {prec}", lambda m=m, amp=amp, prec=prec: out["methods"].setdefault(
                m, {}).__setitem__(prec, protocol_block(a, base, m, amp, work, log))))
    try:
        for name, fn in blocks:
            if a.deadline_s is not None and time.monotonic() - t0 > a.deadline_s:
                out["skipped_blocks"].append(name)
                continue
            log(f"[{time.monotonic() - t0:6.1f} s] {name}")
            fn()
            out["protocol"] = extrapolate(out["methods"], a)
            out["elapsed_s"] = time.monotonic() - t0
            write(a, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["protocol"] = extrapolate(out["methods"], a)
    out["elapsed_s"] = time.monotonic() - t0
    write(a, out)
    print_report(out)
    failed = [k for k, v in out["checks"].items() if v.get("check", {}).get("status") == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
