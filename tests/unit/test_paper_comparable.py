"""The one rule of paper diffs (reports/paper/comparable.py), each condition alone against a comparable baseline.

The baseline is APT on every MVTec category over the protocol's 5 seeds, the paper's backbone, evaluated at
400 px on all test images, APT's default options: APT Table 1 prints its diff (+0.08). Each test changes
one thing and reads the footnote of the "n/c" cell.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/paper/comparable.py that cannot change behaviour.
"""

from __future__ import annotations

import pytest

from fsadbench.core.builtin import BUILTIN_METHODS
from fsadbench.reports.paper.comparable import (alias_options, as_json, closest_first, diff_blockers, fill_keys,
                                                method_class, off_defaults, option_departures, record_blockers,
                                                row_options, row_protocol)
from fsadbench.reports.paper.layouts import apt_table1
from fsadbench.results.coverage import Coverage, Figure
from tests.unit.test_paper_tables import MVTEC, _note_of, _rows, comparable_records

EQUIVALENT_MUTANTS = {
    "comparable.x_option_departures__mutmut_13": "the dict is an ordered set: its values (None or '') are never read",
}

RANDOM = {"model": "fsad-tiny-vit", "pretrained": "none", "random_weights": True}


def diff_cell(recs):
    """(diff cell text, its footnote or None) of APT 1-shot MVTec w/o VG in APT Table 1 ('under')."""
    t = apt_table1(recs, show="under", datasets=["mvtec"])
    i = list(_rows(t)).index(("1-shot", "APT", "diff"))
    cell = t.rows[i][1][0].md
    return cell, (_note_of(t, i, 0) if (i, 0) in t.marks else None)


def test_the_baseline_is_comparable():
    assert diff_cell(comparable_records()) == ("+0.08", None)


def test_more_seeds_than_the_protocol_is_not_comparable():
    cell, note = diff_cell(comparable_records(seeds=range(6)))
    assert cell == "n/c" and "6 seed(s) vs the protocol's 5" in note


def test_records_mixing_random_and_pretrained_weights_are_not_comparable():
    recs = comparable_records()
    for r in recs[::2]:
        r.backbone = dict(RANDOM, model="ViT-B-16-plus-240", pretrained="laion400m_e32")
    cell, note = diff_cell(recs)
    assert cell == "n/c" and "random backbone weights" in note


@pytest.mark.parametrize("sizes,why", [((240,), "evaluated at 240 px vs the protocol's 400 px"),
                                       ((400, 240), "evaluated at 240, 400 px vs the protocol's 400 px"),
                                       ((None,), "evaluated at an unrecorded size px vs the protocol's 400 px")])
def test_another_evaluation_size_is_not_comparable(sizes, why):
    recs = comparable_records()
    for i, r in enumerate(recs):
        r.protocol["eval_size"] = sizes[i % len(sizes)]
    cell, note = diff_cell(recs)
    assert cell == "n/c" and why in note


def test_a_subset_of_test_images_is_not_comparable():
    recs = comparable_records()
    recs[3].protocol["max_test_images"] = 5
    cell, note = diff_cell(recs)
    assert cell == "n/c" and "a subset of the test images (max_test_images=5)" in note


def test_a_sigma_set_by_the_run_is_not_comparable():
    recs = comparable_records()
    for r in recs:
        r.protocol["sigma"] = 0
    cell, note = diff_cell(recs)
    assert cell == "n/c" and "Gaussian sigma set by the run (0.0), not the method's own" in note


def test_options_off_the_defaults_are_not_comparable_and_named():
    recs = comparable_records()
    for r in recs:
        r.method["options"] = {"epochs": 1, "lam": 1.0, "memory_layers": [3, 8]}  # lam, memory_layers: defaults
    cell, note = diff_cell(recs)
    assert cell == "n/c" and note.endswith("options off the row's protocol: epochs=1 (protocol 100)")
    # an option a record does not state counts as its default; backbone options go through the backbone
    for r in recs:
        r.method["options"] = {"lam": 1.0, "backbone": "x", "backbone_weights": "/ckpt.pth", "gone": 3}
    assert diff_cell(recs) == ("+0.08", None)


