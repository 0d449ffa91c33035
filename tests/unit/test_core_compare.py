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


EQUIVALENT_MUTANTS: dict[str, str] = {
}
