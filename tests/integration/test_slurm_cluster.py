"""The ``slurm`` executor on a real SLURM cluster (issue 35): the test cluster of tools/slurm_test_cluster.sh.

One node, partition ``debug``, no GPUs, accounting off. Without a cluster (no
``sinfo``, or no node up in ``debug``) these tests skip and say why; in CI
(``CI=true``, where .ci/run starts the cluster first) they fail instead.

* the smoke preset through ``--executor slurm`` gives the records of a local run
  (``compare --strict`` against results/baselines/smoke, which the gate test
  proves equal to a fresh local run), and accounting off is said once;
* ``scancel`` of one array task mid-cell loses only that cell; its claim does
  not outlive the task; a rerun computes only that cell, no duplicate record;
* ``scontrol requeue`` of a task mid-cell: it runs again and skips its finished
  cells (their records stay byte for byte);
* ``--slurm-no-wait`` returns while the array runs; ``status`` shows the array's
  task ids and SLURM states beside done / running / pending cells;
* a bad partition, too many CPUs, too much memory or a GPU on a node without
  one: refused in one line with SLURM's reason, nothing submitted.

Sweeps are a few cells on the tiny random backbone; the cell that a test
interrupts is an ``apt`` cell (100 epochs: seconds), found by its live claim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.run.claims import ClaimStore
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.executors import SlurmExecutor
from fsadbench.run.slurmjobs import queue_states, read_arrays, slurm_cmd

pytestmark = pytest.mark.slurm_cluster

REPO = Path(__file__).resolve().parents[2]
PARTITION = "debug"
SYN = {"size": 120, "n_train": 4, "n_test_good": 3, "n_test_bad": 3}
SLURM_FLAGS = ["--executor", "slurm", "--slurm-partition", PARTITION, "--slurm-gpus", "0", "--slurm-time", "15"]
FINAL = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "ENDED", "PREEMPTED")


def cluster_problem() -> str | None:
    """Why there is no usable test cluster here (None: there is one)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM here (sinfo / sbatch not on PATH); start a test cluster with tools/slurm_test_cluster.sh"
    rc, out, err = slurm_cmd(["sinfo", "-h", "-p", PARTITION, "-o", "%t"])
    if rc:
        return f"sinfo does not answer ({err.strip() or rc}); start the cluster with tools/slurm_test_cluster.sh"
    states = out.split()
    if not any(s in ("idle", "mix", "alloc") for s in states):
        return f"partition {PARTITION!r} has no node up (sinfo states: {states or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = cluster_problem()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the SLURM test cluster must be up (.ci/run starts it): {why}")
        pytest.skip(why)


@pytest.fixture()
def sweep(tmp_path, cluster):
    """A folder for one sweep; at the end every array it submitted is cancelled and every driver killed."""
    procs: list[subprocess.Popen] = []
    yield tmp_path, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for a in read_arrays(tmp_path / "res"):
        slurm_cmd(["scancel", a["array"]])


def _config(tmp_path: Path, methods: list[str], seeds=(0,)) -> Path:
    cfg = {"methods": methods, "datasets": [{"name": "synthetic", "categories": ["stripes", "disc"], "options": SYN}],
           "shots": [1], "seeds": list(seeds), "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"},
           "protocol": {"eval_size": 48}, "results_dir": str(tmp_path / "res"),
           "cache_dir": str(tmp_path / "cache"), "device": "cpu", "batch_size": 8}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_bench.py"), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _start(tmp_path: Path, procs: list, *args: str) -> subprocess.Popen:
    p = subprocess.Popen(_cli("run", "--config", str(tmp_path / "cfg.yaml"), "--no-progress", *SLURM_FLAGS, *args),
                         cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=timeout)


