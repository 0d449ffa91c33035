"""When records may stand side by side: the per-cell checks of ``compare``, the run checks of a results
folder, and the provenance lines of every table, written out by hand.

EQUIVALENT_MUTANTS lists the surviving mutants of results/comparability.py that cannot change behaviour.
"""

from __future__ import annotations

from fsadbench.results.comparability import (CHECKS, backbone_family, backbone_id, backbone_name, cell_protocol,
                                             commit_summary, describe_mixed, folder_conflicts, mismatches, mixed,
                                             run_identity, run_protocol, short_commit)
from fsadbench.results.records import CellKey, Record

BB = {"family": "timm", "model": "wrn50", "pretrained": "imagenet", "weights_fingerprint": "w1", "precision": "fp32"}
PROTO = {"version": 2, "eval_size": 256, "sigma": None, "sigma_used": 4.0, "max_test_images": None}


def rec(method="A", backbone=None, protocol=None, metric_version="m1", fingerprint="d1", commit="a" * 40,
        dirty=False, category="c1") -> Record:
    return Record(key=CellKey(method, "mvtec", category, 1, 0).__dict__, status="ok", config_hash="h",
                  backbone=dict(BB if backbone is None else backbone), protocol=dict(protocol or PROTO),
                  metric_version=metric_version, dataset={"fingerprint": fingerprint},
                  provenance={"git": {"commit": commit, "dirty": dirty}})


def test_backbone_parts_and_their_defaults():
    r = rec()
    assert backbone_family(r) == "timm" and backbone_name(r) == "wrn50"
    assert backbone_id(r) == ("timm", "wrn50", "imagenet", "w1", "fp32")
    old = rec(backbone={"model": "ViT-B-16"})  # before schema 3: open_clip; fp32 when not recorded
    assert backbone_family(old) == "open_clip" and backbone_id(old) == ("open_clip", "ViT-B-16", None, None, "fp32")
    assert backbone_name(rec(backbone={})) == "?"
    assert cell_protocol(r) == (2, 256, 4.0, None) and run_protocol(r) == (2, 256, None, None)
    capped = rec(protocol={**PROTO, "sigma": 2.0, "max_test_images": 5})
    assert cell_protocol(capped) == (2, 256, 4.0, 5) and run_protocol(capped) == (2, 256, 2.0, 5)


def test_every_per_cell_check_names_what_differs_and_only_that():
    base = rec()
    assert mismatches(base, rec()) == []
    cases = {
        "metric_version": (rec(metric_version="m2"), ("metric version", "m1", "m2")),
        "backbone": (rec(backbone={**BB, "precision": "bf16-autocast"}),
                     ("backbone (family, model, pretrained, weights fingerprint, precision)",
                      ("timm", "wrn50", "imagenet", "w1", "fp32"), ("timm", "wrn50", "imagenet", "w1", "bf16-autocast"))),
        "protocol": (rec(protocol={**PROTO, "sigma_used": 8.0}),
                     ("protocol (version, eval_size, sigma used, max_test_images)", (2, 256, 4.0, None),
                      (2, 256, 8.0, None))),
        "dataset": (rec(fingerprint="d2"), ("dataset fingerprint", "d1", "d2")),
    }
    assert set(cases) == set(CHECKS)
    for name, (head, want) in cases.items():
        assert mismatches(base, head) == [want]
        assert mismatches(base, head, [name]) == [want]
        assert mismatches(base, head, [n for n in CHECKS if n != name]) == []
    # the configured sigma is not a per-cell check: the sigma used is
    assert mismatches(base, rec(protocol={**PROTO, "sigma": 4.0})) == []


def test_a_folder_mixes_nothing_but_backbones_across_methods():
    same = [rec("A"), rec("A", category="c2"), rec("P", backbone={**BB, "model": "vit"})]
    assert mixed(same) == {}
    two = same + [rec("A", backbone={**BB, "weights_fingerprint": "w2"}, category="c3")]
    assert mixed(two) == {"backbone": {("A", "timm", "wrn50", "imagenet", "w1", "fp32"): 2,
                                       ("A", "timm", "wrn50", "imagenet", "w2", "fp32"): 1}}
    proto = same + [rec("A", protocol={**PROTO, "eval_size": 400}, metric_version="m2", category="c3")]
    assert mixed(proto) == {"metric_version": {"m1": 3, "m2": 1},
                            "protocol": {(2, 256, None, None): 3, (2, 400, None, None): 1}}
    # the sigma used per method may differ within a folder
    assert mixed(same + [rec("A", protocol={**PROTO, "sigma_used": 1.0}, category="c3")]) == {}
    assert describe_mixed(mixed(proto)) == [
        "metric version differs between records: 'm1' (3 record(s)); 'm2' (1 record(s))",
        "protocol (version, eval_size, sigma, max_test_images) differs between records: (2, 256, None, None) "
        "(3 record(s)); (2, 400, None, None) (1 record(s))"]
    assert describe_mixed({}) == [] and mixed([]) == {}


