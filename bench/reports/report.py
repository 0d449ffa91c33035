"""The report of a results folder: main table (and per-category tables) per metric, with coverage.

Used by ``run_bench.py report`` and for the table printed after a run.
``Report.problems`` lists what makes any of its tables incomplete or mixed
(figures missing categories or seeds, records of several runs); ``--strict``
turns them into exit status 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fsadbench.reports.render import render
from fsadbench.reports.notes import shape_notes
from fsadbench.reports.tables import ALPHA, category_table, main_table
from fsadbench.results.coverage import ResultSet, Scope
from fsadbench.results.records import RecordStore


@dataclass
class Report:
    text: str
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems

    def strict_message(self) -> str:
        return "incomplete table(s) (--strict):\n" + "\n".join(f"  - {p}" for p in self.problems)


def build_report(results_dir: str | Path, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                 methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                 per_category: bool = False, alpha: float = ALPHA, scope: Scope | None = None,
                 notes: str = "full") -> Report:
    """Main table (and per-category tables) of each metric, in the order given; ``scope``: only the cells
    of one invocation (``run``'s table); ``notes``: the method notes in ``full``, ``short`` or ``none``
    (:func:`fsadbench.reports.notes.shape_notes`)."""
    rs = ResultSet(RecordStore(results_dir)).select(methods, datasets, scope)
    if not rs.ok_records():
        failed = len(rs.records)
        why = f"; {failed} record(s), none ok" if failed else ""
        return Report(f"(no successful records in {results_dir}{why})\n", [f"no successful records{why}"])
    parts, problems = [], []
    for m in ([metric] if isinstance(metric, str) else metric):
        tables = [shape_notes(main_table(rs, m, alpha=alpha), notes)]
        if per_category:
            for d in dict.fromkeys(r.key["dataset"] for r in rs.records):
                for k in sorted({int(r.key["shots"]) for r in rs.records if r.key["dataset"] == d}):
                    tables.append(category_table(rs, d, k, m, alpha=alpha))
        for t in tables:
            parts.append(render(t, fmt))
            problems += [f"{t.title}: {p}" for p in t.problems]
    return Report("\n".join(parts), problems)
