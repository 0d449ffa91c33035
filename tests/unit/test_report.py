"""Tables from fixed records: values, coverage marks, bold per shot block and on ties, significance, LaTeX."""

import re

import pytest

from fsadbench.cli import main
from fsadbench.reports.render import to_latex, to_markdown
from fsadbench.reports.tables import category_table, main_table
from fsadbench.results.aggregate import records_frame, summary
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import CellKey, Record, RecordStore


def rec(m, c, s, wo, w, shots=1, random=False, status="ok", error=None, commit="a" * 40, dataset="mvtec"):
    return Record(key=CellKey(m, dataset, c, shots, s).__dict__, status=status, config_hash="h",
                  method={"name": m, "label": m},
                  metrics={"w/o VG": {"pixel_auroc": wo}, "w/ VG": {"pixel_auroc": w}} if status == "ok" else {},
                  backbone={"model": "x", "random_weights": random}, error=error,
                  provenance={"git": {"commit": commit, "dirty": False}})


# method A and B: two categories, two seeds, complete
VALS = {
    ("A", "c1", 0): (0.80, 0.90), ("A", "c2", 0): (0.60, 0.70),
    ("A", "c1", 1): (0.90, 0.95), ("A", "c2", 1): (0.70, 0.85),
    ("B", "c1", 0): (0.85, 0.99), ("B", "c2", 0): (0.75, 0.97),
    ("B", "c1", 1): (0.85, 0.99), ("B", "c2", 1): (0.75, 0.97),
}


def _records(random=False):
    return [rec(m, c, s, wo, w, random=random) for (m, c, s), (wo, w) in VALS.items()]


def _rows(t):
    return {tuple(r[0]): r[1] for r in t.rows}


def test_summary_means_over_categories_then_seeds():
    df = records_frame(_records())
    s = summary(df, "pixel_auroc").set_index(["method", "variant"])
    # A w/o VG: seed0 mean(0.8,0.6)=0.7, seed1 mean(0.9,0.7)=0.8 -> 75.0 ± 5.0 (ddof 0)
    assert s.loc[("A", "w/o VG"), "mean"] == pytest.approx(75.0)
    assert s.loc[("A", "w/o VG"), "std"] == pytest.approx(5.0)
    assert s.loc[("B", "w/ VG"), "mean"] == pytest.approx(98.0)
    # the table's figure is the same number
    f = _rows(main_table(ResultSet(_records())))[("1-shot", "A")][0]
    assert (f.mean, f.std) == pytest.approx((75.0, 5.0)) and f.seeds == pytest.approx({0: 70.0, 1: 80.0})


def test_markdown_layout_and_bold():
    md = to_markdown(main_table(ResultSet(_records())))
    lines = [l for l in md.splitlines() if l.startswith("|")]
    assert lines[0].replace(" ", "") == "|shots|method|mvtecw/oVG|mvtecw/VG|"
    row_a = next(l for l in lines if "| A " in l or "|A|" in l.replace(" ", ""))
    row_b = next(l for l in lines if "| B " in l or "|B|" in l.replace(" ", ""))
    assert "75.00 ± 5.00" in row_a and "**80.00 ± 0.00**" in row_b  # B best w/o VG (0.85+0.75)/2
    assert "**98.00 ± 0.00**" in row_b
    assert "PIPELINE CHECK" not in md and "figures from commit aaaaaaaaaa (8 records)" in md


def test_bold_per_shot_block_and_every_tie():
    recs = _records() + [rec(m, c, s, wo, w, shots=2) for (m, c, s), (wo, w) in VALS.items()]
    recs += [rec("C", c, s, *VALS[("B", c, s)], shots=2) for c in ("c1", "c2") for s in (0, 1)]
    t = main_table(ResultSet(recs))
    rows = list(_rows(t))
    # each shot block has its own best: 1-shot B and 2-shot B; 2-shot C ties with B and is bold too
    for key in (("1-shot", "B"), ("2-shot", "B"), ("2-shot", "C")):
        assert (rows.index(key), 0) in t.bold, key
    assert (rows.index(("1-shot", "A")), 0) not in t.bold
    assert sum(1 for r, c in t.bold if c == 0) == 3


