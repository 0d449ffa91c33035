"""compare as its reader relies on it: the reasons it fails with, the tolerance as written, the order of
metrics, what a table figure covers and why a cell is left out, the refused settings. Values by hand; the
statistics are in test_compare.py and test_stats.py.

EQUIVALENT_MUTANTS lists the surviving mutants of regression/compare.py that cannot change behaviour.
"""

from __future__ import annotations

import math

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.regression.compare import DEFAULT_TOL, Tolerance, compare, table_stats
from fsadbench.regression.render import render_markdown
from fsadbench.regression.sources import side_from_records
from fsadbench.results.records import CellKey, Record


def rec(cat, seed, metrics, *, method="memory", status="ok", metric_version="m/1", variant="w/ VG"):
    return Record(key=CellKey(method, "synthetic", cat, 1, seed).__dict__, status=status, config_hash="h",
                  metrics={variant: dict(metrics)} if status == "ok" else {}, metric_version=metric_version,
                  backbone={"model": "tiny"}, protocol={"version": "p/1"}, dataset={"fingerprint": "fp"})


def side(recs):
    return side_from_records(recs)


GRID = [(c, s) for c in ("c1", "c2") for s in (0, 1)]


def test_tolerances_as_written():
    assert Tolerance.of({"aupro": 2}) == Tolerance(DEFAULT_TOL, (("aupro", 2.0),))
    assert Tolerance.of({"*": 1, "b": 3, "a": 2}) == Tolerance(1.0, (("a", 2.0), ("b", 3.0)))
    assert Tolerance.of(" 0.25 , image_auroc = 1 ,") == Tolerance(0.25, (("image_auroc", 1.0),))
    assert Tolerance.of(2) == Tolerance(2.0) and Tolerance.of(Tolerance(3.0)) == Tolerance(3.0)
    assert Tolerance.of("image_auroc=1")("pixel_auroc") == DEFAULT_TOL
    assert Tolerance(0.5, (("aupro", 2.0), ("image_auroc", 1.0))).describe() == "0.5 pp, aupro 2 pp, image_auroc 1 pp"
    with pytest.raises(ConfigError, match=r"^--tol 'x': 'x' is not a number or METRIC=NUMBER$"):
        Tolerance.of("x")


@pytest.mark.parametrize("tol,alpha", [(-0.1, 0.025), ({"*": 0.5, "aupro": -1}, 0.025), (0.5, 0.0), (0.5, 1.0)])
def test_negative_tolerances_and_alpha_outside_0_1_are_refused(tol, alpha):
    s = side([rec("c1", 0, {"pixel_auroc": 0.5})])
    with pytest.raises(ConfigError, match=r"^--tol \(.* pp.*\) must be >= 0 and --alpha \(.*\) in \(0, 1\)$"):
        compare(s, s, tol=tol, alpha=alpha)


def test_zero_tolerances_and_an_alpha_near_1_are_allowed():
    s = side([rec("c1", 0, {"pixel_auroc": 0.5})])
    assert compare(s, s, tol={"*": 0, "aupro": 0}, alpha=0.999).ok


def test_an_unknown_comparability_check_is_refused_naming_the_known_ones():
    s = side([rec("c1", 0, {"pixel_auroc": 0.5})])
    with pytest.raises(ConfigError, match=r"^comparability check\(s\) \['colour'\] unknown; known: \['backbone', "
                                          r"'dataset', 'metric_version', 'protocol'\]$"):
        compare(s, s, checks=["colour", "backbone"])
    assert compare(s, side([rec("c1", 0, {"pixel_auroc": 0.5}, metric_version="m/2")]), checks=["backbone"]).ok


def test_metrics_compared_are_those_of_both_sides_in_the_tables_order():
    base = [rec(c, s, {"zeta": 0.1, "alpha_x": 0.2, "image_auroc": 0.3, "pixel_auroc": 0.4, "only_base": 0.5})
            for c, s in GRID]
    head = [rec(c, s, {"zeta": 0.1, "alpha_x": 0.2, "image_auroc": 0.3, "pixel_auroc": 0.4, "only_head": 0.5})
            for c, s in GRID]
    c = compare(side(base), side(head))
    assert list(c.cells["metric"][:4]) == ["pixel_auroc", "image_auroc", "alpha_x", "zeta"] and len(c.cells) == 16
    assert list(c.tables["metric"]) == ["pixel_auroc", "image_auroc", "alpha_x", "zeta"]
    c = compare(side(base), side(head), metrics=["zeta", "image_auroc", "only_head"])
    assert list(c.cells["metric"][:2]) == ["image_auroc", "zeta"] and set(c.tables["metric"]) == {"image_auroc",
                                                                                                 "zeta"}
    # a variant only one side measured is not compared
    other = [rec(c, s, {"pixel_auroc": 0.4}, variant="w/o VG") for c, s in GRID]
    assert compare(side(base), side(other), allow_missing=True).cells.empty


