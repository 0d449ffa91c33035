"""Fault drills of the run layer (issue 17): process hygiene, signals, unwritable results folders.

Each drill runs the command line in a subprocess on the synthetic set with the
tiny random backbone and a ``slow_memory`` plugin (memory with a pause per
predict batch) so that the test can act while cells are in flight:

* SIGKILL of the parent of a ``--executor gpus --workers 2`` run: no worker
  outlives it by more than a few seconds;
* SIGKILL of one pool worker: only its in-flight job is lost, the other cells
  are computed and the summary counts the records on disk;
* SIGINT / SIGTERM: claims released, one line "interrupted; N cells done, rerun
  the same command to resume", exit 130 / 143, no traceback;
* a results folder that cannot be written is refused before the first cell,
  naming the path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_sweep import slow_sweep, sweep_env
from fsadbench.run.claims import ClaimStore

RESUME_LINE = "cells done, rerun the same command to resume"


def _start(cmd: list[str], marks: Path, **env) -> subprocess.Popen:
    marks.mkdir(exist_ok=True)
    return subprocess.Popen(cmd, env=sweep_env(MARK_DIR=str(marks), **env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _in_cell(marks: Path) -> set[int]:
    """Pids of the processes that have entered a cell's predict."""
    return {int(p.name) for p in marks.iterdir()}


def _records(res: Path) -> list[Path]:
    return [p for p in (res / "records").rglob("*.json") if not p.name.startswith(".tmp-")] \
        if (res / "records").is_dir() else []


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (from /proc; empty where there is none)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.02)


def _summary(stderr: str) -> str:
    return [ln for ln in stderr.splitlines() if "cell(s) computed" in ln][-1]


@pytest.mark.slow
def test_sigkill_parent_of_pool_leaves_no_worker_behind(tmp_path):
    cmd = slow_sweep(tmp_path) + ["--executor", "gpus", "--workers", "2"]
    res = tmp_path / "res"
    proc = _start(cmd, tmp_path / "marks", SLOW_S="1.0")
    try:
        _wait_for(lambda: len(_in_cell(tmp_path / "marks")) == 2, proc, what="both workers inside a cell")
        workers = _in_cell(tmp_path / "marks") | _children(proc.pid)
        assert proc.pid not in workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.time()
        while any(_running(p) for p in workers) and time.time() - t0 < 15:
            time.sleep(0.05)
        outlived = time.time() - t0
    finally:
        proc.stderr.close()
    assert not any(_running(p) for p in workers), f"workers {workers} outlived their parent by > 15 s"
    assert outlived < 6.0, f"workers outlived their parent by {outlived:.1f} s"
    # whatever is on disk is a whole record; the workers' claims are stale (dead pids), never live
    assert all(json.loads(p.read_text())["status"] == "ok" for p in _records(res))
    assert all(c.stale_reason() for c in ClaimStore(res))


@pytest.mark.slow
def test_killed_pool_worker_loses_only_its_job_and_summary_counts_records(tmp_path):
    cmd = slow_sweep(tmp_path, seeds=(0, 1)) + ["--executor", "gpus", "--workers", "2"]
    res = tmp_path / "res"
    proc = _start(cmd, tmp_path / "marks", SLOW_S="1.0")
    _wait_for(lambda: bool(_in_cell(tmp_path / "marks")), proc, what="a worker inside a cell")
    victim = min(_in_cell(tmp_path / "marks"))
    os.kill(victim, signal.SIGKILL)  # mid-predict: its record is never written
    _, err = proc.communicate(timeout=150)
    records = _records(res)
    line = _summary(err)
    computed, failed = int(line.split()[0]), int(line.split(", ")[2].split()[0])
    # only the victim's in-flight job is missing: the rest of its group went to a fresh worker
    assert (computed, failed, len(records)) == (3, 1, 3), err[-3000:]
    assert all(json.loads(p.read_text())["status"] == "ok" for p in records)
    assert proc.returncode == 1 and f"worker pid {victim} on cpu died (exit code -9)" in err
    assert "that job is lost" in err and "starting a new worker on cpu" in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("executor,sig,code", [("local", signal.SIGINT, 130), ("local", signal.SIGTERM, 143),
                                               ("gpus", signal.SIGTERM, 143)])
def test_signal_releases_claims_prints_one_line_and_exits_128_plus_signal(tmp_path, executor, sig, code):
    cmd = slow_sweep(tmp_path) + ["--executor", executor] + (["--workers", "2"] if executor == "gpus" else [])
    res = tmp_path / "res"
    proc = _start(cmd, tmp_path / "marks", SLOW_S="1.0")
    _wait_for(lambda: bool(_in_cell(tmp_path / "marks")), proc, what="a process inside a cell")
    workers = (_in_cell(tmp_path / "marks") | _children(proc.pid)) - {proc.pid}
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    done = sum(json.loads(p.read_text())["status"] == "ok" for p in _records(res))
    assert last == f"interrupted; {done} {RESUME_LINE}"
    assert not list(ClaimStore(res)), "every claim is released before the exit"
    deadline = time.time() + 5  # (the resource tracker of a spawning parent ends just after it)
    while any(_running(p) for p in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in workers)


def test_unwritable_results_folder_is_refused_before_the_first_cell(tmp_path, capsys):
    from fsadbench.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = ["--methods", "memory", "--datasets", "synthetic", "--categories", "disc", "--shots", "1", "--seeds", "0",
            "--model", "fsad-tiny-vit", "--pretrained", "none", "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--no-progress"]
    assert main(args + ["--results-dir", str(blocker / "res")]) == 2
    err = capsys.readouterr().err
    assert f"results folder {blocker / 'res'}: {blocker} is a file, not a folder" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root writes through permission bits
        ro = tmp_path / "ro"
        (ro / "records").mkdir(parents=True)
        (ro / "records").chmod(0o555)
        try:
            assert main(args + ["--results-dir", str(ro)]) == 2
            assert f"results folder {ro / 'records'} cannot be written" in capsys.readouterr().err
        finally:
            (ro / "records").chmod(0o755)
    assert not (tmp_path / "cache" / "features").exists()  # refused before any cell encoded anything