def test_run_identity_is_what_a_configuration_states_before_loading_weights():
    assert run_identity(rec()) == {
        "metric_version": "m1",
        "backbone": {"family": "timm", "model": "wrn50", "pretrained": "imagenet", "precision": "fp32"},
        "protocol": {"version": 2, "eval_size": 256, "sigma": None, "max_test_images": None}}
    assert run_identity(rec(backbone={}))["backbone"] == {"family": "open_clip", "model": None, "pretrained": None,
                                                          "precision": "fp32"}


def test_folder_conflicts_name_each_field_and_check_backbones_per_method():
    expected = {"metric_version": "m1", "protocol": {"version": 2, "eval_size": 256, "sigma": None,
                                                     "max_test_images": None}}
    want_a = {"family": "timm", "model": "wrn50", "pretrained": "imagenet", "precision": "fp32"}
    ok = [rec("A"), rec("Z", backbone={"model": "other"})]  # Z: a method this run does not name keeps its own
    assert folder_conflicts(ok, expected, {"A": want_a}) == []
    assert folder_conflicts(ok, expected) == []
    bad_a = rec("A", backbone={**BB, "model": "vit", "precision": "bf16-autocast"})
    bad_p = rec("P", protocol={**PROTO, "eval_size": 400}, metric_version="m0")
    got = folder_conflicts(ok + [bad_a, bad_p], expected, {"A": want_a})
    assert [(r.key["method"], diffs) for r, diffs in got] == [
        ("A", ["A backbone.model: folder has 'vit', this run 'wrn50'",
               "A backbone.precision: folder has 'bf16-autocast', this run 'fp32'"]),
        ("P", ["metric_version: folder has 'm0', this run 'm1'",
               "protocol.eval_size: folder has 400, this run 256"])]
    # a run-wide backbone (no per-method one) is named without a method
    got = folder_conflicts([bad_a], {"backbone": want_a})
    assert got[0][1] == ["backbone.model: folder has 'vit', this run 'wrn50'",
                         "backbone.precision: folder has 'bf16-autocast', this run 'fp32'"]
    # a field expected as a mapping but recorded as something else is one difference
    assert folder_conflicts([rec()], {"protocol": "v2"})[0][1] == [
        "protocol: folder has {'version': 2, 'eval_size': 256, 'sigma': None, 'max_test_images': None}, "
        "this run 'v2'"]


def test_commits_are_named_short_with_dirty_trees_and_counts():
    assert short_commit(rec(commit="0123456789abcdef")) == "0123456789"
    assert short_commit(rec(dirty=True)) == "aaaaaaaaaa+dirty"
    assert short_commit(rec(commit=None)) == "unknown"
    assert short_commit(rec(commit="", dirty=True)) == "unknown+dirty"
    assert short_commit(Record(key=rec().key, status="ok", config_hash="h")) == "unknown"
    assert commit_summary([]) == "no records"
    assert commit_summary([rec()]) == "commit aaaaaaaaaa (1 record)"
    recs = [rec(commit="b" * 40), rec(dirty=True), rec(dirty=True), rec(commit="c" * 40), rec(commit="b" * 40),
            rec(commit="b" * 40)]
    assert commit_summary(recs) == ("commits bbbbbbbbbb (3 records), aaaaaaaaaa+dirty (2 records), cccccccccc "
                                    "(1 record); +dirty = made from a working tree with uncommitted changes")
    assert commit_summary([rec(commit="d" * 40), rec(commit="c" * 40)]) == ("commits cccccccccc (1 record), "
                                                                            "dddddddddd (1 record)")


EQUIVALENT_MUTANTS: dict[str, str] = {
}