def test_every_failing_reason_is_named():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    head = [rec("c1", 0, {"pixel_auroc": 0.7}), rec("c1", 1, {"pixel_auroc": 0.7}),
            rec("c2", 0, {}, status="failed")]
    c = compare(side(base), side(head))
    assert c.reasons() == [
        "1 table figure(s) fell beyond tolerance (0.5 pp) and beyond the seeds' noise",
        "1 cell(s) ok in base did not succeed in head",
        "1 cell(s) of base are missing in head"]
    assert c.exit_code() == 1 and not c.ok
    assert compare(side(base), side(head), allow_missing=True).reasons()[-1] == \
        "1 cell(s) ok in base did not succeed in head"
    odd = [rec(c, s, {"pixel_auroc": 0.8}, metric_version="m/2") for c, s in GRID]
    assert compare(side(base), side(odd)).reasons() == [
        "4 cell(s) are not comparable (different metric version, backbone, protocol or data); not compared"]


def test_markdown_defaults_list_at_most_50_cells_and_not_every_cell():
    base = [rec(f"c{i}", 0, {"pixel_auroc": 0.8}) for i in range(51)]
    c = compare(side(base), side([]), allow_missing=True)
    assert c.to_markdown() == render_markdown(c, all_cells=False, max_list=50)
    assert c.to_markdown() != render_markdown(c, all_cells=False, max_list=51)
    same = compare(side(base), side(base))
    assert same.to_markdown() != render_markdown(same, all_cells=True, max_list=50)


def test_table_stats_of_one_empty_side_are_undefined():
    nan_keys = ("base", "head", "delta", "se", "df", "band")
    for b, h in (({}, {}), ({0: 1.0}, {}), ({}, {0: 1.0}), ({0: math.nan}, {0: 1.0})):
        st = table_stats(b, h)
        assert set(st) == {*nan_keys, "paired", "n_base", "n_head", "test"}
        assert all(math.isnan(st[k]) for k in nan_keys) and st["test"] is None and st["paired"] is False
        assert (st["n_base"], st["n_head"]) == (len([v for v in b.values() if not math.isnan(v)]), len(h))
    st = table_stats({0: 80.0, 1: 82.0, 2: 81.0}, {0: 79.0, 1: 80.0, 2: 81.0})
    assert st["paired"] and st["df"] == 2 and st["delta"] == pytest.approx(-1.0) and st["n_base"] == 3


def test_a_table_figure_says_what_it_leaves_out_and_why():
    # base: c1, c2, c3 x seeds 0, 1. Head lacks (c2, 1); its (c3, 1) is not comparable: only c1 is held by
    # both sides for every seed, and the figure says why c2 and c3 are left out.
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID] + [rec("c3", 0, {"pixel_auroc": 0.8}),
                                                                rec("c3", 1, {"pixel_auroc": 0.8})]
    head = [rec("c1", 0, {"pixel_auroc": 0.8}), rec("c1", 1, {"pixel_auroc": 0.8}), rec("c2", 0, {"pixel_auroc": 0.8}),
            rec("c3", 0, {"pixel_auroc": 0.8}), rec("c3", 1, {"pixel_auroc": 0.8}, metric_version="m/2")]
    t = compare(side(base), side(head), allow_missing=True).tables.iloc[0]
    assert t["n_categories"] == 1 and not t["complete"] and t["head_gap"]
    assert t["coverage"] == ("covers 1/3 categories x 2/2 seeds; missing: category c2 (left out: the category "
                             "lacks another seed; head: no record), category c3 (left out: the category lacks "
                             "another seed; not comparable)")
    # a seed only one side holds is named with each side's reason
    extra = base + [rec("c1", 5, {"pixel_auroc": 0.8})]
    t = compare(side(extra), side(base), allow_missing=True).tables.iloc[0]
    assert t["coverage"] == ("covers 3/3 categories x 2/3 seeds; missing: seed 5 (head: no record; base: no "
                             "record; head: no record)")


