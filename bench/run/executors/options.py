"""Choosing an executor: by name for library use, or from the ``--executor ...`` command-line flags.

:func:`make_executor` builds one by name (``local``, ``gpus``, ``slurm``) with
keyword options; :func:`add_executor_args` adds the executor flags to a
parser and :func:`executor_from_args` turns the parsed flags into an executor.
"""

from __future__ import annotations

import argparse
from typing import Any

from fsadbench.core.errors import ConfigError
from fsadbench.run.claims import DEFAULT_LEASE_S
from fsadbench.run.executors.base import ClaimOptions, Executor
from fsadbench.run.executors.local import LocalExecutor
from fsadbench.run.executors.pool import GpuPoolExecutor
from fsadbench.run.executors.slurm import SlurmExecutor

EXECUTORS = ("local", "gpus", "slurm")


def make_executor(name: str, **options: Any) -> Executor:
    """Build an executor by name (``local``, ``gpus``, ``slurm``) for library use."""
    claims = options.pop("claims", None)
    if name == "local":
        return LocalExecutor(claims, **options)
    if name == "gpus":
        return GpuPoolExecutor(claims=claims, **options)
    if name == "slurm":
        return SlurmExecutor(claims=claims, **options)
    raise ConfigError(f"executor {name!r}: unknown; choose one of {', '.join(EXECUTORS)}")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("executors (where cells run; every executor writes the same records)")
    g.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: sequential here; gpus: one worker per visible GPU (--workers CPU processes when "
                        "there is none); slurm: a job array through submitit")
    g.add_argument("--workers", type=int, help="gpus executor: number of worker processes")
    g.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local", "debug"],
                   help="slurm executor back end: slurm, or local processes to try the array without a cluster")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-time", type=int, default=240, help="minutes per array task")
    g.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per array task")
    g.add_argument("--slurm-cpus", type=int, help="CPUs per array task")
    g.add_argument("--slurm-mem-gb", type=float, help="memory per array task (GB)")
    g.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once")
    g.add_argument("--slurm-no-wait", action="store_true", help="submit and return (follow with `status`)")
    g.add_argument("--no-claims", action="store_true",
                   help="do not write claim files (only when a single runner uses the results folder)")
    g.add_argument("--lease", type=float, default=DEFAULT_LEASE_S,
                   help="seconds after which a claim without heartbeat is stale (default %(default)s)")


def executor_from_args(a: argparse.Namespace) -> Executor:
    if a.lease <= 0:
        raise ConfigError(f"--lease {a.lease}: seconds, > 0")
    claims = ClaimOptions(enabled=not a.no_claims, lease_s=a.lease)
    if a.executor == "local":
        return LocalExecutor(claims)
    if a.executor == "gpus":
        return GpuPoolExecutor(a.workers, claims)
    return SlurmExecutor(cluster=a.slurm_cluster, partition=a.slurm_partition, time_min=a.slurm_time,
                         gpus=a.slurm_gpus, cpus=a.slurm_cpus, mem_gb=a.slurm_mem_gb,
                         array_parallelism=a.slurm_array_parallelism, wait=not a.slurm_no_wait, claims=claims)
