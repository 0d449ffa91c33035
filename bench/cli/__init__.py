"""Command line: ``python run_bench.py [run] ...`` and its sub-commands.

    python run_bench.py --methods apt,winclip --shots 1,2,4 --datasets mvtec --data-root /data
    python run_bench.py --preset smoke                       # offline pipeline check
    python run_bench.py report --results-dir results/run --format latex
    python run_bench.py check-data --datasets mvtec --data-root /data
    python run_bench.py list                                 # registered methods and datasets
    python run_bench.py --preset smoke --executor gpus --workers 2   # one process per GPU / CPU worker
    python run_bench.py --executor slurm --slurm-partition gpu --slurm-array-parallelism 8 ...
    python run_bench.py status --results-dir results/run     # done / running / failed / pending cells

Any command takes ``--debug`` (or ``FSADBENCH_DEBUG=1``): errors then come with their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from fsadbench.core.errors import BenchError, error_summary, scrub

# sub-command -> "module:function(argv) -> int"; imported only when used
SUBCOMMANDS = {
    "run": "fsadbench.cli:run_main",
    "report": "fsadbench.cli:report_main",
    "list": "fsadbench.cli:list_main",
    "check-data": "fsadbench.protocol.check_data:cli_main",
    "compare": "fsadbench.regression.cli:compare_main",
    "history": "fsadbench.regression.history:cli_main",
    "paper-table": "fsadbench.reports.paper.cli:cli_main",
    "figures": "fsadbench.reports.figures:cli_main",
    "baseline": "fsadbench.regression.gate:baseline_main",
    "status": "fsadbench.run.status:cli_main",
}


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_bench.py", description="Sweep methods x datasets x shots x seeds.")
    p.add_argument("--preset", help="smoke (offline pipeline check: synthetic data, tiny RANDOM backbone) or paper")
    p.add_argument("--config", help="YAML config (see fsadbench.run.config for its keys)")
    p.add_argument("--methods", help="comma-separated method names, e.g. apt,winclip")
    p.add_argument("--datasets", help="comma-separated dataset names, e.g. mvtec,visa")
    p.add_argument("--categories", help="comma-separated categories (applies to every dataset)")
    p.add_argument("--shots", help="e.g. 1,2,4 (0 = zero-shot)")
    p.add_argument("--seeds", help="e.g. 0,1,2")
    p.add_argument("--data-root", help="folder holding the datasets (e.g. /data/mvtec_anomaly_detection)")
    p.add_argument("--results-dir", help="where records go (rerun resumes)")
    p.add_argument("--cache-dir", help="feature cache and generated data (default ~/.cache/fsadbench)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--model", help="open_clip model name (default ViT-B-16-plus-240)")
    p.add_argument("--pretrained", help="open_clip tag (default laion400m_e32), a checkpoint file, or none")
    p.add_argument("--eval-size", type=int, help="evaluation resolution (default 400)")
    p.add_argument("--sigma", type=float, help="Gaussian sigma after upsampling (default: each method's paper value)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--amp", action="store_true", help="bf16 autocast on GPU (recorded)")
    p.add_argument("--method-option", action="append", default=[], metavar="M.OPT=VALUE",
                   help="set a method option, e.g. apt.k=2 (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute cells that already have a record")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"], help="table printed at the end")
    from fsadbench.run.executors import add_executor_args

    add_executor_args(p)
    return p


def run_main(argv: Sequence[str]) -> int:
    from fsadbench.run.config import build_config

    a = _run_parser().parse_args(argv)
    overrides = {
        "methods": a.methods, "datasets": a.datasets, "shots": a.shots, "seeds": a.seeds,
        "data_root": a.data_root, "results_dir": a.results_dir, "cache_dir": a.cache_dir, "device": a.device,
        "batch_size": a.batch_size, "amp": a.amp or None,
    }
    if a.model or a.pretrained:
        overrides["backbone"] = {k: v for k, v in (("model", a.model), ("pretrained", a.pretrained)) if v}
    proto = {k: v for k, v in (("eval_size", a.eval_size), ("sigma", a.sigma)) if v is not None}
    if proto:
        overrides["protocol"] = proto
    cfg = build_config(a.preset, a.config, overrides, a.method_option)
    if a.categories:
        from fsadbench.core.validate import parse_categories

        cats = parse_categories(a.categories, "--categories")
        for d in cfg.datasets:
            d.categories = list(cats)

    def log(msg: str) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)
        except ImportError:  # pragma: no cover
            print(msg, file=sys.stderr)

    from fsadbench.run.executors import executor_from_args
    from fsadbench.run.signals import SweepInterrupted

    executor = executor_from_args(a)
    try:
        summary = executor.run(cfg, force=a.force, log=log, progress=not a.no_progress)
    except SweepInterrupted as exc:  # claims released; one line, no traceback
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(summary.line(), file=sys.stderr)
    text = report_text(cfg.results_dir, a.format, methods=[m.id for m in cfg.methods],
                       datasets=[d.name for d in cfg.datasets])
    print(text)
    return 1 if summary.failed else 0


def parse_metrics(value: str) -> list[str]:
    """``--metric``: one metric, a comma-separated list, or ``all`` (every metric a record carries)."""
    from fsadbench.results.aggregate import METRIC_LABELS

    names = list(METRIC_LABELS) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in METRIC_LABELS]
    if unknown or not names:
        raise BenchError(f"--metric {value!r}: unknown {unknown or value!r}; choose from "
                         f"{', '.join(METRIC_LABELS)} or all")
    return names


def report_text(results_dir: str, fmt: str = "markdown", metric: str | Sequence[str] = "pixel_auroc",
                methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                per_category: bool = False) -> str:
    """Main table (and per-category tables) of each metric, in the order given."""
    from fsadbench.reports.report import build_report

    return build_report(results_dir, fmt, metric, methods, datasets, per_category).text


def report_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="run_bench.py report", description="Render mean±std tables from records.")
    p.add_argument("--results-dir", default="results/run")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"])
    p.add_argument("--metric", default="pixel_auroc",
                   help="pixel_auroc (default), image_auroc, aupro, pixel_ap, pixel_f1_max, image_ap, "
                        "image_f1_max; comma-separated, or all")
    p.add_argument("--methods", help="comma-separated method ids to include")
    p.add_argument("--datasets", help="comma-separated datasets to include")
    p.add_argument("--per-category", action="store_true", help="add per-category tables")
    p.add_argument("--output", help="write the table to this file as well")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a figure misses planned categories or seeds, or records mix runs")
    a = p.parse_args(argv)
    if not Path(a.results_dir).is_dir():
        raise BenchError(f"--results-dir {a.results_dir} does not exist; run a sweep first "
                         f"(python run_bench.py --preset smoke)")
    from fsadbench.reports.report import build_report

    rep = build_report(a.results_dir, a.format, parse_metrics(a.metric), a.methods.split(",") if a.methods else None,
                       a.datasets.split(",") if a.datasets else None, a.per_category)
    print(rep.text)
    if a.output:
        Path(a.output).write_text(rep.text)
    if a.strict and not rep.complete:
        print(rep.strict_message(), file=sys.stderr)
        return 1
    return 0


def list_main(argv: Sequence[str]) -> int:
    from fsadbench.core.registry import DATASETS, METHODS

    print("methods: " + ", ".join(METHODS.names()))
    print("datasets: " + ", ".join(DATASETS.names()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors print one line, cause first (``--debug`` or FSADBENCH_DEBUG=1: with the
    traceback); Ctrl-C prints one line and exits 130; an unexpected exception exits 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FSADBENCH_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    cmd = "run"
    if argv and argv[0] in SUBCOMMANDS:
        cmd = argv.pop(0)
    elif argv and not argv[0].startswith("-"):
        print(f"unknown command {argv[0]!r}; commands: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module_name, _, fn = SUBCOMMANDS[cmd].partition(":")
    try:
        return int(getattr(importlib.import_module(module_name), fn)(argv) or 0)
    except KeyboardInterrupt as exc:
        _fail(exc, debug, "interrupted; finished cells are kept, rerun the same command to resume")
        return 130
    except BenchError as exc:  # cause first; the lines after it (if any) are the fix
        _fail(exc, debug, f"error: {exc}")
        return 2
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        sys.stderr.close()
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug or an environment fault: one line, traceback on request
        _fail(exc, debug, f"error: {error_summary(exc)}" + ("" if debug else " (rerun with --debug for the traceback)"))
        return 1


def _fail(exc: BaseException, debug: bool, line: str) -> None:
    if debug:
        print(scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))), file=sys.stderr)
    print(scrub(line), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
