"""Machine-readable exports of the aggregated tables (CSV, JSON) and the notes every format carries.

* :func:`summary_long` — the numbers behind the tables, one row per (metric, method, variant,
  dataset, shots[, category]) with mean and std over seeds (in %) and the number of seeds;
  ``level`` is ``dataset`` (mean over categories, then over seeds) or ``category``.
* :func:`with_image_level` — the pixel metrics of an image-level method, as rows that say
  "n/a, image-level method" (``coverage``) instead of leaving them out.
* :func:`with_auxiliary` — the auxiliary dataset a transfer method trained on, as a column (only
  when a record has one).
* :func:`coverage_notes` — what a reader must know before comparing the figures: random
  weights, a subset of the test images (``--max-test-images``) or of the categories
  (``--categories``), failed and not-applicable cells.
* :func:`to_csv` / :func:`to_json` — the rows above as text (JSON adds the notes).
* :func:`report_text` — the ``report`` command's output in any of its formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd

from fsadbench.core.types import IMAGE_LEVEL, PIXEL_METRICS
from fsadbench.results.aggregate import per_category, records_frame, summary
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, Record
from fsadbench.results.subsets import subset_notes

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.reports.report import Report
    from fsadbench.results.coverage import Scope

SUMMARY_COLUMNS = ["level", "metric", "method", "label", "variant", "dataset", "shots", "category", "mean", "std",
                   "n_seeds"]


def summary_long(df: pd.DataFrame, metrics: Sequence[str], categories: bool = False) -> pd.DataFrame:
    """Aggregated figures of ``df`` (:func:`fsadbench.results.aggregate.records_frame`), long format, in %."""
    if df.empty or not metrics:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    parts = []
    for m in metrics:
        s = summary(df, m).assign(level="dataset", metric=m, category="")
        parts.append(s)
        if categories:
            parts.append(per_category(df, m).assign(level="category", metric=m))
    out = pd.concat(parts, ignore_index=True)
    out = out[out["n_seeds"] > 0]
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def with_image_level(rows: pd.DataFrame, records: Iterable[Record], metrics: Sequence[str],
                     categories: bool = False) -> pd.DataFrame:
    """``rows`` plus one row per pixel metric of an image-level method (``outputs: ["image"]`` in its
    records): mean and std empty, ``n_seeds`` 0, and :func:`with_coverage` says "n/a, image-level method"."""
    extra: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.status != STATUS_OK or (r.method or {}).get("outputs") != ["image"]:
            continue
        k = r.key
        places = [("dataset", "")] + ([("category", k["category"])] if categories else [])
        for v in r.metrics:
            for m in (m for m in metrics if m in PIXEL_METRICS):
                for level, cat in places:
                    extra.setdefault((level, m, k["method"], v, k["dataset"], k["shots"], cat), {
                        "level": level, "metric": m, "method": k["method"],
                        "label": (r.method or {}).get("label") or k["method"], "variant": v,
                        "dataset": k["dataset"], "shots": k["shots"], "category": cat,
                        "mean": float("nan"), "std": float("nan"), "n_seeds": 0})
    if not extra:
        return rows
    return pd.concat([rows, pd.DataFrame(list(extra.values()), columns=SUMMARY_COLUMNS)], ignore_index=True)


def with_coverage(rows: pd.DataFrame, records: Iterable[Record]) -> pd.DataFrame:
    """``rows`` (:func:`summary_long`) with a ``coverage`` column: "complete", or what the figure misses
    and why, against the plan of ``records`` (the coverage notes of the tables)."""
    from fsadbench.results.coverage import ResultSet

    rs = ResultSet(records)

    def one(r) -> str:
        if r["level"] == "category":
            fig = rs.category_figure(r["method"], r["dataset"], r["category"], int(r["shots"]), r["variant"],
                                     r["metric"])
        else:
            fig = rs.dataset_figure(r["method"], r["dataset"], int(r["shots"]), r["variant"], r["metric"])
        if fig is None and rs.image_level(r["method"], r["metric"]):
            return IMAGE_LEVEL
        return "complete" if fig is None or fig.complete else fig.coverage.describe()

    out = rows.copy()
    out["coverage"] = [one(r) for _, r in rows.iterrows()]
    return out


def with_auxiliary(rows: pd.DataFrame, records: Iterable[Record]) -> pd.DataFrame:
    """``rows`` with an ``auxiliary`` column after ``dataset``: the dataset each row's method trained on for
    that target (zero-shot transfer methods, ``--train-on``; several joined by ``+``; "" for the other
    methods), the "trained on ..." of the tables' method labels. Only when a successful record has one,
    as the tables show a backbone column only when it tells rows apart: other exports keep their columns."""
    names: dict[tuple[str, str], set[str]] = {}
    for r in records:
        aux = (r.method or {}).get("auxiliary") if r.status == STATUS_OK else None
        if aux:
            names.setdefault((r.key["method"], r.key["dataset"]), set()).add(str(aux.get("name")))
    if not names:
        return rows
    out = rows.copy()
    values = ["+".join(sorted(names.get((m, d), ()))) for m, d in zip(rows["method"], rows["dataset"])]
    out.insert(list(rows.columns).index("dataset") + 1, "auxiliary", values)
    return out


def coverage_notes(records: Iterable[Record]) -> list[str]:
    """Subset notes, then the failed / not-applicable cells (counted per method)."""
    records = list(records)
    notes = subset_notes(records)
    for status, what in ((STATUS_FAILED, "failed"), (STATUS_NA, "not applicable")):
        by_method: dict[str, int] = {}
        for r in records:
            if r.status == status:
                by_method[r.key["method"]] = by_method.get(r.key["method"], 0) + 1
        if by_method:
            notes.append(f"{sum(by_method.values())} cell(s) {what}, left out of the tables: "
                         + ", ".join(f"{m} ({n})" for m, n in sorted(by_method.items())))
    return notes


#: a spreadsheet runs a cell starting with one of these as a formula (CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A text value a spreadsheet shows as text: one starting like a formula gets a leading ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def to_csv(rows: pd.DataFrame) -> str:
    """The rows as CSV (``mean`` / ``std`` in %, as the tables; ``fsadbench.load_results`` keeps the records'
    fractions in [0, 1], per cell); text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``)
    are written with a leading ``'``."""
    return rows.apply(lambda col: col.map(csv_safe)).to_csv(index=False, float_format="%.4f")


