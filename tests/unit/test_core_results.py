"""Results as a reader sees them: the frame row of a hand-made record, per-seed and per-category
figures by hand, t tests equal to scipy's on random seeds, coverage sentences written out.

EQUIVALENT_MUTANTS lists, per module, the surviving mutants that cannot change behaviour.
"""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from scipy import stats as sps

from fsadbench.results.aggregate import per_category, per_seed, records_frame, summary
from fsadbench.results.coverage import Coverage, ResultSet
from fsadbench.results.records import CellKey, Record
from fsadbench.results.stats import compare_seeds, paired_t, welch_t


def rec(method="A", cat="c1", seed=0, value=0.5, shots=1, status="ok", dataset="mvtec", **kw):
    return Record(key=CellKey(method, dataset, cat, shots, seed).__dict__, status=status, config_hash="h",
                  method=kw.pop("method_info", {"name": method, "label": method}),
                  metrics={"w/o VG": {"pixel_auroc": value}} if status == "ok" else {}, **kw)


# -- aggregate -----------------------------------------------------------------------------------------
def test_records_frame_row_of_a_hand_made_record():
    r = rec("apt[k=2]", "bottle", 3, 0.8, shots=4, method_info={"name": "apt", "label": "APT"},
            backbone={"model": "ViT-B-16", "random_weights": True}, metric_version="m7",
            encoder={"encoded": 12}, timings={"total_s": 1.5})
    r.metrics = {"w/o VG": {"pixel_auroc": 0.8, "image_auroc": None}, "w/ VG": {"aupro": 0.25}}
    df = records_frame([rec(status="failed"), r])
    assert list(df.columns) == ["method", "dataset", "category", "shots", "seed", "method_name", "label",
                                "variant", "random_weights", "backbone", "metric_version", "encoded", "total_s",
                                "pixel_auroc", "image_auroc", "aupro", "pixel_ap", "pixel_f1_max", "image_ap",
                                "image_f1_max"]
    rows = df.to_dict("records")
    assert len(rows) == 2  # one row per variant of the ok record; the failed record has none
    want = {"method": "apt[k=2]", "dataset": "mvtec", "category": "bottle", "shots": 4, "seed": 3,
            "method_name": "apt", "label": "APT", "variant": "w/o VG", "random_weights": True,
            "backbone": "ViT-B-16", "metric_version": "m7", "encoded": 12, "total_s": 1.5, "pixel_auroc": 0.8}
    assert {k: rows[0][k] for k in want} == want
    assert math.isnan(rows[0]["image_auroc"]) and rows[1]["aupro"] == 0.25 and math.isnan(rows[1]["pixel_auroc"])
    bare = records_frame([rec("B")]).to_dict("records")[0]
    assert (bare["label"], bare["random_weights"], bare["encoded"], bare["backbone"]) == ("B", False, 0, None)
    assert bare["total_s"] is None or math.isnan(bare["total_s"])
    assert records_frame([rec("C", method_info={"name": "c"})]).loc[0, "label"] == "C"  # no label: the method id


def test_records_frame_of_no_successful_record_is_empty_with_every_column():
    df = records_frame([rec(status="failed")])
    assert df.empty and list(df.columns)[:5] == ["method", "dataset", "category", "shots", "seed"]
    assert "pixel_auroc" in df.columns and len(df.columns) == 20


def test_per_seed_counts_the_categories_it_averages():
    recs = [rec(cat="c1", seed=0, value=0.9), rec(cat="c2", seed=0, value=0.5), rec(cat="c3", seed=0, value=None),
            rec(cat="c1", seed=1, value=0.7)]
    ps = per_seed(records_frame(recs), "pixel_auroc").set_index("seed")
    assert ps.loc[0, "pixel_auroc"] == pytest.approx(0.7) and ps.loc[0, "n_categories"] == 2
    assert ps.loc[1, "pixel_auroc"] == pytest.approx(0.7) and ps.loc[1, "n_categories"] == 1
    s = summary(records_frame(recs), "pixel_auroc").iloc[0]
    assert (s["mean"], s["std"], s["n_seeds"]) == pytest.approx((70.0, 0.0, 2))
    pc = per_category(records_frame(recs), "pixel_auroc").set_index("category")
    assert pc.loc["c1", "mean"] == pytest.approx(80.0) and pc.loc["c1", "std"] == pytest.approx(10.0)
    assert pc.loc["c3", "n_seeds"] == 0


