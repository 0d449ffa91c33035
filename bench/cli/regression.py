"""``compare`` (per-cell and per-table deltas, exit 1 on a regression), ``baseline`` (rewrite a preset's
committed baseline) and ``history`` (a metric over commits)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fsadbench.cli.common import metric_flag, output_flag, parser, split_list, write_output


def _sources() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--results-dir", action="append", default=[],
                   help="results folder to scan for commit sides (repeatable; default: every results folder "
                        "under --results-root)")
    p.add_argument("--results-root", default="results", help="where run ids live (default %(default)s/)")
    return p


def compare_parser() -> argparse.ArgumentParser:
    from fsadbench.regression.compare import DEFAULT_ALPHA
    from fsadbench.results.comparability import CHECKS

    p = parser("compare", "Per-cell and per-table deltas between two sets of records; exit status 1 on a "
                          "regression.", [_sources(), output_flag("write the Markdown report to this file as well")])
    p.add_argument("base", help="results folder, run id (folder under --results-root) or git commit")
    p.add_argument("head", help="results folder, run id or git commit")
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
    return p


def compare_main(argv: Sequence[str]) -> int:
    from fsadbench.regression.compare import compare
    from fsadbench.regression.sources import load_side
    from fsadbench.results.comparability import CHECKS

    a = compare_parser().parse_args(list(argv))
    base = load_side(a.base, a.results_dir, a.results_root, "BASE")
    head = load_side(a.head, a.results_dir, a.results_root, "HEAD")
    checks = [n for n in CHECKS if n not in a.skip_check]
    c = compare(base, head, a.tol, a.alpha, split_list(a.metrics), a.strict, a.allow_missing, a.allow_mismatch, checks)
    text = c.to_markdown(all_cells=a.all_cells)
    print(text)
    write_output(a.output, text)
    return c.exit_code()


def baseline_parser() -> argparse.ArgumentParser:
    p = parser("baseline", "Run a preset from scratch and store its records as the committed baseline the "
                           "regression gate compares against.",
               [output_flag("baseline folder (default results/baselines/<preset>)")])
    p.add_argument("--preset", default="smoke", help="preset to run (default smoke)")
    p.add_argument("--cache-dir", help="feature cache / generated data (default: FSADBENCH_CACHE or ~/.cache)")
    return p


def baseline_main(argv: Sequence[str]) -> int:
    """``python run_bench.py baseline --preset smoke``: (re)write results/baselines/<preset> from a fresh run."""
    from fsadbench.cli.common import say
    from fsadbench.regression.gate import write_baseline

    a = baseline_parser().parse_args(list(argv))
    summary, out = write_baseline(a.preset, a.output, a.cache_dir, log=say)
    if summary.failed:
        print(f"baseline NOT updated: {summary.failed} cell(s) failed:\n" + "\n".join(summary.failures),
              file=sys.stderr)
        return 1
    print(f"{summary.line()}\nbaseline written to {out}; commit it with: git add {out} && "
          f"git commit -m 'Update {a.preset} baseline' -- {out}", file=sys.stderr)
    return 0


def history_parser() -> argparse.ArgumentParser:
    p = parser("history", "A metric over commits for one method and dataset (table and plot).",
               [_sources(), metric_flag(many=False), output_flag("write the Markdown table here as well")])
    p.add_argument("--method", required=True, help="method id or name, e.g. apt or apt[la=false]")
    p.add_argument("--dataset", required=True)
    p.add_argument("--shots", help="comma-separated shot counts (default all)")
    p.add_argument("--variant", help='e.g. "w/ VG" (default all)')
    p.add_argument("--plot", help="write the plot here (PNG and PDF)")
    return p


def history_main(argv: Sequence[str]) -> int:
    from fsadbench.regression.history import collect, history_frame, history_markdown, plot_history

    a = history_parser().parse_args(list(argv))
    shots = [int(k) for k in split_list(a.shots)] if a.shots else None
    h = history_frame(collect(a.results_dir, a.results_root), a.method, a.dataset, a.metric, shots, a.variant)
    text = history_markdown(h, a.method, a.dataset, a.metric)
    print(text)
    write_output(a.output, text)
    if a.plot:
        for f in plot_history(h, a.plot, a.method, a.dataset, a.metric):
            print(f"wrote {f}", file=sys.stderr)
    return 0
