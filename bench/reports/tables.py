"""The Table model and the report's two builders (main table, per-category table).

Main layout (the APT paper's Table 1): rows (shots, method), columns dataset x
variant ("w/o VG", "w/ VG"), mean ± std over seeds. Per-category layout: rows
the dataset's planned categories, columns method x variant measured at that
(dataset, shots) (a method not applicable there has no column; the main table
shows its "n/a" and why).

Every figure carries its coverage (:mod:`fsadbench.results.coverage`): a figure
over fewer categories or seeds than planned gets a footnote mark whose note
names what is missing and why; an entry without any figure says why
("failed", "n/a", "–" for no record) with a mark as well. ``Table.problems``
lists what makes a table incomplete or mixed (``--strict`` exits 1 on it).

Emphasis (:func:`emphasise`): within each group of competing entries (a column
within one shot block; in per-category tables the methods of one category and
variant) every complete figure whose mean equals the best at the printed
precision is bold (ties all bold), and a complete figure that is not
significantly worse than the best by a one-sided paired t test over common
seeds (p >= alpha, default 0.05) gets a dagger. Incomplete figures are neither.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from fsadbench.core.types import IMAGE_LEVEL
from fsadbench.reports.notes import fidelity_notes, method_notes  # noqa: F401 (fidelity_notes: re-exported)
from fsadbench.results.aggregate import METRIC_LABELS
from fsadbench.results.comparability import backbone_name, commit_summary, describe_mixed, mixed
from fsadbench.results.coverage import Figure, ResultSet
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, CellKey, Record
from fsadbench.results.stats import paired_t
from fsadbench.results.subsets import subset_notes

VARIANT_ORDER = ("w/o VG", "w/ VG")
RANDOM_BANNER = ("PIPELINE CHECK: these numbers come from RANDOM backbone weights (--pretrained none); "
                 "they test the pipeline, not any method.")
ALPHA = 0.05


@dataclass(frozen=True)
class TextCell:
    """A preformatted entry (a published figure, a delta, a reason), in both output formats; never bold."""

    md: str
    tex: str


MISSING = TextCell("–", "--")
NOT_APPLICABLE = TextCell("n/a", "n/a")  # by design (a variant the method lacks, a shot count it refuses)
IMAGE_LEVEL_CELL = TextCell(IMAGE_LEVEL, IMAGE_LEVEL)  # a pixel metric of a method without maps: by design


@dataclass
class Table:
    """A renderer-agnostic table: header groups, column labels, body rows of entries, emphasis, notes."""

    title: str
    row_headers: list[str]  # e.g. ["shots", "method"]
    groups: list[tuple[str, int]]  # (group label, span) over the value columns
    columns: list[str]  # value column labels (variants)
    rows: list[tuple[list, list[Figure | TextCell | None]]]
    notes: list[str] = field(default_factory=list)
    breaks: list[int] = field(default_factory=list)  # row indices before which a rule is drawn
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of best figures
    close: set[tuple[int, int]] = field(default_factory=set)  # not significantly worse than the best
    marks: dict[tuple[int, int], str] = field(default_factory=dict)  # footnote letter per entry
    problems: list[str] = field(default_factory=list)  # incomplete or mixed: --strict fails

    @property
    def complete(self) -> bool:
        return not self.problems


class Footnotes:
    """Letters a, b, ... for distinct footnote texts, shared by every entry with the same text."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def mark(self, text: str) -> str:
        if text not in self.texts:
            n = len(self.texts)
            letters = string.ascii_lowercase
            self.texts[text] = letters[n % 26] * (n // 26 + 1)
        return self.texts[text]

    def notes(self) -> list[str]:
        return [f"[{m}] {t}" for t, m in self.texts.items()]


def emphasise(table: Table, groups: Iterable[Sequence[tuple[int, int]]], alpha: float = ALPHA) -> None:
    """Bold the best complete figure(s) of each group and dagger those not significantly worse."""
    for group in groups:
        figs = [(pos, table.rows[pos[0]][1][pos[1]]) for pos in group]
        figs = [(pos, f) for pos, f in figs if isinstance(f, Figure) and f.complete]
        if not figs:
            continue
        top = max(round(f.mean, 2) for _, f in figs)
        best_pos, best = max(((p, f) for p, f in figs if round(f.mean, 2) == top), key=lambda pf: pf[1].mean)
        for pos, f in figs:
            if round(f.mean, 2) == top:
                table.bold.add(pos)
            elif paired_t(f.seeds, best.seeds).defined and paired_t(f.seeds, best.seeds).p_lower >= alpha:
                table.close.add(pos)


def emphasis_note(where: str, alpha: float = ALPHA) -> str:
    return (f"bold: best complete figure {where} (every tie at the printed precision bold); †: not significantly "
            f"worse than the best (one-sided paired t over common seeds, p ≥ {alpha:g}; needs ≥ 2 seeds); "
            f"figures with a coverage mark are neither.")


def variants_of(records: Iterable[Record]) -> list[str]:
    present = list(dict.fromkeys(v for r in records for v in r.metrics))
    return [v for v in VARIANT_ORDER if v in present] + sorted(v for v in present if v not in VARIANT_ORDER)


def auxiliary_note(records: Iterable[Record], method_id: str, name_of=str) -> str:
    """The auxiliary dataset(s) a transfer method trained on: ``trained on visa`` (one for every
    target), ``trained on visa for mvtec; trained on mvtec for visa``, or "" (``name_of``: display names);
    a leave-one-out training reads ``trained on mvtec without bottle`` (one held-out category among the
    records) or ``trained on mvtec without the target category`` (a row over several)."""
    pairs: dict[str, set[str]] = {}
    held: dict[str, set[str]] = {}
    for r in records:
        aux = (r.method or {}).get("auxiliary") if r.key["method"] == method_id else None
        if aux and aux.get("held_out"):  # leave-one-out: the other categories of the target dataset
            held.setdefault(name_of(aux.get("name")), set()).add(aux["held_out"])
        elif aux:
            own = " (its own test split)" if aux.get("same_as_target") else ""
            pairs.setdefault(f"trained on {name_of(aux.get('name'))}{own}", set()).add(name_of(r.key["dataset"]))
    for name, cats in held.items():
        without = next(iter(cats)) if len(cats) == 1 else "the target category"
        pairs.setdefault(f"trained on {name} without {without}", set()).add(name)
    if len(pairs) == 1:
        return next(iter(pairs))
    return "; ".join(f"{p} for {', '.join(sorted(ds))}" for p, ds in sorted(pairs.items()))


def method_label(records: Iterable[Record], method_id: str) -> str:
    """The method's label, with the auxiliary dataset(s) it trained on (``anomalyclip (trained on visa)``)."""
    records = list(records)
    label = next(((r.method or {}).get("label") or method_id for r in records if r.key["method"] == method_id),
                 method_id)
    aux = auxiliary_note(records, method_id)
    return f"{label} ({aux})" if aux else label


def backbone_label(records: Iterable[Record], method_id: str) -> str:
    """The backbone(s) a method's figures came from (``wide_resnet50_2-tiny``; several joined by ``+``)."""
    names = sorted({backbone_name(r) for r in records if r.key["method"] == method_id and r.backbone})
    return " + ".join(names) or "?"


def empty_entry(rs: ResultSet, method: str, dataset: str, shots: int, variant: str, metric: str,
                foot: Footnotes, label: str) -> tuple[TextCell, str]:
    """The entry shown where a figure has no value, and its footnote mark ("" for a pixel metric of an
    image-level method: "n/a, image-level method" says it all)."""
    if rs.image_level(method, metric):
        return IMAGE_LEVEL_CELL, ""
    if not rs.has_variant(method, variant):
        return NOT_APPLICABLE, foot.mark(f"{label} has no {variant!r} variant")
    st = rs.status_of(method, dataset, shots)
    cell = NOT_APPLICABLE if st == {STATUS_NA} else TextCell("failed", "failed") \
        if STATUS_FAILED in st and len(st) == 1 else MISSING
    why = rs.why_empty(method, dataset, shots, variant, metric)
    return cell, foot.mark(f"{label}, {dataset} {shots}-shot: no figure ({why})")


def count_incomplete(t: Table) -> int:
    """Marked entries that are incomplete figures or missing / failed ones (not the n/a-by-design ones)."""
    return sum(1 for (i, j) in t.marks if isinstance(t.rows[i][1][j], Figure)
               or (isinstance(t.rows[i][1][j], TextCell) and t.rows[i][1][j].md in ("–", "failed", "missing")))


def incomplete_problem(t: Table) -> list[str]:
    n = count_incomplete(t)
    return [f"{n} figure(s) incomplete, missing or failed"] if n else []


def common_notes(records: Sequence[Record], metric: str, problems: list[str]) -> list[str]:
    """Banner, mixing warnings (added to ``problems``) and the commits the figures come from (ok records)."""
    ok = [r for r in records if r.status == STATUS_OK]
    notes = [RANDOM_BANNER] if any((r.backbone or {}).get("random_weights") for r in ok) else []
    notes += subset_notes(ok)  # --max-test-images, a subset of the categories
    mix = describe_mixed(mixed(ok))
    for line in mix:
        notes.append(f"NOT ONE RUN: {line}")
    problems += [f"records mix runs: {line}" for line in mix]
    notes.append(f"figures from {commit_summary(ok)}.")
    return notes


def main_table(rs: ResultSet, metric: str = "pixel_auroc", datasets: Sequence[str] | None = None,
               variants: Sequence[str] | None = None, alpha: float = ALPHA) -> Table:
    ok = rs.ok_records()
    datasets = list(datasets or dict.fromkeys(r.key["dataset"] for r in rs.records))
    variants = list(variants or variants_of(ok))
    cols = [(d, v) for d in datasets for v in variants
            if any(r.key["dataset"] == d and v in r.metrics for r in ok)]
    methods = list(dict.fromkeys(r.key["method"] for r in rs.records if r.key["dataset"] in datasets))
    shots = sorted({int(r.key["shots"]) for r in rs.records if r.key["dataset"] in datasets})
    foot = Footnotes()
    backbones = {mid: backbone_label(rs.records, mid) for mid in methods}
    per_row = len(set(backbones.values())) > 1  # else one note names the backbone of every row
    t = Table(METRIC_LABELS.get(metric, metric), ["shots", "method", *(["backbone"] if per_row else [])], [],
              [v for _, v in cols], [])
    blocks = []
    for k in shots:
        if t.rows:
            t.breaks.append(len(t.rows))
        start = len(t.rows)
        for mid in methods:
            if not any(rs.status_of(mid, d, k) for d in datasets):
                continue
            label = method_label(rs.records, mid)
            cells = []
            for j, (d, v) in enumerate(cols):
                f = rs.dataset_figure(mid, d, k, v, metric)
                if f is None:
                    cell, m = empty_entry(rs, mid, d, k, v, metric, foot, label)
                    if m:
                        t.marks[(len(t.rows), j)] = m
                    cells.append(cell)
                    continue
                if not f.complete:
                    t.marks[(len(t.rows), j)] = foot.mark(f"{label}, {d} {k}-shot: {f.coverage.describe()}")
                cells.append(f)
            t.rows.append(([f"{k}-shot", label, *([backbones[mid]] if per_row else [])], cells))
        blocks.append(range(start, len(t.rows)))
    for d, _ in cols:
        if t.groups and t.groups[-1][0] == d:
            t.groups[-1] = (d, t.groups[-1][1] + 1)
        else:
            t.groups.append((d, 1))
    emphasise(t, ([(i, j) for i in b] for b in blocks for j in range(len(cols))), alpha)
    t.problems += incomplete_problem(t)
    shown = [r for r in rs.records if r.key["dataset"] in datasets]
    t.notes = common_notes(shown, metric, t.problems)
    t.notes.append(f"{METRIC_LABELS.get(metric, metric)} (%), mean ± std over seeds; dataset figure of a seed = "
                   f"mean over categories. Planned: " + "; ".join(rs.describe_plan(d) for d in datasets) + ".")
    if not per_row and set(backbones.values()) - {"?"}:
        t.notes.append(f"backbone of every row: {next(iter(backbones.values()))}.")
    t.notes.append(emphasis_note("per column within each shot block", alpha))
    t.notes += method_notes(shown, lambda m: method_label(rs.records, m))
    t.notes += foot.notes()
    return t


def category_table(rs: ResultSet, dataset: str, shots: int, metric: str = "pixel_auroc",
                   alpha: float = ALPHA) -> Table:
    recs = [r for r in rs.records if r.key["dataset"] == dataset and r.key["shots"] == shots]
    variants = variants_of(r for r in recs if r.metrics)
    methods = list(dict.fromkeys(r.key["method"] for r in recs))
    cols = [(m, v) for m in methods for v in variants
            if any(r.key["method"] == m and v in r.metrics for r in recs)]
    foot = Footnotes()
    t = Table(f"{dataset} {shots}-shot per category", ["category"], [], [v for _, v in cols], [])
    for i, cat in enumerate(rs.categories(dataset)):
        cells = []
        for j, (m, v) in enumerate(cols):
            f = rs.category_figure(m, dataset, cat, shots, v, metric)
            label = method_label(recs, m)
            if f is None and rs.image_level(m, metric):
                cells.append(IMAGE_LEVEL_CELL)
                continue
            if f is None or not f.complete:
                reason = f.coverage.describe() if f is not None else \
                    "; ".join(dict.fromkeys(rs.value(CellKey(m, dataset, cat, shots, s), v, metric)[1]
                                            for s in rs.seeds(dataset)))
                t.marks[(i, j)] = foot.mark(f"{label}: " + ("" if f is not None else "no figure: ") + reason)
            cells.append(f if f is not None else MISSING)
        t.rows.append(([cat], cells))
    for m, _ in cols:
        lab = method_label(recs, m)
        if t.groups and t.groups[-1][0] == lab:
            t.groups[-1] = (lab, t.groups[-1][1] + 1)
        else:
            t.groups.append((lab, 1))
    emphasise(t, ([(i, j) for j, (_, vv) in enumerate(cols) if vv == v] for i in range(len(t.rows))
                  for v in variants), alpha)
    t.problems += incomplete_problem(t)
    t.notes = common_notes(recs, metric, t.problems)
    named = {m: backbone_label(recs, m) for m in dict.fromkeys(m for m, _ in cols)}
    if set(named.values()) - {"?"}:
        t.notes.append("backbones: " + "; ".join(f"{method_label(recs, m)} = {b}" for m, b in named.items()) + ".")
    t.notes.append(f"{METRIC_LABELS.get(metric, metric)} (%) per category, {dataset}, {shots}-shot, mean ± std "
                   f"over seeds {', '.join(map(str, rs.seeds(dataset)))}.")
    t.notes.append(emphasis_note("per category and variant (the best method)", alpha))
    t.notes += foot.notes()
    return t