# -- stats: equal to scipy on random seeds ----------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5])
def test_paired_t_equals_scipy(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        a, b = rng.normal(80, 2, n), rng.normal(79, 2, n)
        t = paired_t(dict(enumerate(a)), dict(enumerate(b)))
        ref = sps.ttest_rel(a, b, alternative="less")
        assert (t.kind, t.n_a, t.n_b, t.df) == ("paired t", n, n, n - 1)
        assert t.delta == pytest.approx(np.mean(a - b)) and t.t == pytest.approx(ref.statistic)
        assert t.se == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(n)) and t.p_lower == pytest.approx(ref.pvalue)
        assert t.band(0.05) == pytest.approx(sps.t.ppf(0.95, n - 1) * t.se)
        assert t.band(0.2) == pytest.approx(sps.t.ppf(0.8, n - 1) * t.se)
        assert t.describe() == f"paired t, n={n}/{n}, df={n - 1}, p={ref.pvalue:.3f}"


@pytest.mark.parametrize("na,nb", [(2, 3), (4, 2), (5, 5)])
def test_welch_t_equals_scipy(na, nb):
    rng = np.random.default_rng(10 * na + nb)
    for _ in range(5):
        a, b = rng.normal(80, 1, na), rng.normal(80, 3, nb)
        t = welch_t(list(a), list(b))
        ref = sps.ttest_ind(a, b, equal_var=False, alternative="less")
        va, vb = np.var(a, ddof=1) / na, np.var(b, ddof=1) / nb
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        assert (t.kind, t.n_a, t.n_b) == ("Welch t", na, nb) and t.df == pytest.approx(df)
        assert t.delta == pytest.approx(a.mean() - b.mean()) and t.se == pytest.approx(math.sqrt(va + vb))
        assert t.t == pytest.approx(ref.statistic) and t.p_lower == pytest.approx(ref.pvalue)
        assert t.describe() == f"Welch t, n={na}/{nb}, df={df:.1f}, p={ref.pvalue:.3f}"


def test_paired_t_uses_the_common_defined_seeds_only():
    a = {0: 1.0, 1: 4.0, 2: float("nan"), 3: 9.0, 7: 2.0}
    b = {0: 0.0, 1: 1.0, 2: 5.0, 3: 3.0, 8: 1.0}
    t = paired_t(a, b)  # seeds 0, 1, 3: d = 1, 3, 6
    ref = sps.ttest_rel([1.0, 4.0, 9.0], [0.0, 1.0, 3.0], alternative="less")
    assert t.n_a == 3 and t.delta == pytest.approx(10 / 3) and t.p_lower == pytest.approx(ref.pvalue)
    none = paired_t({0: 1.0}, {1: 1.0})
    assert none.n_a == 0 and math.isnan(none.delta) and not none.defined and math.isnan(none.p_lower)


def test_exact_cases_without_spread():
    up = paired_t({0: 3.0, 1: 4.0}, {0: 2.0, 1: 3.0})  # every difference +1
    assert (up.se, up.t, up.p_lower, up.df) == (0.0, math.inf, 1.0, 1.0) and up.band(0.05) == 0.0
    down = paired_t({0: 2.0, 1: 3.0}, {0: 3.0, 1: 4.0})
    assert (down.t, down.p_lower) == (-math.inf, 0.0)
    tie = paired_t({0: 2.0, 1: 3.0}, {0: 2.0, 1: 3.0})
    assert (tie.t, tie.p_lower, tie.delta) == (0.0, 1.0, 0.0)
    near = paired_t({0: 0.3, 1: 0.6, 2: 0.9}, {0: 0.2, 1: 0.5, 2: 0.8})  # rounding noise only
    assert near.se == 0.0 and near.p_lower == 1.0
    for a, b, t, p in (([1.0, 1.0], [2.0, 2.0, 2.0], -math.inf, 0.0), ([2.0, 2.0], [1.0, 1.0], math.inf, 1.0),
                       ([1.0, 1.0], [1.0, 1.0], 0.0, 1.0)):
        w = welch_t(a, b)
        assert (w.se, w.t, w.p_lower, w.df) == (0.0, t, p, float(len(a) + len(b) - 2))


def test_too_few_seeds_give_no_noise_estimate():
    w = welch_t([1.0, float("nan")], [2.0, 4.0])
    assert (w.n_a, w.n_b, w.delta) == (1, 2, -2.0) and not w.defined and math.isnan(w.df) and math.isnan(w.t)
    assert w.describe() == "Welch t: too few seeds (1/2) for a noise estimate"
    e = welch_t([], [1.0])
    assert (e.n_a, e.n_b) == (0, 1) and math.isnan(e.delta)
    assert welch_t([1.0, 2.0], []).n_a == 2
    one = paired_t({0: 1.0}, {0: 3.0})
    assert one.describe() == "paired t: too few seeds (1/1) for a noise estimate" and math.isnan(one.t)


def _fields(t) -> tuple:
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in astuple(t))


