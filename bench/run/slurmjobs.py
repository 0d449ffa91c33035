"""SLURM beside submitit: the request check, job states without accounting, the arrays a sweep submitted.

* :func:`check_request` asks ``sbatch --test-only`` whether the cluster can ever
  run one array task as asked (partition, CPUs, memory, GPUs, time); when not, a
  :class:`ConfigError` gives SLURM's reason and the partition's largest node in
  one line, before anything is submitted. :func:`refusal` turns a failed
  ``sbatch`` into the same line.
* :func:`accounting_off` probes ``sacct`` once. Without accounting (no slurmdbd:
  ``sacct`` fails) submitit's watcher would fail and warn on every poll, and a
  task that ended without a result (cancelled, killed) would look unfinished
  for ever; :class:`QueueWatcher` reads the states from ``squeue`` instead (a
  job no longer listed has ended).
* :func:`record_array` keeps the array ids a sweep submitted in
  ``<results>/slurm_jobs.json``; ``status`` reads them (:func:`read_arrays`) and
  shows each task's state from :func:`queue_states`.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.core.io import atomic_write_text

JOBS_FILE = "slurm_jobs.json"
MAX_ARRAYS = 20  # arrays remembered per results folder
ENDED = "ENDED"  # the state of a job squeue no longer lists (it ended longer ago than MinJobAge)
# submitit's states of a job that has not ended (core.InfoWatcher.is_done)
UNFINISHED = ("READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", "CONFIGURING",
              "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING")
SQUEUE_FORMAT = "%i|%T|%N|%r"
TIMEOUT_S = 30.0  # a SLURM command that has not answered by then counts as no answer


def slurm_cmd(argv: Sequence[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a SLURM command; 127 when it is missing or does not answer."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return p.returncode, p.stdout, p.stderr


def _reasons(text: str) -> str:
    """SLURM's reasons in ``text`` (sbatch's ``error:`` and ``allocation failure:`` lines), distinct, in order."""
    out: list[str] = []
    for line in text.splitlines():
        for mark in ("error:", "allocation failure:"):
            if mark in line:
                why = line.split(mark, 1)[1].strip()
                why = why.removeprefix("Batch job submission failed:").strip()
                if why and why not in out:
                    out.append(why)
                break
    return "; ".join(out) or (text.strip().splitlines() or ["no reason given"])[-1]


def largest_node(partition: str | None) -> str:
    """The partition's largest node as sinfo states it: 'partition debug: nodes up to 2 CPUs, 24105 MB, no GPUs'
    (an unknown partition: the partitions there are)."""
    argv = ["sinfo", "-h", "-o", "%P|%c|%m|%G"] + (["-p", partition] if partition else [])
    rc, out, _ = slurm_cmd(argv)
    rows = [r.split("|") for r in out.splitlines() if r.count("|") == 3]
    if rc or not rows:
        rc, out, _ = slurm_cmd(["sinfo", "-h", "-o", "%P"])
        names = sorted({p.strip().replace("*", " (default)") for p in out.split()}) if not rc else []
        return f"partitions here: {', '.join(names)}" if names else ""
    if not partition:
        rows = [r for r in rows if r[0].endswith("*")] or rows  # the default partition
    name = rows[0][0].rstrip("*")
    cpus, mem = _most(r[1] for r in rows), _most(r[2] for r in rows)
    gres = sorted({g for r in rows for g in r[3].split(",") if g and g != "(null)"})
    return f"partition {name}: nodes up to {cpus} CPUs, {mem} MB, {', '.join(gres) or 'no GPUs'}"


def _most(values: Iterable[str]) -> str:
    """The largest of sinfo's counts ('2', '32+'), or '?' when none is a number."""
    nums = [int(v.rstrip("+")) for v in values if v.rstrip("+").isdigit()]
    return str(max(nums)) if nums else "?"


def refusal(text: str, asked: str, partition: str | None) -> ConfigError:
    node = largest_node(partition)
    return ConfigError(f"--executor slurm: SLURM refuses the array tasks ({asked}): {_reasons(text)}"
                       f"{'; ' + node if node else ''}; change --slurm-partition / --slurm-cpus / "
                       f"--slurm-mem-gb / --slurm-gpus / --slurm-time")


def check_request(flags: Sequence[str], asked: str, partition: str | None) -> None:
    """Raise the one-line refusal when ``sbatch --test-only FLAGS`` says the cluster cannot run such a task."""
    rc, out, err = slurm_cmd(["sbatch", "--test-only", *flags, "--wrap", "true"])
    if rc:
        raise refusal(err + out, asked, partition)


def accounting_off() -> str | None:
    """None when ``sacct`` answers; otherwise why not (its own line, e.g. 'Slurm accounting storage is disabled')."""
    if shutil.which("sacct") is None:
        return "sacct is not on PATH"
    rc, out, err = slurm_cmd(["sacct", "--noheader", "-X", "-o", "JobID", "-j", "1"])
    return ((err or out).strip().splitlines() or [f"sacct exited with status {rc}"])[-1] if rc else None


