"""Machine-readable exports of the aggregated tables (CSV, JSON) and the notes every format carries.

* :func:`summary_long` — the numbers behind the tables, one row per (metric, method, variant,
  dataset, shots[, category]) with mean and std over seeds (in %) and the number of seeds;
  ``level`` is ``dataset`` (mean over categories, then over seeds) or ``category``.
* :func:`coverage_notes` — what a reader must know before comparing the figures: random
  weights, a subset of the test images (``--max-test-images``) or of the categories
  (``--categories``), failed and not-applicable cells.
* :func:`to_csv` / :func:`to_json` — the rows above as text (JSON adds the notes).
* :func:`report_text` — the ``report`` command's output in any of its formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from fsadbench.reports.tables import category_table, main_table, render
from fsadbench.results.aggregate import per_category, records_frame, summary
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, Record

SUMMARY_COLUMNS = ["level", "metric", "method", "label", "variant", "dataset", "shots", "category", "mean", "std",
                   "n_seeds"]


def summary_long(df: pd.DataFrame, metrics: Sequence[str], categories: bool = False) -> pd.DataFrame:
    """Aggregated figures of ``df`` (:func:`fsadbench.results.aggregate.records_frame`), long format, in %."""
    parts = []
    for m in metrics:
        if df.empty:
            continue
        s = summary(df, m).assign(level="dataset", metric=m, category="")
        parts.append(s)
        if categories:
            parts.append(per_category(df, m).assign(level="category", metric=m))
    if not parts:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out = out[out["n_seeds"] > 0]
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


def _plugin_categories(dataset: str) -> tuple[str, ...]:
    from fsadbench.core.errors import BenchError
    from fsadbench.core.registry import DATASETS

    try:
        return tuple(DATASETS.get(dataset)[0].categories)
    except BenchError:  # a plugin no longer installed: no published list to compare with
        return ()


def subset_notes(records: Iterable[Record]) -> list[str]:
    """'SUBSET' notes for records run on part of the test images or of a dataset's categories."""
    records = [r for r in records if r.status == STATUS_OK]
    notes = []
    caps = sorted({int(r.protocol["max_test_images"]) for r in records if r.protocol.get("max_test_images")})
    if caps:
        notes.append(f"SUBSET: at most {', '.join(map(str, caps))} test image(s) per category "
                     f"(--max-test-images); not comparable with figures over the full test sets.")
    chosen: dict[str, set[str]] = {}
    for r in records:
        for d in (r.config or {}).get("datasets") or []:
            if isinstance(d, dict) and d.get("name") == r.key["dataset"] and d.get("categories"):
                chosen.setdefault(d["name"], set()).update(d["categories"])
    for name, cats in sorted(chosen.items()):
        full = set(_plugin_categories(name))
        if full and cats < full:
            notes.append(f"SUBSET: {name}: {len(cats)} of its {len(full)} categories ({', '.join(sorted(cats))}); "
                         f"the dataset figure is the mean over these only.")
    return notes


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


def to_csv(rows: pd.DataFrame) -> str:
    return rows.to_csv(index=False, float_format="%.4f")


def to_json(rows: pd.DataFrame, notes: Sequence[str] = (), **meta: Any) -> str:
    """``{"notes": [...], "rows": [...], **meta}``; NaN becomes null."""
    data = json.loads(rows.to_json(orient="records", double_precision=6))
    return json.dumps({**meta, "notes": list(notes), "rows": data}, indent=1) + "\n"


def load_records(results_dir: str | Path, methods: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None) -> tuple[list[Record], pd.DataFrame]:
    """(records, records_frame) of a results folder, filtered by method id and dataset."""
    from fsadbench.results.records import RecordStore

    records = [r for r in RecordStore(results_dir)
               if (not methods or r.key["method"] in methods) and (not datasets or r.key["dataset"] in datasets)]
    return records, records_frame(records)


def report_text(results_dir: str | Path, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                per_category: bool = False, title: str = "fsad-bench report") -> str:
    """The report in one format; "" when there is no successful record (callers say so on stderr)."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    records, df = load_records(results_dir, methods, datasets)
    if fmt == "html":
        from fsadbench.reports.html import html_report, qualitative_png

        return html_report(records, metrics, title, str(results_dir), qualitative_png(records, results_dir),
                           per_category=True) if records else ""
    if df.empty:
        return ""
    if fmt in ("csv", "json"):
        rows = summary_long(df, metrics, per_category)
        if fmt == "csv":
            return to_csv(rows)
        return to_json(rows, coverage_notes(records), results_dir=str(results_dir), metrics=metrics)
    extra = subset_notes(records)
    parts = []
    for m in metrics:
        tables = [main_table(df, m)]
        if per_category:
            tables += [category_table(df, d, int(k), m) for d in dict.fromkeys(df["dataset"])
                       for k in sorted(df[df["dataset"] == d]["shots"].unique())]
        for t in tables:
            t.notes[:0] = extra
            parts.append(render(t, fmt))
    return "\n".join(parts)
