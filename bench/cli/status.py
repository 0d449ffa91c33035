"""``status``: done / running / failed / pending cells of a sweep (plans from run.json, builds no model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from fsadbench.cli.common import DEFAULT_RESULTS_DIR, config_flags, parser, results_dir_flag, say, split_list
from fsadbench.core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = parser("status", "Done / running / failed / pending cells of a sweep.",
               [results_dir_flag(what="the sweep's results folder"), config_flags()])
    p.add_argument("--show", default="running,failed",
                   help="comma-separated lists to print: running, failed, pending, done (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the states as JSON")
    return p


def main(argv: Sequence[str]) -> int:
    from fsadbench.run.status import STATES, config_for, plans_for, render, status_json, sweep_status

    a = build_parser().parse_args(list(argv))
    root = _folder(a.results_dir)
    show = split_list(a.show) or []
    bad = sorted(set(show) - set(STATES))
    if bad:
        raise ConfigError(f"--show {a.show!r}: unknown list(s) {bad}; choose from {', '.join(STATES)}")
    cfg, source = config_for(root, a.preset, a.config)
    plans = [cfg] if a.preset or a.config else plans_for(root, cfg)
    if len(plans) > 1:
        source += f", {len(plans)} sweep configs"
    st = sweep_status(plans)
    print(status_json(st) if a.json else render(st, root, source, show), end="\n" if a.json else "")
    return 0


def _folder(path: str) -> Path:
    """The results folder to show: the one given; by default, when results/run holds no sweep, the folder of
    the most recent sweep under results/ (said on stderr); else an error naming where sweeps are."""
    from fsadbench.run.status import recent_sweeps

    root = Path(path)
    if root.is_dir():
        return root
    if root.exists():
        raise ConfigError(f"--results-dir {root} is a file, not a folder; point it at the folder a sweep wrote")
    found = recent_sweeps(Path("results"))
    if path == DEFAULT_RESULTS_DIR and found:
        say(f"note: {root} holds no sweep; showing {found[0]}, the most recent sweep under results/ "
            f"(--results-dir DIR for another)")
        return found[0]
    where = (f"sweeps found: {', '.join(map(str, found))}; pass one with --results-dir" if found
             else "start a sweep there first, or pass the folder a sweep wrote with --results-dir")
    raise ConfigError(f"--results-dir {root} does not exist; {where}")