def queue_states(job_ids: Iterable[str]) -> dict[str, dict[str, str]] | None:
    """``{"12_0": {"State": "RUNNING", "NodeList": "vm", "Reason": "None"}, ...}`` for every task squeue still
    lists of these jobs (finished ones too, for MinJobAge); None when squeue cannot answer."""
    ids = sorted({str(j).split("_")[0] for j in job_ids})
    if not ids:
        return {}
    rc, out, err = slurm_cmd(["squeue", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT, "-j", ",".join(ids)])
    if rc:
        return {} if "Invalid job id" in err else None  # every id gone from slurmctld's memory: all ended
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            states[parts[0]] = {"State": parts[1].split()[0], "NodeList": parts[2], "Reason": parts[3]}
    return states


class QueueWatcher:
    """submitit's job watcher (the ``watcher`` of a ``SlurmJob``) reading ``squeue`` instead of ``sacct``.

    Polls at most every ``poll_s`` seconds (any ``mode`` but ``"cache"``); a task squeue no longer lists
    has ``ENDED``; when squeue does not answer the last states are kept, silently.
    """

    def __init__(self, poll_s: float = 5.0):
        self.poll_s = poll_s
        self.registered: set[str] = set()
        self.info: dict[str, dict[str, str]] = {}
        self.last = -math.inf
        self.num_calls = 0

    def register_job(self, job_id: str) -> None:
        self.registered.add(str(job_id))

    def clear(self) -> None:
        self.info, self.last = {}, -math.inf

    def update(self) -> None:
        todo = [j for j in self.registered if self.info.get(j, {}).get("State", "UNKNOWN") in UNFINISHED]
        self.last = time.monotonic()
        if not todo:
            return
        self.num_calls += 1
        got = queue_states(todo)
        if got is None:
            return
        for j in todo:
            self.info[j] = got.get(j) or {"State": ENDED, "NodeList": "", "Reason": "no longer listed by squeue"}

    def get_info(self, job_id: str, mode: str = "standard") -> dict[str, str]:
        self.register_job(job_id)
        if mode == "force" or (mode != "cache" and time.monotonic() - self.last >= self.poll_s):
            self.update()
        return self.info.get(str(job_id), {})

    def get_state(self, job_id: str, mode: str = "standard") -> str:
        return self.get_info(job_id, mode).get("State") or "UNKNOWN"

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        return self.get_state(job_id, mode).upper() not in UNFINISHED


def record_array(results_dir: str | Path, tasks: Sequence[tuple[str, str]]) -> None:
    """Add a submission, its tasks as (SLURM job id, label), to ``<results>/slurm_jobs.json`` (one task is
    submitted as a plain job, ``13``; several as an array, ``12_0``, ``12_1``, ...)."""
    arrays = read_arrays(results_dir)[-(MAX_ARRAYS - 1):]
    arrays.append({"array": str(tasks[0][0]).split("_")[0], "submitted": time.time(),
                   "tasks": [{"job": str(j), "label": str(label)} for j, label in tasks]})
    atomic_write_text(Path(results_dir) / JOBS_FILE, json.dumps({"arrays": arrays}))


def read_arrays(results_dir: str | Path) -> list[dict[str, Any]]:
    """The arrays recorded in ``<results>/slurm_jobs.json``, oldest first ([] when none or unreadable)."""
    try:
        arrays = json.loads((Path(results_dir) / JOBS_FILE).read_text())["arrays"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [a for a in arrays if isinstance(a, dict) and a.get("array") and isinstance(a.get("tasks"), list)
            and all(isinstance(t, dict) and t.get("job") for t in a["tasks"])]


def array_states(results_dir: str | Path) -> list[dict[str, Any]]:
    """For ``status``: the latest recorded array and every other one squeue still lists, oldest first, each as
    ``{"array", "submitted", "tasks": [{"job", "label", "State", "NodeList", "Reason"}]}``; a state is
    ``ENDED`` when squeue no longer lists the task and ``?`` when squeue cannot answer (e.g. not on PATH)."""
    arrays = read_arrays(results_dir)
    if not arrays:
        return []
    got = queue_states([a["array"] for a in arrays])
    shown = []
    for i, a in enumerate(arrays):
        tasks = []
        for t in a["tasks"]:
            info = (got or {}).get(t["job"]) or {"State": ENDED if got is not None else "?", "NodeList": "",
                                                 "Reason": ""}
            tasks.append({"job": t["job"], "label": str(t.get("label", "")), **info})
        if i == len(arrays) - 1 or any(t["State"] in UNFINISHED for t in tasks):
            shown.append({"array": a["array"], "submitted": a.get("submitted", 0.0), "tasks": tasks})
    return shown