def test_failed_records_and_cells_not_compared_are_left_out_of_the_tables():
    base = [rec("c0", 0, {}, status="failed")] + [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    head = [rec(c, s, {"pixel_auroc": 0.8 if c == "c1" else 0.2}, metric_version="m/1" if c == "c1" else "m/2")
            for c, s in GRID]
    c = compare(side(base), side(head), allow_missing=True)
    t = c.tables.iloc[0]
    assert t["n_categories"] == 1 and t["delta"] == pytest.approx(0.0)  # c2 (not comparable) is not in it
    assert not c.regressions.shape[0]


def test_cells_tables_and_notes_hold_every_column_by_hand():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    head = [rec(c, s, {"pixel_auroc": 0.7 if c == "c1" else 0.8}) for c, s in GRID]
    head[3].config_hash = "h2"
    for r in head:
        r.provenance = {"git": {"commit": "b" * 40, "dirty": True}}
    c = compare(side(base), side(head))
    assert list(c.cells.columns) == ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base",
                                     "head", "delta", "mismatch"]
    got = c.cells.to_dict("records")
    want = [{"method": "memory", "dataset": "synthetic", "category": cat, "shots": 1, "seed": s, "variant": "w/ VG",
             "metric": "pixel_auroc", "base": 80.0, "head": 70.0 if cat == "c1" else 80.0,
             "delta": -10.0 if cat == "c1" else 0.0, "mismatch": False} for cat, s in GRID]
    assert [{k: (pytest.approx(v) if isinstance(v, float) else v) for k, v in w.items()} for w in want] == got
    assert list(c.tables.columns) == [
        "method", "dataset", "shots", "variant", "metric", "base", "head", "delta", "se", "df", "band", "paired",
        "n_base", "n_head", "tol", "n_categories", "test", "p", "complete", "coverage", "head_gap", "beyond_tol",
        "beyond_noise", "regression"]
    t = c.tables.iloc[0].to_dict()
    assert {k: t[k] for k in ("method", "dataset", "shots", "variant", "metric", "paired", "n_base", "n_head", "tol",
                              "n_categories", "complete", "coverage", "head_gap", "beyond_tol", "beyond_noise",
                              "regression")} == {
        "method": "memory", "dataset": "synthetic", "shots": 1, "variant": "w/ VG", "metric": "pixel_auroc",
        "paired": True, "n_base": 2, "n_head": 2, "tol": 0.5, "n_categories": 2, "complete": True,
        "coverage": "covers all 2 categories x 2 seeds", "head_gap": False, "beyond_tol": True,
        "beyond_noise": True, "regression": True}
    assert (t["base"], t["head"], t["delta"]) == (pytest.approx(80.0), pytest.approx(75.0), pytest.approx(-5.0))
    assert t["se"] == pytest.approx(0.0, abs=1e-9) and t["df"] == 1 and t["p"] == 0.0
    assert t["test"].startswith("paired t, n=2/2, df=1")
    assert c.notes == [
        "side `records` holds records made from a working tree with uncommitted changes",
        "memory | synthetic/c2 | 1-shot | seed 1: resume key differs (h -> h2): options, their defaults, method or "
        "feature versions, backbone, protocol or data changed"]


def test_a_figure_without_a_common_category_says_so_and_cells_fixed_or_failed_are_sorted():
    base = [rec("c1", 0, {"pixel_auroc": 0.8}), rec("c3", 0, {}, status="failed"), rec("c4", 1, {"pixel_auroc": 0.8}),
            rec("c4", 0, {"pixel_auroc": 0.8})]
    head = [rec("c2", 0, {"pixel_auroc": 0.8}), rec("c3", 0, {"pixel_auroc": 0.8}), rec("c4", 1, {}, status="failed"),
            rec("c4", 0, {}, status="failed")]
    c = compare(side(base), side(head), allow_missing=True)
    t = c.tables.iloc[0]
    assert t["test"] == "no common category" and math.isnan(t["p"]) and t["n_categories"] == 0
    assert not t["regression"] and t["head_gap"]
    assert c.fixed_head == [CellKey("memory", "synthetic", "c3", 1, 0)]
    assert [k for k, _ in c.failed_head] == [CellKey("memory", "synthetic", "c4", 1, s) for s in (0, 1)]
    assert [st for _, st in c.failed_head] == ["failed", "failed"]
    assert c.notes == []


