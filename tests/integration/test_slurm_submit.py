"""The slurm executor's submission path against fake SLURM commands on PATH (no cluster): the request
check runs first, a refused ``sbatch`` is one line (submitit's copy of sbatch's stderr is not printed), a
submitted array's task ids go to slurm_jobs.json, and accounting off is said once with the squeue watcher
given to every task. The real cluster: tests/integration/test_slurm_cluster.py."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.executors import SlurmExecutor
from fsadbench.run.slurmjobs import QueueWatcher, read_arrays

SYN = {"size": 64, "n_train": 2, "n_test_good": 1, "n_test_bad": 1}


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch):
    """sbatch (``--test-only`` answers ``TEST_RC``; a submission prints ``SUBMIT`` and exits ``SUBMIT_RC``),
    srun, sinfo, sacct (accounting disabled) and squeue as shell scripts first on PATH; calls logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    scripts = {
        "sbatch": 'if [ "$1" = --test-only ]; then exit "${TEST_RC:-0}"; fi\n'
                  'printf "%b\\n" "$SUBMIT" >&2; [ "${SUBMIT_RC:-0}" = 0 ] && echo "Submitted batch job 77"\n'
                  'exit "${SUBMIT_RC:-0}"',
        "srun": "exit 0",
        "sinfo": 'echo "debug*|2|24105|(null)"',
        "sacct": 'echo "Slurm accounting storage is disabled" >&2; exit 1',
        "squeue": 'echo "77_0|PENDING||Priority"; echo "77_1|PENDING||Priority"',
    }
    for name, body in scripts.items():
        p = bin_dir / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def _cfg(tmp_path) -> RunConfig:
    return RunConfig(methods=[MethodSpec("memory")],
                     datasets=[DatasetSpec("synthetic", categories=["stripes", "disc"], options=dict(SYN))],
                     shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=32),
                     results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu")


def test_submitted_array_is_recorded_and_accounting_off_said_once(fake_slurm, tmp_path):
    said: list[str] = []
    ex = SlurmExecutor(partition="debug", gpus=0, wait=False)
    s = ex.run(_cfg(tmp_path), log=said.append)
    assert s.submitted == 2
    calls = fake_slurm.read_text().splitlines()
    assert calls[0] == "sbatch --test-only " + " ".join(ex.sbatch_flags()) + " --wrap true"  # checked first
    assert calls[1].startswith("sbatch ") and calls[1].endswith(".sh")
    assert [ln for ln in said if "accounting" in ln] == [
        "SLURM accounting is off (Slurm accounting storage is disabled): array task states come from squeue"]
    assert [t["job"] for t in read_arrays(tmp_path / "res")[-1]["tasks"]] == ["77_0", "77_1"]
    assert [t["label"] for t in read_arrays(tmp_path / "res")[-1]["tasks"]] == [
        "synthetic/stripes (1 cell)", "synthetic/disc (1 cell)"]
    watchers = {id(j.watcher) for j in ex.jobs}
    assert len(watchers) == 1 and isinstance(ex.jobs[0].watcher, QueueWatcher)
    assert ex.jobs[1].state == "PENDING" and not ex.jobs[1].done()


def test_what_else_is_said_during_a_submission_is_not_swallowed(fake_slurm, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("SUBMIT", "x")  # a successful sbatch's stderr is not printed by submitit; a warning is
    import submitit

    real = submitit.AutoExecutor.map_array

    def warn_then_submit(self, *a, **k):
        print("a warning during submission", file=sys.stderr)
        return real(self, *a, **k)

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", warn_then_submit)
    SlurmExecutor(partition="debug", gpus=0, wait=False).run(_cfg(tmp_path))
    assert "a warning during submission" in capfd.readouterr().err


def test_refused_submission_is_one_line_and_nothing_else_is_printed(fake_slurm, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("SUBMIT", "sbatch: error: QOSMaxSubmitJobPerUserLimit\\n"
                                 "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy")
    monkeypatch.setenv("SUBMIT_RC", "1")
    with pytest.raises(ConfigError) as e:
        SlurmExecutor(partition="debug", gpus=0).run(_cfg(tmp_path))
    assert str(e.value).startswith("--executor slurm: SLURM refuses the array tasks (partition debug, 1 CPU(s), "
                                   "0 GPU(s), 240 min): QOSMaxSubmitJobPerUserLimit; Job violates accounting/QOS "
                                   "policy; partition debug: nodes up to 2 CPUs, 24105 MB, no GPUs; ")
    assert "QOSMax" not in capfd.readouterr().err  # submitit's copy of sbatch's stderr did not leak
    assert not read_arrays(tmp_path / "res")


def test_test_only_refusal_submits_nothing(fake_slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_RC", "1")
    with pytest.raises(ConfigError, match="SLURM refuses the array tasks"):
        SlurmExecutor(partition="debug", gpus=0, wait=False).run(_cfg(tmp_path))
    calls = fake_slurm.read_text().splitlines()
    assert [c for c in calls if c.startswith("sbatch")] == [c for c in calls if c.startswith("sbatch --test-only")]