def test_every_field_of_the_degenerate_tests():
    assert _fields(paired_t({}, {})) == ("paired t", 0, 0, "nan", "nan", "nan", "nan", "nan")
    assert _fields(paired_t({3: 2.0}, {3: 0.5})) == ("paired t", 1, 1, 1.5, "nan", "nan", "nan", "nan")
    assert _fields(welch_t([], [1.0, 2.0])) == ("Welch t", 0, 2, "nan", "nan", "nan", "nan", "nan")
    assert _fields(welch_t([1.0], [2.0, 3.0])) == ("Welch t", 1, 2, -1.5, "nan", "nan", "nan", "nan")
    assert _fields(welch_t([1.0, 1.0], [2.0, 2.0, 2.0])) == ("Welch t", 2, 3, -1.0, 0.0, 3.0, -math.inf, 0.0)


def test_the_no_spread_cut_is_relative_to_the_size_of_the_difference():
    big = paired_t({0: 100.0, 1: 100.0 + 2e-11}, {0: 0.0, 1: 0.0})  # se 1e-11 < 1e-12 x 100: no spread
    assert big.se == 0.0 and big.t == math.inf
    small = paired_t({0: 0.5, 1: 0.5 + 3e-12}, {0: 0.0, 1: 0.0})  # se 1.5e-12 >= 1e-12 x 1: a spread
    assert small.se > 0 and math.isfinite(small.t)
    wbig = welch_t([100.0, 100.0 + 2e-11], [0.0, 0.0])
    assert wbig.se == 0.0 and wbig.t == math.inf
    wsmall = welch_t([0.5, 0.5 + 3e-12], [0.0, 0.0])
    assert wsmall.se > 0 and math.isfinite(wsmall.t)


def test_compare_seeds_pairs_only_identical_defined_seed_sets():
    a = {0: 1.0, 1: 3.0, 2: float("nan")}
    assert compare_seeds(a, {0: 0.5, 1: 1.0}).kind == "paired t"  # the NaN seed does not count
    w = compare_seeds({0: 1.0, 1: 3.0}, {0: 0.5, 1: 1.0, 2: 2.0})
    assert w.kind == "Welch t" and (w.n_a, w.n_b) == (2, 3) and w.delta == pytest.approx(2.0 - 3.5 / 3)
    assert compare_seeds({0: 1.0, 1: float("nan")}, {0: 1.0, 2: 5.0, 3: 6.0}).n_a == 1


# -- coverage ---------------------------------------------------------------------------------------------
def test_coverage_sentences():
    cats, seeds = ("c1", "c2", "c3"), (0, 1)
    assert Coverage(cats, seeds).describe() == "covers all 3 categories x 2 seeds"
    one = Coverage(("c1",), (0, 1, 2), (("c1", 2, "no record"),))
    assert one.describe() == "covers 2/3 seeds; missing: seed 2 (no record)"
    seed = Coverage(cats, seeds, tuple((c, 1, "failed: x") for c in cats))
    assert seed.describe() == "covers 3/3 categories x 1/2 seeds; missing: seed 1 (failed: x)"
    cell = Coverage(cats, seeds, (("c2", 0, "no record"),))
    assert cell.describe() == "covers 3/3 categories x 2/2 seeds (some cells missing); missing: c2 seed 0 (no record)"
    many = Coverage(("c1",), tuple(range(12)), tuple(("c1", s, "no record") for s in range(10)))
    assert many.describe() == ("covers 2/12 seeds; missing: " + ", ".join(f"seed {s} (no record)" for s in range(8))
                               + ", and 2 more")
    wide = Coverage(tuple(f"k{i}" for i in range(10)), (0,), tuple((f"k{i}", 0, "r") for i in range(9)))
    assert wide.describe().endswith("category k7 (r), and 1 more") and wide.describe().startswith("covers 1/10 ")


def test_plans_come_from_records_plans_configs_and_cells():
    r1 = rec(cat="c1", seed=0, plan={"categories": ["c1", "c2"], "seeds": [0, 1]})
    r2 = rec(cat="c9", seed=5, dataset="visa", config={"datasets": [{"name": "visa", "categories": ["c8"]},
                                                                    {"name": "mvtec", "categories": ["cx"]}],
                                                       "seeds": [4]})
    rs = ResultSet([r1, r2])
    assert rs.categories("mvtec") == ["c1", "c2"] and rs.seeds("mvtec") == [0, 1]
    assert rs.categories("visa") == ["c8", "c9"] and rs.seeds("visa") == [4, 5]
    assert rs.categories("nope") == [] and rs.seeds("nope") == []
    assert rs.describe_plan("mvtec") == "mvtec: 2 categories (c1, c2), seeds 0, 1"
    big = ResultSet([rec(cat=f"k{i}") for i in range(7)])
    assert big.describe_plan("mvtec") == "mvtec: 7 categories (k0, k1, k2, k3, k4, k5, ...), seeds 0"


