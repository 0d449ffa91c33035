"""compare: deltas, tolerance vs seed noise, missing/new cells, comparability, sides, CLI exit status."""

import math

import pytest

from fsadbench.cli import main
from fsadbench.regression.compare import Tolerance, compare, table_stats
from fsadbench.regression.sources import load_side, side_from_records
from fsadbench.core.errors import ConfigError
from fsadbench.results.records import CellKey, Record, RecordStore

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def rec(method, cat, seed, value, *, shots=1, status="ok", commit=COMMIT_A, metric_version="m/1",
        fingerprint="fp", variant="w/ VG", time="2026-01-01T00:00:00+00:00"):
    return Record(key=CellKey(method, "synthetic", cat, shots, seed).__dict__, status=status, config_hash="h",
                  method={"name": method, "label": method},
                  metrics={variant: {"pixel_auroc": value, "image_auroc": 0.5}} if status == "ok" else {},
                  backbone={"model": "tiny", "pretrained": "none", "weights_fingerprint": "w"},
                  protocol={"version": "p/1", "eval_size": 120, "sigma_used": 4.0, "max_test_images": None},
                  dataset={"fingerprint": fingerprint}, metric_version=metric_version,
                  provenance={"git": {"commit": commit, "dirty": False}, "time_utc": time})


def side(values, **kw):
    """values: {(method, cat, seed): fraction}"""
    return side_from_records([rec(m, c, s, v, **kw) for (m, c, s), v in values.items()])


BASE = {("memory", "c1", 0): 0.90, ("memory", "c2", 0): 0.80,
        ("memory", "c1", 1): 0.92, ("memory", "c2", 1): 0.82,
        ("memory", "c1", 2): 0.91, ("memory", "c2", 2): 0.81}


def test_identical_sides_pass_with_zero_deltas():
    c = compare(side(BASE), side(BASE), tol=0.5)
    assert c.ok and c.exit_code() == 0
    t = c.tables.set_index("metric").loc["pixel_auroc"]
    # per-seed dataset figures 85, 87, 86 -> 86.0
    assert t["base"] == pytest.approx(86.0) and t["delta"] == pytest.approx(0.0) and t["paired"]
    assert (c.cells["delta"] == 0).all() and len(c.cells) == 12  # 6 cells x 2 metrics
    assert "**Verdict: PASS**" in c.to_markdown()


def test_drop_beyond_tolerance_and_noise_fails():
    head = {k: v - 0.02 for k, v in BASE.items()}  # every cell -2 pp: consistent over seeds
    c = compare(side(BASE), side(head), tol=0.5)
    t = c.tables.set_index("metric").loc["pixel_auroc"]
    assert t["delta"] == pytest.approx(-2.0)
    assert t["se"] == pytest.approx(0.0, abs=1e-9)  # identical per-seed differences: no noise
    assert t["regression"] and not c.ok and c.exit_code() == 1
    md = c.to_markdown()
    assert "**Verdict: FAIL**" in md and "**REGRESSION**" in md and "-2.000" in md
    assert len(c.cell_drops) == 6


def test_drop_within_noise_passes():
    # per-seed differences -3, +1.5, -0.5 pp (pp of the dataset figure): mean -0.667, SE = 1.3017
    d = {0: -0.03, 1: 0.015, 2: -0.005}
    head = {(m, c, s): v + d[s] for (m, c, s), v in BASE.items()}
    c = compare(side(BASE), side(head), tol=0.5)
    t = c.tables.set_index("metric").loc["pixel_auroc"]
    assert t["delta"] == pytest.approx(-2 / 3)
    sd = math.sqrt(((-3 + 2 / 3) ** 2 + (1.5 + 2 / 3) ** 2 + (-0.5 + 2 / 3) ** 2) / 2)
    assert t["se"] == pytest.approx(sd / math.sqrt(3))
    # band = t quantile (0.975, df 2) x SE; Student t with 2 df: q = x sqrt(2 / (1 - x^2)), x = 2 * 0.975 - 1
    x = 2 * 0.975 - 1
    assert t["band"] == pytest.approx(x * math.sqrt(2 / (1 - x * x)) * sd / math.sqrt(3))
    assert "paired t, n=3/3, df=2" in t["test"]
    assert t["beyond_tol"] and t["beyond_noise"] is not None and not t["beyond_noise"] and not t["regression"]
    assert c.ok and "drop within noise" in c.to_markdown()


def test_drop_within_tolerance_passes():
    head = {k: v - 0.003 for k, v in BASE.items()}
    c = compare(side(BASE), side(head), tol=0.5)
    assert c.ok and c.tables.set_index("metric").loc["pixel_auroc", "delta"] == pytest.approx(-0.3)


