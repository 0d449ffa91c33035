"""Whole tables from hand-made records, every entry, mark, emphasis and note computed by hand.

Records (mvtec, categories c1 c2, seeds 0 1): Alpha (label of method A, a fidelity note) complete at 1 and
4 shots with both variants; B has only "w/o VG", c2 fails at 1 shot and is not applicable at 4; C fails
everywhere at 1 shot.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/tables.py that cannot change behaviour.
"""

from __future__ import annotations

from fsadbench.reports.tables import TextCell, category_table, main_table
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import CellKey, Record

PLANNED = "Planned: mvtec: 2 categories (c1, c2), seeds 0, 1."
BOLD_NOTE = ("(every tie at the printed precision bold); †: not significantly worse than the best (one-sided "
             "paired t over common seeds, p ≥ 0.05; needs ≥ 2 seeds); figures with a coverage mark are neither.")


def rec(m, c, s, vals, shots=1, status="ok", error=None, label=None, notes=(), variants=None):
    return Record(key=CellKey(m, "mvtec", c, shots, s).__dict__, status=status, config_hash="h",
                  method={"name": m, "label": label, "variants": variants or list(vals),
                          "describe": {"fidelity_notes": list(notes)}},
                  metrics={v: {"pixel_auroc": x} for v, x in vals.items()} if status == "ok" else {},
                  backbone={"model": "x"}, error=error, provenance={"git": {"commit": "b" * 40, "dirty": False}})


def _records():
    out = []
    for s in (0, 1):
        out += [rec("A", "c1", s, {"w/o VG": 0.8, "w/ VG": 0.9 + 0.01 * s}, label="Alpha", notes=["no VG crop"]),
                rec("A", "c2", s, {"w/o VG": 0.6, "w/ VG": 0.7}, label="Alpha", notes=["no VG crop"]),
                rec("B", "c1", s, {"w/o VG": 0.7}),
                rec("B", "c2", s, {}, status="failed", error="Traceback\nOSError: disk")]
        out += [rec("A", c, s, {"w/o VG": 0.5, "w/ VG": 0.6}, shots=4, label="Alpha") for c in ("c1", "c2")]
        out += [rec("B", c, s, {}, shots=4, status="not_applicable", error="4 > pool") for c in ("c1", "c2")]
        out += [rec("C", c, s, {}, status="failed", error="ValueError: nan", notes=["crop 240"],
                    variants=["w/o VG"]) for c in ("c1", "c2")]
    return out


def _entries(t):
    return [(h, [c.md if isinstance(c, TextCell) else f"{c.mean:.2f}±{c.std:.2f}" for c in cells])
            for h, cells in t.rows]


def test_main_table_by_hand():
    t = main_table(ResultSet(_records()))
    assert (t.title, t.row_headers, t.groups, t.columns) == ("pixel AUROC", ["shots", "method"], [("mvtec", 2)],
                                                            ["w/o VG", "w/ VG"])
    assert _entries(t) == [
        (["1-shot", "Alpha"], ["70.00±0.00", "80.25±0.25"]),  # (80 + 60) / 2; seeds (90 + 70) / 2, (91 + 70) / 2
        (["1-shot", "B"], ["70.00±0.00", "n/a"]),  # c1 only: incomplete
        (["1-shot", "C"], ["failed", "n/a"]),
        (["4-shot", "Alpha"], ["50.00±0.00", "60.00±0.00"]),
        (["4-shot", "B"], ["n/a", "n/a"]),
    ]
    assert t.breaks == [3]
    # B's 70.00 ties Alpha's but is incomplete: only complete figures are bold; each shot block has its own
    assert t.bold == {(0, 0), (0, 1), (3, 0), (3, 1)} and t.close == set()
    assert t.marks == {(1, 0): "a", (1, 1): "b", (2, 0): "c", (2, 1): "d", (4, 0): "e", (4, 1): "b"}
    assert t.problems == ["2 figure(s) incomplete, missing or failed"] and not t.complete
    assert t.notes == [
        "figures from commit bbbbbbbbbb (10 records).",
        f"pixel AUROC (%), mean ± std over seeds; dataset figure of a seed = mean over categories. {PLANNED}",
        "backbone of every row: x.",
        f"bold: best complete figure per column within each shot block {BOLD_NOTE}",
        "method notes: Alpha: no VG crop",
        "method notes: C: crop 240",
        "[a] B, mvtec 1-shot: covers 1/2 categories x 2/2 seeds; missing: category c2 (failed: OSError: disk)",
        "[b] B has no 'w/ VG' variant",
        "[c] C, mvtec 1-shot: no figure (failed: ValueError: nan)",
        "[d] C has no 'w/ VG' variant",
        "[e] B, mvtec 4-shot: no figure (not applicable: 4 > pool)",
    ]


