"""``status``: done / running / failed / pending cells of a sweep (plans from run.json, builds no model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fsadbench.cli.common import config_flags, parser, results_dir_flag, split_list
from fsadbench.core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = parser("status", "Done / running / failed / pending cells of a sweep.",
               [results_dir_flag(what="the sweep's results folder"), config_flags()])
    p.add_argument("--show", default="running,failed",
                   help="comma-separated lists to print: running, failed, pending, done (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the states as JSON")
    return p


def main(argv: Sequence[str]) -> int:
    from fsadbench.run.status import STATES, config_for, render, status_json, sweep_status

    a = build_parser().parse_args(list(argv))
    root = Path(a.results_dir)
    if not root.is_dir():
        raise ConfigError(f"--results-dir {root} does not exist; start a sweep there first")
    show = split_list(a.show) or []
    bad = sorted(set(show) - set(STATES))
    if bad:
        raise ConfigError(f"--show {a.show!r}: unknown list(s) {bad}; choose from {', '.join(STATES)}")
    cfg, source = config_for(root, a.preset, a.config)
    st = sweep_status(cfg)
    print(status_json(st) if a.json else render(st, root, source, show), end="\n" if a.json else "")
    return 0
