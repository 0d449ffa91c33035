"""``paper-table``: a paper table layout (any registered one) from records, with the published figures under or
beside; ``--list`` names the layouts and their papers."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from fsadbench.cli.common import format_flag, notes_flag, output_flag, parse_metrics, parser, write_output
from fsadbench.core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from fsadbench.reports.paper.assemble import SHOW

    p = parser("paper-table", "Render a paper table layout (APT, AnoPLe or a plugin's) from records, optionally "
                              "with the published figures under or beside the measured ones.",
               [format_flag(), notes_flag(),
                output_flag("write the table to this file as well (only the table: status lines go to stderr)")])
    p.add_argument("--config", help="paper config with a 'table:' key, e.g. configs/paper/apt_table1.yaml")
    p.add_argument("--table", help="registered layout name (instead of --config; see --list)")
    p.add_argument("--list", action="store_true", help="list the registered layouts with their source paper")
    p.add_argument("--results-dir", help="records to read (default: the config's results_dir, else results/run)")
    p.add_argument("--published", default="under", choices=SHOW,
                   help="published figures: under (default), beside or none")
    p.add_argument("--metric", help="metric (default: the layout's, pixel_auroc)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a measured entry misses categories, seeds or records, or records mix runs")
    return p


def main(argv: Sequence[str]) -> int:
    from fsadbench.cli.common import DEFAULT_RESULTS_DIR
    from fsadbench.reports.paper.catalog import build
    from fsadbench.reports.paper.spec import table_spec
    from fsadbench.reports.render import render
    from fsadbench.results.records import RecordStore

    a = build_parser().parse_args(list(argv))
    if a.list:
        from fsadbench.cli.listing import describe_layouts

        print("\n".join(describe_layouts()))
        return 0
    if not a.config and not a.table:
        raise ConfigError("paper-table needs --config configs/paper/apt_table1.yaml (or --table NAME "
                          "--results-dir DIR)")
    kw: dict[str, Any] = {}
    results_dir, layout = None, a.table
    if a.config:
        layout_c, kw, results_dir = table_spec(a.config)
        layout = a.table or layout_c
    results_dir = a.results_dir or results_dir or DEFAULT_RESULTS_DIR
    if a.metric:
        kw["metric"] = a.metric
    if kw.get("metric") is not None:  # one known metric, refused as ``report`` refuses it (was: "undefined")
        names = parse_metrics(str(kw["metric"]))
        if len(names) != 1:
            raise ConfigError(f"--metric {kw['metric']!r}: paper-table shows one metric; name one of them")
        kw["metric"] = names[0]
    store = RecordStore(results_dir)
    records = store.records() if store.records_dir.is_dir() else []
    if not records:
        print(f"paper-table: no records in {results_dir}: published figures only", file=sys.stderr)
    table = build(layout, records, a.published, a.notes, **kw)
    text = render(table, a.format)
    print(text)
    write_output(a.output, text)
    if a.strict and table.problems:
        print("incomplete table (--strict):\n" + "\n".join(f"  - {x}" for x in table.problems), file=sys.stderr)
        return 1
    return 0
