"""Measured figures for the paper layouts, and assembling them with published figures into a Table.

``show``:

* ``none``: measured figures only;
* ``under``: a ``source`` row-header column; under each measured row a
  ``paper`` row and a ``diff`` row (measured mean - published mean, pp);
* ``beside``: after each value column, a ``paper`` and a ``diff`` column.

Every layout row of a method the harness implements is shown, with
``missing`` / ``failed`` / ``n/a`` entries (and a footnote) where there is no
figure; rows of methods it does not implement appear only with published
figures. A diff is printed only for a comparable measurement
(:func:`fsadbench.reports.paper.comparable.diff_blockers`); otherwise the entry
is ``n/c`` and its footnote says why. Published figures and diffs are
``TextCell`` so they are never bold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.reports.paper.comparable import diff_blockers
from fsadbench.reports.paper.published import method_label as pub_label
from fsadbench.reports.tables import (ALPHA, Footnotes, Table, TextCell, common_notes, emphasis_note, emphasise,
                                      empty_entry, incomplete_problem, method_notes)
from fsadbench.results.aggregate import METRIC_LABELS
from fsadbench.results.coverage import Figure, ResultSet
from fsadbench.results.records import STATUS_OK, Record

SHOW = ("none", "under", "beside")
MISSING_ROW = TextCell("missing", "missing")


class Measured:
    """Records -> figures with coverage, plus each method id's name, label and resolved options."""

    def __init__(self, rs: ResultSet, metric: str = "pixel_auroc"):
        self.rs, self.metric = rs, metric
        self.options: dict[str, dict[str, Any]] = {}
        self.names: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        for r in rs.records:
            mid = r.key["method"]
            if r.status == STATUS_OK or mid not in self.options:
                self.options[mid] = dict((r.method or {}).get("options") or {})
            self.names.setdefault(mid, (r.method or {}).get("name") or mid.split("[")[0])
            self.labels.setdefault(mid, (r.method or {}).get("label") or mid)

    @classmethod
    def from_records(cls, records: Iterable[Record], metric: str = "pixel_auroc") -> "Measured":
        return cls(ResultSet(records), metric)

    def ids_of(self, name: str) -> list[str]:
        return [i for i in self.names if self.names[i] == name]

    def label(self, method_id: str) -> str:
        lab = self.labels.get(method_id, method_id)
        return pub_label(method_id) if lab == method_id and self.names.get(method_id, method_id) == method_id else lab

    def datasets(self, preferred: Sequence[str]) -> list[str]:
        have = list(dict.fromkeys(r.key["dataset"] for r in self.rs.records))
        return list(preferred) + [d for d in have if d not in preferred]

    def shots(self) -> list[int]:
        return sorted({int(r.key["shots"]) for r in self.rs.records})

    def records_of(self, method_id: str, dataset: str, shots: int) -> list[Record]:
        return [r for r in self.rs.ok_records() if r.key["method"] == method_id and r.key["dataset"] == dataset
                and r.key["shots"] == shots]

    def entry(self, method_id: str, dataset: str, shots: int, variant: str, foot: Footnotes,
              metric: str | None = None):
        """(figure or a TextCell saying why there is none, footnote mark or None); ``metric``: this
        entry's metric when it is not the table's (layouts with a metric per column)."""
        metric = metric or self.metric
        f = self.rs.dataset_figure(method_id, dataset, shots, variant, metric)
        label = self.label(method_id)
        if f is not None:
            return f, None if f.complete else foot.mark(f"{label}, {dataset} {shots}-shot: {f.coverage.describe()}")
        if not self.rs.status_of(method_id, dataset, shots):
            return MISSING_ROW, foot.mark("missing: no record of this method, dataset and shot count in the folder")
        return empty_entry(self.rs, method_id, dataset, shots, variant, metric, foot, label)

    def notes(self, problems: list[str], metric_label: str | None = None) -> list[str]:
        out = common_notes(self.rs.records, self.metric, problems)
        out.append(f"{metric_label or METRIC_LABELS.get(self.metric, self.metric)} (%), mean ± std over seeds; "
                   f"dataset figure of a seed = mean over categories.")
        out += method_notes(self.rs.records, self.label)
        return out


