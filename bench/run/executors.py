"""Executors: where the cells of a sweep run. One interface, three back ends.

* ``local``: sequential, in this process (the default).
* ``gpus``: one worker process per visible GPU (``concurrent.futures``
  process pool, spawn start method), or ``--workers N`` CPU processes when there
  is no GPU; each worker builds its own Runner on its device.
* ``slurm``: a SLURM job array through submitit (partition, time, GPUs, CPUs,
  memory and array parallelism are options); ``--slurm-cluster local`` runs the
  same array as local processes (submitit's LocalExecutor), no SLURM needed.

All three call the same cell function, :meth:`fsadbench.run.runner.Runner.run_job`,
through :class:`CellWorker`, and write the same records to the same store.

Grouping: the jobs of one (dataset, category) are one *group* and a group runs
in one process, in plan order, so that process encodes each test image once
and every method, shot count and seed reuses the memory cache (one backbone per
run, so this is also the (dataset, category, backbone) group). A multi-class
fit (``fit_scope == "dataset"``) is a group of its own. Workers share the disk
feature cache, which writes entries atomically.

Around every job the worker

1. takes its claim file (:mod:`fsadbench.run.claims`); a job claimed by a live
   runner elsewhere is put aside and revisited until it is done or its claim
   goes stale (then this worker computes it);
2. re-checks the record store, so a cell finished meanwhile is not recomputed;
3. runs the job; on an out-of-memory error it halves the method batch size
   (``MethodContext.batch_size``, the evaluation batch) and the feature-cache
   batch size, down to 1, and retries; the sizes are restored for the next job
   and the record's config shows the sizes that produced it;
4. releases the claim.

A worker killed mid-cell leaves no partial record (records are written
atomically) and a claim that the next runner sees as stale (dead pid on this
host, or a heartbeat older than the lease), so a rerun redoes exactly the
cells that have no record.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from fsadbench.core.errors import ConfigError, error_line
from fsadbench.run.claims import DEFAULT_LEASE_S, ClaimStore
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, CellKey, atomic_write_text
from fsadbench.run.runner import Job, Runner, RunSummary, is_out_of_memory

EXECUTORS = ("local", "gpus", "slurm")
RUN_MANIFEST = "run.json"
DATASET_SCOPE = "_dataset"  # the category part of a multi-class job's claim name

# outcome statuses besides the record statuses
SKIPPED = "skipped"  # done before this runner looked at it
ELSEWHERE = "elsewhere"  # finished by another runner while this one waited
LOST = "lost"  # its worker process died; no record, redone on rerun

Outcome = dict[str, Any]
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- grouping and naming --------------------------------------------------------------------
def job_claim_relpath(job: Job) -> Path:
    """The claim name of a job: its cell's record path, or ``_dataset`` for a multi-class fit."""
    cat = job.categories[0] if job.scope != "dataset" else DATASET_SCOPE
    return CellKey(job.method.id, job.dataset.name, cat, job.shots, job.seed).relpath()


def job_groups(jobs: Iterable[Job]) -> list[list[Job]]:
    """Jobs grouped by (dataset, category) in plan order; each multi-class job alone."""
    groups: dict[tuple[str, str], list[Job]] = {}
    alone: list[list[Job]] = []
    for j in jobs:
        if j.scope == "dataset":
            alone.append([j])
        else:
            groups.setdefault((j.dataset.name, j.categories[0]), []).append(j)
    return list(groups.values()) + alone


def write_run_manifest(runner: Runner, executor: str) -> Path:
    """``<results>/run.json``: the resolved config of the latest sweep started here (read by ``status``)."""
    path = Path(runner.cfg.results_dir) / RUN_MANIFEST
    atomic_write_text(path, json.dumps({"config": runner.cfg.to_dict(), "executor": executor,
                                        "started": time.time()}, indent=1, sort_keys=True))
    return path


def fold(summary: RunSummary, outcomes: Iterable[Outcome], log: Log | None = None) -> RunSummary:
    """Add worker outcomes to a RunSummary (cells done by other runners count as skipped)."""
    for o in outcomes:
        summary.encoded_images += int(o.get("encoded", 0))
        st = o["status"]
        if st == STATUS_OK:
            summary.computed += 1
        elif st == STATUS_NA:
            summary.not_applicable += 1
        elif st in (SKIPPED, ELSEWHERE):
            summary.skipped += 1
        else:  # failed, lost
            summary.failed += 1
            line = f"{o['cell']}: {o.get('error') or st}"
            summary.failures.append(line)
            if log is not None:
                log(f"FAILED {line}")
    return summary