def test_category_table_by_hand():
    t = category_table(ResultSet(_records()), "mvtec", 1)
    assert (t.title, t.row_headers, t.groups, t.columns) == (
        "mvtec 1-shot per category", ["category"], [("Alpha", 2), ("B", 1)], ["w/o VG", "w/ VG", "w/o VG"])
    assert _entries(t) == [(["c1"], ["80.00±0.00", "90.50±0.50", "70.00±0.00"]),
                           (["c2"], ["60.00±0.00", "70.00±0.00", "–"])]
    assert t.bold == {(0, 0), (0, 1), (1, 0), (1, 1)} and t.close == set() and t.marks == {(1, 2): "a"}
    assert t.problems == ["1 figure(s) incomplete, missing or failed"]
    assert t.notes == [
        "figures from commit bbbbbbbbbb (6 records).",
        "backbones: Alpha = x; B = x.",
        "pixel AUROC (%) per category, mvtec, 1-shot, mean ± std over seeds 0, 1.",
        f"bold: best complete figure per category and variant (the best method) {BOLD_NOTE}",
        "[a] B: no figure: failed: OSError: disk",
    ]


def test_a_method_not_applicable_at_these_shots_has_no_per_category_column():
    # B is not applicable at 4 shots (every category, every seed): the 4-shot per-category table shows Alpha
    # alone, while the main table keeps B's row with "n/a" and the reason.
    t = category_table(ResultSet(_records()), "mvtec", 4)
    assert t.groups == [("Alpha", 2)] and t.columns == ["w/o VG", "w/ VG"]
    assert _entries(t) == [(["c1"], ["50.00±0.00", "60.00±0.00"]), (["c2"], ["50.00±0.00", "60.00±0.00"])]
    assert t.marks == {} and t.complete


def test_a_column_restricted_to_the_datasets_and_variants_asked_for():
    t = main_table(ResultSet(_records()), variants=["w/ VG"])
    assert t.columns == ["w/ VG"] and [e for _, e in _entries(t)] == [["80.25±0.25"], ["n/a"], ["n/a"],
                                                                       ["60.00±0.00"], ["n/a"]]
    assert main_table(ResultSet(_records()), datasets=["visa"]).rows == []


def test_a_metric_without_a_label_is_named_as_given_and_failed_reads_failed_in_latex():
    recs = [r for r in _records() if r.key["method"] == "C"] + [
        Record(key=CellKey("D", "mvtec", c, 1, s).__dict__, status="ok", config_hash="h", method={"name": "D"},
               metrics={"w/o VG": {"my_score": 0.5}}) for c in ("c1", "c2") for s in (0, 1)]
    t = main_table(ResultSet(recs), metric="my_score")
    assert t.title == "my_score" and any(n.startswith("my_score (%), mean ± std over seeds") for n in t.notes)
    assert t.rows[0][1][0] == TextCell("failed", "failed")
    c = category_table(ResultSet(recs), "mvtec", 1, metric="my_score")
    assert any(n.startswith("my_score (%) per category, mvtec, 1-shot") for n in c.notes)
    assert any("p ≥ 0.2;" in n for n in main_table(ResultSet(recs), metric="my_score", alpha=0.2).notes)
    assert any("p ≥ 0.2;" in n for n in category_table(ResultSet(recs), "mvtec", 1, "my_score", alpha=0.2).notes)


def test_footnote_letters_run_a_to_z_then_double():
    from fsadbench.reports.tables import Footnotes

    foot = Footnotes()
    marks = [foot.mark(f"note {i}") for i in range(30)] + [foot.mark("note 3")]
    assert marks[:3] == ["a", "b", "c"] and marks[25] == "z" and marks[26:] == ["aa", "bb", "cc", "dd", "d"]
    assert foot.notes()[27] == "[bb] note 27"


EQUIVALENT_MUTANTS: dict[str, str] = {
}
