"""The checks and micro-measurements of ``python -m benchmarks.gpu_protocol`` (see its docstring).

Each function returns a JSON-ready dict; a check carries ``status`` PASS, FAIL
or SKIPPED (with ``why``). CUDA-only checks are SKIPPED on a machine without
CUDA: they never PASS there.

* :func:`encoder_throughput`: the image tower's forward pass on a batch already
  on the device (no decoding), images/s, fp32 or bf16 autocast.
* :func:`metric_engine`: one category's maps (a fitted ``memory`` method)
  through the evaluator on CPU (numpy) and on CUDA (torch), timed; the metrics
  must be equal exactly.
* :func:`map_copies`: host<->device copies of maps counted while the real
  evaluation path (:func:`fsadbench.run.cell.evaluate`) runs on the device; at
  most one per batch and variant (the method's maps coming to the host once in
  :class:`Prediction`) is allowed. The counter wraps ``Tensor.to/.cpu/.cuda``
  for this benchmark only, while the evaluator or a Prediction is at work.
* :func:`bf16_maps`: each method fitted on one cell in fp32 and in bf16
  autocast; the largest map deviation relative to the fp32 maps' range.
* :func:`executor_records`: the same small sweep through ``local`` and ``gpus``;
  every record's status and metrics must be equal.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from fsadbench.core.types import Prediction
from fsadbench.protocol.evaluator import CategoryEvaluator, gt_mask, nan_to_none
from fsadbench.results.records import STATUS_OK, RecordStore
from fsadbench.run import sweep
from fsadbench.run.cell import evaluate
from fsadbench.run.config import DatasetSpec, MethodSpec, RunConfig
from fsadbench.run.fit import fitted_method
from fsadbench.run.identity import sigma_for
from fsadbench.run.plan import Job
from fsadbench.run.resources import Resources

BF16_TOL = 0.02  # max |bf16 - fp32| over the fp32 maps' range (max - min), per method and variant


def skipped(why: str) -> dict[str, Any]:
    return {"status": "SKIPPED", "why": why}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_throughput(res: Resources, batch: int, iters: int, bf16: bool) -> dict[str, Any]:
    """Images/s of the image tower's plain pass on a B x 3 x S x S batch already on the device."""
    bb = res.backbone
    dev = bb.device
    if bf16 and dev.type != "cuda":
        return skipped("no CUDA: bf16 autocast runs on CUDA only")
    px = torch.randn(batch, 3, bb.image_size, bb.image_size, device=dev)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else (
        lambda: torch.autocast(dev.type, enabled=False))
    with torch.no_grad():
        for _ in range(2):  # warm-up (kernels, allocator)
            with ctx():
                bb.encode_image_tokens(px)
        sync(dev)
        t = time.perf_counter()
        for _ in range(iters):
            with ctx():
                bb.encode_image_tokens(px)
        sync(dev)
        dt = time.perf_counter() - t
    return {"images_per_s": batch * iters / dt, "batch": batch, "iters": iters, "seconds": dt,
            "image_size": bb.image_size, "precision": "bf16-autocast" if bf16 else "fp32"}


def _predictions(method: Any, refs: list, batch: int) -> list[dict[str, Prediction]]:
    return [method.predict(refs[i:i + batch]) for i in range(0, len(refs), batch)]


def _run_evaluator(preds: list[dict[str, Prediction]], split, size: int, sigma: float, device: torch.device,
                   batch: int) -> tuple[dict[str, dict[str, Any]], float]:
    t = time.perf_counter()
    evs: dict[str, CategoryEvaluator] = {}
    for b, p in enumerate(preds):
        samples = split.test[b * batch:(b + 1) * batch]
        masks = [gt_mask(s, size) for s in samples]
        for v, pred in p.items():
            evs.setdefault(v, CategoryEvaluator(size, sigma, device=device)).add(pred, samples, masks)
    out = {v: {k: nan_to_none(x) for k, x in ev.compute()[0].items()} for v, ev in evs.items()}
    sync(device)
    return out, time.perf_counter() - t


