"""``figures bars`` (per-category bars from records) and ``figures grid`` (maps of fitted methods)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fsadbench.cli.common import (DEFAULT_RESULTS_DIR, config_flags, data_flags, device_flag, existing_results_dir,
                                  metric_flag, say, split_list)
from fsadbench.core.errors import ConfigError


def _output(what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--output", "-o", "--out", dest="output", metavar="PATH",
                   help=f"output path without suffix; .png and .pdf are written (default {what})")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_bench.py figures",
                                description="Bar charts from records; qualitative grids from fitted methods.")
    sub = p.add_subparsers(dest="kind", required=True)
    b = sub.add_parser("bars", help="per-category bars of a metric with error bars over seeds",
                       parents=[metric_flag(many=False), _output("figures/bars_<dataset>_k<shots>")])
    b.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="records to read (default %(default)s)")
    b.add_argument("--dataset", required=True)
    b.add_argument("--shots", type=int, required=True)
    b.add_argument("--variants", help='comma-separated, e.g. "w/ VG" (default all)')
    g = sub.add_parser("grid", help="image | ground truth | each method's map, for one category (fits each method)",
                       parents=[config_flags(), data_flags(), device_flag(),
                                _output("figures/grid_<dataset>_<category>")])
    g.add_argument("--dataset", help="dataset of the config (default: its first)")
    g.add_argument("--category", required=True)
    g.add_argument("--methods", help="comma-separated method ids/names of the config (default all)")
    g.add_argument("--shots", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--n", type=int, default=4, help="number of test images (rows)")
    return p


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(list(argv))
    if a.kind == "bars":
        from fsadbench.reports.figures import category_bars
        from fsadbench.results.records import RecordStore

        store = RecordStore(existing_results_dir(a.results_dir, "figures bars", fallback=True))
        files = category_bars(store, a.dataset, a.shots, a.output or f"figures/bars_{a.dataset}_k{a.shots}",
                              a.metric, split_list(a.variants))
    else:
        files = _grid(a)
    for f in files:
        print(f"wrote {f}", file=sys.stderr)
    return 0


def _grid(a: argparse.Namespace):
    from fsadbench.reports.figures import qualitative_grid
    from fsadbench.run.config import RunConfig
    from fsadbench.run.resources import Resources

    cfg = RunConfig.from_cli({"preset": a.preset, "config": a.config, "datasets": a.datasets,
                              "categories": a.categories, "data_root": a.data_root, "cache_dir": a.cache_dir,
                              "device": a.device})
    ds = next((d for d in cfg.datasets if d.name == a.dataset), None) if a.dataset else cfg.datasets[0]
    if ds is None:
        raise ConfigError(f"--dataset {a.dataset!r} is not in this config ({', '.join(d.name for d in cfg.datasets)})")
    methods = cfg.methods
    if a.methods:
        want = split_list(a.methods)
        methods = [m for m in cfg.methods if m.id in want or m.name in want]
        if not methods:
            raise ConfigError(f"--methods {a.methods}: none is in this config ({', '.join(m.id for m in cfg.methods)})")
    say(f"figures grid: fitting {len(methods)} method(s) on {ds.name}/{a.category}, {a.shots}-shot, seed {a.seed}")
    return qualitative_grid(Resources(cfg, say), methods, ds, a.category, a.shots, a.seed,
                            a.output or f"figures/grid_{ds.name}_{a.category}", a.n)