def test_option_departures_are_listed_once_in_first_seen_order():
    recs = comparable_records()[:3]
    recs[0].method["options"] = {"epochs": 1}
    recs[1].method["options"] = {"lr": 0.5, "epochs": 1}
    recs[2].method["options"] = {"tf": False, "memory_layers": (3, 8)}
    want = row_options("apt")
    assert option_departures(recs, want) == ["epochs=1 (protocol 100)", "lr=0.5 (protocol 0.0001)",
                                             "tf=false (protocol true)"]
    assert option_departures(recs, {}) == []


def test_blockers_accumulate_in_order():
    recs = comparable_records(categories=MVTEC[:-1], seeds=range(4), backbone=dict(RANDOM))
    for r in recs:
        r.protocol.update(eval_size=240, max_test_images=2, sigma=2.5)
        r.method["options"] = {"epochs": 1}
    cell, note = diff_cell(recs)
    parts = note.split(": ", 1)[1].removeprefix("no diff (not comparable): ").split("; ")
    assert cell == "n/c" and parts == [
        "measured over 14 of the paper's 15 mvtec categories (missing zipper)", "4 seed(s) vs the protocol's 5",
        "random backbone weights", "backbone fsad-tiny-vit/none vs the paper's ViT-B-16-plus-240/laion400m_e32",
        "evaluated at 240 px vs the protocol's 400 px", "a subset of the test images (max_test_images=2)",
        "Gaussian sigma set by the run (2.5), not the method's own",
        "options off the row's protocol: epochs=1 (protocol 100)"]


def test_diff_blockers_directly():
    fig = Figure(90.0, 0.0, {s: 90.0 for s in range(5)}, Coverage(MVTEC, tuple(range(5))))
    recs = comparable_records()
    assert diff_blockers(None, "mvtec", recs, {}) == ["no measured figure"]
    assert diff_blockers(fig, "mvtec", recs, {"seeds": 5, "eval_size": 400}) == []
    assert diff_blockers(fig, "mvtec", recs, {"seeds": 3}) == ["5 seed(s) vs the protocol's 3"]
    assert diff_blockers(fig, "no-such-set", recs, {}) == ["the category list of no-such-set is unknown here"]
    other = Figure(90.0, 0.0, {0: 90.0}, Coverage(MVTEC + ("extra",), (0,)))
    assert diff_blockers(other, "mvtec", recs, {}) == ["categories not in the paper's dataset: extra"]
    many = Figure(90.0, 0.0, {0: 90.0}, Coverage(MVTEC[7:], (0,)))
    assert diff_blockers(many, "mvtec", [], {})[0] == (
        "measured over 8 of the paper's 15 mvtec categories (missing bottle, cable, capsule, carpet, grid, ...)")
    assert diff_blockers(Figure(90.0, 0.0, {0: 90.0}), "mvtec", [], {}) == []  # no coverage known, no records
    # no protocol field: nothing of it is checked
    assert record_blockers(comparable_records(backbone={"model": "m", "pretrained": "p"}), {}) == []
    assert record_blockers(comparable_records(backbone={"model": "m", "pretrained": "p"}),
                           {"pretrained": "q"}) == ["backbone m/p vs the paper's None/q"]


def test_row_options_are_the_defaults_under_the_alias_and_the_row():
    _, anople = method_class("anople")
    assert anople["epochs"] == 60 and anople["multi_class"] is True and anople["interaction"] == "bidirectional"
    maple = row_options("maple-draem")
    assert {k: maple[k] for k in BUILTIN_METHODS["maple-draem"][1]} == BUILTIN_METHODS["maple-draem"][1]
    assert maple["epochs"] == 60
    assert row_options("anople", {"interaction": "text"})["interaction"] == "text"
    assert row_options("apt", {"memory_layers": (1, 2)})["memory_layers"] == [1, 2]  # as records store it
    assert "backbone" not in row_options("patchcore") and "backbone_weights" not in row_options("patchcore")
    assert "num_neighbors" in row_options("patchcore")
    assert method_class("no-such-method") == (None, {}) and row_options("no-such-method", {"x": 1}) == {"x": 1}
    assert as_json((1, (2.5, "a"))) == [1, [2.5, "a"]] and as_json({"k": object}) == {"k": str(object)}


