"""``python run_bench.py paper-table``: a paper layout from records, with the published figures.

    python run_bench.py paper-table --config configs/paper/apt_table1.yaml            # published under
    python run_bench.py paper-table --config configs/paper/apt_table1.yaml --published beside --format latex
    python run_bench.py paper-table --table apt_table2 --results-dir results/apt_table2 --strict
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from fsadbench.core.errors import ConfigError
from fsadbench.reports.paper.assemble import SHOW
from fsadbench.reports.paper.layouts import LAYOUTS, build
from fsadbench.reports.render import render
from fsadbench.results.records import RecordStore


def table_spec(config_path: str | Path) -> tuple[str, dict[str, Any], str | None]:
    """(layout, layout keyword arguments, results_dir) from a paper config's ``table:`` key.

    ``table:`` is a layout name or a mapping {layout, metric, datasets (or columns), shots, variant,
    rows, switches, method}; without ``layout`` the file name (apt_table1/2/3) names it. Ablation row
    names come from ``table.rows`` / ``published.rows`` entries {label, <switch>: bool, ...}.
    """
    p = Path(config_path)
    if not p.is_file():
        raise ConfigError(f"--config {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    spec = data.get("table")
    if spec is None:
        raise ConfigError(f"{p}: no 'table:' key naming the layout (one of {', '.join(LAYOUTS)})")
    if isinstance(spec, str):
        spec = {"layout": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{p}: 'table' must be a layout name or a mapping with 'layout'")
    layout = spec.get("layout") or next((name for name in LAYOUTS if name in p.stem), None)
    if layout not in LAYOUTS:
        raise ConfigError(f"{p}: table.layout {layout!r} unknown; use one of {', '.join(LAYOUTS)}")
    kw: dict[str, Any] = {}
    if spec.get("metric"):
        kw["metric"] = spec["metric"]
    ds = spec.get("datasets") or spec.get("columns")
    if ds:
        kw["datasets"] = list(ds)
    if layout == "apt_table3":
        from fsadbench.reports.paper.published import table_data

        if spec.get("shots") is not None:
            kw["shots"] = int(spec["shots"])
        for key in ("variant", "method"):
            if spec.get(key):
                kw[key] = spec[key]
        switches = list(spec.get("switches") or table_data("apt_table3")["switches"])
        if spec.get("switches"):
            kw["switches"] = switches
        prow = (data.get("published") or {}).get("rows") if isinstance(data.get("published"), dict) else None
        labels = {tuple(bool(r.get(s)) for s in switches): str(r["label"])
                  for rows in (prow or [], spec.get("rows") or []) for r in rows
                  if isinstance(r, dict) and "label" in r and all(s in r for s in switches)}
        if labels:
            kw["labels"] = labels
    elif layout == "apt_table1" and spec.get("shots"):
        kw["shots"] = [int(k) for k in spec["shots"]]
    return layout, kw, data.get("results_dir")


def cli_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="run_bench.py paper-table",
                                description="Render an APT paper table layout from records, optionally with the "
                                            "published figures under or beside the measured ones.")
    p.add_argument("--config", help="paper config with a 'table:' key, e.g. configs/paper/apt_table1.yaml")
    p.add_argument("--table", choices=LAYOUTS, help="layout (instead of --config)")
    p.add_argument("--results-dir", help="records to read (default: the config's results_dir)")
    p.add_argument("--published", default="under", choices=SHOW, help="published figures: under (default), "
                                                                         "beside or none")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"])
    p.add_argument("--metric", help="metric (default: the layout's, pixel_auroc)")
    p.add_argument("--output", help="write the table to this file as well")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a measured entry misses categories, seeds or records, or records mix runs")
    a = p.parse_args(argv)
    if not a.config and not a.table:
        raise ConfigError("paper-table needs --config configs/paper/apt_table1.yaml (or --table NAME "
                          "--results-dir DIR)")
    kw: dict[str, Any] = {}
    results_dir = None
    layout = a.table
    if a.config:
        layout_c, kw, results_dir = table_spec(a.config)
        layout = a.table or layout_c
    results_dir = a.results_dir or results_dir
    if not results_dir:
        raise ConfigError("paper-table: give --results-dir (the config names none)")
    if a.metric:
        kw["metric"] = a.metric
    store = RecordStore(results_dir)
    records = store.records() if store.records_dir.is_dir() else []
    table = build(layout, records, a.published, **kw)
    text = render(table, a.format)
    if not records:
        text = f"(no records in {results_dir}: published figures only)\n\n" + text
    print(text)
    if a.output:
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        Path(a.output).write_text(text)
    if a.strict and table.problems:
        print("incomplete table (--strict):\n" + "\n".join(f"  - {x}" for x in table.problems), file=sys.stderr)
        return 1
    return 0
