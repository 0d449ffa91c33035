"""The ``local`` executor: every job in this process, in plan order (the default).

One :class:`CellWorker` runs the whole plan with this process's
:class:`Resources`, so one backbone and one feature store serve every cell;
claims (on by default) let a second runner share the folder.
"""

from __future__ import annotations

import os

from fsadbench.run.executors.base import Executor, Progress
from fsadbench.run.executors.worker import CellWorker
from fsadbench.run.plan import Job
from fsadbench.run.resources import Resources
from fsadbench.run.summary import Outcome


class LocalExecutor(Executor):
    """Sequential, in this process."""

    name = "local"

    def _run(self, res: Resources, todo: list[Job], force: bool, progress: Progress) -> list[Outcome]:
        claims = self.claims.store(res.cfg.results_dir, f"local pid {os.getpid()}")
        worker = CellWorker(res, claims, force, res.log, self.claims.poll_s, on_start=progress.begin,
                            on_done=lambda job, outcomes: progress.add(outcomes))
        res.cell_progress = progress  # epochs and test images of the cell in hand, on the same bar
        try:
            return worker.run_jobs(todo)
        finally:
            res.cell_progress = None