def test_not_significantly_worse_gets_a_dagger():
    # D vs E: per-seed differences -1, +0.5, -0.3 pp (E best): not significant with 3 seeds -> dagger
    # F: 5 pp below E on every seed -> significantly worse, no dagger
    e = {0: 0.90, 1: 0.91, 2: 0.92}
    d = {0: 0.89, 1: 0.915, 2: 0.917}
    f = {s: v - 0.05 for s, v in e.items()}
    recs = [rec(name, "c1", s, v[s], v[s]) for name, v in (("D", d), ("E", e), ("F", f)) for s in (0, 1, 2)]
    t = main_table(ResultSet(recs))
    rows = list(_rows(t))
    assert (rows.index(("1-shot", "E")), 0) in t.bold
    assert (rows.index(("1-shot", "D")), 0) in t.close and (rows.index(("1-shot", "F")), 0) not in t.close
    md = to_markdown(t)
    row_d = next(l for l in md.splitlines() if l.replace(" ", "").startswith("|1-shot|D|"))
    assert "†" in row_d and "paired t" in md


def test_failed_category_is_marked_named_and_strict_fails(tmp_path, capsys):
    recs = _records() + [rec("A", "c3", s, 0, 0, status="failed", error="Traceback\nRuntimeError: boom")
                         for s in (0, 1)] + [rec("B", "c3", s, 0.9, 0.9) for s in (0, 1)]
    t = main_table(ResultSet(recs))
    rows = list(_rows(t))
    ia = rows.index(("1-shot", "A"))
    note = next(n for n in t.notes if n.startswith(f"[{t.marks[(ia, 0)]}]"))
    assert "covers 2/3 categories x 2/2 seeds" in note and "category c3 (failed: RuntimeError: boom)" in note
    assert (ia, 0) not in t.bold and t.problems
    # B is complete and alone eligible for bold
    assert (rows.index(("1-shot", "B")), 0) in t.bold
    store = RecordStore(tmp_path)
    for r in recs:
        store.write(r)
    assert main(["report", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[a]" in out and "c3 (failed: RuntimeError: boom)" in out
    assert main(["report", "--results-dir", str(tmp_path), "--strict"]) == 1
    assert "incomplete" in capsys.readouterr().err


def test_missing_seed_is_named_by_number():
    recs = _records() + [rec("A", c, 2, 0.5, 0.5) for c in ("c1", "c2")]
    t = main_table(ResultSet(recs))
    ib = list(_rows(t)).index(("1-shot", "B"))
    note = next(n for n in t.notes if n.startswith(f"[{t.marks[(ib, 0)]}]"))
    assert "2/3 seeds" in note and "seed 2 (no record)" in note


def test_mixed_backbones_are_stated():
    recs = _records()
    recs[0].backbone = {"model": "other", "random_weights": False}
    t = main_table(ResultSet(recs))
    assert any(n.startswith("NOT ONE RUN: backbone") for n in t.notes) and t.problems


def test_commits_and_dirty_trees_are_stated():
    recs = _records()
    recs[0].provenance = {"git": {"commit": "b" * 40, "dirty": True}}
    md = to_markdown(main_table(ResultSet(recs)))
    assert "aaaaaaaaaa (7 records), bbbbbbbbbb+dirty (1 record)" in md and "uncommitted" in md


def test_random_weights_are_labelled():
    md = to_markdown(main_table(ResultSet(_records(random=True))))
    assert md.splitlines()[2].startswith("> PIPELINE CHECK")


def test_latex_parses_as_tabular_with_right_column_count():
    tex = to_latex(main_table(ResultSet(_records())))
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1)
    assert spec == "llcc"
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")]
    rows = [r for r in body.split("\\\\") if "&" in r]
    assert rows and all(r.count("&") == len(spec) - 1 for r in rows)
    assert "\\toprule" in tex and "\\multicolumn{2}{c}{mvtec}" in tex and "\\cmidrule(lr){3-4}" in tex
    assert "\\textbf{80.00}" in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1


def test_latex_compiles_if_pdflatex_present(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed; the structural LaTeX test above covers the column count")
    recs = _records() + [rec("A", "c3", 0, 0, 0, status="failed", error="boom")]
    tex = to_latex(main_table(ResultSet(recs)))
    doc = "\\documentclass{article}\\usepackage{booktabs,graphicx,amssymb}\\begin{document}" + tex + "\\end{document}"
    (tmp_path / "t.tex").write_text(doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stdout[-2000:]


def test_per_category_table_bolds_the_best_method_per_category():
    recs = _records() + [rec("A", "c3", 0, 0, 0, status="failed", error="boom")]
    t = category_table(ResultSet(recs), "mvtec", 1)
    rows = list(_rows(t))
    assert rows == [("c1",), ("c2",), ("c3",)]  # every planned category, the failed one too
    cols = list(zip([g for g, n in t.groups for _ in range(n)], t.columns))
    # c1 w/o VG: A 85, B 85 -> a tie, both bold; c2 w/o VG: B 75 > A 65 -> B only
    a_wo, b_wo = cols.index(("A", "w/o VG")), cols.index(("B", "w/o VG"))
    assert {(0, a_wo), (0, b_wo)} <= t.bold
    assert (1, b_wo) in t.bold and (1, a_wo) not in t.bold
    # never a method's easiest category: A's c1 (its best) is not bold in w/ VG where B wins
    assert (0, cols.index(("A", "w/ VG"))) not in t.bold
    assert (2, a_wo) in t.marks and "failed: boom" in to_markdown(t)


def test_report_metric_all_renders_every_metric_and_unknown_is_refused(tmp_path):
    from fsadbench.cli.common import parse_metrics
    from fsadbench.reports.export import report_text
    from fsadbench.core.errors import BenchError

    store = RecordStore(tmp_path)
    for r in _records():
        r.metrics = {v: {**m, "image_ap": 0.5, "image_f1_max": 0.6} for v, m in r.metrics.items()}
        store.write(r)
    assert parse_metrics("all")[:2] == ["pixel_auroc", "image_auroc"] and "image_f1_max" in parse_metrics("all")
    text = report_text(str(tmp_path), metric=parse_metrics("image_ap,pixel_auroc"))
    assert text.index("**image AP**") < text.index("**pixel AUROC**")
    assert "50.00 ± 0.00" in text and "85.00 ± 5.00" in text  # A w/ VG: seeds 0.80, 0.90
    with pytest.raises(BenchError, match="unknown.*choose from"):
        parse_metrics("pixel_auroc,nope")


def test_a_variant_the_method_lacks_and_not_applicable_shots_are_na_not_incomplete():
    recs = _records()
    for c in ("c1", "c2"):
        for s in (0, 1):
            r = rec("M", c, s, 0, 0.9)
            r.metrics = {"w/ VG": {"pixel_auroc": 0.9}}
            r.method["variants"] = ["w/ VG"]
            recs.append(r)
            recs.append(rec("M", c, s, 0, 0, shots=0, status="not_applicable", error="M needs at least 1 shot"))
    t = main_table(ResultSet(recs))
    rows = _rows(t)
    assert rows[("1-shot", "M")][0].md == "n/a" and rows[("0-shot", "M")][1].md == "n/a"
    assert any("M has no 'w/o VG' variant" in n for n in t.notes)
    assert any("not applicable: M needs at least 1 shot" in n for n in t.notes)
    assert t.problems == []  # by design, not missing: --strict passes
