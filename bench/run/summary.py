"""The summary of a sweep, counted from the record store.

Workers report an *outcome* per cell (a small dict: ``cell``, ``status``,
``encoded``, ``error``) as they go; these drive the progress bar and tell which
cells another runner finished (``skipped`` / ``elsewhere``). The final counts
come from the records on disk (:func:`tally`): a cell whose worker died after
writing its record still counts as computed, and a cell without a fresh record
counts as failed ("lost"), whatever the worker managed to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from fsadbench.core.errors import error_line
from fsadbench.results.records import DONE_STATUSES, STATUS_NA, STATUS_OK, CellKey, Record, RecordStore
from fsadbench.run.config import RunConfig
from fsadbench.run.identity import cell_hash
from fsadbench.run.plan import Job, Plan

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.run.resources import DataSource

# outcome statuses besides the record statuses
SKIPPED = "skipped"  # done before this runner looked at it
ELSEWHERE = "elsewhere"  # finished by another runner while this one waited
LOST = "lost"  # its worker process died; no record, redone on rerun

Outcome = dict[str, Any]
FRESH_SLACK_S = 1.0  # file times are coarser than time.time(): a record this close to the start is fresh


@dataclass
class RunSummary:
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    not_applicable: int = 0
    encoded_images: int = 0
    failures: list[str] = field(default_factory=list)
    submitted: int = 0  # cells handed to a scheduler and not waited for
    not_applicable_why: dict[str, int] = field(default_factory=dict)  # reason -> cells

    def line(self) -> str:
        """The one-line count, then one line per reason why cells were not applicable."""
        text = (f"{self.computed} cell(s) computed, {self.skipped} already done, {self.failed} failed, "
                f"{self.not_applicable} not applicable; encoder passes: {self.encoded_images} image(s)")
        text += f"; {self.submitted} cell(s) submitted, not waited for" if self.submitted else ""
        return text + "".join(f"\nnot applicable ({n} cell(s)): {why}" for why, n in self.not_applicable_why.items())


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def record_outcomes(records: Iterable[Record]) -> list[Outcome]:
    """The outcome of each record a worker just wrote."""
    return [{"cell": str(r.cell), "status": r.status, "encoded": int(r.encoder.get("encoded", 0)),
             "error": error_line(r.error) if r.status not in DONE_STATUSES else None} for r in records]


def fresh_record(store: RecordStore, key: CellKey, config_hash: str, since: float) -> Record | None:
    """The record of ``key`` if it has ``config_hash`` and was written at or after ``since``."""
    rec = store.load(key)
    if rec is None or rec.config_hash != config_hash:
        return None
    try:
        mtime = store.path(key).stat().st_mtime
    except OSError:
        return None
    return rec if mtime >= since - FRESH_SLACK_S else None


def tally(cfg: RunConfig, data: "DataSource", plan: Plan, store: RecordStore, outcomes: Iterable[Outcome],
          since: float) -> RunSummary:
    """Count every cell of ``plan.todo`` from its record (``since``: when this sweep started its cells)."""
    by_cell = {o["cell"]: o for o in outcomes}
    s = RunSummary(skipped=plan.skipped)
    for job in plan.todo:
        h = cell_hash(cfg, data, job)
        for key in job.keys():
            o = by_cell.get(str(key))
            if o is not None and o["status"] in (SKIPPED, ELSEWHERE):
                s.skipped += 1
                continue
            rec = fresh_record(store, key, h, since)
            if rec is None:
                if store.is_done(key, h):  # done before (a multi-class job skips its finished categories)
                    s.skipped += 1
                    continue
                s.failed += 1
                why = (o or {}).get("error") or "no record was written (its worker stopped); rerun to compute it"
                s.failures.append(f"{key}: {why}")
                continue
            s.encoded_images += int(rec.encoder.get("encoded", 0))
            if rec.status == STATUS_OK:
                s.computed += 1
            elif rec.status == STATUS_NA:
                s.not_applicable += 1
                why = error_line(rec.error) or "no reason recorded"
                s.not_applicable_why[why] = s.not_applicable_why.get(why, 0) + 1
            else:
                s.failed += 1
                s.failures.append(f"{key}: {error_line(rec.error) or rec.status}")
    return s


def count_done(cfg: RunConfig, data: "DataSource", jobs: Iterable[Job], store: RecordStore) -> int:
    """Cells of ``jobs`` with a done record (ok or not applicable) under the current cell hash."""
    n = 0
    for job in jobs:
        h = cell_hash(cfg, data, job)
        n += sum(1 for k in job.keys() if store.is_done(k, h))
    return n

