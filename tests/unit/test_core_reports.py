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


# -- emphasis: ties at the printed precision, the best by the unrounded mean, alpha as asked --------------
# one category, three seeds. A = 80.004 and B = 80.001 both print 80.00: both bold. The dagger is decided
# against the best by the unrounded mean (A): C - A has p = 0.091 (dagger at alpha 0.05, none at 0.2), while
# C - B would have p = 0.037 (no dagger at 0.05).
SEEDS = {"A": (81.004, 79.004, 80.004), "B": (80.001, 80.001, 80.001), "C": (79.5, 79.0, 78.5)}


def _close_call():
    return [Record(key=CellKey(m, "mvtec", "c1", 1, s).__dict__, status="ok", config_hash="h", method={"name": m},
                   metrics={"w/o VG": {"pixel_auroc": v / 100}}) for m, vals in SEEDS.items()
            for s, v in enumerate(vals)]


def test_ties_are_all_bold_and_the_dagger_is_judged_against_the_best_unrounded_mean():
    rs = ResultSet(_close_call())
    t = main_table(rs)
    assert [h for h, _ in t.rows] == [["1-shot", "A"], ["1-shot", "B"], ["1-shot", "C"]]
    assert t.bold == {(0, 0), (1, 0)} and t.close == {(2, 0)}
    assert main_table(rs, alpha=0.2).close == set() and main_table(rs, alpha=0.09).close == {(2, 0)}
    c = category_table(rs, "mvtec", 1)  # one variant: the methods of a category compete
    assert c.columns == ["w/o VG"] * 3 and c.bold == {(0, 0), (0, 1)} and c.close == {(0, 2)}
    assert category_table(rs, "mvtec", 1, alpha=0.2).close == set()


def test_a_dagger_needs_p_at_least_alpha_and_a_group_without_complete_figures_does_not_end_emphasis():
    from fsadbench.reports.tables import Table, emphasise
    from fsadbench.results.coverage import Coverage, Figure
    from fsadbench.results.stats import paired_t

    def fig(vals, complete=True):
        seeds = dict(enumerate(vals))
        cov = None if complete else Coverage(("c1",), (0, 1, 2, 3), ((0, 3, "no record"),))
        return Figure(sum(vals) / len(vals), 0.0, seeds, cov)

    a, c = fig(SEEDS["A"]), fig(SEEDS["C"])
    p = paired_t(c.seeds, a.seeds).p_lower
    t = Table("t", ["m"], [], ["v", "w"], [(["A"], [fig((1.0,), complete=False), a]), (["C"], [None, c])])
    emphasise(t, [[(0, 0), (1, 0)], [(0, 1), (1, 1)]], alpha=p)
    assert t.bold == {(0, 1)} and t.close == {(1, 1)}
    t.bold, t.close = set(), set()
    emphasise(t, [[(0, 0), (1, 0)], [(0, 1), (1, 1)]], alpha=p + 1e-9)
    assert t.bold == {(0, 1)} and t.close == set()


# -- what each empty or incomplete entry says -------------------------------------------------------------
def _undefined(m, c, s, shots=1):
    return Record(key=CellKey(m, "mvtec", c, shots, s).__dict__, status="ok", config_hash="h", method={"name": m},
                  metrics={"w/o VG": {"pixel_auroc": None}}, undefined={"w/o VG": {"pixel_auroc": "no anomaly"}})


def test_an_entry_whose_metric_is_undefined_everywhere_is_a_dash_with_the_reason():
    # U: every cell undefined; F: every cell undefined but (c2, seed 0), which failed. Some cells are ok, so
    # the entries are "–" (no figure), not "failed".
    recs = [_undefined(m, c, s) for m in ("U", "F") for c in ("c1", "c2") for s in (0, 1)
            if (m, c, s) != ("F", "c2", 0)]
    recs.append(Record(key=CellKey("F", "mvtec", "c2", 1, 0).__dict__, status="failed", config_hash="h",
                       method={"name": "F"}, error="OSError: disk"))
    t = main_table(ResultSet(recs))
    assert _entries(t) == [(["1-shot", "U"], ["–"]), (["1-shot", "F"], ["–"])]
    assert t.problems == ["2 figure(s) incomplete, missing or failed"]
    assert t.notes[-2:] == ["[a] U, mvtec 1-shot: no figure (pixel_auroc undefined: no anomaly)",
                            "[b] F, mvtec 1-shot: no figure (pixel_auroc undefined: no anomaly; failed: OSError: "
                            "disk)"]


