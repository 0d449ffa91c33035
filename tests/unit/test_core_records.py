"""The record store and the record schema, as a reader of a results folder relies on them.

* Every field of the schema is checked: a record broken in exactly one field is refused with a message
  naming that field (and the store sets the file aside as corrupt, so its cell is not done), while the
  edge values the schema allows (0 shots, a metric of exactly 0 or 1 or null, a float int) pass.
* Paths: names are encoded injectively as documented, byte for byte; long names are shortened with
  a hash; decoding refuses a shortened name.
* Resume: only an ok / not-applicable record with the same resume key is done; a done record with
  another key is kept aside under a name that never overwrites an earlier one, and the log names the
  identity leaves that changed.

EQUIVALENT_MUTANTS lists the surviving mutants of results/records.py and results/schema.py that cannot
change behaviour.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math

import pytest

from fsadbench.core.errors import BenchError
from fsadbench.results.records import (SCHEMA_VERSION, CellKey, Record, RecordStore, decode_component,
                                       encode_component, identity_changes, migrate)
from fsadbench.results.schema import SchemaError, validate_record

KEY = CellKey("memory", "synthetic", "disc", 1, 0)


def _rec(**kw) -> Record:
    base = dict(key=dict(KEY.__dict__), status="ok", config_hash="abc", metrics={"w/ VG": {"pixel_auroc": 0.9}})
    base.update(kw)
    return Record(**base)


def _valid() -> dict:
    return json.loads(_rec(n_test=3, n_test_anomalous=1, error=None).to_json())


# -- the schema, one field at a time ------------------------------------------------------------------
def _broken(path, value):
    d = _valid()
    target = d
    for k in path[:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


BROKEN = [
    (("key",), KeyError, "field 'key' is missing"),
    (("status",), KeyError, "field 'status' is missing"),
    (("config_hash",), KeyError, "field 'config_hash' is missing"),
    (("key",), [1], "field 'key' is not an object"),
    (("key", "method"), "", "key.method is '', expected a non-empty string"),
    (("key", "dataset"), 3, "key.dataset is 3, expected a non-empty string"),
    (("key", "category"), None, "key.category is None, expected a non-empty string"),
    (("key", "shots"), "1", "key.shots is '1', expected an integer"),
    (("key", "shots"), True, "key.shots is True, expected an integer"),
    (("key", "shots"), 1.0, "key.shots is 1.0, expected an integer"),
    (("key", "seed"), KeyError, "key.seed is None, expected an integer"),
    (("key", "shots"), -1, "key.shots is -1, expected >= 0"),
    (("status",), "done", "status is 'done', expected one of ok, failed, not_applicable"),
    (("config_hash",), 7, "config_hash is not a string"),
    (("method",), [], "field 'method' is a list, expected an object"),
    (("timings",), "1s", "field 'timings' is a str, expected an object"),
    (("provenance",), None, "field 'provenance' is a NoneType, expected an object"),
    (("metrics",), [], "metrics is a list, expected {variant: {metric: number}}"),
    (("metrics", "w/ VG"), 0.9, "metrics['w/ VG'] is a float, expected {metric: number}"),
    (("metrics", "w/ VG", "pixel_auroc"), 1.5, "metrics['w/ VG']['pixel_auroc'] is 1.5, expected a fraction in "
                                               "[0, 1] or null"),
    (("metrics", "w/ VG", "pixel_auroc"), -0.1, "metrics['w/ VG']['pixel_auroc'] is -0.1, expected a fraction"),
    (("metrics", "w/ VG", "pixel_auroc"), "0.9", "metrics['w/ VG']['pixel_auroc'] is '0.9', expected a fraction"),
    (("metrics", "w/ VG", "pixel_auroc"), True, "metrics['w/ VG']['pixel_auroc'] is True, expected a fraction"),
    (("metrics", "w/ VG", "pixel_auroc"), math.inf, "metrics['w/ VG']['pixel_auroc'] is inf, expected a fraction"),
    (("undefined",), [], "undefined is not {variant: {metric: reason}}"),
    (("undefined",), {"w/ VG": "x"}, "undefined is not {variant: {metric: reason}}"),
    (("n_test",), -1, "n_test is -1, expected an integer >= 0"),
    (("n_test_anomalous",), 1.0, "n_test_anomalous is 1.0, expected an integer >= 0"),
    (("n_test",), False, "n_test is False, expected an integer >= 0"),
    (("manifest",), {}, "manifest is not a list"),
    (("metric_version",), 2, "metric_version is not a string"),
    (("error",), 3, "error is neither a string nor null"),
    (("schema_version",), "3", "schema_version is '3', expected an integer"),
]


@pytest.mark.parametrize("path,value,message", BROKEN)
def test_a_record_broken_in_one_field_is_refused_naming_it(path, value, message):
    validate_record(_valid())  # the unbroken record passes
    with pytest.raises(SchemaError, match="^" + __import__("re").escape(message)):
        validate_record(_broken(path, value))


@pytest.mark.parametrize("top", [[], "x", 3, None])
def test_a_top_level_that_is_not_an_object_is_refused(top):
    with pytest.raises(SchemaError, match=f"^top level is a JSON {type(top).__name__}, not an object$"):
        validate_record(top)


def test_edge_values_the_schema_allows():
    d = _valid()
    d["key"]["shots"] = 0
    d["metrics"] = {"a": {"x": 0, "y": 1, "z": None, "w": 0.0, "v": 1.0}, "b": {}}
    d["undefined"] = {"a": {"z": "no anomalous pixel"}}
    d["n_test"] = d["n_test_anomalous"] = 0
    d["error"] = "boom"
    d["unknown_field"] = {"ignored": True}
    for name in ("method", "encoder", "protocol", "backbone", "dataset", "provenance", "config", "timings"):
        d[name] = {}
    validate_record(d)
    for name in ("metrics", "undefined", "manifest", "n_test", "n_test_anomalous", "metric_version", "error",
                 "schema_version", "method"):
        d.pop(name, None)
    validate_record(d)  # every optional field absent


def test_a_record_file_broken_in_one_field_is_set_aside_and_its_cell_is_not_done(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    p.write_text(json.dumps(_broken(("metrics", "w/ VG", "pixel_auroc"), 1.5)))
    assert store.load(KEY) is None and not store.is_done(KEY, "abc")
    assert not p.exists()
    moved = tmp_path / "corrupt" / "records" / "memory" / "synthetic" / "disc" / "k1_s0.json"
    assert json.loads(moved.read_text())["metrics"]["w/ VG"]["pixel_auroc"] == 1.5
    # bad UTF-8 and bad JSON alike
    for raw in (b"\xff\xfe{", b"[1, 2", b"[1, 2]"):
        p = store.write(_rec())
        p.write_bytes(raw)
        assert store.records() == [] and not p.exists()


def test_a_newer_record_is_refused_not_set_aside(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    d = json.loads(p.read_text())
    d["schema_version"] = SCHEMA_VERSION + 1
    d["metrics"] = "a shape this version does not know"
    p.write_text(json.dumps(d))
    with pytest.raises(BenchError, match=f"record schema version {SCHEMA_VERSION + 1} is newer than this harness "
                                         f"\\({SCHEMA_VERSION}\\); upgrade fsad-bench to read it"):
        store.load(KEY)
    assert p.exists()
    with pytest.raises(BenchError, match=f"^{p}: record schema"):
        store.read(p)


# -- migration ---------------------------------------------------------------------------------------
def test_version_2_records_gain_the_open_clip_family_and_keep_their_key():
    d = _valid()
    d.update(schema_version=2, backbone={"model": "ViT-B-16"})
    r = Record.from_dict(d)
    assert r.backbone == {"family": "open_clip", "model": "ViT-B-16"} and r.migrated_from == 2
    assert r.schema_version == SCHEMA_VERSION and r.config_hash == "abc"
    assert migrate({"backbone": {"family": "timm", "model": "x"}})["backbone"]["family"] == "timm"
    assert migrate({"backbone": {}})["backbone"] == {} and "backbone" not in migrate({})
    old = migrate({"identity": {"a": 1}, "plan": {"seeds": [0]}})
    assert old == {"identity": {"a": 1}, "plan": {"seeds": [0]}, "migrated_from": 0, "schema_version": SCHEMA_VERSION}


def test_a_current_record_is_read_as_is_and_unknown_fields_are_ignored():
    d = _valid()
    d["future_field"] = 1
    r = Record.from_dict(d)
    assert r.migrated_from is None and r == _rec(n_test=3, n_test_anomalous=1)
    assert Record.from_dict(json.loads(r.to_json())) == r


def test_a_non_finite_metric_is_never_written():
    with pytest.raises(ValueError):
        _rec(metrics={"v": {"m": math.nan}}).to_json()
    text = _rec().to_json()
    assert text.startswith('{\n "backbone": {},\n "config": {},') and list(json.loads(text)) == sorted(json.loads(text))


# -- names and paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,encoded", [
    ("metal_nut", "metal_nut"), ("apt[la=false,k=2]+x", "apt[la=false,k=2]+x"), ("a-b.c", "a-b.c"),
    ("Metal Nut", "^metal%20^nut"), (".x", "%2ex"), ("x.", "x."), ("", "%"), ("ü", "%c3%bc"),
    ("a/b", "a%2fb"), ("100%", "100%25"), ("^", "%5e"), ("ZA", "^z^a"), ("é.é", "%c3%a9.%c3%a9"),
])
def test_names_are_encoded_as_documented_and_decode_back(name, encoded):
    assert encode_component(name) == encoded and decode_component(encoded) == name


def test_long_names_are_shortened_with_a_hash_and_cannot_be_decoded():
    at_limit = "a" * 150
    assert encode_component(at_limit) == at_limit and decode_component(at_limit) == at_limit
    for name in ("a" * 151, "A" * 80):  # 151 characters; 80 capitals encode to 160
        short = encode_component(name)
        assert short == encode_component(name)[:100] + "%-" + hashlib.sha1(name.encode()).hexdigest()[:24]
        assert len(short) == 126
        with pytest.raises(ValueError, match="is a shortened name; it cannot be decoded"):
            decode_component(short)
    assert encode_component("A" * 75) == "^a" * 75  # 150 once encoded: kept


def test_a_cell_names_its_path_and_prints_its_parts():
    k = CellKey("Apt", "my set", "c", 4, 2)
    assert str(k.relpath()) == "^apt/my%20set/c/k4_s2.json"
    assert str(k) == "Apt | my set/c | 4-shot | seed 2"
    assert _rec(key=dict(k.__dict__)).cell == k


# -- resume and keeping aside -------------------------------------------------------------------------
def test_identity_changes_name_each_leaf_that_differs():
    old = {"method": {"options": {"k": 2, "gone": 1}}, "seed": 0, "same": {"x": 1}, "b": {"c": 1}}
    new = {"method": {"options": {"k": 3, "new": True}}, "seed": 0, "same": {"x": 1}, "b": 5}
    assert identity_changes(old, new) == ["b: {'c': 1} -> 5", "method.options.gone: 1 -> '<absent>'",
                                          "method.options.k: 2 -> 3", "method.options.new: '<absent>' -> True"]
    assert identity_changes(old, copy.deepcopy(old)) == []



def test_identity_changes_order_keys_of_any_type_by_their_text():
    # an in-memory identity may hold int keys next to str ones: sorted by their text, never a TypeError
    assert identity_changes({9: 1, 10: 1, "a": 1}, {}) == ["10: 1 -> '<absent>'", "9: 1 -> '<absent>'",
                                                         "a: 1 -> '<absent>'"]

@pytest.mark.parametrize("status,done", [("ok", True), ("not_applicable", True), ("failed", False)])
def test_only_an_ok_or_not_applicable_record_with_the_same_key_is_done(tmp_path, status, done):
    store = RecordStore(tmp_path)
    assert not store.is_done(KEY, "abc")
    store.write(_rec(status=status, metrics={}))
    assert store.is_done(KEY, "abc") is done and not store.is_done(KEY, "abd")


def test_kept_aside_records_never_overwrite_each_other_and_the_log_says_what_changed(tmp_path):
    said = []
    store = RecordStore(tmp_path, log=said.append)
    store.write(_rec(config_hash="h1", identity={"k": 1}))
    store.write(_rec(config_hash="h2", identity={"k": 2}))
    store.write(_rec(config_hash="h1", identity={"k": 1}))
    store.write(_rec(config_hash="h2", identity={"k": 2}))
    store.write(_rec(config_hash="", identity={}))
    store.write(_rec(config_hash="h3", identity={}))
    aside = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "superseded").rglob("*.json"))
    base = "superseded/memory/synthetic/disc/k1_s0"
    assert aside == [f"{base}.h1-2.json", f"{base}.h1.json", f"{base}.h2-2.json", f"{base}.h2.json",
                     f"{base}.nohash.json"]
    assert said[0] == (f"kept aside records/memory/synthetic/disc/k1_s0.json -> {base}.h1.json (k: 1 -> 2)")
    assert said[3] == f"kept aside records/memory/synthetic/disc/k1_s0.json -> {base}.h2-2.json (k: 2 -> '<absent>')"
    assert said[4] == f"kept aside records/memory/synthetic/disc/k1_s0.json -> {base}.nohash.json (config hash  -> h3)"
    assert [r.config_hash for r in store.superseded()] == ["h1", "h1", "h2", "h2", ""]
    assert [r.config_hash for r in store.records()] == ["h3"]


def test_setting_aside_a_cell_without_a_file_does_nothing_and_no_log_is_fine(tmp_path):
    store = RecordStore(tmp_path)
    assert store.set_aside(_rec()) is None and store.superseded() == [] and store.records() == []
    store.write(_rec())
    dest = store.set_aside(_rec(), "")
    assert dest == tmp_path / "superseded" / "memory" / "synthetic" / "disc" / "k1_s0.abc.json"
    assert store.load(KEY) is None
    said = []
    RecordStore(tmp_path, log=said.append).set_aside(_rec()) if store.write(_rec()) else None
    assert said == ["kept aside records/memory/synthetic/disc/k1_s0.json -> "
                    "superseded/memory/synthetic/disc/k1_s0.abc-2.json"]


def test_temp_files_are_not_records_and_one_record_per_cell(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    (p.parent / ".tmp-k1_s0.json").write_text(_rec(config_hash="tmp").to_json())
    other = store.write(_rec(key=dict(CellKey("memory", "synthetic", "disc", 1, 1).__dict__)))
    assert [r.config_hash for r in store.records()] == ["abc", "abc"] and other.name == "k1_s1.json"
    assert [r.key["seed"] for r in store] == [0, 1]


def test_a_record_without_a_version_is_version_0_and_a_newer_one_is_named_by_where(tmp_path):
    d = _valid()
    del d["schema_version"]
    assert Record.from_dict(d).migrated_from == 0
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(BenchError, match="^record: record schema version"):
        Record.from_dict(d)


def test_a_corrupt_record_is_named_with_why_in_the_warning(tmp_path, caplog):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    p.write_text("{ truncated")
    with caplog.at_level("WARNING", logger="fsadbench"):
        assert store.read(p) is None
    assert f"{p} is corrupt (not valid JSON: " in caplog.text
    p = store.write(_rec())
    p.write_text(json.dumps(_broken(("status",), "done")))
    caplog.clear()
    with caplog.at_level("WARNING", logger="fsadbench"):
        assert store.read(p) is None
    assert f"{p} is corrupt (status is 'done', expected one of ok, failed, not_applicable); moved to " in caplog.text


def test_a_good_record_renamed_over_a_corrupt_one_while_it_was_read_stays(tmp_path, monkeypatch):
    from fsadbench.results import records as records_module

    store = RecordStore(tmp_path)
    p = store.write(_rec())
    p.write_text("[1]")  # corrupt ...

    def writer_wins(d):  # ... and while it is judged, a writer renames a good record over it
        from fsadbench.core.io import atomic_write_text

        atomic_write_text(p, _rec(config_hash="fresh").to_json())
        raise SchemaError("top level is a JSON list, not an object")

    monkeypatch.setattr(records_module, "validate_record", writer_wins)
    assert store.read(p) is None
    monkeypatch.undo()
    assert store.load(KEY).config_hash == "fresh" and not (tmp_path / "corrupt").exists()


def test_every_changed_leaf_is_named_when_a_record_is_kept_aside(tmp_path):
    said = []
    store = RecordStore(tmp_path, log=said.append)
    store.write(_rec(config_hash="h1", identity={"a": 1, "b": {"c": 2}}))
    store.write(_rec(config_hash="h2", identity={"a": 2, "b": {"c": 3}}))
    assert said[0].endswith("(a: 1 -> 2; b.c: 2 -> 3)")


def test_a_third_record_kept_aside_under_the_same_key_gets_the_next_number(tmp_path):
    store = RecordStore(tmp_path)
    for h in ("", "", "", "h1"):
        store.write(_rec(config_hash=h))
        store.set_aside(_rec(config_hash=h))
    names = sorted(p.name for p in (tmp_path / "superseded").rglob("*.json"))
    assert names == ["k1_s0.h1.json", "k1_s0.nohash-2.json", "k1_s0.nohash-3.json", "k1_s0.nohash.json"]


def test_a_temp_file_of_another_cell_is_not_a_record(tmp_path):
    store = RecordStore(tmp_path)
    p = store.write(_rec())
    (p.parent / ".tmp-k1_s5.json").write_text(_rec(key=dict(CellKey("memory", "synthetic", "disc", 1, 5).__dict__))
                                              .to_json())
    assert [r.key["seed"] for r in store] == [0]


def test_old_path_records_count_once_whatever_their_path_order(tmp_path):
    store = RecordStore(tmp_path)
    cell = CellKey("memory", "synthetic", "Metal Nut", 1, 0)
    for folder in ("0old", "1old"):  # both sort before the canonical "^metal%20^nut"
        old = tmp_path / "records" / "memory" / "synthetic" / folder / "k1_s0.json"
        old.parent.mkdir(parents=True)
        old.write_text(_rec(key=dict(cell.__dict__), config_hash=folder).to_json())
    assert [r.config_hash for r in store.records()] == ["0old"]  # two old copies: the first, once
    store.write(_rec(key=dict(cell.__dict__), config_hash="canonical"))
    assert [r.config_hash for r in store.records()] == ["canonical"]


EQUIVALENT_MUTANTS = {
    # records.py by name (mutmut 3.8.1, 2026-12-03: 358/367 killed, these 9 survive)
    "fsadbench.results.records.x_encode_component__mutmut_28":
        "'UTF-8' for 'utf-8': codec names are case-insensitive",
    "fsadbench.results.records.x_encode_component__mutmut_41":
        "as _28 (the name hashed for a shortened component)",
    "fsadbench.results.records.x_decode_component__mutmut_29":
        "'UTF-8' for 'utf-8': codec names are case-insensitive",
    "fsadbench.results.records.x_decode_component__mutmut_47":
        "as _29 (the last bytes)",
    "fsadbench.results.records.xǁRecordǁto_json__mutmut_4":
        "json.dumps(allow_nan=None): the encoder refuses NaN whenever allow_nan is falsy",
    "fsadbench.results.records.xǁRecordǁfrom_dict__mutmut_10":
        "a missing version read as 1, not 0: both below SCHEMA_VERSION, and migrate() sets migrated_from (0) itself",
    "fsadbench.results.records.xǁRecordStoreǁread__mutmut_20":
        "where of the second from_dict: it raises only for an int version above SCHEMA_VERSION, which the first call "
        "takes (validate_record refuses any non-int)",
    "fsadbench.results.records.xǁRecordStoreǁread__mutmut_22":
        "as _20 (where dropped)",
    "fsadbench.results.records.xǁRecordStoreǁread__mutmut_23":
        "as _20 (where='None')",
}
