"""Drills of issue 26, class 3: ``history`` applies the comparability rules and coverage notes of
``compare`` and ``report``: records of different eval size, sigma or test-image cap are never pooled
into one point (nor is one silently dropped for the newest), and a point over fewer categories or seeds
than its setup planned is marked with a note naming what is missing."""

from __future__ import annotations

import re

import pytest

from fsadbench.cli import main
from fsadbench.regression.history import history_frame, history_markdown, plot_history
from fsadbench.results.records import CellKey, Record, RecordStore

A, B = "a" * 40, "b" * 40


def rec(cat, seed, value, commit=A, time="2026-01-01T00:00:00+00:00", eval_size=400, sigma=None, cap=None,
        categories=("c1", "c2"), seeds=(0, 1), status="ok", error=None):
    return Record(key=CellKey("memory", "mvtec", cat, 1, seed).__dict__, status=status, config_hash="h",
                  method={"name": "memory", "label": "memory"},
                  metrics={"w/ VG": {"pixel_auroc": value}} if status == "ok" else {},
                  plan={"categories": list(categories), "shots": [1], "seeds": list(seeds)},
                  backbone={"model": "x", "pretrained": "p", "random_weights": False},
                  protocol={"version": 1, "eval_size": eval_size, "sigma": sigma, "sigma_used": 4,
                            "max_test_images": cap},
                  metric_version="1", error=error,
                  provenance={"git": {"commit": commit, "dirty": False}, "time_utc": time})


def run(cats=("c1", "c2"), seeds=(0, 1), value=0.8, **kw):
    return [rec(c, s, value, **kw) for c in cats for s in seeds]


@pytest.mark.parametrize("change", [{"eval_size": 120}, {"sigma": 2.0}, {"cap": 20}])
def test_runs_of_another_setup_at_one_commit_are_separate_points(change):
    """Before: one commit = one point; the same cell at 400 px and 120 px: the newest silently won."""
    recs = run(value=0.8) + run(value=0.6, time="2026-01-02T00:00:00+00:00", **change)
    h = history_frame(recs, "memory", "mvtec")
    assert h[["setup", "mean"]].values.tolist() == [["A", pytest.approx(80.0)], ["B", pytest.approx(60.0)]]
    field = {"eval_size": "eval_size", "sigma": "sigma", "cap": "max_test_images"}[next(iter(change))]
    assert len(h.attrs["setups"]) == 2 and all(field in line for line in h.attrs["setups"])
    md = history_markdown(h, "memory", "mvtec", "pixel_auroc", subjects=False)
    assert "SETUPS DIFFER" in md and f"setup A: {field}" in md and re.search(r"\| setup +\|", md), md


def test_setups_are_never_pooled_across_commits_and_draw_separate_lines(tmp_path):
    recs = run(value=0.8) + run(value=0.5, commit=B, time="2026-02-01T00:00:00+00:00", eval_size=120)
    h = history_frame(recs, "memory", "mvtec")
    assert h[["commit", "setup", "mean"]].values.tolist() == [["aaaaaaaaaa", "A", pytest.approx(80.0)],
                                                               ["bbbbbbbbbb", "B", pytest.approx(50.0)]]
    files = plot_history(h, tmp_path / "h", "memory", "mvtec", "pixel_auroc")
    assert files[0].stat().st_size > 1000


def test_a_point_over_fewer_categories_or_seeds_carries_a_coverage_note():
    full = run(value=0.8)
    subset = run(cats=("c1",), value=0.9, commit=B, time="2026-02-01T00:00:00+00:00", categories=("c1",))
    failed = [rec("c2", 1, None, commit=B, time="2026-02-01T00:00:00+00:00", status="failed", error="boom")]
    h = history_frame(full + subset + failed, "memory", "mvtec")
    assert h["coverage"].tolist()[0] == ""
    note = h["coverage"].tolist()[1]
    assert "covers 1/2 categories" in note and "category c2" in note and "failed: boom" in note
    md = history_markdown(h, "memory", "mvtec", "pixel_auroc", subjects=False)
    assert "90.00 ± 0.00 [a]" in md and "> [a] bbbbbbbbbb, 1-shot w/ VG: covers 1/2 categories" in md
    assert "SETUPS DIFFER" not in md  # one setup: no setup column


def test_history_cli_names_setups_and_single_seed_points_say_n_1(tmp_path, capsys):
    for folder, size, value in (("r400", 400, 0.8), ("r120", 120, 0.6)):
        store = RecordStore(tmp_path / folder)
        for r in [rec(c, 0, value, eval_size=size, seeds=(0,)) for c in ("c1", "c2")]:
            store.write(r)
    assert main(["history", "--method", "memory", "--dataset", "mvtec", "--results-dir", str(tmp_path / "r400"),
                 "--results-dir", str(tmp_path / "r120")]) == 0
    out = capsys.readouterr().out
    assert "80.00 (n = 1)" in out and "60.00 (n = 1)" in out and "± 0.00" not in out
    assert "SETUPS DIFFER" in out and "eval_size 400" in out and "eval_size 120" in out