def metric_engine(res: Resources, ds: DatasetSpec, category: str, batch: int) -> dict[str, Any]:
    """One category's memory-method maps through the evaluator on CPU and (when present) CUDA."""
    method, split = fitted_method(res, MethodSpec("memory"), ds, category, 1, 0)
    refs = res.test_refs(ds, category)
    size = res.cfg.protocol.eval_size
    sigma = sigma_for(res.cfg.protocol, type(method))
    preds = _predictions(method, refs, batch)
    cpu, cpu_s = _run_evaluator(preds, split, size, sigma, torch.device("cpu"), batch)
    out: dict[str, Any] = {"category": category, "test_images": len(refs), "eval_size": size, "cpu_s": cpu_s,
                           "metrics_cpu": cpu}
    if res.device.type != "cuda":
        out.update(cuda_s=None, check=skipped("no CUDA"))
        return out
    _run_evaluator(preds, split, size, sigma, res.device, batch)  # warm-up
    cuda, cuda_s = _run_evaluator(preds, split, size, sigma, res.device, batch)
    diff = sorted(f"{v}.{k}: cpu {cpu[v][k]!r} cuda {cuda.get(v, {}).get(k)!r}"
                  for v in cpu for k in cpu[v] if cuda.get(v, {}).get(k) != cpu[v][k])
    out.update(cuda_s=cuda_s, metrics_cuda=cuda,
               check={"status": "FAIL" if diff else "PASS", "differences": diff})
    return out


@dataclasses.dataclass
class CopyCounter:
    """Cross-device tensor copies while a Prediction is built or the evaluator adds / computes."""

    predictions: int = 0  # Prediction objects built (one per batch and variant)
    batches: int = 0  # CategoryEvaluator.add calls
    per_batch: int = 0  # float copies in Prediction construction and in add(): the per-batch path
    in_compute: int = 0  # float copies in compute() (once per category and variant)
    masks: int = 0  # bool copies (ground-truth masks) anywhere in scope
    scope: str = ""

    def note(self, src: torch.Tensor, out: torch.Tensor) -> None:
        if not self.scope or out.device == src.device:
            return
        if src.dtype == torch.bool:
            self.masks += 1
        elif not src.is_floating_point():
            return  # counts / indices, not map values
        elif self.scope == "compute":
            self.in_compute += 1
        elif self.scope == "prediction" and src.ndim < 2:
            return  # image scores, not maps
        else:
            self.per_batch += 1

    @contextmanager
    def installed(self) -> Iterator["CopyCounter"]:
        originals = {name: getattr(torch.Tensor, name) for name in ("to", "cpu", "cuda")}
        ev_add, ev_compute, post = CategoryEvaluator.add, CategoryEvaluator.compute, Prediction.__post_init__

        def tensor_wrapper(fn: Callable) -> Callable:
            def wrapped(t, *a, **k):
                out = fn(t, *a, **k)
                if isinstance(out, torch.Tensor):
                    self.note(t, out)
                return out
            return wrapped

        def scoped(fn: Callable, scope: str, counter: str | None) -> Callable:
            def wrapped(*a, **k):
                if counter:
                    setattr(self, counter, getattr(self, counter) + 1)
                outer, self.scope = self.scope, scope
                try:
                    return fn(*a, **k)
                finally:
                    self.scope = outer
            return wrapped

        try:
            for name, fn in originals.items():
                setattr(torch.Tensor, name, tensor_wrapper(fn))
            CategoryEvaluator.add = scoped(ev_add, "add", "batches")
            CategoryEvaluator.compute = scoped(ev_compute, "compute", None)
            Prediction.__post_init__ = scoped(post, "prediction", "predictions")
            yield self
        finally:
            for name, fn in originals.items():
                setattr(torch.Tensor, name, fn)
            CategoryEvaluator.add, CategoryEvaluator.compute, Prediction.__post_init__ = ev_add, ev_compute, post


