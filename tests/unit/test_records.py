"""Atomic records: a killed write leaves no partial file; readers skip temp files."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fsadbench.results.records import CellKey, Record, RecordStore, atomic_write_text


def _rec(**kw):
    key = CellKey("memory", "synthetic", "disc", 1, 0)
    base = dict(key=key.__dict__, status="ok", config_hash="abc", metrics={"w/ VG": {"pixel_auroc": 0.9}})
    base.update(kw)
    return Record(**base)


def test_roundtrip(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    assert p == tmp_path / "records" / "memory" / "synthetic" / "disc" / "k1_s0.json"
    r = store.load(CellKey("memory", "synthetic", "disc", 1, 0))
    assert r.metrics == {"w/ VG": {"pixel_auroc": 0.9}}
    assert store.is_done(r.cell, "abc") and not store.is_done(r.cell, "other-config")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "x" / "r.json"

    def boom(*a, **k):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "{}")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_sigkill_mid_write_leaves_no_partial_record(tmp_path):
    """A writer SIGKILLed while writing a large record leaves either nothing or a whole record."""
    script = textwrap.dedent(f"""
        import os, sys
        from fsadbench.results.records import atomic_write_text
        from pathlib import Path
        orig_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            import time; time.sleep(30)
        os.fsync = slow_fsync
        atomic_write_text(Path({str(tmp_path / 'r.json')!r}), '{{"x": "' + 'a' * 5_000_000 + '"}}')
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "r.json").exists()
    store = RecordStore(tmp_path)
    assert store.records() == []


def test_unreadable_record_counts_as_missing(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    p.write_text("{ truncated")
    assert store.load(CellKey("memory", "synthetic", "disc", 1, 0)) is None


def test_newer_schema_is_refused(tmp_path):
    from fsadbench.core.errors import BenchError

    store = RecordStore(tmp_path)
    p = store.write(_rec())
    d = json.loads(p.read_text())
    d["schema_version"] = 99
    with pytest.raises(BenchError, match="newer"):
        Record.from_dict(d)
