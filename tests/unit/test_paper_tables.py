"""Paper layouts from fixed records: golden Markdown, LaTeX structure, published figures, configs."""

import re
from pathlib import Path

import pytest

from fsadbench.cli import main
from fsadbench.run.config import build_config
from fsadbench.reports.paper_tables import apt_table1, apt_table2, apt_table3, published, table_spec
from fsadbench.results.records import CellKey, Record, RecordStore
from fsadbench.reports.tables import to_latex, to_markdown

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"

# pixel AUROC (fraction) of (method, variant): category c1 = v + 0.01, c2 = v - 0.01; seed s adds 0.01 * s
BASE = {("winclip", "w/o VG"): 0.80, ("winclip", "w/ VG"): 0.85, ("promptad", "w/o VG"): 0.90,
        ("promptad", "w/ VG"): 0.94, ("apt", "w/o VG"): 0.92, ("apt", "w/ VG"): 0.95}


def _rec(method, dataset, cat, shots, seed, metrics, options=None):
    return Record(key=CellKey(method["id"], dataset, cat, shots, seed).__dict__, status="ok", config_hash="h",
                  method={"name": method["name"], "id": method["id"], "label": method.get("label", method["id"]),
                          "options": options or {}},
                  metrics=metrics, backbone={"model": "ViT-B-16-plus-240", "random_weights": False})


def table1_records():
    recs = []
    for name in ("winclip", "promptad", "apt"):
        for dataset, dd in (("mvtec", 0.0), ("visa", 0.02)):
            for shots in (1, 2):
                for seed in (0, 1):
                    for cat, dc in (("c1", 0.01), ("c2", -0.01)):
                        metrics = {v: {"pixel_auroc": BASE[(name, v)] + dd + dc + 0.01 * seed + 0.005 * (shots - 1)}
                                   for v in ("w/o VG", "w/ VG")}
                        recs.append(_rec({"name": name, "id": name}, dataset, cat, shots, seed, metrics))
    return recs


def test_table1_matches_golden_markdown():
    md = to_markdown(apt_table1(table1_records(), show="under"))
    golden = (GOLDEN / "apt_table1.md").read_text()
    assert md == golden, "Table 1 layout changed; if intended, regenerate tests/golden/apt_table1.md"


def test_table1_values_by_hand():
    t = apt_table1(table1_records(), show="under")
    rows = {tuple(h if isinstance(h, str) else h.md for h in r[0]): r[1] for r in t.rows}
    # APT, 1-shot, MVTec, w/o VG: seed 0 -> mean(0.93, 0.91) = 0.92, seed 1 -> 0.93: 92.5 ± 0.5
    apt = rows[("1-shot", "APT", "measured")]
    assert apt[0] == pytest.approx((92.5, 0.5))
    assert rows[("1-shot", "APT", "paper")][0].md == "92.32 ± 0.99"
    assert rows[("1-shot", "APT", "diff")][0].md == "+0.18"  # 92.50 - 92.32
    # AnomalyGPT is published only: a paper row, no measured or diff row
    assert ("1-shot", "AnomalyGPT", "paper") in rows and ("1-shot", "AnomalyGPT", "measured") not in rows
    # the best measured value per column is APT's row (w/o VG) and is bold; published rows never are
    # (2-shot APT: 93.0 beats 1-shot APT: 92.5 in MVTec w/o VG)
    assert t.best[0] == list(rows).index(("2-shot", "APT", "measured"))
    assert "**93.00 ± 0.50**" in to_markdown(t)


def test_table1_none_drops_published_only_rows_and_beside_adds_columns():
    t = apt_table1(table1_records(), show="none")
    labels = [r[0][1] for r in t.rows]
    assert "AnomalyGPT" not in labels and labels[:3] == ["WinCLIP", "PromptAD", "APT"]
    assert t.columns == ["w/o VG", "w/ VG", "w/o VG", "w/ VG"] and [g for g, _ in t.groups] == ["MVTec", "VisA"]
    b = apt_table1(table1_records(), show="beside")
    assert len(b.columns) == 12 and b.columns[:3] == ["w/o VG", "w/o VG paper", "w/o VG diff"]
    assert b.groups == [("MVTec", 6), ("VisA", 6)]


@pytest.mark.parametrize("show,ncols", [("none", 2 + 4), ("under", 3 + 4), ("beside", 2 + 12)])
def test_table1_latex_column_count(show, ncols):
    tex = to_latex(apt_table1(table1_records(), show=show))
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1)
    assert len(spec) == ncols
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")]
    rows = [r for r in body.split("\\\\") if "&" in r]
    assert rows and all(r.count("&") == ncols - 1 for r in rows)
    head = tex[tex.index("\\toprule") + len("\\toprule"):tex.index("\\midrule")]
    for line in [h for h in head.split("\\\\") if "&" in h]:  # a multicolumn spans its n columns
        spans = [int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in line.split("&")]
        assert sum(spans) == ncols, line
    assert tex.count("{") == tex.count("}") and "\\textbf{" in tex
    assert tex.count("\\midrule") == 2  # header rule + the rule between 1-shot and 2-shot
    if show != "none":
        assert "92.32 $\\pm$ 0.99" in tex and "$+0.18$" in tex


