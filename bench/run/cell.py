"""The cell function: run one job (fit once, evaluate each category) into records.

:func:`run_job` is the same whichever executor calls it. It loads the job's
splits, fits the method once (:func:`fsadbench.run.fit.fit_job`), then for each
category predicts the test images in batches, feeds the maps to one
:class:`CategoryEvaluator` per variant and writes one record per cell
(atomically, :class:`RecordStore`). A failing cell is recorded (``failed``
with the message, or the traceback of a bug) and the sweep goes on; a cell the
method does not apply to is recorded ``not_applicable``. Only an out-of-memory
error that the :class:`BatchPolicy` may retry escapes, and
:func:`run_job_retrying` then runs the job again with halved batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from fsadbench.core.errors import BenchError, NotApplicable
from fsadbench.core.types import CategorySplit
from fsadbench.protocol.evaluator import CategoryEvaluator, check_finite, gt_mask, has_pixel_truth, nan_to_none
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.results.records import STATUS_NA, STATUS_OK, CellKey, Record, RecordStore
from fsadbench.results.scores import ScoreCollector, scores_path
from fsadbench.run.batching import BatchPolicy, free_memory, is_out_of_memory
from fsadbench.run.cellrecord import CellResult, build_record
from fsadbench.run.config import PROTOCOL_VERSION
from fsadbench.run.fit import fit_job
from fsadbench.run.identity import cell_hash, resolve_method, sigma_for, smoothing_for
from fsadbench.run.plan import PER_CATEGORY, Job
from fsadbench.run.resources import Resources


@dataclass
class Evaluation:
    """Metrics of one category (per variant), their undefined reasons, and where the time went."""

    metrics: dict[str, dict[str, Any]]
    undefined: dict[str, dict[str, str]]
    predict_s: float
    eval_s: float
    n_anomalous: int
    scores: ScoreCollector | None = None  # per-image scores (and maps) for the scores file
    sigma_applied: dict[str, Any] | None = None  # the per-image sigmas' range, when they vary


def evaluate(res: Resources, method: Any, job: Job, category: str, split: CategorySplit,
             batch_size: int) -> Evaluation:
    """Predict the category's test images in batches and compute every variant's metrics."""
    size = res.cfg.protocol.eval_size
    sigma = smoothing_for(res.cfg.protocol, type(method))
    refs = res.test_refs(job.dataset, category)
    evaluators: dict[str, CategoryEvaluator] = {}
    pixel = type(method).makes_maps()  # False: an image-level method (scores only, pixel metrics n/a)
    collector = ScoreCollector(save_maps=res.cfg.save_maps and pixel)
    pred_s = eval_s = 0.0
    for start in range(0, len(refs), batch_size):
        batch = split.test[start:start + batch_size]
        t = time.perf_counter()
        preds = method.predict(refs[start:start + batch_size])
        pred_s += time.perf_counter() - t
        t = time.perf_counter()
        masks = [gt_mask(s, size) for s in batch]
        collector.add_batch([x.image_path for x in batch], [x.label for x in batch],
                            [has_pixel_truth(x) for x in batch], masks)
        if not evaluators:
            evaluators = {v: CategoryEvaluator(size, sigma, device=res.device, pixel=pixel) for v in preds}
        elif set(preds) != set(evaluators):
            raise BenchError(f"{job.method.id}: predict() returned variants {sorted(preds)} in one batch "
                             f"and {sorted(evaluators)} in another")
        for v, p in preds.items():
            check_finite(p, f"method {job.method.id}, variant {v!r}, {job.dataset.name}/{category}, "
                            f"seed {job.seed}")
            check_outputs(p, pixel, len(batch), job.method.id)
            collector.add_variant(v, p.scores, evaluators[v].add(p, batch, masks))
        eval_s += time.perf_counter() - t
        if res.cell_progress is not None:
            res.cell_progress.step("test images", start + len(batch), len(refs))
    t = time.perf_counter()
    metrics, undefined = {}, {}
    for v, ev in evaluators.items():
        m, u = ev.compute()
        metrics[v] = {k: nan_to_none(x) for k, x in m.items()}
        undefined[v] = u
    eval_s += time.perf_counter() - t
    n_anom = sum(int(s.label) for s in split.test)
    applied = next((ev.sigma_applied() for ev in evaluators.values()), None)
    return Evaluation(metrics, undefined, pred_s, eval_s, n_anom, collector, applied)


def check_outputs(p: Any, pixel: bool, n: int, method_id: str) -> None:
    """A prediction of ``n`` images as the method declared it: maps (B x H x W) and scores, or scores
    only for an image-level method (``Method.produces == ("image",)``); a BenchError naming the fix."""
    if pixel and p.maps is None:
        raise BenchError(f"{method_id}: predict() returned no maps; a method without pixel maps declares "
                         f"produces = ('image',) (its pixel metrics are then n/a)")
    if not pixel and p.maps is not None:
        raise BenchError(f"{method_id}: predict() returned maps but the method declares produces = ('image',); "
                         f"return maps=None or declare ('image', 'pixel')")
    got = p.maps.shape[0] if pixel else p.scores.shape[0]
    if got != n:
        raise BenchError(f"{method_id}: {got} {'maps' if pixel else 'scores'} for a batch of {n} images")


def run_job(job: Job, res: Resources, store: RecordStore, policy: BatchPolicy | None = None,
            force: bool = False) -> list[Record]:
    """Fit once, evaluate every category of the job, write one record per cell.

    ``policy`` (default: the config's batch size, no out-of-memory retry) sets the batch sizes; an
    out-of-memory error it :meth:`~BatchPolicy.retries` is raised instead of recorded.
    """
    policy = policy or BatchPolicy.from_config(res.cfg, retry_oom=False)
    h = cell_hash(res.cfg, res, job)
    cls, options = resolve_method(job.method)
    t0 = time.perf_counter()
    enc0 = res.encoder_counts()

    def write(category: str, result: CellResult) -> Record:
        rec = build_record(res, job, category, h, result, policy.batch_size)
        store.write(rec)
        return rec

    try:
        splits = {c: res.split(job.dataset, c) for c in job.categories}
    except BenchError as exc:
        return [write(c, CellResult.failure(exc, t0)) for c in job.categories]
    try:
        method, shots, fit_s = fit_job(res, job, cls, options, splits, policy.batch_size, policy.feature_batch_size)
    except NotApplicable as exc:
        return [write(c, CellResult(STATUS_NA, timings={"total_s": time.perf_counter() - t0}, error=str(exc)))
                for c in job.categories]
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the sweep goes on
        if policy.retries(exc):
            raise
        return [write(c, CellResult.failure(exc, t0)) for c in job.categories]
    out: list[Record] = []
    single = len(job.categories) == 1
    for c in job.categories:
        key = CellKey(job.method.id, job.dataset.name, c, job.shots, job.seed)
        if not force and not single and store.is_done(key, h):
            continue
        tc = time.perf_counter()
        enc_c = res.encoder_counts()
        try:
            if job.scope not in PER_CATEGORY:
                method.set_category(splits[c].info)
            ev = evaluate(res, method, job, c, splits[c], policy.batch_size)
        except Exception as exc:  # noqa: BLE001
            if policy.retries(exc):
                raise
            out.append(write(c, CellResult.failure(exc, tc)))
            continue
        timings = {"fit_s": fit_s, "predict_s": ev.predict_s, "eval_s": ev.eval_s,
                   "total_s": time.perf_counter() - (t0 if single else tc)}
        save_scores(store, key, ev.scores, h, sigma_for(res.cfg.protocol, cls))  # before the record names it
        out.append(write(c, CellResult(STATUS_OK, ev.metrics, ev.undefined, shots[c],
                                       res.encoder_delta(enc0 if single else enc_c), timings,
                                       ev.n_anomalous, method, sigma_applied=ev.sigma_applied)))
    return out


def save_scores(store: RecordStore, key: CellKey, scores: ScoreCollector | None, config_hash: str,
                sigma: float) -> None:
    """The cell's per-image scores (and maps) beside its record (:mod:`fsadbench.results.scores`)."""
    if scores is None or not scores.scores:
        return
    from dataclasses import asdict

    meta = {"key": asdict(key), "config_hash": config_hash, "metric_version": METRIC_VERSION,
            "protocol_version": PROTOCOL_VERSION, "sigma_used": sigma}
    scores.result(meta).save(scores_path(store.path(key)))


def run_job_retrying(job: Job, res: Resources, store: RecordStore, policy: BatchPolicy | None = None,
                     force: bool = False, log: Callable[[str], None] | None = None) -> list[Record]:
    """:func:`run_job`, run again with :meth:`BatchPolicy.halved` batches after an out-of-memory error."""
    policy = policy or BatchPolicy.from_config(res.cfg)
    while True:
        try:
            return run_job(job, res, store, policy, force)
        except Exception as exc:  # run_job raises only out-of-memory errors the policy retries
            if not (is_out_of_memory(exc) and policy.retries(exc)):
                raise
            smaller = policy.halved()
            if log is not None:
                log(f"out of memory in {job.keys()[0]}: {policy.describe()} -> {smaller.describe()}; retrying")
            policy = smaller
            free_memory()


def record_failure(job: Job, category: str, res: Resources, store: RecordStore, exc: BaseException) -> Record:
    """Write a failed record for one cell of ``job`` (as the cell function would) and return it."""
    rec = build_record(res, job, category, cell_hash(res.cfg, res, job),
                       CellResult.failure(exc, time.perf_counter()))
    store.write(rec)
    return rec