def map_copies(res: Resources, ds: DatasetSpec, category: str, method_name: str, options: dict,
               batch: int) -> dict[str, Any]:
    """Count map copies across the device while :func:`evaluate` runs one category (one fitted method)."""
    method, split = fitted_method(res, MethodSpec(method_name, dict(options)), ds, category, 1, 0)
    job = Job(MethodSpec(method_name, dict(options)), ds, [category], 1, 0)
    with CopyCounter().installed() as c:
        evaluate(res, method, job, category, split, batch)
    out = {"method": method_name, "category": category, "predictions": c.predictions, "batches": c.batches,
           "per_batch_copies": c.per_batch, "compute_copies": c.in_compute, "mask_copies": c.masks,
           "excess": max(0, c.per_batch - c.predictions), "device": str(res.device)}
    if res.device.type != "cuda":
        out["check"] = skipped("no CUDA: no host<->device copies to count")
    else:
        out["check"] = {"status": "PASS" if c.per_batch <= c.predictions else "FAIL",
                        "rule": "float map copies in Prediction + CategoryEvaluator.add <= Predictions built "
                                "(one per batch and variant)"}
    return out


def bf16_maps(cfg: RunConfig, ds: DatasetSpec, category: str, methods: list[MethodSpec], batch: int,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Per method and variant: max |bf16 - fp32| over the test maps of one 1-shot cell, over the fp32 range."""
    res32 = Resources(dataclasses.replace(cfg, amp=False), log)
    if res32.device.type != "cuda":
        return {"tolerance": BF16_TOL, "check": skipped("no CUDA: amp changes nothing on CPU")}
    res16 = Resources(dataclasses.replace(cfg, amp=True), log)
    per: dict[str, Any] = {}
    worst = 0.0
    for m in methods:
        maps = []
        for res in (res32, res16):
            method, _ = fitted_method(res, m, ds, category, 1, 0)
            preds = _predictions(method, res.test_refs(ds, category), batch)
            maps.append({v: np.concatenate([p[v].maps for p in preds]) for v in preds[0]})
        for v, a in maps[0].items():
            dev = float(np.abs(maps[1][v] - a).max())
            rng = float(a.max() - a.min()) or 1.0
            per[f"{m.name}/{v}"] = {"max_abs_dev": dev, "fp32_range": rng, "rel_dev": dev / rng}
            worst = max(worst, dev / rng)
    return {"tolerance": BF16_TOL, "category": category, "per_method": per, "max_rel_dev": worst,
            "check": {"status": "PASS" if worst <= BF16_TOL else "FAIL"}}


def executor_records(cfg: RunConfig, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The same sweep through ``local`` and ``gpus`` (one worker); records' status and metrics compared."""
    got = {}
    walls = {}
    for name in ("local", "gpus"):
        c = dataclasses.replace(cfg, results_dir=str(work / name / "results"), cache_dir=str(work / name / "cache"))
        t = time.perf_counter()
        sweep(c, executor=name, log=log, **({"workers": 1} if name == "gpus" else {}))
        walls[name] = time.perf_counter() - t
        got[name] = {"{method}/{dataset}/{category}/k{shots}/s{seed}".format(**r.key): (r.status, r.metrics)
                     for r in RecordStore(c.results_dir)}
    diff = sorted(k for k in set(got["local"]) | set(got["gpus"]) if got["local"].get(k) != got["gpus"].get(k))
    failed = sorted(k for k, (st, _) in got["local"].items() if st != STATUS_OK)
    ok = not diff and not failed and len(got["local"]) > 0
    return {"cells": len(got["local"]), "wall_s": walls, "differences": diff, "failed_local": failed,
            "check": {"status": "PASS" if ok else "FAIL"}}