def test_per_category_entries_say_what_they_miss():
    recs = [rec("A", c, s, {"w/o VG": 0.8}) for c in ("c1", "c2") for s in (0, 1)] + [
        rec("B", "c1", 0, {"w/o VG": 0.7}), rec("B", "c1", 1, {}, status="failed", error="Traceback\nOSError: disk"),
        _undefined("B", "c2", 0), rec("B", "c2", 1, {}, status="failed", error="ValueError: nan")]
    t = category_table(ResultSet(recs), "mvtec", 1)
    assert _entries(t) == [(["c1"], ["80.00±0.00", "70.00±0.00"]), (["c2"], ["80.00±0.00", "–"])]
    assert t.bold == {(0, 0), (1, 0)} and t.marks == {(0, 1): "a", (1, 1): "b"}
    assert t.notes[-2:] == ["[a] B: covers 1/2 seeds; missing: seed 1 (failed: OSError: disk)",
                            "[b] B: no figure: pixel_auroc undefined: no anomaly; failed: ValueError: nan"]


def test_only_marked_figures_missing_and_failed_entries_count_as_incomplete():
    from fsadbench.reports.tables import NOT_APPLICABLE, Table, count_incomplete, incomplete_problem
    from fsadbench.results.coverage import Figure

    cells = [Figure(1.0, 0.0), TextCell("–", "--"), TextCell("failed", "failed"), TextCell("missing", "missing"),
             NOT_APPLICABLE, TextCell("failed", "failed")]
    t = Table("t", ["m"], [], ["v"] * 6, [(["A"], cells)], marks={(0, j): "a" for j in range(5)})
    assert count_incomplete(t) == 4 and incomplete_problem(t) == ["4 figure(s) incomplete, missing or failed"]
    t.marks = {(0, 4): "a"}  # n/a by design, and unmarked entries, count as nothing
    assert count_incomplete(t) == 0 and incomplete_problem(t) == []


# -- columns, labels and backbones -----------------------------------------------------------------------
def _two_datasets():
    out = []
    for s in (0, 1):
        out.append(Record(key=CellKey("A", "mvtec", "c1", 1, s).__dict__, status="ok", config_hash="h",
                          method={"name": "A"}, metrics={"w/o VG": {"pixel_auroc": 0.8}, "w/ VG": {"pixel_auroc": 0.9}},
                          backbone={"model": "vit"}))
        out.append(Record(key=CellKey("A", "visa", "c9", 1, s).__dict__, status="ok", config_hash="h",
                          method={"name": "A"}, metrics={"w/o VG": {"pixel_auroc": 0.6}}, backbone={"model": "vit"}))
        out.append(Record(key=CellKey("P", "mvtec", "c1", 1, s).__dict__, status="ok", config_hash="h",
                          method={"name": "P"}, metrics={"w/o VG": {"pixel_auroc": 0.7}},
                          backbone={"model": "wrn50"}))
    return out


def test_columns_per_dataset_hold_only_the_variants_measured_there_and_backbones_differ_per_row():
    t = main_table(ResultSet(_two_datasets()))
    assert t.groups == [("mvtec", 2), ("visa", 1)] and t.columns == ["w/o VG", "w/ VG", "w/o VG"]
    assert t.row_headers == ["shots", "method", "backbone"]
    assert [h for h, _ in t.rows] == [["1-shot", "A", "vit"], ["1-shot", "P", "wrn50"]]
    assert not any(n.startswith("backbone of every row") for n in t.notes)
    assert ("Planned: mvtec: 1 categories (c1), seeds 0, 1; visa: 1 categories (c9), seeds 0, 1." in
            " ".join(t.notes))
    c = category_table(ResultSet(_two_datasets()), "mvtec", 1)
    assert "backbones: A = vit; P = wrn50." in c.notes


