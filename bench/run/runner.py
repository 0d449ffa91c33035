"""Transitional facade over the run modules (plan, resources, identity, fit, cell); removed with the one run path.

``Runner`` keeps the old attribute names for the executors and tests that still
reach into it; every piece of work is done by the modules it delegates to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from fsadbench.results.records import STATUS_NA, STATUS_OK, Record, RecordStore
from fsadbench.run.batching import BatchPolicy, is_out_of_memory  # noqa: F401 - old import path
from fsadbench.run.cell import record_failure, run_job
from fsadbench.run.config import RunConfig
from fsadbench.run.fit import fitted_method, seed_everything  # noqa: F401 - old import path
from fsadbench.run.identity import cell_hash, resolve_method
from fsadbench.run.plan import Job, pending, plan_jobs
from fsadbench.run.resources import Resources


@dataclass
class RunSummary:
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    not_applicable: int = 0
    encoded_images: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.computed} cell(s) computed, {self.skipped} already done, {self.failed} failed, "
                f"{self.not_applicable} not applicable; encoder passes: {self.encoded_images} image(s)")


class Runner:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] | None = None, progress: bool = True):
        self.res = Resources(cfg, log)
        self.cfg = cfg
        self.store = RecordStore(cfg.results_dir)
        self.log = self.res.log
        self.progress = progress
        self.retry_oom = False

    device = property(lambda self: self.res.device)
    backbone = property(lambda self: self.res.backbone)
    features = property(lambda self: self.res.features)

    def dataset(self, spec):
        return self.res.dataset(spec)

    def split(self, spec, category):
        return self.res.split(spec, category)

    def method_entry(self, spec):
        return resolve_method(spec)

    def plan(self) -> list[Job]:
        return plan_jobs(self.cfg, self.res)

    def cell_hash(self, job: Job) -> str:
        return cell_hash(self.cfg, job)

    def pending(self, jobs: Iterable[Job], force: bool = False):
        return pending(self.cfg, jobs, self.store, force)

    def run(self, force: bool = False) -> RunSummary:
        todo, skipped = self.pending(self.plan(), force)
        summary = RunSummary(skipped=skipped)
        for job in todo:
            for rec in self.run_job(job, force=force):
                summary.encoded_images += int(rec.encoder.get("encoded", 0))
                if rec.status == STATUS_OK:
                    summary.computed += 1
                elif rec.status == STATUS_NA:
                    summary.not_applicable += 1
                else:
                    summary.failed += 1
                    summary.failures.append(f"{rec.cell}: {(rec.error or '').strip().splitlines()[-1:]}")
        return summary

    def run_job(self, job: Job, force: bool = False) -> list[Record]:
        fb = self.res._features.batch_size if self.res._features is not None else self.cfg.batch_size
        return run_job(job, self.res, self.store, BatchPolicy(self.cfg.batch_size, fb, self.retry_oom), force)

    def fitted_method(self, method, dataset, category, shots, seed):
        return fitted_method(self.res, method, dataset, category, shots, seed)

    def _write_failure(self, job, category, h, exc, t0) -> Record:
        return record_failure(job, category, self.res, self.store, exc)