def _wait(cond, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _records(res: Path) -> dict[str, bytes]:
    return {str(p.relative_to(res / "records")): p.read_bytes() for p in sorted((res / "records").rglob("*.json"))
            if not p.name.startswith(".tmp-")} if (res / "records").is_dir() else {}


def _claimed(res: Path, cell: str) -> bool:
    """A claim naming this cell (``apt/synthetic/disc/k1_s0.json``) exists and is live."""
    return any(cell in c.cells and c.stale_reason(time.time()) is None for c in ClaimStore(str(res)))


def _task_of(res: Path, category: str) -> str:
    """The SLURM job id (``ARRAY_TASK``) of the array task computing ``category``."""
    a = _wait(lambda: read_arrays(res), 60, "slurm_jobs.json")[-1]
    return next(t["job"] for t in a["tasks"] if t["label"].startswith(f"synthetic/{category} "))


def _state(job: str) -> str:
    return ((queue_states([job]) or {}).get(job) or {"State": "ENDED"})["State"]


def _finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


# -- the smoke preset -----------------------------------------------------------------------------
def test_smoke_preset_through_slurm_equals_local_run_and_says_accounting_off_once(sweep):
    tmp_path, _ = sweep
    res = tmp_path / "res"
    p = _run(tmp_path, "run", "--preset", "smoke", "--results-dir", str(res), "--cache-dir", str(tmp_path / "cache"),
             "--no-progress", *SLURM_FLAGS, timeout=420)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "24 cell(s) computed, 0 already done, 0 failed" in p.stderr, p.stderr[-3000:]
    # without accounting: one line says so, and submitit's sacct warnings (each on stdout and stderr) are gone
    lines = (p.stdout + p.stderr).splitlines()
    assert len([ln for ln in lines if "accounting" in ln.lower()]) == 1, p.stderr
    assert not [ln for ln in lines if "sacct" in ln or "WARNING" in ln], p.stderr
    # the same records as a local run: the committed baseline, which the gate test reproduces locally
    c = _run(tmp_path, "compare", str(REPO / "results" / "baselines" / "smoke"), str(res), "--strict", "--tol", "0.001")
    assert c.returncode == 0 and "Verdict: PASS" in c.stdout, c.stdout[-3000:]
    assert "24 record(s)" in c.stdout


# -- scancel / requeue mid-cell --------------------------------------------------------------------

def _inside_the_disc_apt_cell(sweep):
    """Start the memory + apt sweep and wait until the disc task finished its memory cell and is inside its
    apt cell: (tmp_path, procs, results folder, the waiting run, that task's job id)."""
    tmp_path, procs = sweep
    _config(tmp_path, ["memory", "apt"])
    res = tmp_path / "res"
    p = _start(tmp_path, procs)
    _wait(lambda: "memory/synthetic/disc/k1_s0.json" in _records(res) and _claimed(res, "apt/synthetic/disc/k1_s0.json"),
          180, "the disc task inside its apt cell")
    return tmp_path, procs, res, p, _task_of(res, "disc")


def test_scancel_of_one_task_loses_only_its_unfinished_cell_and_a_rerun_resumes(sweep):
    tmp_path, procs, res, p, job = _inside_the_disc_apt_cell(sweep)
    assert slurm_cmd(["scancel", job])[0] == 0
    rc, out, err = _finish(p)
    # the waiting run saw the cancelled task end (squeue, no accounting) and lost only its unfinished cell
    assert rc != 0 and "1 failed" in err, err[-3000:]
    assert f"array task {job} failed" in err, err[-3000:]
    before = _records(res)
    assert sorted(before) == ["apt/synthetic/stripes/k1_s0.json", "memory/synthetic/disc/k1_s0.json",
                              "memory/synthetic/stripes/k1_s0.json"]
    # the cancelled task's claim did not outlive it (released on SIGTERM, or stale: its pid is gone)
    assert not _claimed(res, "apt/synthetic/disc/k1_s0.json")
    assert _state(job) in ("CANCELLED", "ENDED")
    # a rerun computes exactly the lost cell; the others stay byte for byte, no record twice
    rc, out, err = _finish(_start(tmp_path, procs))
    assert rc == 0 and "1 cell(s) computed, 3 already done, 0 failed" in err, err[-3000:]
    after = _records(res)
    assert len(after) == 4 and {k: after[k] for k in before} == before
    assert not (res / "superseded").exists()


def test_requeued_task_resumes_without_recomputing_finished_cells(sweep):
    tmp_path, procs, res, p, job = _inside_the_disc_apt_cell(sweep)
    done_before = _records(res)["memory/synthetic/disc/k1_s0.json"]
    assert slurm_cmd(["scontrol", "requeue", job])[0] == 0  # what preemption does
    # a requeued job waits a while before it may start again; let it start now
    _wait(lambda: _state(job) == "PENDING", 60, f"{job} back in the queue")
    assert slurm_cmd(["scontrol", "update", f"jobid={job}", "StartTime=now"])[0] == 0
    rc, out, err = _finish(p)
    # the rerun task found its memory cell done (counted as already done) and computed the apt cell again
    assert rc == 0 and "3 cell(s) computed, 1 already done, 0 failed" in err, err[-3000:]
    recs = _records(res)
    assert len(recs) == 4 and recs["memory/synthetic/disc/k1_s0.json"] == done_before  # not recomputed
    rc, show, _ = slurm_cmd(["scontrol", "show", "job", job])
    assert "Restarts=1" in show, show
    assert not list((res / "claims").rglob("*.claim"))


# -- --slurm-no-wait and status --------------------------------------------------------------------
def test_no_wait_returns_at_once_and_status_shows_slurm_job_ids_and_states(sweep):
    tmp_path, _ = sweep
    _config(tmp_path, ["memory"], seeds=(0, 1))
    res = tmp_path / "res"
    # this test holds the claim of one disc cell: its task cannot finish while the test holds it
    held = ClaimStore(str(res), lease_s=600, owner="test")
    claim = held.acquire(Path("memory/synthetic/disc/k1_s1.json"), ["memory/synthetic/disc/k1_s1.json"])
    assert claim is not None
    try:
        t0 = time.monotonic()
        p = _run(tmp_path, "run", "--config", str(tmp_path / "cfg.yaml"), "--no-progress", *SLURM_FLAGS,
                 "--slurm-no-wait")
        assert p.returncode == 0 and "not waiting" in p.stderr, p.stderr[-3000:]
        array = read_arrays(res)[-1]["array"]
        disc = _task_of(res, "disc")
        assert _state(disc) in ("PENDING", "RUNNING")  # returned with the array still at work
        assert time.monotonic() - t0 < 120
        _wait(lambda: _state(disc) == "RUNNING" and "memory/synthetic/disc/k1_s0.json" in _records(res), 120,
              "the disc task waiting for the held cell")
        s = _run(tmp_path, "status", "--results-dir", str(res), "--show", "running,pending")
        assert s.returncode == 0, s.stderr
        assert f"SLURM array {array}" in s.stdout and f"{disc}  RUNNING on " in s.stdout, s.stdout
        assert "0 failed" in s.stdout, s.stdout
        assert "  memory | synthetic/disc | 1-shot | seed 1  [test on " in s.stdout.split("running:")[1], s.stdout
    finally:
        held.release(claim)
    jobs = [t["job"] for t in read_arrays(res)[-1]["tasks"]]
    assert sorted(jobs) == [f"{array}_0", f"{array}_1"]
    _wait(lambda: all(_state(j) in FINAL for j in jobs), 180, "both array tasks to end")
    s = _run(tmp_path, "status", "--results-dir", str(res), "--json")
    got = json.loads(s.stdout)
    assert got["counts"] == {"done": 4, "running": 0, "failed": 0, "pending": 0}
    assert [t["State"] for t in got["slurm_arrays"][-1]["tasks"]] == ["COMPLETED", "COMPLETED"]


# -- refused before any cell -----------------------------------------------------------------------
def _tiny(tmp_path: Path) -> RunConfig:
    return RunConfig(methods=[MethodSpec("memory")],
                     datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))], shots=[1],
                     seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=48),
                     results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu")


