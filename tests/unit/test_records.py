"""Atomic records: a killed write leaves no partial file; readers skip temp files."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fsadbench.results.records import SCHEMA_VERSION, CellKey, Record, RecordStore, atomic_write_text


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


@pytest.mark.parametrize("names", [("metal nut", "metal_nut"), ("Bottle", "bottle"), ("a.b", "a,b", "a/b", "a:b"),
                                   ("x", ".x", "..", "."), ("ü", "u"), ("100%", "100%25", "^a", "A")])  # "" is no category: the schema refuses it
def test_category_names_that_differ_only_in_case_space_or_punctuation_keep_two_records(tmp_path, names):
    from fsadbench.results.records import decode_component, encode_component

    store = RecordStore(tmp_path)
    for i, name in enumerate(names):
        store.write(_rec(key=CellKey("memory", "synthetic", name, 1, 0).__dict__, metrics={"v": {"m": i / 10}}))
        assert decode_component(encode_component(name)) == name
    recs = store.records()
    assert sorted(r.key["category"] for r in recs) == sorted(names)
    # lower-cased paths differ too (case-insensitive file systems)
    paths = {str(store.path(r.cell)).lower() for r in recs}
    assert len(paths) == len(names)
    assert all(not p.name.startswith(".") or p.name == "." for p in (store.path(r.cell).parent for r in recs))


def test_plain_names_keep_their_paths_and_long_names_stay_distinct(tmp_path):
    from fsadbench.results.records import encode_component

    assert encode_component("apt[la=false,k=2]") == "apt[la=false,k=2]"
    assert encode_component("metal_nut") == "metal_nut" and encode_component("cvc-colondb") == "cvc-colondb"
    a, b = "x" * 300, "x" * 299 + "y"
    assert encode_component(a) != encode_component(b) and len(encode_component(a)) < 160


def _ided(cfg_hash, identity, value=0.9, status="ok"):
    return _rec(config_hash=cfg_hash, identity=identity, status=status, metrics={"w/ VG": {"pixel_auroc": value}})


def test_a_record_with_another_key_is_kept_aside_not_overwritten(tmp_path):
    said = []
    store = RecordStore(tmp_path, log=said.append)
    store.write(_ided("h1", {"method": {"options": {"k": 2}}}, 0.9))
    store.write(_ided("h2", {"method": {"options": {"k": 3}}}, 0.8))
    assert store.load(CellKey("memory", "synthetic", "disc", 1, 0)).config_hash == "h2"
    old = store.superseded()
    assert [r.config_hash for r in old] == ["h1"] and old[0].metrics["w/ VG"]["pixel_auroc"] == 0.9
    assert "method.options.k: 2 -> 3" in said[0]
    assert [r.config_hash for r in store.records()] == ["h2"]  # superseded records are not read as results
    # the same key (--force) replaces; a failed record is never kept aside
    store.write(_ided("h2", {"method": {"options": {"k": 3}}}, 0.7))
    store.write(_ided("h3", {}, status="failed"))
    store.write(_ided("h4", {}))
    assert len(store.superseded()) == 2  # h1 and h2 (0.7); the failed h3 was simply replaced


def test_schema_1_records_load_through_the_migration_and_are_recomputed(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    d = json.loads(p.read_text())
    d["schema_version"] = 1
    for k in ("identity", "plan", "migrated_from"):
        d.pop(k)
    p.write_text(json.dumps(d))
    r = store.load(CellKey("memory", "synthetic", "disc", 1, 0))
    assert r.migrated_from == 1 and r.schema_version == SCHEMA_VERSION == 3 and r.identity == {} and r.plan == {}
    said = []
    RecordStore(tmp_path, log=said.append).write(_ided("new", {"x": 1}))
    assert "record schema 1" in said[0]


def test_a_record_at_an_old_path_counts_until_the_canonical_one_exists(tmp_path):
    store = RecordStore(tmp_path)
    old = tmp_path / "records" / "memory" / "synthetic" / "metal_nut_old" / "k1_s0.json"
    old.parent.mkdir(parents=True)
    old.write_text(_rec(key=CellKey("memory", "synthetic", "Metal Nut", 1, 0).__dict__).to_json())
    assert [r.key["category"] for r in store.records()] == ["Metal Nut"]
    store.write(_rec(key=CellKey("memory", "synthetic", "Metal Nut", 1, 0).__dict__, config_hash="new"))
    assert [r.config_hash for r in store.records()] == ["new"]
