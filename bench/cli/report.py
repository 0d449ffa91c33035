"""``report``: tables from records (markdown, latex, csv, json, html); ``rescore``: metrics from stored scores.

    python run_bench.py report --format latex --metric all --output tables.tex
    python run_bench.py report --format csv --per-category --output results.csv
    python run_bench.py report --format html --output report.html      # one self-contained file
"""

from __future__ import annotations

import argparse
import sys
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


def main(argv: Sequence[str]) -> int:
    from fsadbench.reports.export import report_text

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
