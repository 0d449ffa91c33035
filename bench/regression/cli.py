"""``python run_bench.py compare BASE HEAD``: the comparison's command line (exit 1 on a regression)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fsadbench.regression.compare import DEFAULT_ALPHA, compare
from fsadbench.regression.sources import load_side
from fsadbench.results.comparability import CHECKS


def add_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tol", default="0.5",
                   help="tolerance in percentage points: a number, and/or METRIC=NUMBER entries, comma-separated "
                        "(default 0.5; e.g. 0.5,image_auroc=1.0)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="one-sided level of the t test over seeds that decides 'beyond noise' (default 0.025: the "
                        "two-sided 95 %% t band)")
    p.add_argument("--metrics", help="comma-separated metrics to compare (default: every metric on both sides)")
    p.add_argument("--strict", action="store_true",
                   help="fail on any cell change beyond --tol and on incomplete figures (deterministic runs)")
    p.add_argument("--allow-missing", action="store_true", help="cells of base missing in head do not fail")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare records from different metric versions/backbones/protocols/data anyway")
    p.add_argument("--skip-check", action="append", default=[], choices=sorted(CHECKS),
                   help="do not require this field to match (repeatable), e.g. dataset when only the file "
                        "encoding of generated data differs")
    p.add_argument("--all-cells", action="store_true", help="list every cell metric, not only those that moved")
    p.add_argument("--output", help="write the Markdown report to this file as well")


def compare_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="run_bench.py compare",
                                description="Per-cell and per-table deltas between two sets of records; "
                                            "exit status 1 on a regression.")
    p.add_argument("base", help="results folder, run id (folder under --results-root) or git commit")
    p.add_argument("head", help="results folder, run id or git commit")
    p.add_argument("--results-dir", action="append", default=[],
                   help="where to look for the records of a commit side (repeatable; default: every results "
                        "folder under --results-root)")
    p.add_argument("--results-root", default="results", help="where run ids live (default results/)")
    add_compare_args(p)
    a = p.parse_args(argv)
    base = load_side(a.base, a.results_dir, a.results_root, "BASE")
    head = load_side(a.head, a.results_dir, a.results_root, "HEAD")
    metrics = [m for m in a.metrics.split(",") if m] if a.metrics else None
    checks = [n for n in CHECKS if n not in a.skip_check]
    c = compare(base, head, a.tol, a.alpha, metrics, a.strict, a.allow_missing, a.allow_mismatch, checks)
    text = c.to_markdown(all_cells=a.all_cells)
    print(text)
    if a.output:
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        Path(a.output).write_text(text)
    return c.exit_code()