def test_row_protocol_merges_table_row_and_options():
    table = {"model": "A", "seeds": 5, "eval_size": 400}
    row = {"protocol": {"model": "B", "eval_size": 518}}
    p = row_protocol(table, row, "apt", {"la": False})
    assert {k: p[k] for k in ("model", "seeds", "eval_size")} == {"model": "B", "seeds": 5, "eval_size": 518}
    assert p["options"]["la"] is False and p["options"]["epochs"] == 100
    assert row_protocol(table, None, None) == table and table == {"model": "A", "seeds": 5, "eval_size": 400}
    assert row_protocol(None, {}, None) == {}


def test_fill_keys_and_alias_options():
    assert alias_options("anople") == {"multi_class": True} and alias_options("no-such") == {}
    assert fill_keys("anople", ["interaction"]) == ["interaction", "multi_class"]
    assert fill_keys("anople", ["multi_class", "align"]) == ["multi_class", "align"]
    assert fill_keys("maple-draem", []) == list(BUILTIN_METHODS["maple-draem"][1])
    assert fill_keys("apt", ["so"]) == ["so"]


def test_closest_to_the_defaults_first_ties_by_id():
    opts = {"apt[a]": {"epochs": 1, "lr": 0.5}, "apt[b]": {"epochs": 1}, "apt[c]": {"epochs": 100},
            "apt[d]": {}, "apt[e]": {"not_an_option": 1}}
    assert off_defaults("apt", opts["apt[a]"]) == 2 and off_defaults("apt", {"memory_layers": (3, 8)}) == 0
    assert closest_first("apt", ["apt[a]", "apt[b]", "apt[e]", "apt[d]", "apt[c]"], opts) == [
        "apt[c]", "apt[d]", "apt[e]", "apt[b]", "apt[a]"]
    assert closest_first("apt", ["apt[z]", "apt[y]"], {}) == ["apt[y]", "apt[z]"]


def test_several_values_are_listed_and_long_lists_cut():
    recs = comparable_records()[:4]
    for r, (model, cap, sigma) in zip(recs, (("m1", 5, 1.0), ("m2", 7, 2.0), ("m1", 5, 1.0), ("m2", 7, 2.0))):
        r.backbone = {"model": model, "pretrained": "p"}
        r.protocol.update(max_test_images=cap, sigma=sigma)
        r.method["options"] = {"epochs": 1, "lr": 0.5}
    assert record_blockers(recs, {"model": "M", "pretrained": "p", "options": row_options("apt")}) == [
        "backbone m1/p, m2/p vs the paper's M/p", "a subset of the test images (max_test_images=5, 7)",
        "Gaussian sigma set by the run (1.0, 2.0), not the method's own",
        "options off the row's protocol: epochs=1 (protocol 100), lr=0.5 (protocol 0.0001)"]
    five = Figure(90.0, 0.0, {0: 90.0}, Coverage(MVTEC[5:], (0,)))
    assert diff_blockers(five, "mvtec", [], {}) == [
        "measured over 10 of the paper's 15 mvtec categories (missing bottle, cable, capsule, carpet, grid)"]
    six = Figure(90.0, 0.0, {0: 90.0}, Coverage(MVTEC[6:] + tuple(f"x{i}" for i in range(6)), (0,)))
    assert diff_blockers(six, "mvtec", [], {}) == [
        "measured over 15 of the paper's 15 mvtec categories (missing bottle, cable, capsule, carpet, grid, ...)",
        "categories not in the paper's dataset: x0, x1, x2, x3, x4"]
