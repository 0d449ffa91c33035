"""Experiment-tracker hook: ``run_bench.py ... --log mlflow`` logs a finished sweep as one MLflow run.

Optional (``pip install 'fsad-bench[mlflow]'``). The tracking store defaults to a local file store,
``./mlruns`` (browse it with ``mlflow ui --backend-store-uri ./mlruns``); ``--mlflow-uri`` takes any
MLflow URI (``sqlite:///mlflow.db``, ``http://server:5000``). What one run holds:

* params: the resolved sweep (methods with options, datasets, categories, shots, seeds, backbone,
  protocol, results folder);
* metrics: the cell counts of this invocation, and for every table entry its mean and std over seeds
  in % (``<metric>/<dataset>/<method>/<variant>/k<shots>/mean``; characters MLflow refuses become ``_``);
* tags: harness version, commit of the working repository, random weights;
* artifacts: the Markdown tables, the aggregated rows as CSV, the records as CSV
  (``fsadbench.load_results``) and ``run.json``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

_KEY = re.compile(r"[^A-Za-z0-9_\-. :]")  # what MLflow accepts in a key, less "/" (our separator)


def metric_key(*parts: Any) -> str:
    """``metric_key("pixel_auroc", "mvtec", "apt[k=2]", "w/ VG")`` -> ``pixel_auroc/mvtec/apt_k_2_/w_ VG``."""
    return "/".join(_KEY.sub("_", str(p)) for p in parts)


def default_uri() -> str:
    return Path("mlruns").resolve().as_uri()


def sweep_params(cfg) -> dict[str, str]:
    p = cfg.protocol
    return {"methods": ",".join(m.id for m in cfg.methods), "datasets": ",".join(d.name for d in cfg.datasets),
            "categories": ";".join(f"{d.name}:{','.join(d.categories)}" for d in cfg.datasets if d.categories) or "all",
            "shots": ",".join(map(str, cfg.shots)), "seeds": ",".join(map(str, cfg.seeds)), "model": cfg.model,
            "pretrained": cfg.pretrained, "eval_size": str(p.eval_size), "sigma": str(p.sigma),
            "max_test_images": str(p.max_test_images), "batch_size": str(cfg.batch_size), "amp": str(cfg.amp),
            "preset": str(cfg.preset), "results_dir": str(cfg.results_dir)}


def check_mlflow() -> None:
    """Refuse ``--log mlflow`` before any work when MLflow is not installed (not after the sweep)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        from fsadbench.core.errors import ConfigError

        raise ConfigError("--log mlflow needs MLflow, which is not installed: pip install 'fsad-bench[mlflow]' "
                          "(or mlflow-skinny), or drop --log")


def log_mlflow(cfg, summary=None, uri: str | None = None, experiment: str = "fsad-bench",
               run_name: str | None = None, metrics: tuple[str, ...] = ("pixel_auroc", "image_auroc", "aupro")) -> str:
    """Log the sweep of ``cfg`` (its records under ``cfg.results_dir``) as one MLflow run; returns its id."""
    try:
        import mlflow
    except ImportError as exc:
        from fsadbench.core.errors import ConfigError

        raise ConfigError("--log mlflow needs MLflow: pip install 'fsad-bench[mlflow]' (or mlflow-skinny)") from exc
    from fsadbench import __version__
    from fsadbench.api import load_results
    from fsadbench.core.provenance import git_state
    from fsadbench.reports.export import load_records, report_text, summary_long, to_csv

    uri = uri or default_uri()
    file_store = uri.startswith("file:") or "://" not in uri
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if file_store:  # MLflow 3 keeps the file store behind an opt-in; it is the local default here
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        _, df = load_records(cfg.results_dir, [m.id for m in cfg.methods], [d.name for d in cfg.datasets])
        git = git_state()
        with mlflow.start_run(run_name=run_name or f"{','.join(m.id for m in cfg.methods)} on "
                                                   f"{','.join(d.name for d in cfg.datasets)}") as run:
            mlflow.log_params(sweep_params(cfg))
            mlflow.set_tags({"fsadbench.version": __version__, "git.commit": str(git.get("commit")),
                             "git.dirty": str(git.get("dirty")),
                             "random_weights": str(bool(not df.empty and df["random_weights"].any()))})
            values: dict[str, float] = {}
            if summary is not None:
                values.update({"cells/computed": summary.computed, "cells/skipped": summary.skipped,
                               "cells/failed": summary.failed, "cells/not_applicable": summary.not_applicable,
                               "encoder/images": summary.encoded_images})
            rows = summary_long(df, metrics)
            for r in rows.itertuples():
                for stat in ("mean", "std"):
                    v = getattr(r, stat)
                    if v == v:  # NaN (undefined) is not logged
                        values[metric_key(r.metric, r.dataset, r.method, r.variant, f"k{r.shots}", stat)] = float(v)
            if values:
                mlflow.log_metrics(values)
            with tempfile.TemporaryDirectory() as tmp:
                files = {"tables.md": report_text(cfg.results_dir, "markdown", list(metrics),
                                                  [m.id for m in cfg.methods], [d.name for d in cfg.datasets]),
                         "summary.csv": to_csv(rows), "records.csv": load_results(cfg.results_dir).to_csv(index=False)}
                for name, text in files.items():
                    if text:
                        (Path(tmp) / name).write_text(text)
                        mlflow.log_artifact(str(Path(tmp) / name))
            manifest = Path(cfg.results_dir) / "run.json"
            if manifest.is_file():
                mlflow.log_artifact(str(manifest))
            return run.info.run_id
    finally:
        if file_store:
            if old is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = old
