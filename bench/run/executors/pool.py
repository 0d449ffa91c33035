"""The ``gpus`` executor: one worker process per visible GPU, or ``--workers N`` CPU processes.

Each worker (spawned, one per device slot) builds its own :class:`Resources`
on its device and runs the groups the parent sends it, one at a time, through a
:class:`CellWorker`; it reports each job's start and outcomes over its pipe.
A group is the jobs of one (dataset, category), so a process encodes each test
image once and every method, shot count and seed reuses the cache.

Faults stay local. A worker that dies (killed, crashed) loses only the job it
was computing: the parent reports that job lost, sends the rest of its group to
a fresh worker on the same device and goes on (a worker that dies before its
first job is replaced at most twice per slot). Workers die with the parent
(:func:`fsadbench.run.hygiene.die_with_parent`), ignore SIGINT and release their
claims on SIGTERM; on an interrupt the parent sends SIGTERM to every worker,
waits for them, then unwinds.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import RecordStore
from fsadbench.run.config import RunConfig
from fsadbench.run.executors.base import ClaimOptions, Executor, Progress, stderr_log
from fsadbench.run.executors.worker import CellWorker
from fsadbench.run.hygiene import die_with_parent
from fsadbench.run.plan import Job, job_groups
from fsadbench.run.resources import Resources
from fsadbench.run.signals import Interrupted, sigint_ignored, worker_signals
from fsadbench.run.summary import LOST, Outcome, last_line

STOP_GRACE_S = 10.0  # how long workers get to release their claims after SIGTERM
Item = list[tuple[int, Job]]  # a unit of work: (job id, job) pairs, one group or what is left of it


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        return 0


def worker_main(cfg: RunConfig, conn: Any, threads: int, claims: ClaimOptions, force: bool, parent_pid: int) -> None:
    """A pool worker process: receive items, run them, report ("start", id) / ("done", id, outcomes)."""
    code = 0
    try:
        worker_signals()
        die_with_parent(parent_pid)
        if threads:
            import torch

            torch.set_num_threads(threads)
        res = Resources(cfg, log=stderr_log)
        store = RecordStore(cfg.results_dir, log=stderr_log)
        claim_store = claims.store(cfg.results_dir, f"gpus worker pid {os.getpid()} on {cfg.device}")
        while True:
            item = conn.recv()
            if item is None:
                break
            ids = {id(job): jid for jid, job in item}
            CellWorker(res, claim_store, force, stderr_log, claims.poll_s, store=store,
                       on_start=lambda job: conn.send(("start", ids[id(job)])),
                       on_done=lambda job, outs: conn.send(("done", ids[id(job)], outs))
                       ).run_jobs([job for _, job in item])
            conn.send(("idle",))
    except Interrupted as exc:
        code = 128 + exc.signum
    except (EOFError, BrokenPipeError):
        code = 0  # the parent is gone
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then this worker ends
        traceback.print_exc()
        try:
            conn.send(("crash", f"{type(exc).__name__}: {last_line(str(exc))}"))
        except Exception:  # noqa: BLE001
            pass
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


@dataclasses.dataclass
class Slot:
    """One device slot of the pool and the process currently serving it."""

    device: str
    proc: Any = None
    conn: Any = None
    item: Item | None = None  # what it was sent and has not finished
    pending: set[int] = dataclasses.field(default_factory=set)  # job ids of ``item`` not done yet
    in_flight: int | None = None  # the job id it is computing
    started_any: bool = False  # this process started a job
    stopping: bool = False
    crash: str = ""
    early_deaths: int = 0  # processes of this slot that died before their first job


class WorkerPool:
    """Worker processes on ``devices`` running items of jobs; see the module doc."""

    def __init__(self, cfg: RunConfig, devices: list[str], threads: int, claims: ClaimOptions, force: bool,
                 log: Callable[[str], None], max_early_deaths: int = 2):
        self.cfg, self.devices, self.threads, self.claims, self.force = cfg, devices, threads, claims, force
        self.log = log
        self.max_early_deaths = max_early_deaths
        self.ctx = mp.get_context("spawn")
        self.jobs: dict[int, Job] = {}

    def _start(self, s: Slot) -> None:
        parent_conn, child_conn = self.ctx.Pipe()
        cfg = dataclasses.replace(self.cfg, device=s.device)
        s.proc = self.ctx.Process(target=worker_main, name=f"fsadbench-worker-{s.device}", daemon=True,
                                  args=(cfg, child_conn, self.threads, self.claims, self.force, os.getpid()))
        with sigint_ignored():  # inherited through exec: a Ctrl-C while the worker imports is the parent's
            s.proc.start()
        child_conn.close()
        s.conn, s.item, s.pending, s.in_flight = parent_conn, None, set(), None
        s.started_any, s.stopping, s.crash = False, False, ""

    def run(self, groups: list[list[Job]], on_done: Callable[[list[Outcome]], None]) -> list[Outcome]:
        queue: deque[Item] = deque()
        for g in groups:
            item = []
            for job in g:
                self.jobs[len(self.jobs)] = job
                item.append((len(self.jobs) - 1, job))
            queue.append(item)
        outcomes: list[Outcome] = []

        def emit(outs: list[Outcome]) -> None:
            outcomes.extend(outs)
            on_done(outs)

        slots = [Slot(d) for d in self.devices]
        try:
            for s in slots:
                self._start(s)
            while True:
                for s in slots:
                    if s.proc is not None and s.item is None and not s.stopping:
                        if queue:
                            s.item = queue.popleft()
                            s.pending = {jid for jid, _ in s.item}
                        else:
                            s.stopping = True
                        try:
                            s.conn.send(s.item)
                        except OSError:  # it died meanwhile: its sentinel says so below
                            pass
                live = [s for s in slots if s.proc is not None]
                if not live:
                    break
                ready = set(wait([s.conn for s in live] + [s.proc.sentinel for s in live], timeout=1.0))
                for s in live:
                    if s.conn in ready:
                        self._drain(s, emit)
                    if s.proc.sentinel in ready:
                        self._drain(s, emit)
                        self._ended(s, queue, emit)
            for item in queue:  # only when every slot gave up
                emit(self._lost([jid for jid, _ in item], "no worker process could start (see the messages "
                                                          "above)"))
        except BaseException:
            self._stop_all(slots)
            raise
        return outcomes

    def _drain(self, s: Slot, emit: Callable[[list[Outcome]], None]) -> None:
        while True:
            try:
                if not s.conn.poll():
                    return
                msg = s.conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "start":
                s.in_flight, s.started_any = msg[1], True
            elif msg[0] == "done":
                s.pending.discard(msg[1])
                s.in_flight = None
                emit(msg[2])
            elif msg[0] == "idle":
                s.item, s.pending = None, set()
            elif msg[0] == "crash":
                s.crash = msg[1]

    def _ended(self, s: Slot, queue: deque[Item], emit: Callable[[list[Outcome]], None]) -> None:
        s.proc.join()
        code, pid = s.proc.exitcode, s.proc.pid
        s.conn.close()
        s.proc = None
        if s.stopping and s.item is None:
            return  # retired after its last item
        why = f"worker pid {pid} on {s.device} died (exit code {code}{'; ' + s.crash if s.crash else ''})"
        if s.in_flight is not None:
            cells = ", ".join(str(k) for k in self.jobs[s.in_flight].keys())
            self.log(f"{why} while computing {cells}: that job is lost (rerun to redo it)")
            emit(self._lost([s.in_flight], why))
        else:
            self.log(why)
        rest = [(jid, job) for jid, job in (s.item or []) if jid in s.pending and jid != s.in_flight]
        if rest:
            queue.appendleft(rest)
        if not s.started_any:
            s.early_deaths += 1
            if s.early_deaths > self.max_early_deaths:
                self.log(f"{s.early_deaths} worker processes on {s.device} died before their first job; "
                         f"not starting another there")
                return
        if queue:
            self.log(f"starting a new worker on {s.device} for the {len(queue)} group(s) left")
            self._start(s)

    def _lost(self, jids: list[int], why: str) -> list[Outcome]:
        return [{"cell": str(k), "status": LOST, "encoded": 0, "error": f"lost: {why}; no record, rerun to redo"}
                for jid in jids for k in self.jobs[jid].keys()]

    def _stop_all(self, slots: list[Slot]) -> None:
        """SIGTERM every worker (each releases its claims), wait up to STOP_GRACE_S, then SIGKILL."""
        procs = [s.proc for s in slots if s.proc is not None and s.proc.is_alive()]
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(2.0)


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

    def devices(self, cfg: RunConfig) -> list[str]:
        want = (cfg.device or "auto").lower()
        n_gpu = visible_gpus() if want in ("auto", "cuda") else 0
        if want.startswith("cuda:"):
            return [want] * (self.workers or 1)
        if n_gpu:
            return [f"cuda:{i % n_gpu}" for i in range(self.workers or n_gpu)]
        return ["cpu"] * (self.workers or max(1, min(4, (os.cpu_count() or 2) // 2)))

    def describe(self) -> str:
        return f"gpus, workers={self.workers or 'auto'}"

    def _run(self, res: Resources, todo: list[Job], force: bool, progress: Progress) -> list[Outcome]:
        groups = job_groups(todo)
        devices = self.devices(res.cfg)[:len(groups)]
        threads = max(1, (os.cpu_count() or 1) // len(devices)) if devices[0] == "cpu" else 0
        res.log(f"{len(groups)} group(s) on {len(devices)} worker(s): {', '.join(devices)}")
        pool = WorkerPool(res.cfg, devices, threads, self.claims, force, res.log)
        return pool.run(groups, progress.add)
