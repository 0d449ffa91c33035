"""Flags several commands share, as argparse parent parsers (one spelling, one default, one help text).

    p = argparse.ArgumentParser(prog=..., parents=[results_dir_flag(), output_flag(), format_flag(...)])
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fsadbench.core.errors import ConfigError

#: the results folder of ``run`` when none is given; ``report``, ``status``, ``figures`` and
#: ``paper-table`` read it by default too (RunConfig.results_dir is the same value)
DEFAULT_RESULTS_DIR = "results/run"
PROG = "run_bench.py"


def parser(command: str, description: str, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"{PROG} {command}", description=description, parents=list(parents))


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def results_dir_flag(required: bool = False, what: str = "records to read") -> argparse.ArgumentParser:
    p = _parent()
    if required:
        p.add_argument("--results-dir", required=True, help=what)
    else:
        p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help=f"{what} (default %(default)s)")
    return p


def output_flag(what: str = "write the output to this file as well") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--output", "-o", metavar="FILE", help=what)
    return p


def format_flag(choices: Sequence[str] = ("markdown", "latex"), default: str = "markdown") -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--format", default=default, choices=list(choices), help=f"output format (default {default})")
    return p


def metric_flag(default: str = "pixel_auroc", many: bool = True) -> argparse.ArgumentParser:
    p = _parent()
    names = "pixel_auroc, image_auroc, aupro, pixel_ap, pixel_f1_max, image_ap, image_f1_max"
    p.add_argument("--metric", default=default,
                   help=f"{names}{'; comma-separated, or all' if many else ''} (default {default})")
    return p


def notes_flag() -> argparse.ArgumentParser:
    """``--notes``: the tables' method notes (each method's departures from its paper / reference code)."""
    from fsadbench.reports.notes import NOTES

    p = _parent()
    p.add_argument("--notes", default="full", choices=list(NOTES),
                   help="method notes under the tables, once per method: full (default), short (one line counting "
                        "them; run_bench.py list --method NAME shows them) or none")
    return p


def config_flags() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--preset", help="smoke (offline pipeline check: synthetic data, tiny RANDOM backbone) or paper")
    p.add_argument("--config", help="YAML run config (every key: docs/config.md, or list --config-reference)")
    return p


def data_flags(datasets_required: bool = False) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--datasets", required=datasets_required, help="comma-separated dataset names, e.g. mvtec,visa")
    p.add_argument("--categories", help="comma-separated categories (applies to every dataset; default all)")
    p.add_argument("--data-root", help="folder holding the datasets, each in one of its usual folder names")
    p.add_argument("--cache-dir", help="feature cache and generated data (default $FSADBENCH_CACHE or "
                                       "~/.cache/fsadbench)")
    return p


def device_flag() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    return p


def split_list(value: str | None) -> list[str] | None:
    """``a,b,,c`` -> ["a", "b", "c"]; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_metrics(value: str) -> list[str]:
    """``--metric``: one metric, a comma-separated list, or ``all`` (every metric a record carries)."""
    from fsadbench.results.aggregate import METRIC_LABELS

    names = list(METRIC_LABELS) if value.strip() == "all" else split_list(value) or []
    unknown = [n for n in names if n not in METRIC_LABELS]
    if unknown or not names:
        raise ConfigError(f"--metric {value!r}: unknown {unknown or value!r}; choose from "
                          f"{', '.join(METRIC_LABELS)} or all")
    return names


def existing_results_dir(path: str, command: str, fallback: bool = False) -> Path:
    """The records folder a reading command uses, or an error that says how to make one. ``fallback``: the
    default folder without records stands for the most recent sweep under results/ that has some (as
    ``status``; said on stderr), e.g. results/smoke after the pipeline check."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--results-dir {root} is a file, not a folder; point it at the folder a sweep wrote")
    if fallback and path == DEFAULT_RESULTS_DIR and not (root / "records").is_dir():
        from fsadbench.run.status import recent_sweeps

        found = [f for f in recent_sweeps(Path("results")) if (f / "records").is_dir()]
        if found:
            say(f"note: {root} holds no records; showing {found[0]}, the most recent sweep under results/ "
                f"(--results-dir DIR for another)")
            return found[0]
    if not (root / "records").is_dir():
        hint = (f"run a sweep there first (python {PROG} --methods memory --datasets NAME --data-root DIR "
                f"writes {DEFAULT_RESULTS_DIR})" if path == DEFAULT_RESULTS_DIR else "point --results-dir at a "
                "folder a sweep wrote")
        smoke = Path("results/smoke")
        if path != str(smoke) and (smoke / "records").is_dir():
            hint += f"; the smoke check's records are in {smoke}: {PROG} {command} --results-dir {smoke}"
        elif path == DEFAULT_RESULTS_DIR:
            hint += f"; the offline pipeline check ({PROG} --preset smoke) writes results/smoke"
        raise ConfigError(f"--results-dir {root}: no records there; {hint}")
    return root


def write_output(path: str | None, text: str | bytes) -> None:
    """``--output FILE``: write exactly the command's output (status lines go to stderr, never here),
    atomically: a full disk or a read-only folder leaves the previous file whole and is one line."""
    from fsadbench.core.io import atomic_write_bytes

    if not path:
        return
    out = Path(path)
    atomic_write_bytes(out, text if isinstance(text, bytes) else text.encode("utf-8"))
    print(f"wrote {out}", file=sys.stderr)


def say(msg: str) -> None:
    """A status line on stderr (printed above a progress bar when one is shown)."""
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(msg, file=sys.stderr)
