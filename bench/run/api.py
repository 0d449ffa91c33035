"""The library entry point of the run layer: ``fsadbench.run.sweep(cfg)``.

    from fsadbench.run import sweep
    from fsadbench.run.config import build_config

    summary = sweep(build_config("smoke"), executor="local")
    print(summary.line())

It is :meth:`fsadbench.run.executors.base.Executor.run` on the named executor
(or an executor object), the same path the command line takes.
"""

from __future__ import annotations

from typing import Any, Callable

from fsadbench.results.coverage import Scope
from fsadbench.run.config import RunConfig
from fsadbench.run.executors import Executor, make_executor
from fsadbench.run.summary import RunSummary


def sweep(cfg: RunConfig, executor: str | Executor = "local", force: bool = False,
          log: Callable[[str], None] | None = None, progress: bool = False, **options: Any) -> RunSummary:
    """Run every cell of ``cfg`` without a record (all with ``force``); ``options`` go to the executor
    (e.g. ``workers=2`` for ``gpus``, ``cluster="local"`` for ``slurm``)."""
    ex = executor if isinstance(executor, Executor) else make_executor(executor, **options)
    return ex.run(cfg, force=force, log=log, progress=progress)


def invocation_scope(cfg: RunConfig) -> Scope:
    """The cells ``cfg`` asks for (its methods, datasets with their listed categories, shots, seeds): what
    the table after a run shows, so earlier runs in the same folder add neither rows nor footnotes."""
    return Scope(tuple(m.id for m in cfg.methods),
                 tuple((d.name, tuple(d.categories) if d.categories else None) for d in cfg.datasets),
                 tuple(cfg.shots), tuple(cfg.seeds))


def invocation_metrics(cfg: RunConfig) -> list[str]:
    """The metrics of the table after a run: pixel AUROC, and image AUROC too when a method of ``cfg`` is
    image-level (``Method.produces == ("image",)``: its pixel entries say "n/a, image-level method")."""
    from fsadbench.run.identity import resolve_method

    image_level = any(not resolve_method(m)[0].makes_maps() for m in cfg.methods)
    return ["pixel_auroc", "image_auroc"] if image_level else ["pixel_auroc"]