def test_tables_come_in_method_dataset_shots_variant_and_metric_order():
    recs = [Record(key=CellKey(m, d, "c1", k, 0).__dict__, status="ok", config_hash="h",
                   metrics={"w/ VG": {"image_auroc": 0.5, "pixel_auroc": 0.5}}) for m in ("b", "a")
            for d in ("y", "x") for k in (4, 1)]
    t = compare(side(recs), side(recs)).tables
    assert [tuple(r) for r in t[["method", "dataset", "shots", "metric"]].itertuples(index=False)][:5] == [
        ("a", "x", 1, "pixel_auroc"), ("a", "x", 1, "image_auroc"), ("a", "x", 4, "pixel_auroc"),
        ("a", "x", 4, "image_auroc"), ("a", "y", 1, "pixel_auroc")]


def test_the_users_alpha_sets_the_noise_band():
    # one category, seeds 0..2; head - base = -1, -2, -3 pp: delta -2, sd 1, SE 1/sqrt(3), df 2.
    # t quantile with 2 df in closed form: (2p - 1) / sqrt(2 p (1 - p)).
    base = [rec("c1", s, {"pixel_auroc": 0.8}) for s in (0, 1, 2)]
    head = [rec("c1", s, {"pixel_auroc": 0.8 - (s + 1) / 100}) for s in (0, 1, 2)]

    def t2(p):
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))

    wide = compare(side(base), side(head)).tables.iloc[0]  # alpha 0.025: band 4.303 / sqrt(3) = 2.48 pp
    assert wide["band"] == pytest.approx(t2(0.975) / math.sqrt(3)) and wide["delta"] == pytest.approx(-2.0)
    assert wide["beyond_tol"] and not wide["beyond_noise"] and not wide["regression"]
    narrow = compare(side(base), side(head), alpha=0.2).tables.iloc[0]  # band 1.061 / sqrt(3) = 0.61 pp
    assert narrow["band"] == pytest.approx(t2(0.8) / math.sqrt(3))
    assert narrow["beyond_noise"] and narrow["regression"]


def test_no_change_is_neither_beyond_a_zero_tolerance_nor_beyond_a_zero_band():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    t = compare(side(base), side(base), tol=0).tables.iloc[0]
    assert (t["delta"], t["band"], t["tol"]) == (0.0, 0.0, 0.0)
    assert [t["beyond_tol"], t["beyond_noise"], t["regression"]] == [False, False, False]  # None is not False


def test_categories_and_seeds_only_head_holds_are_named_too():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    more = base + [rec("c3", 0, {"pixel_auroc": 0.8}), rec("c3", 1, {"pixel_auroc": 0.8})]
    t = compare(side(base), side(more)).tables.iloc[0]
    assert t["coverage"] == "covers 2/3 categories x 2/2 seeds; missing: category c3 (base: no record)"
    assert not t["head_gap"]  # what head adds is no gap of head
    later = base + [rec("c1", 5, {"pixel_auroc": 0.8})]
    t = compare(side(base), side(later)).tables.iloc[0]
    assert t["coverage"] == ("covers 2/2 categories x 2/3 seeds; missing: seed 5 (base: no record; base: no "
                             "record; head: no record)")
    assert t["head_gap"]  # c2 seed 5 is missing in head, but head planned seed 5
    t = compare(side(more), side(base), allow_missing=True).tables.iloc[0]  # and the same of base
    assert t["coverage"] == "covers 2/3 categories x 2/2 seeds; missing: category c3 (head: no record)"


def test_a_cell_not_comparable_is_a_gap_of_head():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    head = [rec(c, s, {"pixel_auroc": 0.8}, metric_version="m/2" if (c, s) == ("c2", 1) else "m/1")
            for c, s in GRID]
    t = compare(side(base), side(head)).tables.iloc[0]
    assert t["coverage"] == ("covers 1/2 categories x 2/2 seeds; missing: category c2 (left out: the category "
                             "lacks another seed; not comparable)")
    assert t["head_gap"]  # no "head: " reason: the cell not comparable alone makes it a gap


