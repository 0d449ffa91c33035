"""Executors: where the cells of a sweep run. One interface, three back ends.

* ``local`` (:mod:`.local`): sequential, in this process (the default).
* ``gpus`` (:mod:`.pool`): one worker process per visible GPU, or ``--workers N``
  CPU processes when there is none; each worker builds its own resources on
  its device.
* ``slurm`` (:mod:`.slurm`): a SLURM job array through submitit;
  ``--slurm-cluster local`` runs the same array as local processes.

All three run :meth:`.base.Executor.run` (plan, resume, checks, summary from
the record store) and call the same cell function through a
:class:`.worker.CellWorker` (claims, resume re-check, out-of-memory retry), so
they write the same records to the same store. Grouping: the jobs of one
(dataset, category) are one *group* and a group runs in one process, in plan
order, so that process encodes each test image once; a multi-class fit is a
group of its own. Workers share the disk feature cache, which writes entries
atomically. A worker killed mid-cell leaves no partial record (records are
written atomically) and a claim that the next runner sees as stale, so a rerun
redoes exactly the cells that have no record. :mod:`.options` builds an
executor by name or from the ``--executor ...`` flags.
"""

from fsadbench.run.executors.base import RUN_MANIFEST, ClaimOptions, Executor, write_run_manifest
from fsadbench.run.executors.local import LocalExecutor
from fsadbench.run.executors.options import EXECUTORS, add_executor_args, executor_from_args, make_executor
from fsadbench.run.executors.pool import GpuPoolExecutor, visible_gpus
from fsadbench.run.executors.slurm import SlurmExecutor
from fsadbench.run.executors.worker import CellWorker

__all__ = ["EXECUTORS", "RUN_MANIFEST", "CellWorker", "ClaimOptions", "Executor", "GpuPoolExecutor",
           "LocalExecutor", "SlurmExecutor", "add_executor_args", "executor_from_args", "make_executor",
           "visible_gpus", "write_run_manifest"]