def test_table2_zero_shot_rows():
    recs = []
    for seed in (0, 1):
        for ds in ("mvtec", "visa"):
            recs.append(_rec({"name": "winclip", "id": "winclip"}, ds, "c1", 0, seed,
                             {"w/o VG": {"pixel_auroc": 0.90 + 0.01 * seed}}))
            recs.append(_rec({"name": "apt", "id": "apt"}, ds, "c1", 1, seed,
                             {"w/o VG": {"pixel_auroc": 0.9}, "w/ VG": {"pixel_auroc": 0.96}}))
    t = apt_table2(recs, show="under")
    rows = {tuple(r[0]): r[1] for r in t.rows}
    assert rows[("AnomalyCLIP (zero-shot)", "paper")][0].md == "91.16"
    assert rows[("WinCLIP (zero-shot)", "measured")][0] == pytest.approx((90.5, 0.5))
    assert rows[("APT (1-shot, w/ VG)", "measured")][1] == pytest.approx((96.0, 0.0))
    assert rows[("APT (1-shot, w/ VG)", "diff")][1].md == "-0.09"  # 96.00 - 96.09
    assert t.columns == ["MVTec", "VisA"]


def test_table3_rows_follow_switches():
    on = dict(so=True, mg=True, gn=True, tf=True, la=True)
    no_la = dict(on, la=False)
    recs = []
    for mid, opts, v in (("apt", on, 0.93), ("apt[la=false]", no_la, 0.91)):
        for ds in ("mvtec", "visa"):
            recs.append(_rec({"name": "apt", "id": mid}, ds, "c1", 1, 0,
                             {"w/o VG": {"pixel_auroc": v}, "w/ VG": {"pixel_auroc": 0.99}}, {**opts, "lam": 1.0}))
    t = apt_table3(recs, show="none")
    # the paper's row order: SO+MG+GN+TF (row 4) before the full APT (row 6); the LA column tells them apart
    assert [r[0][4].md for r in t.rows] == ["×", "✓"]
    assert t.rows[0][1][0] == pytest.approx((91.0, 0.0)) and t.rows[1][1][1] == pytest.approx((93.0, 0.0))
    u = apt_table3(recs, show="under")
    assert len(u.rows) == 4 + 3 * 2  # 4 paper-only settings + 2 measured settings x (measured, paper, diff)
    assert [r[1][0].md for r in u.rows if r[0][-1] == "paper"][0] == "85.00"
    tex = to_latex(u)
    assert "$\\checkmark$" in tex and "$\\times$" in tex and "amssymb" in tex


def test_published_data_carries_sources_and_figures():
    p = published()
    t1 = p["tables"]["apt_table1"]
    assert t1["source"] in p["sources"] and t1["table"] == "Table 1"
    assert t1["values"][1]["apt"]["mvtec"] == [[92.32, 0.99], [95.32, 0.37]]
    assert t1["values"][4]["promptad"]["sdd"][1] == [94.23, 0.22]
    assert t1["values"][1]["anomalygpt"]["mvtec"][0] is None
    for k, methods in t1["values"].items():
        for m, per_ds in methods.items():
            assert all(len(v) == 2 for v in per_ds.values()), (k, m)
    assert len(p["tables"]["apt_table3"]["rows"]) == 6
    assert p["tables"]["apt_table2"]["values"]["anomalyclip"] == {"mvtec": 91.16, "visa": 95.51}


@pytest.mark.parametrize("name", ["apt_table1", "apt_table2", "apt_table3"])
def test_paper_configs_parse_and_name_their_layout(name):
    path = REPO / "configs" / "paper" / f"{name}.yaml"
    layout, kw, results_dir = table_spec(path)
    assert layout == name and results_dir
    cfg = build_config(None, str(path))  # the sweep half is a valid run config
    assert cfg.methods and cfg.datasets and cfg.seeds
    from fsadbench.core.registry import DATASETS, METHODS

    assert {m.name for m in cfg.methods} <= set(METHODS.names())
    assert {d.name for d in cfg.datasets} <= set(DATASETS.names())
    if name == "apt_table3":
        assert len(kw["labels"]) == 6 and all(m.name == "apt" for m in cfg.methods)


def test_cli_paper_table(tmp_path, capsys):
    store = RecordStore(tmp_path / "run")
    for r in table1_records():
        store.write(r)
    out = tmp_path / "t1.tex"
    assert main(["paper-table", "--table", "apt_table1", "--results-dir", str(tmp_path / "run"),
                 "--format", "latex", "--published", "beside", "--output", str(out)]) == 0
    assert "\\begin{tabular}" in out.read_text()
    assert main(["paper-table", "--results-dir", str(tmp_path)]) == 2
    assert "needs --config" in capsys.readouterr().err
