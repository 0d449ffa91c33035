"""Small parts of the run layer: batch policy, sigma resolution, interrupts, preflight, parent death, summary."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import STATUS_FAILED, STATUS_OK, CellKey, Record, RecordStore
from fsadbench.run.batching import BatchPolicy, is_out_of_memory
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.identity import cell_hash, sigma_for
from fsadbench.run.plan import Job, Plan
from fsadbench.run.preflight import check_results_dir
from fsadbench.run.resources import DataSource
from fsadbench.run.signals import Interrupted, SweepInterrupted, interrupt_guard
from fsadbench.run.summary import ELSEWHERE, LOST, tally


def test_batch_policy_halves_down_to_one_and_retries_only_oom():
    p = BatchPolicy(batch_size=8, feature_batch_size=5)
    sizes = [(p.batch_size, p.feature_batch_size)]
    while p.can_shrink():
        p = p.halved()
        sizes.append((p.batch_size, p.feature_batch_size))
    assert sizes == [(8, 5), (4, 2), (2, 1), (1, 1)]
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(oom) and is_out_of_memory(RuntimeError("DefaultCPUAllocator: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert BatchPolicy(8, 8).retries(oom) and not BatchPolicy(8, 8).retries(ValueError("x"))
    assert not BatchPolicy(1, 1).retries(oom)  # nothing left to shrink: recorded as the cell's failure
    assert not BatchPolicy(8, 8, retry_oom=False).retries(oom)
    cfg = RunConfig(batch_size=16)
    assert BatchPolicy.from_config(cfg) == BatchPolicy(16, 16, True) and cfg.batch_size == 16


def test_sigma_is_the_protocol_value_else_the_methods_paper_value():
    class Paper:
        default_sigma = 4.0

    assert sigma_for(Protocol(sigma=None), Paper) == 4.0
    assert sigma_for(Protocol(sigma=0.0), Paper) == 0.0  # an explicit 0 (no smoothing) is kept
    assert sigma_for(Protocol(sigma=2.5), Paper) == 2.5


def test_interrupt_guard_turns_sigterm_into_interrupted_once_and_restores():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with interrupt_guard():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode
    assert info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    e = SweepInterrupted(signal.SIGINT, 7)
    assert (e.exit_code, str(e)) == (130, "interrupted; 7 cells done, rerun the same command to resume")
    assert SweepInterrupted(signal.SIGTERM, 0).exit_code == 143 and isinstance(e, KeyboardInterrupt)


def test_preflight_names_the_folder_that_cannot_be_written(tmp_path):
    assert check_results_dir(tmp_path / "new" / "res").is_dir()  # created when missing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=f"results folder {blocker / 'res'}: {blocker} is a file, not a folder"):
        check_results_dir(blocker / "res")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_parent_death_signal_is_set_in_a_child():
    import subprocess

    code = ("from fsadbench.run.hygiene import set_parent_death_signal, PR_SET_PDEATHSIG\n"
            "import ctypes, signal\n"
            "assert set_parent_death_signal(signal.SIGTERM)\n"
            "libc = ctypes.CDLL(None); v = ctypes.c_int(0)\n"
            "assert libc.prctl(2, ctypes.byref(v), 0, 0, 0) == 0  # PR_GET_PDEATHSIG\n"
            "print(v.value)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == signal.SIGTERM


def _record(key: CellKey, h: str, status: str, encoded: int = 3, error: str | None = None) -> Record:
    from dataclasses import asdict

    return Record(key=asdict(key), status=status, config_hash=h, encoder={"encoded": encoded}, error=error)


def test_tally_counts_from_the_record_store_not_from_outcomes(tmp_path):
    tiny = {"size": 32, "n_train": 2, "n_test_good": 1, "n_test_bad": 1}
    cfg = RunConfig(methods=[MethodSpec("memory")], datasets=[DatasetSpec("synthetic", categories=["disc"],
                                                                          options=tiny)],
                    results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"))
    m, ds = cfg.methods[0], cfg.datasets[0]
    jobs = [Job(m, ds, ["disc"], 1, s) for s in (1, 2, 3, 4, 5)]
    store = RecordStore(cfg.results_dir)
    data = DataSource(cfg)
    h = {i: cell_hash(cfg, data, j) for i, j in enumerate(jobs)}
    old = _record(jobs[4].keys()[0], h[4], STATUS_OK)
    store.write(old)
    os.utime(store.path(jobs[4].keys()[0]), (time.time() - 100, time.time() - 100))  # done before this sweep
    since = time.time()
    store.write(_record(jobs[0].keys()[0], h[0], STATUS_OK))  # worker died after writing: no outcome
    error = "ValueError: boom\n\nTraceback (most recent call last):\n  ...\nValueError: boom"  # error_text's form
    store.write(_record(jobs[1].keys()[0], h[1], STATUS_FAILED, encoded=0, error=error))
    outcomes = [{"cell": str(jobs[2].keys()[0]), "status": LOST, "encoded": 0, "error": "lost: worker died"},
                {"cell": str(jobs[3].keys()[0]), "status": ELSEWHERE, "encoded": 0}]
    s = tally(cfg, data, Plan(jobs, jobs, skipped=2), store, outcomes, since)
    assert (s.computed, s.failed, s.skipped, s.not_applicable, s.encoded_images) == (1, 2, 4, 0, 3)
    assert s.failures == [f"{jobs[1].keys()[0]}: ValueError: boom", f"{jobs[2].keys()[0]}: lost: worker died"]
    assert Path(store.path(jobs[0].keys()[0])).exists()

