"""The ``slurm`` executor: a SLURM job array through submitit, one array task per group.

Partition, time, GPUs, CPUs, memory and array parallelism are options.
``cluster="local"`` runs the same array as local processes (submitit's
LocalExecutor) and ``"debug"`` in this process: the same code path without a
cluster. Each task builds its own :class:`Resources` on its node's device and
runs its group through a :class:`CellWorker`. Local tasks die with the process
that submitted them; every task releases its claims on SIGINT / SIGTERM. On an
interrupt the submitter cancels local tasks; tasks on a real cluster keep
running (they hold their own claims; follow them with ``status``).

On a real cluster (:mod:`fsadbench.run.slurmjobs`) the request is checked with
``sbatch --test-only`` before anything is submitted (a refusal is one line with
SLURM's reason), the array's id goes to ``<results>/slurm_jobs.json`` for
``status``, and without accounting (``sacct`` fails) the tasks' states come
from ``squeue``, said once.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from fsadbench.core.errors import ConfigError
from fsadbench.run.config import RunConfig
from fsadbench.run.executors.base import ClaimOptions, Executor, Progress, stderr_log
from fsadbench.run.executors.worker import CellWorker
from fsadbench.run.hygiene import die_with_parent
from fsadbench.run.plan import Job, job_groups
from fsadbench.run.resources import Resources
from fsadbench.run.signals import interrupt_guard, sigint_ignored
from fsadbench.run.slurmjobs import QueueWatcher, accounting_off, check_request, record_array, refusal
from fsadbench.run.summary import LOST, Outcome, last_line

CANCEL_GRACE_S = 10.0


def slurm_task(cfg: RunConfig, group: list[Job], force: bool, claims: ClaimOptions,
               parent_pid: int | None = None) -> list[Outcome]:
    """One array task: run one group on this node's device (``parent_pid``: die with that process)."""
    in_process = parent_pid == os.getpid()
    if parent_pid and not in_process:
        die_with_parent(parent_pid)
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or ""
    store = claims.store(cfg.results_dir, f"slurm {job_id} pid {os.getpid()}".strip())
    with interrupt_guard():  # replaces submitit's SIGTERM bypass: unwind, release the claims, end
        return CellWorker(Resources(cfg, stderr_log), store, force, stderr_log, claims.poll_s).run_jobs(group)


def group_label(group: list[Job]) -> str:
    """What an array task computes: 'synthetic/disc (4 cells)' (a multi-class fit: 'mvtec (all categories)')."""
    k = group[0].keys()[0]
    where = f"{k.dataset}/{k.category}" if group[0].scope == "category" else f"{k.dataset} (all categories)"
    n = sum(len(j.keys()) for j in group)
    return f"{where} ({n} cell{'' if n == 1 else 's'})"


def lost(group: list[Job], why: str) -> list[Outcome]:
    return [{"cell": str(k), "status": LOST, "encoded": 0, "error": why + " (no record; rerun to redo)"}
            for j in group for k in j.keys()]