def test_records_without_a_backbone_name_no_backbone():
    recs = [Record(key=CellKey("A", "mvtec", "c1", 1, 0).__dict__, status="ok", config_hash="h",
                   method={"name": "A"}, metrics={"w/o VG": {"pixel_auroc": 0.8}})]
    t = main_table(ResultSet(recs))
    assert t.row_headers == ["shots", "method"] and not any("backbone" in n for n in t.notes)
    assert not any("backbone" in n for n in category_table(ResultSet(recs), "mvtec", 1).notes)


def test_backbone_label_joins_the_backbones_of_one_method_only():
    from fsadbench.reports.tables import backbone_label

    recs = _two_datasets() + [Record(key=CellKey("A", "mpdd", "c1", 1, 0).__dict__, status="ok", config_hash="h",
                                     backbone={"model": "alt"}),
                              Record(key=CellKey("A", "mpdd", "c2", 1, 0).__dict__, status="ok", config_hash="h")]
    assert backbone_label(recs, "A") == "alt + vit" and backbone_label(recs, "P") == "wrn50"
    assert backbone_label(recs, "Z") == "?"


def _aux(m, dataset, aux, label="AnomalyCLIP"):
    return Record(key=CellKey(m, dataset, "c1", 0, 0).__dict__, status="ok", config_hash="h",
                  method={"name": m, "label": label, "auxiliary": aux}, metrics={"w/o VG": {"pixel_auroc": 0.5}})


def test_a_transfer_method_is_labelled_with_what_it_trained_on():
    from fsadbench.reports.tables import auxiliary_note, method_label

    cross = [_aux("ac", "mvtec", {"name": "visa"}), _aux("ac", "visa", {"name": "mvtec"}),
             _aux("ac", "mpdd", {"name": "visa"}), _aux("x", "mvtec", {"name": "other"}, label="X")]
    assert method_label(cross, "ac") == "AnomalyCLIP (trained on mvtec for visa; trained on visa for mpdd, mvtec)"
    assert auxiliary_note(cross, "ac", name_of=str.upper) == ("trained on MVTEC for VISA; "
                                                              "trained on VISA for MPDD, MVTEC")
    assert method_label(cross, "x") == "X (trained on other)"
    one = [_aux("ac", "mvtec", {"name": "visa"}), _aux("ac", "mpdd", {"name": "visa"})]
    assert method_label(one, "ac") == "AnomalyCLIP (trained on visa)"
    own = [_aux("ac", "mvtec", {"name": "mvtec", "same_as_target": True})]
    assert method_label(own, "ac") == "AnomalyCLIP (trained on mvtec (its own test split))"
    plain = [_aux("p", "mvtec", None, label=None), _aux("ac", "mvtec", {})]
    assert method_label(plain, "p") == "p" and auxiliary_note(plain, "p") == ""
    assert method_label(plain, "ac") == "AnomalyCLIP" and method_label(plain, "unknown") == "unknown"


def test_fidelity_notes_once_per_method_by_id_or_label():
    from fsadbench.reports.tables import fidelity_notes

    recs = [Record(key=CellKey(m, "mvtec", c, 1, 0).__dict__, status="ok", config_hash="h",
                   method={"name": m, "describe": {"fidelity_notes": notes}})
            for m, c, notes in (("A", "c1", ["crop 240", "no VG"]), ("A", "c2", ["ignored"]), ("B", "c1", []),
                                ("C", "c1", ["fp16"]))]
    assert fidelity_notes(recs) == ["A: crop 240; no VG", "C: fp16"]
    assert fidelity_notes(recs, str.lower) == ["a: crop 240; no VG", "c: fp16"]


EQUIVALENT_MUTANTS = {
    "tables.main_table / category_table: `t.problems = incomplete_problem(t)` for `+=`":
        "t.problems is still the new Table's empty list at that point (mixing problems are added after it)",
    "tables.main_table / category_table: common_notes(..., None, ...) for the metric":
        "common_notes takes the metric for its callers' symmetry and does not read it",
}
