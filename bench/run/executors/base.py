"""The executor interface: plan, check, run the jobs somewhere, count from the record store.

:meth:`Executor.run` is the one run path of the harness (the CLI, the
regression gate, the speed benchmarks and the tests all go through it): it
plans the sweep, drops the cells already done (resume), refuses a backbone a
method cannot use and every checkpoint that cannot be had, all at once
(:func:`fsadbench.run.backbones.check_backbones`), refuses a results folder it
cannot write, records the resolved config in ``<results>/run.json``
(read by ``status``), hands the remaining jobs to the back end's ``_run``, and
counts the summary from the records on disk (:func:`fsadbench.run.summary.tally`).
SIGINT / SIGTERM unwind the back end (claims released) and end in
:class:`fsadbench.run.signals.SweepInterrupted`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence

from fsadbench.core.io import atomic_write_text
from fsadbench.results.records import DONE_STATUSES, RecordStore
from fsadbench.run.claims import DEFAULT_LEASE_S, ClaimStore
from fsadbench.run.config import RunConfig
from fsadbench.run.plan import PER_CATEGORY, Job, Plan, method_setups
from fsadbench.run.setups import record_setups
from fsadbench.run.backbones import check_backbones
from fsadbench.run.preflight import check_results_dir
from fsadbench.run.resources import Resources
from fsadbench.run.signals import Interrupted, SweepInterrupted, interrupt_guard, signum_of
from fsadbench.run.summary import ELSEWHERE, SKIPPED, Outcome, RunSummary, count_done, tally

RUN_MANIFEST = "run.json"
MAX_PLANS = 50  # distinct sweep configs remembered per results folder
Log = Callable[[str], None]


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quiet(msg: str) -> None:
    del msg


def write_run_manifest(cfg: RunConfig, executor: str) -> Path:
    """``<results>/run.json``: the resolved config of the latest sweep started here, and under ``plans`` every
    distinct config started in this folder (``status`` counts the cells of all of them)."""
    path = Path(cfg.results_dir) / RUN_MANIFEST
    config = cfg.to_dict()
    try:
        old = json.loads(path.read_text())
        plans = [p for p in old.get("plans") or [old["config"]] if isinstance(p, dict)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        plans = []
    plans = [p for p in plans if p != config][-(MAX_PLANS - 1):] + [config]
    atomic_write_text(path, json.dumps({"config": config, "plans": plans, "executor": executor,
                                        "started": time.time()}, indent=1, sort_keys=True))
    return path


@dataclasses.dataclass
class ClaimOptions:
    enabled: bool = True
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float | None = None
    poll_s: float = 1.0

    def store(self, results_dir: str, owner: str) -> ClaimStore | None:
        return ClaimStore(results_dir, self.lease_s, self.heartbeat_s, owner) if self.enabled else None


class Progress:
    """Outcomes as they arrive: a tqdm bar (when enabled) and one FAILED line per failed cell.

    Inside a cell (local executor) the job's label and its current stage (``epoch 37/100``, ``test
    images 64/120``) with the stage's ETA are shown after the bar: :meth:`begin` and :meth:`step`.
    """

    def __init__(self, enabled: bool, total: int, log: Log):
        self.log = log
        self.bar = None
        self.label = self.last = self.values = ""  # the job, its stage's postfix, figures shown beside it
        self.stage: tuple[str, float] | None = None  # (name, start time)
        self.shown = 0.0
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True)

    def begin(self, job: Job) -> None:
        k = job.keys()[0]
        where = f"{k.dataset}/{k.category}" if job.scope in PER_CATEGORY else f"{k.dataset} (all categories)"
        self.label, self.stage = f"{k.method} {where} k={k.shots} s={k.seed}", None
        self.last, self.values = self.label[:60], ""
        if self.bar is not None:
            self.bar.set_postfix_str(self.last)

    def step(self, stage: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if self.stage is None or self.stage[0] != stage or done <= 1:
            self.stage = (stage, now)
        if done < total and now - self.shown < 0.25:  # at most 4 refreshes a second
            return
        self.shown = now
        spent = now - self.stage[1]
        eta = f", eta {fmt_seconds(spent / done * (total - done))}" if 0 < done < total and spent > 0 else ""
        self.last = f"{self.label[:60]} | {stage} {done}/{total}{eta}"
        self.bar.set_postfix_str(self.last + self.values)

    def show(self, **values: float) -> None:
        """Figures beside the stage (``loss 0.4123`` after an epoch) until the next job; not in the log."""
        self.values = " | " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix_str(self.last + self.values)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        for o in outcomes:
            if o["status"] not in DONE_STATUSES and o["status"] not in (SKIPPED, ELSEWHERE):
                self.log(f"FAILED {o['cell']}: {o.get('error') or o['status']}")
            if self.bar is not None:
                self.bar.set_postfix_str(o["cell"][:60])
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Executor(ABC):
    name = "executor"

    def __init__(self, claims: ClaimOptions | None = None):
        self.claims = claims or ClaimOptions()

    def run(self, cfg: RunConfig, force: bool = False, log: Log | None = None, progress: bool = False,
            resources: Resources | None = None) -> RunSummary:
        """Run every cell of ``cfg`` that has no record yet (all with ``force``); see the module doc."""
        log = log or quiet
        res = resources or Resources(cfg, log)
        store = RecordStore(cfg.results_dir, log=log)
        plan: Plan | None = None
        try:
            with interrupt_guard():
                plan = Plan.build(cfg, res, store, force)
                check_backbones(cfg, plan)  # every backbone usable and its weights at hand, or one error
                check_results_dir(cfg.results_dir)
                record_setups(cfg.results_dir, method_setups(cfg), force)  # the second of two setups: refused
                write_run_manifest(cfg, self.name)
                log(f"{plan.n_todo_cells} cell(s) to compute, {plan.skipped} already done in {store.root} "
                    f"(executor {self.describe()}){plan.code_note()}")
                if not plan.todo:
                    return RunSummary(skipped=plan.skipped)
                since = time.time()
                bar = Progress(progress, plan.n_todo_cells, log)
                try:
                    outcomes = self._run(res, plan.todo, force, bar)
                finally:
                    bar.close()
        except (Interrupted, KeyboardInterrupt) as exc:
            done = count_done(cfg, res, plan.jobs, store) if plan is not None else 0
            raise SweepInterrupted(signum_of(exc), done) from None
        if outcomes is None:  # submitted to a scheduler, not waited for
            return RunSummary(skipped=plan.skipped, submitted=plan.n_todo_cells)
        return tally(cfg, res, plan, store, outcomes, since)

    @abstractmethod
    def _run(self, res: Resources, todo: list[Job], force: bool, progress: Progress) -> list[Outcome] | None:
        """Run ``todo``; return the outcomes seen (None when the jobs were submitted and not waited for)."""

    def describe(self) -> str:
        return self.name