def test_sides_without_a_common_seed_cover_each_sides_own_seeds():
    base = [rec(c, s, {"pixel_auroc": 0.8}) for c, s in GRID]
    head = [rec(c, s + 2, {"pixel_auroc": 0.8}) for c, s in GRID]  # seeds 2, 3
    t = compare(side(base), side(head), allow_missing=True).tables.iloc[0]
    assert not t["paired"] and t["n_categories"] == 2 and t["test"].startswith("Welch t, n=2/2")
    # each side's own seeds are used, so nothing is left out (base's seeds lack in head and the reverse)
    assert t["coverage"] == "covers all 2 categories x 4 seeds" and t["complete"] and not t["head_gap"]


def test_empty_sides_give_empty_frames_with_every_column():
    c = compare(side([]), side([]))
    assert list(c.cells.columns) == ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base",
                                     "head", "delta", "mismatch"]
    assert list(c.tables.columns) == [
        "method", "dataset", "shots", "variant", "metric", "base", "head", "delta", "se", "df", "band", "paired",
        "n_base", "n_head", "tol", "n_categories", "test", "p", "complete", "coverage", "head_gap", "beyond_tol",
        "beyond_noise", "regression"]
    assert c.ok and c.cells.empty and c.tables.empty
    assert c.regressions.empty and c.incomplete.empty and c.cell_drops.empty and c.cell_changes.empty


def test_cell_lists_are_sorted_by_method_dataset_category_shots_and_seed():
    keys = [("b", "x", "c1", 1, 0), ("a", "y", "c1", 1, 0), ("a", "x", "c2", 1, 0), ("a", "x", "c1", 2, 0),
            ("a", "x", "c1", 1, 1), ("a", "x", "c1", 1, 0)]

    def recs(status):
        return [Record(key=CellKey(*k).__dict__, status=status, config_hash="h",
                       metrics={"w/ VG": {"pixel_auroc": 0.5}} if status == "ok" else {}) for k in keys]

    want = [CellKey(*k) for k in sorted(keys)]
    assert compare(side(recs("ok")), side([]), allow_missing=True).only_base == want
    assert compare(side([]), side(recs("ok"))).only_head == want
    assert compare(side(recs("failed")), side(recs("ok"))).fixed_head == want
    assert [k for k, _ in compare(side(recs("ok")), side(recs("failed"))).failed_head] == want
    assert [tuple(r) for r in compare(side(recs("ok")), side(recs("ok"))).cells[
        ["method", "dataset", "category", "shots", "seed"]].itertuples(index=False)] == sorted(keys)


def test_tables_of_several_variants_come_in_variant_order():
    r = rec("c1", 0, {"pixel_auroc": 0.5}, variant="v4")
    for v in ("v3", "v2", "v1"):
        r.metrics[v] = {"pixel_auroc": 0.5}
    assert list(compare(side([r]), side([r])).tables["variant"]) == ["v1", "v2", "v3", "v4"]


EQUIVALENT_MUTANTS = {
    "fsadbench.regression.compare.xǁComparisonǁto_markdown__mutmut_4":
        "render_markdown's own defaults are all_cells=False and max_list=50, and None is falsy",
    "fsadbench.regression.compare.xǁComparisonǁto_markdown__mutmut_7": "as _4",
    "fsadbench.regression.compare.xǁComparisonǁto_markdown__mutmut_8": "as _4",
    "fsadbench.regression.compare.x__metric_names__mutmut_5":
        "called only for a variant both records hold: the .get default is never used",
    "fsadbench.regression.compare.x__metric_names__mutmut_7": "as _5",
    "fsadbench.regression.compare.x__metric_names__mutmut_10": "as _5",
    "fsadbench.regression.compare.x__metric_names__mutmut_12": "as _5",
    "fsadbench.regression.compare.x__num__mutmut_5": "float() reads 'NAN' as 'nan'",
    "fsadbench.regression.compare.x_table_stats__mutmut_10": "float() reads 'NAN' as 'nan'",
    "fsadbench.regression.compare.x__tables__mutmut_138": "float() reads 'NAN' as 'nan'",
    "fsadbench.regression.compare.x_compare__mutmut_36": "the placeholder frames are replaced before compare returns",
    "fsadbench.regression.compare.x_compare__mutmut_37": "as _36",
    "fsadbench.regression.compare.x__tables__mutmut_4":
        "the metrics filter of one side is enough: only groups both sides hold are compared",
    "fsadbench.regression.compare.x__tables__mutmut_10": "as _4",
    "fsadbench.regression.compare.x__tables__mutmut_53":
        "a category one side lacks is never used: union or intersection, the same categories are used",
}