def test_unpaired_when_seeds_differ_uses_welch():
    head = {(m, c, s + 10): v for (m, c, s), v in BASE.items()}
    st = table_stats({0: 85.0, 1: 87.0, 2: 86.0}, {10: 85.0, 11: 87.0, 12: 86.0})
    assert not st["paired"] and st["delta"] == pytest.approx(0.0)
    assert st["se"] == pytest.approx(math.sqrt(2 * 1.0 / 3))  # var (ddof 1) = 1 on each side
    c = compare(side(BASE), side(head), tol=0.5, allow_missing=True)
    assert not c.tables["paired"].any() and len(c.only_base) == 6 and len(c.only_head) == 6
    assert c.tables.set_index("metric").loc["pixel_auroc", "test"].startswith("Welch t")


def test_single_seed_falls_back_to_tolerance():
    st = table_stats({0: 80.0}, {0: 79.0})
    assert st["paired"] and st["delta"] == pytest.approx(-1.0) and math.isnan(st["se"])
    b = {("memory", "c1", 0): 0.80}
    c = compare(side(b), side({("memory", "c1", 0): 0.79}), tol=0.5)
    assert bool(c.tables.set_index("metric").loc["pixel_auroc", "regression"]) and not c.ok


def test_missing_and_new_cells_are_listed():
    head = dict(BASE)
    del head[("memory", "c2", 1)]
    head[("winclip", "c1", 0)] = 0.5
    c = compare(side(BASE), side(head), tol=0.5)
    assert c.only_base == [CellKey("memory", "synthetic", "c2", 1, 1)]
    assert c.only_head == [CellKey("winclip", "synthetic", "c1", 1, 0)]
    md = c.to_markdown()
    assert "Only in base: missing in head (1)" in md and "Only in head: new (1)" in md
    assert "memory | synthetic/c2 | 1-shot | seed 1" in md and "winclip | synthetic/c1" in md
    assert not c.ok  # a base cell missing in head fails by default ...
    c2 = compare(side(BASE), side(head), tol=0.5, allow_missing=True)
    assert c2.ok  # ... new cells never fail; the categories both sides hold for every seed drive the figure
    t = c2.tables[(c2.tables["method"] == "memory") & (c2.tables["metric"] == "pixel_auroc")].iloc[0]
    assert t["n_categories"] == 1 and t["delta"] == pytest.approx(0.0) and not t["complete"]
    assert "covers 1/2 categories x 3/3 seeds" in t["coverage"] and "head: no record" in t["coverage"]
    md2 = c2.to_markdown()
    assert "| 1 [a] |" in md2.replace("  ", " ") or "1 [a]" in md2
    assert "category c2 (left out: the category lacks another seed; head: no record)" in md2
    # --strict fails on the incomplete figure
    c3 = compare(side(BASE), side(head), tol=0.5, allow_missing=True, strict=True)
    assert not c3.ok and any("fewer categories or seeds" in r for r in c3.reasons())


def test_failed_in_head_fails():
    recs = [rec(m, c, s, v) for (m, c, s), v in BASE.items()]
    recs[0] = rec("memory", "c1", 0, 0.0, status="failed")
    c = compare(side(BASE), side_from_records(recs), tol=0.5)
    assert [k for k, _ in c.failed_head] == [CellKey("memory", "synthetic", "c1", 1, 0)] and not c.ok


def test_different_metric_versions_are_not_compared_silently():
    c = compare(side(BASE), side(BASE, metric_version="m/2"), tol=0.5)
    assert len(c.mismatched) == 6 and c.cells.empty and not c.ok
    md = c.to_markdown()
    assert "Not comparable" in md and "metric version: base 'm/1' vs head 'm/2'" in md
    c2 = compare(side(BASE), side(BASE, metric_version="m/2"), tol=0.5, allow_mismatch=True)
    assert c2.ok and len(c2.cells) == 12 and c2.cells["mismatch"].all() and "compared anyway" in c2.to_markdown()


def test_strict_fails_on_any_change_either_direction():
    head = dict(BASE)
    head[("memory", "c1", 0)] = 0.90 + 1e-4  # +0.01 pp, an improvement
    assert compare(side(BASE), side(head), tol=1e-3).ok
    c = compare(side(BASE), side(head), tol=1e-3, strict=True)
    assert not c.ok and any("strict" in r for r in c.reasons())