def _all_jobs() -> set[str]:
    return set(slurm_cmd(["squeue", "-h", "-t", "all", "-o", "%i"])[1].split())


@pytest.mark.parametrize("options, reason", [
    ({"partition": "no-such-partition", "gpus": 0}, "invalid partition specified: no-such-partition"),
    ({"partition": PARTITION, "gpus": 0, "cpus": 512}, "Requested node configuration is not available"),
    ({"partition": PARTITION, "gpus": 0, "mem_gb": 100000}, "Requested node configuration is not available"),
    ({"partition": PARTITION, "gpus": 1}, "Invalid generic resource (gres) specification"),
])
def test_impossible_request_is_refused_in_one_line_before_any_cell(sweep, options, reason):
    tmp_path, _ = sweep
    cfg = _tiny(tmp_path)
    jobs_before = _all_jobs()
    with pytest.raises(ConfigError) as e:
        SlurmExecutor(time_min=5, **options).run(cfg)
    msg = str(e.value)
    assert "\n" not in msg and reason in msg and msg.startswith("--executor slurm: SLURM refuses"), msg
    assert "partition" in msg.split(reason, 1)[1]  # what the partition offers, or which partitions exist
    assert not (tmp_path / "res" / "records").exists() and not read_arrays(tmp_path / "res")
    assert _all_jobs() <= jobs_before  # nothing submitted (squeue forgets old jobs, never adds)