def to_json(rows: pd.DataFrame, notes: Sequence[str] = (), **meta: Any) -> str:
    """``{"notes": [...], "rows": [...], **meta}``; NaN becomes null."""
    data = json.loads(rows.to_json(orient="records", double_precision=6))
    return json.dumps({**meta, "notes": list(notes), "rows": data}, indent=1) + "\n"


def load_records(results_dir: str | Path, methods: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None,
                 scope: "Scope | None" = None) -> tuple[list[Record], pd.DataFrame]:
    """(records, records_frame) of a results folder, filtered by method id and dataset (and ``scope``)."""
    from fsadbench.results.records import RecordStore

    records = [r for r in RecordStore(results_dir)
               if (not methods or r.key["method"] in methods) and (not datasets or r.key["dataset"] in datasets)
               and (scope is None or scope.holds(r.key))]
    return records, records_frame(records)


def render_report(results_dir: str | Path, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                  methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                  per_category: bool = False, title: str = "fsad-bench report",
                  scope: "Scope | None" = None, notes: str = "full") -> Report:
    """The ``report`` command's output in any format, with the tables' problems (``--strict``);
    ``scope``: only the cells of one invocation (``run``'s table, ``Results.table``); ``notes``: the tables'
    method notes, ``full``, ``short`` or ``none`` (``--notes``).

    ``text`` is "" when there is no successful record (callers say so on stderr, and write no file).
    """
    from fsadbench.reports.report import Report, build_report

    metrics = [metric] if isinstance(metric, str) else list(metric)
    records, df = load_records(results_dir, methods, datasets, scope)
    if df.empty:
        return Report("", ["no successful records"])
    tables = build_report(results_dir, "latex" if fmt == "latex" else "markdown", metrics, methods, datasets,
                          per_category, scope=scope, notes=notes)
    if fmt in ("markdown", "latex"):
        return tables
    if fmt == "html":
        from fsadbench.reports.html import html_report, qualitative_png

        text = html_report(records, metrics, title, str(results_dir), qualitative_png(records, results_dir),
                           notes=notes)
    else:
        rows = with_coverage(with_auxiliary(with_image_level(summary_long(df, metrics, per_category), records, metrics,
                                                             per_category), records), records)
        text = to_csv(rows) if fmt == "csv" else to_json(rows, coverage_notes(records), results_dir=str(results_dir),
                                                         metrics=metrics)
    return Report(text, tables.problems)


def report_text(results_dir: str | Path, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                per_category: bool = False, title: str = "fsad-bench report", scope: "Scope | None" = None,
                notes: str = "full") -> str:
    """:func:`render_report`'s text."""
    return render_report(results_dir, fmt, metric, methods, datasets, per_category, title, scope, notes).text