def test_the_latest_record_of_a_cell_counts():
    old = rec(value=0.1, provenance={"time_utc": "2025-01-01"})
    new = rec(value=0.9, provenance={"time_utc": "2025-02-01"})
    for order in ([old, new], [new, old]):
        assert ResultSet(order).value(CellKey("A", "mvtec", "c1", 1, 0), "w/o VG", "pixel_auroc") == (90.0, "")
    same = rec(value=0.5, provenance={"time_utc": "2025-02-01"})
    assert ResultSet([new, same]).value(CellKey("A", "mvtec", "c1", 1, 0), "w/o VG", "pixel_auroc")[0] == 50.0


def test_why_a_cell_has_no_value():
    rs = ResultSet([rec(cat="a", status="failed", error="Traceback\n  x\nValueError: bad\n\n"),
                    rec(cat="b", status="failed", error=None), rec(cat="c", status="not_applicable", error="k>pool"),
                    rec(cat="d", status="running"), rec(cat="e", value=None),
                    rec(cat="f", value=None, undefined={"w/o VG": {"pixel_auroc": "one class"}}),
                    rec(cat="g", value=float("nan")), rec(cat="h", status="failed", error="x" * 200)])
    v = lambda c, variant="w/o VG": rs.value(CellKey("A", "mvtec", c, 1, 0), variant, "pixel_auroc")  # noqa: E731
    assert v("a") == (None, "failed: ValueError: bad") and v("b") == (None, "failed: no message")
    assert v("c") == (None, "not applicable: k>pool") and v("d") == (None, "status running")
    assert v("e") == (None, "pixel_auroc undefined") and v("f") == (None, "pixel_auroc undefined: one class")
    assert v("g") == (None, "pixel_auroc undefined") and v("zz") == (None, "no record")
    assert v("a", "w/ VG")[1].startswith("failed") and v("e", "w/ VG") == (None, "no variant 'w/ VG'")
    assert v("h") == (None, "failed: " + "x" * 160)


def test_category_figure_and_why_empty():
    recs = [rec(cat="c1", seed=0, value=0.6), rec(cat="c1", seed=1, value=0.8), rec(cat="c2", seed=0, value=0.5),
            rec(cat="c2", seed=1, status="failed", error="boom")]
    rs = ResultSet(recs)
    f = rs.category_figure("A", "mvtec", "c2", 1, "w/o VG", "pixel_auroc")
    assert f.seeds == {0: 50.0} and f.coverage == Coverage(("c2",), (0, 1), (("c2", 1, "failed: boom"),))
    g = rs.category_figure("A", "mvtec", "c1", 1, "w/o VG", "pixel_auroc")
    assert (g.mean, g.std, g.n_seeds, g.complete) == pytest.approx((70.0, 10.0, 2, True))
    assert rs.category_figure("B", "mvtec", "c1", 1, "w/o VG", "pixel_auroc") is None
    assert rs.why_empty("B", "mvtec", 1, "w/o VG", "pixel_auroc") == "no record"
    assert rs.why_empty("A", "mvtec", 1, "w/ VG", "pixel_auroc") == "no variant 'w/ VG'; failed: boom"
    sub = rs.select(datasets=["mvtec"], methods=["A"])
    assert len(sub.records) == 4 and rs.select(methods=["B"]).records == [] and sub.categories("mvtec") == ["c1", "c2"]
    assert len(rs.select(datasets=["visa"]).records) == 0 and len(rs.select().records) == 4


def test_has_variant_and_status_of():
    rs = ResultSet([rec("A", method_info={"name": "A", "variants": ["w/ VG"]}), rec("B", status="failed"),
                    rec("B", cat="c2", status="not_applicable"), rec("C", shots=2)])
    assert rs.has_variant("A", "w/ VG") and rs.has_variant("A", "w/o VG") and not rs.has_variant("B", "w/o VG")
    assert rs.status_of("B", "mvtec", 1) == {"failed", "not_applicable"} and rs.status_of("C", "mvtec", 1) == set()


EQUIVALENT_MUTANTS = {
    "aggregate.records_frame: to_numeric without errors='coerce'": "schema-validated metrics are numbers or None, "
                                                                    "which to_numeric turns into NaN either way",
    "stats: float('NAN')": "float() reads 'NAN' as the same NaN",
    "stats.paired_t / welch_t: se <= cut": "se exactly equal to the cut has probability zero",
    "stats.welch_t: _p_lower(t, df, None / se=None) in the spread branch": "delta is read only when se == 0, and "
                                                                          "se > 0 there",
    "aggregate.per_seed / summary / per_category: groupby dropna True / None / omitted":
        "records_frame never leaves a key column empty (the label falls back to the method id, keys are CellKeys)",
}
