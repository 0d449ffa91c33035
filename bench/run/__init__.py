"""The run: configuration, planning, resources, the cell function, executors, claims and status.

``config`` resolves YAML + presets + CLI into a RunConfig; ``plan`` turns it
into jobs (one fit each) and drops the cells already done; ``identity`` holds
the cell hash and the one sigma resolution; ``resources`` builds datasets,
backbone and feature store lazily, once per process; ``cell`` runs one job
(``fit`` fits, ``cellrecord`` builds records, ``batching`` is the out-of-memory
batch policy); ``executors`` decide where jobs run (local, process pool,
SLURM) around one ``CellWorker``; ``claims`` are the lock files that let
several runners share a results folder; ``summary`` counts a sweep from the
record store; ``signals``, ``hygiene`` and ``preflight`` handle interrupts,
orphaned workers and unwritable folders; ``status`` reads a folder without
building models. ``sweep(cfg, executor="local")`` (from ``api``) is the
library entry point; it is imported lazily so that ``fsadbench.run.config``
stays light.
"""

import importlib
import sys
import types
from typing import Any

__all__ = ["sweep", "RunSummary"]


class _CallablePackage(types.ModuleType):
    def __call__(self, config: Any, **kwargs: Any) -> Any:
        """``fsadbench.run(config) -> Results``: the notebook entry point (:func:`fsadbench.api.run`)."""
        return importlib.import_module("fsadbench.api").run(config, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage  # the package stays a module; it is also callable


def __getattr__(name: str) -> Any:
    if name == "sweep":
        from fsadbench.run.api import sweep

        return sweep
    if name == "RunSummary":
        from fsadbench.run.summary import RunSummary

        return RunSummary
    raise AttributeError(f"module 'fsadbench.run' has no attribute {name!r}")