def test_undefined_metric_is_skipped_not_zero():
    recs_b = [rec(m, c, s, v) for (m, c, s), v in BASE.items()]
    recs_h = [rec(m, c, s, v) for (m, c, s), v in BASE.items()]
    recs_h[0].metrics["w/ VG"]["image_auroc"] = None
    recs_b[0].metrics["w/ VG"]["image_auroc"] = None
    c = compare(side_from_records(recs_b), side_from_records(recs_h), tol=0.5)
    t = c.tables.set_index("metric").loc["image_auroc"]
    assert t["delta"] == pytest.approx(0.0) and c.ok


def _write(folder, values, commit, time="2026-01-01T00:00:00+00:00"):
    store = RecordStore(folder)
    for (m, c, s), v in values.items():
        store.write(rec(m, c, s, v, commit=commit, time=time))


def test_sides_folder_run_id_and_commit(tmp_path):
    root = tmp_path / "results"
    _write(root / "run1", BASE, COMMIT_A)
    _write(root / "run2", {k: v - 0.05 for k, v in BASE.items()}, COMMIT_B, time="2026-02-01T00:00:00+00:00")
    assert load_side(str(root / "run1")).kind == "folder"
    s = load_side("run2", results_root=root)
    assert s.kind == "run" and len(s.records) == 6
    s = load_side("bbbbbbb", results_root=root)  # commit prefix, searched in every results folder
    assert s.kind == "commit" and {r.provenance["git"]["commit"] for r in s.records} == {COMMIT_B}
    with pytest.raises(ConfigError, match="not a results folder, not a run id"):
        load_side("no-such-run", results_root=root)
    with pytest.raises(ConfigError, match="no records made at commit"):
        load_side("cccccccc", results_root=root)
    with pytest.raises(ConfigError, match="no records/ sub-folder"):
        load_side(str(tmp_path))


def test_cli_exit_status_and_output(tmp_path, capsys):
    root = tmp_path / "results"
    _write(root / "run1", BASE, COMMIT_A)
    _write(root / "run2", {k: v - 0.05 for k, v in BASE.items()}, COMMIT_B)
    out = tmp_path / "cmp.md"
    assert main(["compare", "run1", "run1", "--results-root", str(root)]) == 0
    assert main(["compare", "aaaaaaa", "bbbbbbb", "--results-root", str(root), "--output", str(out)]) == 1
    text = out.read_text()
    assert "**Verdict: FAIL**" in text and "-5.000" in text
    assert main(["compare", "run1", "nope", "--results-root", str(root)]) == 2  # usage error
    assert "not a results folder" in capsys.readouterr().err


def test_tolerance_per_metric():
    tol = Tolerance.of("0.5,image_auroc=3")
    assert tol("pixel_auroc") == 0.5 and tol("image_auroc") == 3.0
    assert Tolerance.of({"*": 1.0, "aupro": 2.0})("aupro") == 2.0
    head = {k: v - 0.02 for k, v in BASE.items()}  # -2 pp on every cell, both metrics move? only pixel_auroc
    recs_h = [rec(m, c, s, v) for (m, c, s), v in head.items()]
    for r in recs_h:
        r.metrics["w/ VG"]["image_auroc"] = 0.48  # -2 pp as well
    c = compare(side(BASE), side_from_records(recs_h), tol="0.5,image_auroc=3")
    t = c.tables.set_index("metric")
    assert bool(t.loc["pixel_auroc", "regression"]) and not bool(t.loc["image_auroc", "regression"])
    assert t.loc["image_auroc", "tol"] == 3.0
    with pytest.raises(ConfigError, match="METRIC=NUMBER"):
        Tolerance.of("0.5,image_auroc=x")


def test_flags_name_the_test_that_decided_them():
    head = {k: v - 0.02 for k, v in BASE.items()}
    md = compare(side(BASE), side(head), tol=0.5).to_markdown()
    assert "**REGRESSION** (paired t, n=3/3, df=2, p=0.000)" in md
    b = {("memory", "c1", 0): 0.80}
    md1 = compare(side(b), side({("memory", "c1", 0): 0.79}), tol=0.5).to_markdown()
    assert "**REGRESSION** (tolerance only: paired t: too few seeds (1/1)" in md1


def test_two_seeds_of_pure_noise_rarely_flag_a_regression():
    """The false-alarm rate at the default settings, on fewer trials than benchmarks/compare_false_alarm.py."""
    from benchmarks.compare_false_alarm import false_alarm_rate

    rate, old_rate = false_alarm_rate(trials=300, seeds=2, noise_pp=5.0, seed=0)  # tolerance hardly helps here
    assert rate <= 0.05
    assert old_rate > rate  # the former 2 x SE band flags noise far more often
