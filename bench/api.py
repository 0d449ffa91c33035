"""The Python API for notebooks and scripts (``import fsadbench`` stays light: these load on first use).

    import fsadbench

    df = fsadbench.load_results("results/run")          # one row per cell and variant
    df.groupby(["method", "variant", "shots"])["pixel_auroc"].mean()

    res = fsadbench.run({"methods": ["memory"], "datasets": ["synthetic"], "shots": [1], "seeds": [0],
                         "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"},
                         "results_dir": "results/nb"})
    res.frame()                                         # = load_results(res.results_dir)
    print(res.table("pixel_auroc"))                     # the Markdown table of `report`

``load_results`` columns: the cell (``method`` id, ``dataset``, ``category``, ``shots``, ``seed``),
``variant``, ``method_name``, ``label``, ``options`` (the resolved method options, a dict), every
metric as a fraction in [0, 1] (NaN when undefined: ``pixel_auroc``, ``image_auroc``, ``aupro``,
``pixel_ap``, ``pixel_f1_max``, ``image_ap``, ``image_f1_max``), the backbone (``backbone``,
``pretrained``, ``random_weights``), the protocol (``eval_size``, ``sigma``, ``max_test_images``,
``protocol_version``, ``metric_version``), ``n_test``, ``encoded`` (encoder passes), ``total_s``,
and the provenance (``commit``, ``dirty``, ``time_utc``) plus ``config_hash``. Only successful
cells have rows (failed and not-applicable cells have no metrics); ``Results.records`` has all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from fsadbench.results.records import Record
    from fsadbench.run.config import RunConfig

METRIC_COLUMNS = ("pixel_auroc", "image_auroc", "aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max")
COLUMNS = ("method", "dataset", "category", "shots", "seed", "variant", "method_name", "label", "options",
           *METRIC_COLUMNS, "backbone", "pretrained", "random_weights", "eval_size", "sigma", "max_test_images",
           "protocol_version", "metric_version", "n_test", "encoded", "total_s", "commit", "dirty", "time_utc",
           "config_hash")


def results_frame(records: Iterable["Record"]) -> "pd.DataFrame":
    """The :func:`load_results` table of any records (one row per successful cell and variant)."""
    import pandas as pd

    from fsadbench.results.records import STATUS_OK

    rows = []
    for r in records:
        if r.status != STATUS_OK:
            continue
        git = (r.provenance or {}).get("git") or {}
        p, b = r.protocol or {}, r.backbone or {}
        for variant, m in r.metrics.items():
            rows.append({
                **r.key, "variant": variant, "method_name": r.method.get("name"),
                "label": r.method.get("label") or r.key["method"], "options": dict(r.method.get("options") or {}),
                **{k: m.get(k) for k in METRIC_COLUMNS},
                "backbone": b.get("model"), "pretrained": b.get("pretrained"),
                "random_weights": bool(b.get("random_weights")), "eval_size": p.get("eval_size"),
                "sigma": p.get("sigma_used", p.get("sigma")), "max_test_images": p.get("max_test_images"),
                "protocol_version": p.get("version"), "metric_version": r.metric_version, "n_test": r.n_test,
                "encoded": (r.encoder or {}).get("encoded", 0), "total_s": (r.timings or {}).get("total_s"),
                "commit": git.get("commit"), "dirty": git.get("dirty"),
                "time_utc": (r.provenance or {}).get("time_utc"), "config_hash": r.config_hash})
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for k in METRIC_COLUMNS:
        df[k] = pd.to_numeric(df[k], errors="coerce")
    return df


def load_results(folder: str | Path) -> "pd.DataFrame":
    """Records of a results folder as a pandas DataFrame, one row per cell and variant (see the module doc).

    Metrics are fractions in [0, 1], as the records store them (one seed, one category: nothing aggregated).
    The tables and ``report --format csv|json`` print percentages instead (``mean`` and ``std`` over seeds of
    the mean over categories, in %, the papers' unit): ``100 * df.groupby([...]).pixel_auroc.mean()`` is the
    CSV's ``mean`` for the same cells."""
    from fsadbench.core.errors import ConfigError
    from fsadbench.results.records import RecordStore

    store = RecordStore(folder)
    if not store.records_dir.is_dir():
        raise ConfigError(f"load_results({str(folder)!r}): no records/ folder there; run a sweep into it first")
    return results_frame(store)


@dataclass
class Results:
    """What :func:`run` returns: the results folder, the run's summary and the config it ran."""

    results_dir: Path
    summary: Any = None  # fsadbench.run.summary.RunSummary: computed / skipped / failed counts
    config: "RunConfig | None" = None

    @property
    def records(self) -> list["Record"]:
        """Every record of the folder (failed and not-applicable cells included)."""
        from fsadbench.results.records import RecordStore

        return RecordStore(self.results_dir).records()

    def frame(self) -> "pd.DataFrame":
        return load_results(self.results_dir)

    def table(self, metric: str | Sequence[str] = "pixel_auroc", fmt: str = "markdown",
              per_category: bool = False, whole_folder: bool = False, notes: str = "full") -> str:
        """The ``report`` command's output (markdown, latex, csv, json or html) for the cells this run asked
        for (its methods, datasets, categories, shots, seeds), or every record of the folder
        (``whole_folder=True``, or a Results without a config); ``notes``: the method notes under the tables,
        ``full``, ``short`` (one line counting them) or ``none``."""
        from fsadbench.reports.export import report_text
        from fsadbench.run.api import invocation_scope

        scope = invocation_scope(self.config) if self.config is not None and not whole_folder else None
        return report_text(self.results_dir, fmt, metric, per_category=per_category, scope=scope, notes=notes)

    @property
    def ok(self) -> bool:
        return self.summary is None or not self.summary.failed

    def _repr_markdown_(self) -> str:  # Jupyter shows the table
        return self.table() or f"(no successful records in {self.results_dir})"


def person_watches() -> bool:
    """A person sees the progress: stderr is a terminal, or this runs in a Jupyter kernel."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def run(config: "RunConfig | Mapping[str, Any] | str | Path", executor: str = "local", force: bool = False,
        progress: bool | None = None, log: Any = None, **executor_options: Any) -> Results:
    """Run a sweep (resuming cells already in its results folder) and return its :class:`Results`.

    ``config``: a RunConfig, a mapping with the YAML config's keys (docs/config.md), or a YAML file's path.
    ``executor`` and ``executor_options`` as for the command line (``"gpus", workers=2``; ``"slurm",
    partition="gpu"``). ``progress``: the progress bar (cells, and inside a cell its stage with an ETA);
    default on where a person watches (a terminal, a notebook), off in scripts whose stderr is a file.
    Called as ``fsadbench.run(config)``.
    """
    from fsadbench.run.api import sweep

    progress = person_watches() if progress is None else progress
    cfg = as_config(config)
    summary = sweep(cfg, executor, force=force, log=log, progress=progress, **executor_options)
    return Results(Path(cfg.results_dir), summary, cfg)


def as_config(config: "RunConfig | Mapping[str, Any] | str | Path") -> "RunConfig":
    """A RunConfig from a RunConfig, a mapping with the YAML config's keys, or a YAML file's path."""
    from fsadbench.run.config import RunConfig, apply_mapping, build_config

    if isinstance(config, RunConfig):
        return config
    if isinstance(config, (str, Path)):
        return build_config(config_file=str(config))
    cfg = apply_mapping(RunConfig(), dict(config), "fsadbench.run(config)")
    if not cfg.methods or not cfg.datasets or not cfg.shots or not cfg.seeds:
        from fsadbench.core.errors import ConfigError

        raise ConfigError("fsadbench.run(config): needs at least one method, dataset, shot count and seed")
    return cfg
