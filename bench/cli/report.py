"""``report``: tables from records (markdown, latex, csv, json, html); ``rescore``: metrics from stored scores.

    python run_bench.py report --format latex --metric all --output tables.tex
    python run_bench.py report --format csv --per-category --output results.csv
    python run_bench.py report --format html --output report.html      # one self-contained file
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fsadbench.cli.common import (existing_results_dir, format_flag, metric_flag, notes_flag, output_flag,
                                  parse_metrics, parser, results_dir_flag, split_list, write_output)

FORMATS = ("markdown", "latex", "csv", "json", "html")


def build_parser() -> argparse.ArgumentParser:
    p = parser("report", "Mean ± std tables from records, or their numbers as CSV / JSON, or one self-contained "
                         "HTML report (tables, per-category bars, provenance).",
               [results_dir_flag(), format_flag(FORMATS), metric_flag(), notes_flag(),
                output_flag("write the report to this file as well (html: the file, default <results-dir>/report.html)")])
    p.add_argument("--methods", help="comma-separated method ids to include")
    p.add_argument("--datasets", help="comma-separated datasets to include")
    p.add_argument("--per-category", action="store_true", help="add per-category tables (csv/json: rows)")
    p.add_argument("--title", default="fsad-bench report", help="html: the report's title")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a figure misses planned categories or seeds, or records mix runs")
    return p


def main(argv: Sequence[str]) -> int:
    from fsadbench.reports.export import render_report

    a = build_parser().parse_args(list(argv))
    root = existing_results_dir(a.results_dir, "report", fallback=True)
    rep = render_report(root, a.format, parse_metrics(a.metric), split_list(a.methods), split_list(a.datasets),
                        a.per_category, a.title, notes=a.notes)
    if not rep.text:
        print(f"report: no successful records in {root}"
              + (" for the --methods / --datasets given" if a.methods or a.datasets else "")
              + "; nothing written", file=sys.stderr)
        return 1
    if a.format == "html":  # a document, not terminal output: always a file
        write_output(a.output or str(root / "report.html"), rep.text)
    else:
        print(rep.text, end="" if rep.text.endswith("\n") else "\n")
        write_output(a.output, rep.text)
    if a.strict and not rep.complete:
        print(rep.strict_message(), file=sys.stderr)
        return 1
    return 0


def rescore_parser() -> argparse.ArgumentParser:
    return parser("rescore", "Recompute every cell's metrics from its stored per-image scores (and maps) without "
                             "a refit; valid while the protocol version is unchanged (see fsadbench.run.rescore).",
                  [results_dir_flag(what="the records to rescore")])


def rescore_main(argv: Sequence[str]) -> int:
    """Exit status 1 when any cell could not be rescored (each is listed with the fix)."""
    from fsadbench.run.rescore import REFUSED, RESCORED, rescore_folder

    p = rescore_parser()
    p.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    a = p.parse_args(list(argv))
    root = existing_results_dir(a.results_dir, "rescore")
    counts: dict[str, int] = {}
    for r in rescore_folder(root, write=not a.dry_run):
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == REFUSED:
            print(f"{r.cell}: not rescored: {r.reason}", file=sys.stderr)
        elif r.status == RESCORED:
            moved = ", ".join(f"{k} {_pct(old)} -> {_pct(new)}" for k, (old, new) in list(r.changed.items())[:4])
            print(f"{r.cell}: {'would change' if a.dry_run else 'rescored'}" + (f" ({moved})" if moved else ""))
    print(f"rescore: {counts.get(RESCORED, 0)} cell(s) {'to rescore' if a.dry_run else 'rescored'}, "
          f"{counts.get('unchanged', 0)} unchanged, {counts.get(REFUSED, 0)} refused", file=sys.stderr)
    return 1 if counts.get(REFUSED) else 0


def _pct(x) -> str:
    return "undefined" if x is None else f"{100 * x:.2f}"