# -- the per-process worker -------------------------------------------------------------------
class CellWorker:
    """Runs jobs in one process around :meth:`Runner.run_job`: claims, resume re-check, OOM retry."""

    def __init__(self, runner: Runner, claims: ClaimStore | None = None, force: bool = False,
                 log: Log | None = None, poll_s: float = 1.0, on_outcome: Callable[[Outcome], None] | None = None):
        self.runner = runner
        self.claims = claims
        self.force = force
        self.log = log or (lambda msg: None)
        self.poll_s = poll_s
        self.on_outcome = on_outcome or (lambda o: None)

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
        h = self.runner.cell_hash(job)
        return all(self.runner.store.is_done(k, h) for k in job.keys())

    def _emit(self, outcomes: list[Outcome]) -> list[Outcome]:
        for o in outcomes:
            self.on_outcome(o)
        return outcomes

    def _try(self, job: Job, waited: bool = False) -> list[Outcome] | None:
        claim = None
        if self.claims is not None:
            cells = [str(k.relpath()) for k in job.keys()]
            claim = self.claims.acquire(job_claim_relpath(job), cells)
            if claim is None:
                return None
        try:
            if (waited or claim is not None) and self._done(job):
                st = ELSEWHERE if waited else SKIPPED
                return self._emit([{"cell": str(k), "status": st, "encoded": 0} for k in job.keys()])
            recs = self.run_with_retry(job)
            return self._emit([{"cell": str(r.cell), "status": r.status, "encoded": int(r.encoder.get("encoded", 0)),
                                "error": error_line(r.error) if r.status == STATUS_FAILED else None} for r in recs])
        finally:
            if claim is not None:
                self.claims.release(claim)

    def run_with_retry(self, job: Job):
        """``Runner.run_job``, retried with halved batch sizes after an out-of-memory error."""
        r = self.runner
        sizes = (r.cfg.batch_size, r.features.batch_size)
        r.retry_oom = True
        try:
            while True:
                try:
                    return r.run_job(job, force=self.force)
                except Exception as exc:  # run_job re-raises only out-of-memory errors it may retry
                    if not is_out_of_memory(exc):
                        raise
                    old = (r.cfg.batch_size, r.features.batch_size)
                    r.cfg.batch_size = max(1, old[0] // 2)
                    r.features.batch_size = max(1, old[1] // 2)
                    self.log(f"out of memory in {job.keys()[0]}: batch size {old[0]} -> {r.cfg.batch_size}, "
                             f"feature batch {old[1]} -> {r.features.batch_size}; retrying")
                    _free_memory()
        finally:
            r.retry_oom = False
            r.cfg.batch_size, r.features.batch_size = sizes


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


# -- executors ------------------------------------------------------------------------------------
@dataclasses.dataclass
class ClaimOptions:
    enabled: bool = True
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float | None = None
    poll_s: float = 1.0

    def store(self, results_dir: str, owner: str) -> ClaimStore | None:
        return ClaimStore(results_dir, self.lease_s, self.heartbeat_s, owner) if self.enabled else None


class Executor(ABC):
    name = "executor"

    def __init__(self, claims: ClaimOptions | None = None):
        self.claims = claims or ClaimOptions()

    def run(self, runner: Runner, force: bool = False) -> RunSummary:
        jobs = runner.plan()
        todo, skipped = runner.pending(jobs, force)
        write_run_manifest(runner, self.name)
        n_cells = sum(len(j.categories) for j in todo)
        runner.log(f"{n_cells} cell(s) to compute, {skipped} already done in {runner.store.root} "
                   f"(executor {self.describe()})")
        summary = RunSummary(skipped=skipped)
        if todo:
            self._run(runner, todo, force, summary, n_cells)
        return summary

    @abstractmethod
    def _run(self, runner: Runner, todo: list[Job], force: bool, summary: RunSummary, n_cells: int) -> None:
        """Run ``todo`` and fold its outcomes into ``summary``."""

    def describe(self) -> str:
        return self.name


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True)

    def __call__(self, o: Outcome) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(o["cell"][:60])
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LocalExecutor(Executor):
    """Sequential, in this process."""

    name = "local"

    def _run(self, runner, todo, force, summary, n_cells):
        bar = _Progress(runner.progress, n_cells)
        try:
            worker = CellWorker(runner, self.claims.store(runner.cfg.results_dir, f"local pid {os.getpid()}"),
                                force, runner.log, self.claims.poll_s, on_outcome=bar)
            fold(summary, worker.run_jobs(todo), runner.log)
        finally:
            bar.close()


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0


# state of a pool worker process (set by _pool_init)
_POOL_WORKER: CellWorker | None = None


def _pool_init(cfg, devices, threads: int, claims: ClaimOptions, force: bool) -> None:
    """Build this worker's Runner on the device it takes from the queue."""
    global _POOL_WORKER
    import torch

    device = devices.get()
    if threads:
        torch.set_num_threads(threads)
    runner = Runner(dataclasses.replace(cfg, device=device), log=_stderr, progress=False)
    store = claims.store(cfg.results_dir, f"gpus worker pid {os.getpid()} on {device}")
    _POOL_WORKER = CellWorker(runner, store, force, _stderr, claims.poll_s)


def _pool_run(group: list[Job]) -> list[Outcome]:
    assert _POOL_WORKER is not None, "pool worker used before its initializer ran"
    return _POOL_WORKER.run_jobs(group)


class GpuPoolExecutor(Executor):
    """One worker process per visible GPU, or ``workers`` CPU processes when there is none.

    ``workers`` larger than the GPU count puts several workers on a GPU (round robin).
    CPU workers get ``cpu_count // workers`` torch threads each.
    """

    name = "gpus"

    def __init__(self, workers: int | None = None, claims: ClaimOptions | None = None):
        super().__init__(claims)
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: must be at least 1")
        self.workers = workers

    def devices(self, cfg) -> list[str]:
        want = (cfg.device or "auto").lower()
        n_gpu = visible_gpus() if want in ("auto", "cuda") else 0
        if want.startswith("cuda:"):
            return [want] * (self.workers or 1)
        if n_gpu:
            return [f"cuda:{i % n_gpu}" for i in range(self.workers or n_gpu)]
        return ["cpu"] * (self.workers or max(1, min(4, (os.cpu_count() or 2) // 2)))

    def describe(self) -> str:
        return f"gpus, workers={self.workers or 'auto'}"

    def _run(self, runner, todo, force, summary, n_cells):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        groups = job_groups(todo)
        devices = self.devices(runner.cfg)[:len(groups)]
        threads = max(1, (os.cpu_count() or 1) // len(devices)) if devices[0] == "cpu" else 0
        runner.log(f"{len(groups)} group(s) on {len(devices)} worker(s): {', '.join(devices)}")
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for d in devices:
            queue.put(d)
        bar = _Progress(runner.progress, n_cells)
        try:
            with ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_pool_init,
                                     initargs=(runner.cfg, queue, threads, self.claims, force)) as pool:
                futures = {pool.submit(_pool_run, g): g for g in groups}
                for f in as_completed(futures):
                    try:
                        outcomes = f.result()
                    except Exception as exc:  # noqa: BLE001 - a dead worker loses its group, not the sweep
                        outcomes = _lost(futures[f], f"worker failed: {type(exc).__name__}: {exc}")
                    for o in outcomes:
                        bar(o)
                    fold(summary, outcomes, runner.log)
        finally:
            bar.close()


def _lost(group: list[Job], why: str) -> list[Outcome]:
    return [{"cell": str(k), "status": LOST, "encoded": 0, "error": why + " (no record; rerun to redo)"}
            for j in group for k in j.keys()]


def _slurm_task(cfg, group: list[Job], force: bool, claims: ClaimOptions) -> list[Outcome]:
    """One array task: a Runner on this node's device (auto) runs one group."""
    runner = Runner(cfg, log=_stderr, progress=False)
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or ""
    store = claims.store(cfg.results_dir, f"slurm {job_id} pid {os.getpid()}".strip())
    return CellWorker(runner, store, force, _stderr, claims.poll_s).run_jobs(group)


class SlurmExecutor(Executor):
    """A SLURM job array through submitit: one array task per group.

    ``cluster="local"`` runs the array as local processes (submitit's
    LocalExecutor) and ``"debug"`` in this process: the same code path without
    a cluster. ``wait=False`` submits and returns; ``run_bench.py status`` shows
    the progress and a later run collects nothing it does not need.
    """

    name = "slurm"

    def __init__(self, cluster: str = "slurm", partition: str | None = None, time_min: int = 240,
                 gpus: int = 1, cpus: int | None = None, mem_gb: float | None = None,
                 array_parallelism: int | None = None, wait: bool = True, folder: str | None = None,
                 claims: ClaimOptions | None = None):
        super().__init__(claims)
        if cluster not in ("slurm", "local", "debug"):
            raise ConfigError(f"--slurm-cluster {cluster!r}: use slurm, local (test the array on this machine) "
                              f"or debug (in this process)")
        if time_min < 1:
            raise ConfigError(f"--slurm-time {time_min}: minutes, at least 1")
        self.cluster, self.partition, self.time_min = cluster, partition, time_min
        self.gpus, self.cpus, self.mem_gb = gpus, cpus, mem_gb
        self.array_parallelism, self.wait, self.folder = array_parallelism, wait, folder
        self.jobs: list[Any] = []

    def describe(self) -> str:
        return (f"slurm ({self.cluster}), partition={self.partition or 'default'}, time={self.time_min} min, "
                f"gpus={self.gpus}, array parallelism={self.array_parallelism or 'unlimited'}")

    def parameters(self) -> dict[str, Any]:
        p: dict[str, Any] = {"timeout_min": self.time_min, "name": "fsadbench", "gpus_per_node": self.gpus,
                             "tasks_per_node": 1, "nodes": 1}
        if self.cpus:
            p["cpus_per_task"] = self.cpus
        if self.mem_gb:
            p["mem_gb"] = self.mem_gb
        if self.partition:
            p["slurm_partition"] = self.partition
        if self.array_parallelism:
            p["slurm_array_parallelism"] = self.array_parallelism
        return p

    def _run(self, runner, todo, force, summary, n_cells):
        import submitit

        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: sbatch is not on PATH (no SLURM here); run on the cluster's "
                              "login node, or add --slurm-cluster local to run the job array as local processes")
        groups = job_groups(todo)
        folder = Path(self.folder) if self.folder else Path(runner.cfg.results_dir) / "slurm"
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        ex.update_parameters(**self.parameters())
        cfg = runner.cfg
        self.jobs = ex.map_array(_slurm_task, [cfg] * len(groups), groups, [force] * len(groups),
                                 [self.claims] * len(groups))
        ids = sorted({str(j.job_id).split("_")[0] for j in self.jobs})
        runner.log(f"submitted {len(self.jobs)} array task(s) ({', '.join(ids)}); logs in {folder}")
        if not self.wait:
            runner.log(f"not waiting; follow with: python run_bench.py status --results-dir {cfg.results_dir}")
            return
        bar = _Progress(runner.progress, n_cells)
        by_job = {id(j): g for j, g in zip(self.jobs, groups)}
        try:
            for j in submitit.helpers.as_completed(self.jobs, poll_frequency=1.0):
                try:
                    outcomes = j.result()
                except Exception as exc:  # noqa: BLE001 - a failed task loses its group, not the sweep
                    outcomes = _lost(by_job[id(j)], f"array task {j.job_id} failed: {_last_line(str(exc))}")
                for o in outcomes:
                    bar(o)
                fold(summary, outcomes, runner.log)
        finally:
            bar.close()


# -- command line -------------------------------------------------------------------------------
def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executors (where cells run; every executor writes the same records)")
    g.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: sequential here; gpus: one worker per visible GPU (--workers CPU processes when "
                        "there is none); slurm: a job array through submitit")
    g.add_argument("--workers", type=int, help="gpus executor: number of worker processes")
    g.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local", "debug"],
                   help="slurm executor back end: slurm, or local processes to try the array without a cluster")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time", type=int, default=240, help="minutes per array task")
    g.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per array task")
    g.add_argument("--slurm-cpus", type=int, help="CPUs per array task")
    g.add_argument("--slurm-mem-gb", type=float, help="memory per array task (GB)")
    g.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once")
    g.add_argument("--slurm-no-wait", action="store_true", help="submit and return (follow with `status`)")
    g.add_argument("--no-claims", action="store_true",
                   help="do not write claim files (only when a single runner uses the results folder)")
    g.add_argument("--lease", type=float, default=DEFAULT_LEASE_S,
                   help="seconds after which a claim without heartbeat is stale (default %(default)s)")


def executor_from_args(a: argparse.Namespace) -> Executor:
    if a.lease <= 0:
        raise ConfigError(f"--lease {a.lease}: seconds, > 0")
    claims = ClaimOptions(enabled=not a.no_claims, lease_s=a.lease)
    if a.executor == "local":
        return LocalExecutor(claims)
    if a.executor == "gpus":
        return GpuPoolExecutor(a.workers, claims)
    return SlurmExecutor(cluster=a.slurm_cluster, partition=a.slurm_partition, time_min=a.slurm_time,
                         gpus=a.slurm_gpus, cpus=a.slurm_cpus, mem_gb=a.slurm_mem_gb,
                         array_parallelism=a.slurm_array_parallelism, wait=not a.slurm_no_wait, claims=claims)


def make_executor(name: str, **options: Any) -> Executor:
    """Build an executor by name (``local``, ``gpus``, ``slurm``) for library use."""
    claims = options.pop("claims", None)
    if name == "local":
        return LocalExecutor(claims, **options)
    if name == "gpus":
        return GpuPoolExecutor(claims=claims, **options)
    if name == "slurm":
        return SlurmExecutor(claims=claims, **options)
    raise ConfigError(f"executor {name!r}: unknown; choose one of {', '.join(EXECUTORS)}")
