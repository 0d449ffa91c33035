"""The per-process worker: claims, resume re-check, out-of-memory retry around the cell function.

Around every job a :class:`CellWorker`

1. takes its claim file (:mod:`fsadbench.run.claims`); a job claimed by a live
   runner elsewhere is put aside and revisited until it is done or its claim
   goes stale (then this worker computes it);
2. re-checks the record store, so a cell finished meanwhile is not recomputed;
3. runs the job (:func:`fsadbench.run.cell.run_job_retrying`): on an
   out-of-memory error its :class:`BatchPolicy` halves the method and feature
   batches, down to 1, and the job runs again; the next job starts from the
   configured sizes and the record's config shows the size that produced it;
4. releases the claim (all claims, whatever happens, when the jobs end).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from fsadbench.results.records import RecordStore
from fsadbench.run.batching import BatchPolicy
from fsadbench.run.cell import run_job_retrying
from fsadbench.run.claims import ClaimStore
from fsadbench.run.identity import cell_hash
from fsadbench.run.plan import Job
from fsadbench.run.resources import Resources
from fsadbench.run.summary import ELSEWHERE, SKIPPED, Outcome, record_outcomes

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    del msg


class CellWorker:
    """Runs jobs in one process: ``on_start(job)`` before a job computes, ``on_done(job, outcomes)`` after."""

    def __init__(self, res: Resources, claims: ClaimStore | None = None, force: bool = False,
                 log: Log | None = None, poll_s: float = 1.0, store: RecordStore | None = None,
                 on_start: Callable[[Job], None] | None = None,
                 on_done: Callable[[Job, list[Outcome]], None] | None = None):
        self.res = res
        self.store = store or RecordStore(res.cfg.results_dir, log=res.log)
        self.claims = claims
        self.force = force
        self.log = log or _quiet
        self.poll_s = poll_s
        self.policy = BatchPolicy.from_config(res.cfg)
        self.on_start = on_start or (lambda job: None)
        self.on_done = on_done or (lambda job, outcomes: None)

    def run_jobs(self, jobs: Sequence[Job]) -> list[Outcome]:
        out: list[Outcome] = []
        deferred: list[Job] = []
        try:
            for job in jobs:
                got = self._try(job)
                if got is None:
                    deferred.append(job)
                else:
                    out.extend(got)
            if deferred:
                self.log(f"{len(deferred)} job(s) are being computed by another runner; waiting for them")
            while deferred:
                time.sleep(self.poll_s)
                still = []
                for job in deferred:
                    got = self._try(job, waited=True)
                    if got is None:
                        still.append(job)
                    else:
                        out.extend(got)
                deferred = still
        finally:
            if self.claims is not None:
                self.claims.release_all()
        return out

    def _done(self, job: Job) -> bool:
        if self.force:
            return False
        h = cell_hash(self.res.cfg, self.res, job)
        return all(self.store.is_done(k, h) for k in job.keys())

    def _try(self, job: Job, waited: bool = False) -> list[Outcome] | None:
        claim = None
        if self.claims is not None:
            claim = self.claims.acquire(job.claim_relpath(), [str(k.relpath()) for k in job.keys()])
            if claim is None:
                return None
        try:
            if (waited or claim is not None) and self._done(job):
                st = ELSEWHERE if waited else SKIPPED
                outcomes = [{"cell": str(k), "status": st, "encoded": 0} for k in job.keys()]
            else:
                self.on_start(job)
                outcomes = record_outcomes(run_job_retrying(job, self.res, self.store, self.policy, self.force,
                                                            self.log))
            self.on_done(job, outcomes)
            return outcomes
        finally:
            if claim is not None:
                self.claims.release(claim)