@dataclass
class PaperRow:
    header: list  # row-header cells (str or TextCell)
    measured: list | None  # per value column: Figure / TextCell; None = published-only row
    published: list | None = None  # per value column: (mean, std|None) or None; None = no published row
    group: Any = None  # a rule is drawn between groups
    marks: list = field(default_factory=list)  # footnote mark per measured entry (or None)
    records: list = field(default_factory=list)  # per value column: the records behind the figure
    protocol: dict | None = None  # this row's published protocol when not the table's (another paper's row)


def _fmt_pub(f) -> TextCell:
    if f is None:
        return TextCell("–", "--")
    if f[1] is None:
        return TextCell(f"{f[0]:.2f}", f"{f[0]:.2f}")
    return TextCell(f"{f[0]:.2f} ± {f[1]:.2f}", f"{f[0]:.2f} $\\pm$ {f[1]:.2f}")


def _diff(m, p, dataset: str, records, protocol: dict, foot: Footnotes) -> tuple[TextCell, str | None]:
    if p is None or not isinstance(m, Figure) or math.isnan(m.mean):
        return TextCell("–", "--"), None
    blockers = diff_blockers(m, dataset, records, protocol)
    if blockers:
        return TextCell("n/c", "n/c"), foot.mark("no diff (not comparable): " + "; ".join(blockers))
    d = m.mean - p[0]
    return TextCell(f"{d:+.2f}", f"${d:+.2f}$"), None


def assemble(title: str, row_headers: list[str], groups: list[tuple[str, int]], columns: list[str],
             col_datasets: list[str], rows: Sequence[PaperRow], show: str, notes: list[str], foot: Footnotes,
             protocol: dict, problems: list[str], bold_by_group: bool = True, alpha: float = ALPHA) -> Table:
    """Measured rows (+ published figures under or beside) -> a report Table."""
    if show not in SHOW:
        raise ConfigError(f"--published {show!r}: use one of {', '.join(SHOW)}")
    rows = [r for r in rows if r.measured is not None or (show != "none" and r.published is not None)]
    t = Table(title, list(row_headers) + (["source"] if show == "under" else []), list(groups), list(columns), [])
    competing: dict[tuple[Any, int], list[tuple[int, int]]] = {}
    last = object()
    n = len(columns)
    for r in rows:
        if t.rows and r.group != last:
            t.breaks.append(len(t.rows))
        last = r.group
        pub = r.published if r.published is not None else [None] * n
        marks = r.marks or [None] * n
        recs = r.records or [[] for _ in range(n)]
        diffs = [_diff(m, p, d, rc, r.protocol or protocol, foot) for m, p, d, rc in
                 zip(r.measured or [None] * n, pub, col_datasets, recs)]
        if show == "beside":
            cells = []
            for j in range(n):
                if r.measured is not None:
                    _note(t, len(t.rows), len(cells), marks[j], competing, r.group if bold_by_group else 0)
                cells += [r.measured[j] if r.measured is not None else None, _fmt_pub(pub[j]), diffs[j][0]]
                if diffs[j][1]:
                    t.marks[(len(t.rows), len(cells) - 1)] = diffs[j][1]
            t.rows.append((list(r.header), cells))
            continue
        if r.measured is not None:
            for j in range(n):
                _note(t, len(t.rows), j, marks[j], competing, r.group if bold_by_group else 0)
            t.rows.append((list(r.header) + (["measured"] if show == "under" else []), list(r.measured)))
        if show == "under" and r.published is not None:
            t.rows.append((list(r.header) + ["paper"], [_fmt_pub(p) for p in pub]))
            if r.measured is not None:
                for j, (_, mk) in enumerate(diffs):
                    if mk:
                        t.marks[(len(t.rows), j)] = mk
                t.rows.append((list(r.header) + ["diff"], [c for c, _ in diffs]))
    if show == "beside":
        t.columns = [c2 for c in columns for c2 in (c, f"{c} paper", f"{c} diff")]
        t.groups = [(g, 3 * k) for g, k in groups]
    emphasise(t, competing.values(), alpha)
    problems += incomplete_problem(t)
    t.notes = list(notes) + [emphasis_note("per column within each block" if bold_by_group else "per column",
                                           alpha)] + foot.notes()
    t.problems = problems
    return t


def _note(t: Table, i: int, j: int, mark, competing: dict, block) -> None:
    if mark:
        t.marks[(i, j)] = mark
    competing.setdefault((block, j), []).append((i, j))
