"""``report``: tables from records (markdown, latex, csv, json, html); ``rescore``: metrics from stored scores.

    python run_bench.py report --format latex --metric all --output tables.tex
    python run_bench.py report --format csv --per-category --output results.csv
    python run_bench.py report --format html --output report.html      # one self-contained file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fsadbench.cli.common import (existing_results_dir, format_flag, metric_flag, output_flag, parse_metrics, parser,
                                  results_dir_flag, split_list, write_output)

FORMATS = ("markdown", "latex", "csv", "json", "html")


def build_parser() -> argparse.ArgumentParser:
    p = parser("report", "Mean ± std tables from records, or their numbers as CSV / JSON, or one self-contained "
                         "HTML report (tables, per-category bars, provenance).",
               [results_dir_flag(), format_flag(FORMATS), metric_flag(),
                output_flag("write the report to this file as well (html: the file, default <results-dir>/report.html)")])
    p.add_argument("--methods", help="comma-separated method ids to include")
    p.add_argument("--datasets", help="comma-separated datasets to include")
    p.add_argument("--per-category", action="store_true", help="add per-category tables (csv/json: rows)")
    p.add_argument("--title", default="fsad-bench report", help="html: the report's title")
    return p


def load(results_dir: str | Path, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None):
    """(records, records_frame) of a results folder, filtered by method id and dataset."""
    from fsadbench.results.aggregate import records_frame
    from fsadbench.results.records import RecordStore

    records = [r for r in RecordStore(results_dir)
               if (not methods or r.key["method"] in methods) and (not datasets or r.key["dataset"] in datasets)]
    return records, records_frame(records)


def report_text(results_dir: str | Path, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                per_category: bool = False, title: str = "fsad-bench report") -> str:
    """The report in one format; "" when there is no successful record (callers say so on stderr)."""
    from fsadbench.reports.export import subset_notes, summary_long, to_csv, to_json
    from fsadbench.reports.tables import category_table, main_table, render

    metrics = [metric] if isinstance(metric, str) else list(metric)
    records, df = load(results_dir, methods, datasets)
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
        from fsadbench.reports.export import coverage_notes

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


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    root = existing_results_dir(a.results_dir, "report")
    text = report_text(root, a.format, parse_metrics(a.metric), split_list(a.methods), split_list(a.datasets),
                       a.per_category, a.title)
    if not text:
        print(f"report: no successful records in {root}"
              + (" for the --methods / --datasets given" if a.methods or a.datasets else "")
              + "; nothing written", file=sys.stderr)
        return 1
    if a.format == "html":  # a document, not terminal output: always a file
        write_output(a.output or str(root / "report.html"), text)
        return 0
    print(text, end="" if text.endswith("\n") else "\n")
    write_output(a.output, text)
    return 0
