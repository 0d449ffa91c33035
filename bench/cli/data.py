"""``check-data``: check dataset folders (counts against the published ones, masks, unreadable files)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from fsadbench.cli.common import data_flags, parser, split_list
from fsadbench.core.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = parser("check-data", "Check dataset folders: counts, masks, unreadable files.", [data_flags(True)])
    p.add_argument("--root", action="append", default=[], metavar="DATASET=FOLDER",
                   help="explicit folder of one dataset (repeatable)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="DATASET.OPTION=VALUE",
                   help="dataset option, e.g. cvc.normal_source=/data/normals (repeatable)")
    p.add_argument("--headers-only", action="store_true", help="read image headers only (faster, misses truncation)")
    return p


def parse_options(items: Sequence[str], flag: str) -> dict[str, dict[str, Any]]:
    """``DATASET.OPTION=VALUE`` items (values are YAML scalars) -> {dataset: {option: value}}."""
    from fsadbench.run.config import parse_value

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, opt = key.partition(".")
        if not sep or not dot or not name or not opt:
            raise ConfigError(f"{flag} {item!r}: expected DATASET.OPTION=VALUE, e.g. sdd.split_seed=1")
        out.setdefault(name, {})[opt] = parse_value(value, f"{flag} {key}")
    return out


def parse_roots(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--root {item!r}: expected DATASET=FOLDER, e.g. visa=/data/VisA_20220922")
        out[name] = folder
    return out


def main(argv: Sequence[str]) -> int:
    """Exit status 1 when any error was found, else 0 (warnings alone pass)."""
    from fsadbench.protocol.check_data import check_datasets

    a = build_parser().parse_args(list(argv))
    from fsadbench.core.validate import parse_categories

    cats = parse_categories(a.categories, "--categories") if a.categories else None
    n_err, n_warn = check_datasets(split_list(a.datasets) or [], a.data_root, cats, a.cache_dir,
                                   parse_roots(a.root), parse_options(a.dataset_option, "--dataset-option"),
                                   decode=not a.headers_only)
    print(f"check-data: {n_err} error(s), {n_warn} warning(s)")
    return 1 if n_err else 0