class SlurmExecutor(Executor):
    """A SLURM job array through submitit: one array task per group (module doc).

    ``wait=False`` submits and returns; ``status`` shows the progress and a
    later run computes only what is still missing.
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

    def asked(self) -> str:
        return ", ".join([f"partition {self.partition or '(default)'}", f"{self.cpus or 1} CPU(s)",
                          f"{self.gpus} GPU(s)"] + ([f"{self.mem_gb:g} GB"] if self.mem_gb else [])
                         + [f"{self.time_min} min"])

    def sbatch_flags(self) -> list[str]:
        """The resource flags submitit writes into the array's sbatch file, for ``sbatch --test-only``."""
        flags = ["--time", str(self.time_min), "--nodes", "1", "--ntasks-per-node", "1",
                 "--gpus-per-node", str(self.gpus)]
        if self.partition:
            flags += ["--partition", self.partition]
        if self.cpus:
            flags += ["--cpus-per-task", str(self.cpus)]
        if self.mem_gb:
            flags += ["--mem", f"{int(self.mem_gb * 1024)}M"]
        return flags

    def _submit(self, ex: Any, cfg: RunConfig, groups: list[list[Job]], force: bool) -> list[Any]:
        import submitit

        n = len(groups)
        parent = os.getpid() if self.cluster in ("local", "debug") else None
        args = (slurm_task, [cfg] * n, groups, [force] * n, [self.claims] * n, [parent] * n)
        if self.cluster == "local":
            # the controller starts with SIGINT ignored (a terminal's Ctrl-C is this process's to handle);
            # its tasks handle SIGINT / SIGTERM themselves (slurm_task)
            with sigint_ignored():
                return ex.map_array(*args)
        if self.cluster == "debug":
            return ex.map_array(*args)
        check_request(self.sbatch_flags(), self.asked(), self.partition)
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # submitit prints sbatch's stderr before raising it
                jobs = ex.map_array(*args)
        except submitit.core.utils.FailedJobError as exc:
            raise refusal(f"{said.getvalue()}\n{exc}", self.asked(), self.partition) from None
        print(said.getvalue(), end="", file=sys.stderr)  # anything else said meanwhile (warnings) goes on
        return jobs

    def _run(self, res: Resources, todo: list[Job], force: bool, progress: Progress) -> list[Outcome] | None:
        import submitit

        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: sbatch is not on PATH (no SLURM here); run on the cluster's "
                              "login node, or add --slurm-cluster local to run the job array as local processes")
        cfg = res.cfg
        groups = job_groups(todo)
        folder = Path(self.folder) if self.folder else Path(cfg.results_dir) / "slurm"
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        ex.update_parameters(**self.parameters())
        self.jobs = self._submit(ex, cfg, groups, force)
        ids = sorted({str(j.job_id).split("_")[0] for j in self.jobs})
        res.log(f"submitted {len(self.jobs)} array task(s) ({', '.join(ids)}); logs in {folder}")
        if self.cluster == "slurm":
            record_array(cfg.results_dir, [(str(j.job_id), group_label(g)) for j, g in zip(self.jobs, groups)])
            why = accounting_off()
            if why is not None:
                res.log(f"SLURM accounting is off ({why}): array task states come from squeue")
                watcher = QueueWatcher()
                for j in self.jobs:
                    j.watcher = watcher
        if not self.wait:
            res.log(f"not waiting; follow with: python run_bench.py status --results-dir {cfg.results_dir}")
            return None
        by_job = {id(j): g for j, g in zip(self.jobs, groups)}
        outcomes: list[Outcome] = []
        try:
            for j in submitit.helpers.as_completed(self.jobs, poll_frequency=1.0):
                try:
                    got = j.result()
                except Exception as exc:  # noqa: BLE001 - a failed task loses its group, not the sweep
                    got = lost(by_job[id(j)], f"array task {j.job_id} failed: {last_line(str(exc))}")
                outcomes.extend(got)
                progress.add(got)
        except BaseException:
            self._cancel(res)
            raise
        return outcomes

    def _cancel(self, res: Resources) -> None:
        """On an interrupt: stop local tasks (they release their claims); cluster tasks go on."""
        if self.cluster != "local":
            if self.cluster == "slurm" and self.jobs:
                res.log(f"array tasks keep running on the cluster (scancel {self.jobs[0].job_id.split('_')[0]} "
                        f"to stop them)")
            return
        for j in self.jobs:
            if not j.done():
                try:  # a local job's id is its controller's pid; SIGTERM makes it stop its tasks quietly
                    os.kill(int(str(j.job_id).split("_")[0]), signal.SIGTERM)
                except (ValueError, OSError):
                    j.cancel(check=False)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline and not all(j.done() for j in self.jobs):
            time.sleep(0.2)
