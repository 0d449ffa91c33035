"""``run_bench.py [run]``: sweep methods x datasets x categories x shots x seeds, then print the table."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from fsadbench.cli.common import config_flags, data_flags, device_flag, notes_flag, parser, say


def build_parser() -> argparse.ArgumentParser:
    p = parser("run", "Sweep methods x datasets x shots x seeds (rerun resumes; records under --results-dir).",
               [config_flags(), data_flags(), device_flag(), notes_flag()])
    p.add_argument("--methods", help="comma-separated method names, e.g. apt,winclip (list: run_bench.py list)")
    p.add_argument("--shots", help="e.g. 1,2,4 (0 = zero-shot)")
    p.add_argument("--seeds", help="e.g. 0,1,2")
    p.add_argument("--results-dir", help="where records go (default results/run; the pipeline check: results/smoke)")
    p.add_argument("--model", help="the CLIP methods' open_clip model, [open_clip:]NAME[@size] "
                                  "(default ViT-B-16-plus-240)")
    p.add_argument("--pretrained", help="open_clip tag (default laion400m_e32), a checkpoint file, or none")
    p.add_argument("--eval-size", type=int, help="evaluation resolution (default 400)")
    p.add_argument("--sigma", type=float, help="Gaussian sigma after upsampling (default: each method's paper value)")
    p.add_argument("--max-test-images", type=int, metavar="N",
                   help="evaluate at most N test images per category (quick runs; recorded, tables say 'subset')")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--train-on", metavar="DATASET",
                   help="the auxiliary dataset methods that train on one (anomalyclip) are trained on, for every "
                        "target dataset (default: a config's train_on pairs; the pipeline check: synthetic-aux)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on GPU (recorded)")
    p.add_argument("--method-option", action="append", default=[], metavar="M.OPT=VALUE",
                   help="set a method option, e.g. apt.k=2 (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute cells that already have a record")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cells, weights, encoder passes), check every backbone and its "
                        "weights as a run would (a reachable host downloads timm / torchvision tags), and stop")
    p.add_argument("--save-maps", action="store_true",
                   help="also store every cell's maps at eval size beside its record (for rescore and the "
                        "HTML report's qualitative grid; per-image scores are always stored)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (cells, stages with ETA, the last "
                                                               "epoch's loss); FAILED lines and the summary remain")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex"], help="table printed at the end")
    p.add_argument("--table-all", action="store_true",
                   help="the table at the end shows every record in the results folder (default: only the cells "
                        "this command asked for: its methods, datasets, categories, shots and seeds)")
    p.add_argument("--log", choices=["mlflow"], help="also log the sweep to an experiment tracker (pip install "
                                                     "'fsad-bench[mlflow]')")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: a local file store, ./mlruns)")
    p.add_argument("--mlflow-experiment", default="fsad-bench", help="MLflow experiment name (default %(default)s)")
    from fsadbench.run.executors import add_executor_args

    add_executor_args(p)
    return p


def main(argv: Sequence[str]) -> int:
    from fsadbench.reports.export import report_text
    from fsadbench.results.records import RecordStore
    from fsadbench.run.config import RunConfig
    from fsadbench.run.executors import executor_from_args
    from fsadbench.run.plan import Plan
    from fsadbench.run.preflight import refuse_file_in_the_way
    from fsadbench.run.preview import plan_text
    from fsadbench.run.resources import Resources
    from fsadbench.run.signals import SweepInterrupted

    a = build_parser().parse_args(list(argv))
    if a.log == "mlflow":  # an optional integration is checked before planning, not after the sweep
        from fsadbench.tracking import check_mlflow

        check_mlflow()
    cfg = RunConfig.from_cli(a)
    executor = executor_from_args(a)
    refuse_file_in_the_way(cfg.results_dir)
    res = Resources(cfg, say)
    plan = Plan.build(cfg, res, RecordStore(cfg.results_dir), a.force)
    print(plan_text(cfg, plan, res), file=sys.stderr)
    if a.dry_run:  # the same checks as a run: all missing checkpoints and unusable backbones, in one message
        from fsadbench.run.backbones import check_backbones

        check_backbones(cfg, plan)
        return 0
    try:
        summary = executor.run(cfg, force=a.force, log=say, progress=not a.no_progress, resources=res)
    except SweepInterrupted as exc:  # claims released; one line, no traceback
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(summary.line(), file=sys.stderr)
    from fsadbench.run.api import invocation_metrics, invocation_scope

    text = report_text(cfg.results_dir, a.format, invocation_metrics(cfg),
                       scope=None if a.table_all else invocation_scope(cfg), notes=a.notes)
    na = f": {summary.not_applicable} cell(s) not applicable, see above" if summary.not_applicable else ""
    print(text or f"(no successful records in {cfg.results_dir}{na})")
    if a.log == "mlflow":
        from fsadbench.tracking import log_mlflow

        say(f"mlflow: logged run {log_mlflow(cfg, summary, a.mlflow_uri, a.mlflow_experiment)}")
    return 1 if summary.failed else 0
