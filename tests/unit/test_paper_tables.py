"""Paper layouts from fixed records: golden Markdown, LaTeX structure, published figures, configs.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/paper/layouts.py that cannot change behaviour.
"""

import re
from pathlib import Path

import pytest

from fsadbench.cli import main
from fsadbench.run.config import build_config
from fsadbench.reports.paper.spec import table_spec
from fsadbench.reports.paper.layouts import apt_table1, apt_table2, apt_table3
from fsadbench.reports.paper.published import published
from fsadbench.reports.render import to_latex, to_markdown
from fsadbench.reports.tables import TextCell
from fsadbench.results.records import CellKey, Record, RecordStore

REPO = Path(__file__).resolve().parents[2]
TABLE_PROTOCOL = ("the table protocol handed to assemble() is unread: every APT row with a published figure carries "
                  "its own row_protocol (the table's merged with the row's)")
EQUIVALENT_MUTANTS = {
    "layouts.x_apt_table1__mutmut_150": TABLE_PROTOCOL,
    "layouts.x_apt_table1__mutmut_172": TABLE_PROTOCOL,
    "layouts.x_apt_table1__mutmut_173": TABLE_PROTOCOL,
    "layouts.x_apt_table1__mutmut_174": TABLE_PROTOCOL,
    "layouts.x_apt_table1__mutmut_175": TABLE_PROTOCOL,
    "layouts.x_apt_table2__mutmut_235": TABLE_PROTOCOL,
    "layouts.x_apt_table2__mutmut_258": TABLE_PROTOCOL,
    "layouts.x_apt_table2__mutmut_259": TABLE_PROTOCOL,
    "layouts.x_apt_table2__mutmut_260": TABLE_PROTOCOL,
    "layouts.x_apt_table2__mutmut_261": TABLE_PROTOCOL,
    "layouts.x_apt_table3__mutmut_211": TABLE_PROTOCOL,
    "layouts.x_apt_table3__mutmut_236": TABLE_PROTOCOL,
    "layouts.x_apt_table3__mutmut_237": TABLE_PROTOCOL,
    "layouts.x_apt_table3__mutmut_238": TABLE_PROTOCOL,
    "layouts.x_apt_table3__mutmut_239": TABLE_PROTOCOL,
}
GOLDEN = Path(__file__).parent / "golden"

# pixel AUROC (fraction) of (method, variant): category c1 = v + 0.01, c2 = v - 0.01; seed s adds 0.01 * s
MVTEC = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw", "tile",
         "toothbrush", "transistor", "wood", "zipper")
BASE = {("winclip", "w/o VG"): 0.80, ("winclip", "w/ VG"): 0.85, ("promptad", "w/o VG"): 0.90,
        ("promptad", "w/ VG"): 0.94, ("apt", "w/o VG"): 0.92, ("apt", "w/ VG"): 0.95}


PAPER_BB = {"model": "ViT-B-16-plus-240", "pretrained": "laion400m_e32", "random_weights": False}
PROTOCOL = {"version": "fsad-protocol/1", "eval_size": 400, "sigma": None, "sigma_used": 4.0, "max_test_images": None}


def _rec(method, dataset, cat, shots, seed, metrics, options=None, backbone=None, status="ok", error=None,
         protocol=None):
    return Record(key=CellKey(method["id"], dataset, cat, shots, seed).__dict__, status=status, config_hash="h",
                  method={"name": method["name"], "id": method["id"], "label": method.get("label", method["id"]),
                          "options": options or {}},
                  metrics=metrics, backbone=dict(backbone or {"model": "ViT-B-16-plus-240", "random_weights": False}),
                  error=error, protocol={**PROTOCOL, **(protocol or {})})


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


def comparable_records(categories=MVTEC, seeds=range(5), backbone=PAPER_BB):
    """APT on every MVTec category, 5 seeds, the paper's backbone: category i adds 0.001 * (i - 7)."""
    return [_rec({"name": "apt", "id": "apt"}, "mvtec", c, 1, s,
                 {v: {"pixel_auroc": BASE[("apt", v)] + 0.001 * (i - 7) + 0.002 * s} for v in ("w/o VG", "w/ VG")},
                 backbone=backbone)
            for i, c in enumerate(categories) for s in seeds]


def _rows(t):
    return {tuple(h if isinstance(h, str) else h.md for h in r[0]): r[1] for r in t.rows}


def _note_of(t, i, j):
    """The footnote text behind the mark of cell (row i, column j)."""
    return next(n for n in t.notes if n.startswith(f"[{t.marks[(i, j)]}]"))


def test_table1_matches_golden_markdown():
    md = to_markdown(apt_table1(table1_records(), show="under"))
    golden = (GOLDEN / "apt_table1.md").read_text()
    assert md == golden, "Table 1 layout changed; if intended, regenerate tests/golden/apt_table1.md"


def test_table1_values_by_hand_and_no_diff_without_a_comparable_measurement():
    t = apt_table1(table1_records(), show="under")
    rows = _rows(t)
    # APT, 1-shot, MVTec, w/o VG: seed 0 -> mean(0.93, 0.91) = 0.92, seed 1 -> 0.93: 92.5 ± 0.5
    apt = rows[("1-shot", "APT", "measured")]
    assert (apt[0].mean, apt[0].std) == pytest.approx((92.5, 0.5))
    assert rows[("1-shot", "APT", "paper")][0].md == "92.32 ± 0.99"
    # 2 made-up categories, 2 seeds: the figure is shown, the diff is not, and the note says why
    diff = rows[("1-shot", "APT", "diff")][0]
    assert diff.md == "n/c"
    i = list(rows).index(("1-shot", "APT", "diff"))
    note = next(n for n in t.notes if n.startswith(f"[{t.marks[(i, 0)]}]"))
    assert "2 of the paper's 15 mvtec categories" in note and "2 seed(s) vs the protocol's 5" in note
    assert not any(isinstance(c, TextCell) and c.md.startswith(("+", "-")) for r in t.rows for c in r[1])
    # AnomalyGPT is published only: a paper row, no measured or diff row
    assert ("1-shot", "AnomalyGPT", "paper") in rows and ("1-shot", "AnomalyGPT", "measured") not in rows
    # bold within each shot block: 1-shot APT and 2-shot APT are both bold in MVTec w/o VG
    assert (list(rows).index(("1-shot", "APT", "measured")), 0) in t.bold
    assert (list(rows).index(("2-shot", "APT", "measured")), 0) in t.bold
    assert "**93.00 ± 0.50**" in to_markdown(t) and "**92.50 ± 0.50**" in to_markdown(t)


def test_table1_diff_only_for_a_comparable_measurement():
    t = apt_table1(comparable_records(), show="under", datasets=["mvtec"])
    rows = _rows(t)
    m = rows[("1-shot", "APT", "measured")][0]
    # category offsets average to 0; seeds add 0, 0.2, ..., 0.8 pp: 92.4
    assert m.mean == pytest.approx(92.4) and m.complete
    assert rows[("1-shot", "APT", "diff")][0].md == "+0.08"  # 92.40 - 92.32
    # each condition alone blocks the diff, and the note names it
    for recs, why in ((comparable_records(categories=MVTEC[:-1]), "14 of the paper's 15"),
                      (comparable_records(seeds=range(4)), "4 seed(s) vs the protocol's 5"),
                      (comparable_records(backbone={"model": "fsad-tiny-vit", "pretrained": "none",
                                                    "random_weights": True}), "random backbone weights")):
        u = apt_table1(recs, show="under", datasets=["mvtec"])
        r = _rows(u)
        assert r[("1-shot", "APT", "diff")][0].md == "n/c"
        i = list(r).index(("1-shot", "APT", "diff"))
        assert why in next(n for n in u.notes if n.startswith(f"[{u.marks[(i, 0)]}]"))


def test_table1_rows_and_columns_without_records_are_shown_missing():
    t = apt_table1(table1_records(), show="none")
    rows = _rows(t)
    # every layout dataset is a column, every shot row of the layout (1, 2, 4) is kept
    assert [g for g, _ in t.groups] == ["MVTec", "VisA", "MPDD", "SDD", "CVC"]
    assert ("4-shot", "APT") in rows and all(c.md == "missing" for c in rows[("4-shot", "APT")])
    assert rows[("1-shot", "APT")][4].md == "missing"  # MPDD
    assert "AnomalyGPT" not in [r[0][1] for r in t.rows]  # not implemented here: published figures only
    assert t.problems and any("missing" in n for n in t.notes)
    b = apt_table1(table1_records(), show="beside", datasets=["mvtec", "visa"])
    assert len(b.columns) == 12 and b.columns[:3] == ["w/o VG", "w/o VG paper", "w/o VG diff"]
    assert b.groups == [("MVTec", 6), ("VisA", 6)]


def test_failed_category_is_marked_and_strict_fails(tmp_path, capsys):
    recs = comparable_records()
    recs = [r for r in recs if r.key["category"] != "zipper"] + [
        _rec({"name": "apt", "id": "apt"}, "mvtec", "zipper", 1, s, {}, status="failed",
             error="Traceback ...\nRuntimeError: CUDA out of memory") for s in range(5)]
    t = apt_table1(recs, show="under", datasets=["mvtec"])
    rows = _rows(t)
    i = list(rows).index(("1-shot", "APT", "measured"))
    note = next(n for n in t.notes if n.startswith(f"[{t.marks[(i, 0)]}]"))
    assert "14/15 categories" in note and "zipper (failed: RuntimeError: CUDA out of memory)" in note
    assert rows[("1-shot", "APT", "diff")][0].md == "n/c" and (i, 0) not in t.bold
    store = RecordStore(tmp_path / "run")
    for r in recs:
        store.write(r)
    args = ["paper-table", "--table", "apt_table1", "--results-dir", str(tmp_path / "run")]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 1
    assert "incomplete" in capsys.readouterr().err


def test_fidelity_notes_are_footnotes():
    recs = table1_records()
    for r in recs:
        if r.key["method"] == "apt":
            r.method["describe"] = {"fidelity_notes": ["LAT blocks chosen by us (paper silent)"]}
    t = apt_table1(recs, show="none", datasets=["mvtec"])
    assert any("APT: LAT blocks chosen by us (paper silent)" in n for n in t.notes)


@pytest.mark.parametrize("show,ncols", [("none", 2 + 4), ("under", 3 + 4), ("beside", 2 + 12)])
def test_table1_latex_column_count(show, ncols):
    tex = to_latex(apt_table1(table1_records(), show=show, datasets=["mvtec", "visa"]))
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
    assert tex.count("\\midrule") == 3  # header rule + the rules between the 1-, 2- and 4-shot blocks
    if show != "none":
        assert "92.32 $\\pm$ 0.99" in tex and "n/c$^{" in tex


def table2_records():
    """WinCLIP zero-shot and APT 1-shot on one made-up category of MVTec and VisA, 2 seeds."""
    recs = []
    for seed in (0, 1):
        for ds in ("mvtec", "visa"):
            recs.append(_rec({"name": "winclip", "id": "winclip"}, ds, "c1", 0, seed,
                             {"w/o VG": {"pixel_auroc": 0.90 + 0.01 * seed}}))
            recs.append(_rec({"name": "apt", "id": "apt"}, ds, "c1", 1, seed,
                             {"w/o VG": {"pixel_auroc": 0.9}, "w/ VG": {"pixel_auroc": 0.96}}))
    return recs


def table3_records():
    """APT with every switch on, and without LA, on one made-up category, 1 seed."""
    on = dict(so=True, mg=True, gn=True, tf=True, la=True)
    recs = []
    for mid, opts, v in (("apt", on, 0.93), ("apt[la=false]", dict(on, la=False), 0.91)):
        for ds in ("mvtec", "visa"):
            recs.append(_rec({"name": "apt", "id": mid}, ds, "c1", 1, 0,
                             {"w/o VG": {"pixel_auroc": v}, "w/ VG": {"pixel_auroc": 0.99}}, {**opts, "lam": 1.0}))
    return recs


def test_table2_zero_shot_rows():
    t = apt_table2(table2_records(), show="under")
    rows = {tuple(r[0]): r[1] for r in t.rows}
    assert rows[("AnomalyCLIP (zero-shot)", "paper")][0].md == "91.16"
    f = rows[("WinCLIP (zero-shot)", "measured")][0]
    assert (f.mean, f.std) == pytest.approx((90.5, 0.5))
    f = rows[("APT (1-shot, w/ VG)", "measured")][1]
    assert (f.mean, f.std) == pytest.approx((96.0, 0.0))
    assert rows[("APT (1-shot, w/ VG)", "diff")][1].md == "n/c"  # one made-up category: no diff
    assert t.columns == ["MVTec", "VisA"]
    # comparable APT 1-shot w/ VG on MVTec: 95.40 - 95.32
    c = apt_table2(comparable_records(), show="under", datasets=["mvtec"])
    assert {tuple(r[0]): r[1] for r in c.rows}[("APT (1-shot, w/ VG)", "diff")][0].md == "+0.08"


def test_table3_rows_follow_switches_and_settings_without_records_show_missing():
    recs = table3_records()
    t = apt_table3(recs, show="none")
    # every setting of the paper is a row, in the paper's order; the LA column tells rows 4 and 6 apart
    assert [r[0][4].md for r in t.rows] == ["×", "×", "×", "×", "×", "✓"]
    assert t.rows[0][1][0].md == "missing"
    assert t.rows[3][1][0].mean == pytest.approx(91.0) and t.rows[5][1][1].mean == pytest.approx(93.0)
    u = apt_table3(recs, show="under")
    assert len(u.rows) == 6 * 3  # every setting: measured, paper, diff
    assert [r[1][0].md for r in u.rows if r[0][-1] == "paper"][0] == "85.00"
    tex = to_latex(u)
    assert "$\\checkmark$" in tex and "$\\times$" in tex and "amssymb" in tex
    # a record that does not state every switch (old schema: options the user set only) is named, not placed
    old = [_rec({"name": "apt", "id": "apt[k=2]"}, "mvtec", "c1", 1, 0, {"w/o VG": {"pixel_auroc": 0.9}}, {"k": 2})]
    assert any("apt[k=2]" in n and "not shown" in n for n in apt_table3(recs + old).notes)


def test_table3_switches_come_from_data():
    recs = [_rec({"name": "memory", "id": f"memory[x={x}]"}, "mvtec", "c1", 1, 0, {"w/o VG": {"pixel_auroc": v}},
                 {"x": x, "y": True}) for x, v in ((True, 0.9), (False, 0.8))]
    t = apt_table3(recs, show="none", method="memory", switches=["x", "y"])
    assert t.row_headers == ["X", "Y"] and len(t.rows) == 2  # the paper's rows state other switches
    assert [c.mean for r in t.rows for c in r[1][:1] if not isinstance(c, TextCell)] == pytest.approx([90.0, 80.0])


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
    assert p["tables"]["apt_table2"]["rows"][0]["values"] == {"mvtec": 91.16, "visa": 95.51}


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
    # the seed count and evaluation size a diff requires are those the paper config runs
    assert published()["tables"][name]["protocol"]["seeds"] == len(cfg.seeds)
    assert published()["tables"][name]["protocol"]["eval_size"] == cfg.protocol.eval_size


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


def anomalyclip_records(mid="anomalyclip"):
    """AnomalyCLIP at 0 shots on its own protocol: every MVTec category (trained on VisA) and one made-up VisA
    category (trained on MVTec), 5 seeds; MVTec category i adds 0.001 * (i - 7)."""
    acl_bb = {"model": "ViT-L-14-336", "pretrained": "openai", "random_weights": False}
    recs = []
    for ds, aux, cats in (("mvtec", "visa", MVTEC), ("visa", "mvtec", ("c1",))):
        for i, c in enumerate(cats):
            for s in range(5):
                r = _rec({"name": "anomalyclip", "id": mid, "label": "AnomalyCLIP" if mid == "anomalyclip" else mid},
                         ds, c, 0, s, {"w/o VG": {"pixel_auroc": 0.92 + 0.001 * (i - 7)}}, backbone=acl_bb,
                         protocol={"eval_size": 518})
                r.method["auxiliary"] = {"name": aux, "same_as_target": False}
                recs.append(r)
    return recs


ACL_HEAD = "AnomalyCLIP (zero-shot) (trained on MVTec for VisA; trained on VisA for MVTec)"


def test_table2_measured_anomalyclip_row_names_its_training_set_and_uses_its_protocol():
    recs = anomalyclip_records()
    t = apt_table2(recs, show="under")
    rows = {tuple(h if isinstance(h, str) else h.md for h in r[0]): r[1] for r in t.rows}
    head = "AnomalyCLIP (zero-shot) (trained on MVTec for VisA; trained on VisA for MVTec)"
    assert rows[(head, "paper")][0].md == "91.16"
    assert rows[(head, "measured")][0].mean == pytest.approx(92.0)
    # the row's own protocol (ViT-L-14-336 / openai, 5 seeds, evaluated at AnomalyCLIP's 518 px)
    assert rows[(head, "diff")][0].md == "+0.84"
    assert rows[(head, "diff")][1].md == "n/c"  # one made-up VisA category
    assert not any("AnomalyCLIP" in h[0] and h[0] != head for h in rows)  # no second zero-shot row
    for r in recs:
        r.protocol["eval_size"] = 400  # the table's size, not AnomalyCLIP's
    at400 = apt_table2(recs, show="under")
    i = [tuple(r[0]) for r in at400.rows].index((head, "diff"))
    assert at400.rows[i][1][0].md == "n/c"
    assert "evaluated at 400 px vs the protocol's 518 px" in _note_of(at400, i, 0)
    for r in recs:
        r.protocol["eval_size"] = 518
    for r in recs:
        r.backbone["model"] = "ViT-B-16-plus-240"
    again = {tuple(r[0]): r[1] for r in apt_table2(recs, show="under").rows}
    assert again[(head, "diff")][0].md == "n/c"


def test_anomalyclip_published_figures():
    t = published()["tables"]["anomalyclip_table1"]
    assert published()["sources"][t["source"]].startswith("Zhou")
    assert t["values"]["mvtec"] == {"image_auroc": 91.5, "image_ap": 96.2, "pixel_auroc": 91.1, "aupro": 81.4}
    assert t["values"]["visa"] == {"image_auroc": 82.1, "image_ap": 85.4, "pixel_auroc": 95.5, "aupro": 87.0}
    assert t["train_on"] == {"mvtec": "visa", "visa": "mvtec"}
    cfg = build_config(config_file=str(REPO / "configs/paper/apt_table2.yaml"))
    assert cfg.train_on == t["train_on"] and "anomalyclip" in [m.name for m in cfg.methods]


def test_table2_never_shows_a_measured_row_twice():
    """AnomalyCLIP has its own 0-shot row: the zero-shot block must not repeat it. Its header is the same
    there, so rows are counted, not keyed by header."""
    recs = table2_records() + anomalyclip_records() + anomalyclip_records("anomalyclip[epochs=1]")
    heads = [r[0][0] for r in apt_table2(recs, show="none").rows]
    assert heads == [ACL_HEAD, "anomalyclip[epochs=1] (0-shot, w/o VG) (trained on MVTec for VisA; trained on VisA "
                     "for MVTec)", "WinCLIP (zero-shot)", "APT (1-shot, w/ VG)"]
    under = apt_table2(recs, show="under").rows
    assert [r[0] for r in under if r[0][0] == ACL_HEAD] == [[ACL_HEAD, s] for s in ("measured", "paper", "diff")]
    assert len(under) == len({tuple(r[0]) for r in under})


def test_table2_rows_diff_against_their_method_defaults():
    recs = comparable_records()
    for r in recs:
        r.method["options"] = {"epochs": 1}
    t = apt_table2(recs, show="under", datasets=["mvtec"])
    i = [tuple(r[0]) for r in t.rows].index(("APT (1-shot, w/ VG)", "diff"))
    assert t.rows[i][1][0].md == "n/c" and "epochs=1 (protocol 100)" in _note_of(t, i, 0)


def ablation_records(opts, mid, v=0.92, shots=1):
    """APT with ``opts`` on every MVTec category, 3 seeds (APT Table 3's protocol); seed s adds 0.002 * s."""
    return [_rec({"name": "apt", "id": mid}, "mvtec", c, shots, s,
                 {"w/o VG": {"pixel_auroc": v + 0.001 * (i - 7) + 0.002 * s}}, opts, backbone=PAPER_BB)
            for i, c in enumerate(MVTEC) for s in range(3)]


NO_LA = dict(so=True, mg=True, gn=True, tf=True, la=False)


def test_table3_rows_diff_against_their_switches_and_the_closest_id_fills_them():
    slow = ablation_records({**NO_LA, "epochs": 1}, "apt[epochs=1,la=false]", 0.80)
    recs = slow + ablation_records(dict(NO_LA), "apt[la=false]")
    t = apt_table3(recs, show="under", datasets=["mvtec"])
    heads = list(_rows(t))
    i = heads.index(("✓", "✓", "✓", "✓", "×", "measured"))
    assert t.rows[i][1][0].mean == pytest.approx(92.2)  # apt[la=false], though listed second and sorting later
    assert t.rows[i + 2][1][0].md == "+0.26"  # paper 91.94: the row's la=false is its protocol
    assert ("setting {'so': True, 'mg': True, 'gn': True, 'tf': True, 'la': False}: several method ids "
            "(apt[la=false], apt[epochs=1,la=false]); showing apt[la=false]") in t.notes
    u = apt_table3(slow, show="under", datasets=["mvtec"])
    assert u.rows[i][1][0].mean == pytest.approx(80.2) and u.rows[i + 2][1][0].md == "n/c"
    assert _note_of(u, i + 2, 0).endswith("options off the row's protocol: epochs=1 (protocol 100)")


def _spec(tmp_path, text, name="apt_table3"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return table_spec(p)


def test_table3_shots_setting_of_a_config(tmp_path):
    assert _spec(tmp_path, "table: {layout: apt_table3, shots: 2}\n")[1] == {"shots": 2}
    assert _spec(tmp_path, "table: {layout: apt_table3, shots: 0}\n")[1] == {"shots": 0}
    assert "shots" not in _spec(tmp_path, "table: apt_table3\n")[1]
    recs = ablation_records(dict(NO_LA), "apt[la=false]", shots=2)
    kw = _spec(tmp_path, "table: {layout: apt_table3, shots: 2}\n")[1]
    t = apt_table3(recs, show="none", datasets=["mvtec"], **kw)
    assert "2-shot" in t.title and t.rows[3][1][0].mean == pytest.approx(92.2)
    assert apt_table3(recs, show="none", datasets=["mvtec"]).rows[3][1][0].md == "missing"  # the paper's 1 shot


def test_a_config_columns_key_names_the_datasets(tmp_path):
    assert _spec(tmp_path, "table: {layout: apt_table1, columns: [visa, mvtec]}\n")[1] == {
        "datasets": ["visa", "mvtec"]}
    assert _spec(tmp_path, "table: {layout: apt_table1, datasets: [mpdd], columns: [visa]}\n")[1] == {
        "datasets": ["mpdd"]}
    layout, kw, _ = _spec(tmp_path, "table: {layout: anople_table2, columns: [visa]}\n", "t")
    assert layout == "anople_table2" and kw == {"datasets": ["visa"]}
    from fsadbench.reports.paper.catalog import build

    assert [g for g, _ in build(layout, [], "none", **kw).groups] == ["VisA"]


def test_apt_configs_table_keys_become_build_arguments(tmp_path):
    assert table_spec(REPO / "configs/paper/apt_table1.yaml")[1] == {"metric": "pixel_auroc"}
    assert table_spec(REPO / "configs/paper/apt_table2.yaml")[1] == {"metric": "pixel_auroc",
                                                                    "datasets": ["mvtec", "visa"]}
    kw = table_spec(REPO / "configs/paper/apt_table3.yaml")[1]
    labels = kw.pop("labels")
    assert kw == {"metric": "pixel_auroc", "datasets": ["mvtec", "visa"], "shots": 1, "variant": "w/o VG"}
    assert len(labels) == 6 and labels[(True,) * 5] == "APT (SO+MG+GN+TF+LA)"
    assert labels[(False,) * 5] == "Manual prompts (no tuning)"
    assert _spec(tmp_path, "table: {layout: apt_table1, shots: [1, '4']}\n", "apt_table1")[1] == {"shots": [1, 4]}
    text = ("table: {layout: apt_table3, method: memory, switches: [x, y], variant: 'w/ VG', rows: [\n"
            "  {label: A, x: true, y: false}, {label: B, x: true}, {x: true, y: true}, {label: 5, x: false, y: true},\n"
            "  junk]}\npublished: {rows: [{label: P, x: false, y: false}]}\n")
    assert _spec(tmp_path, text)[1] == {"method": "memory", "switches": ["x", "y"], "variant": "w/ VG",
                                        "labels": {(True, False): "A", (False, True): "5", (False, False): "P"}}
    assert "labels" not in _spec(tmp_path, "table: apt_table3\npublished: [{label: P, so: true}]\n")[1]


def test_layout_defaults_show_no_published_figures():
    from fsadbench.reports.paper import catalog, layouts
    from tests.unit.test_paper_apt_golden import dump

    recs = table2_records()
    for name in ("apt_table1", "apt_table2", "apt_table3"):
        none = dump(catalog.build(name, recs, "none"))
        assert dump(catalog.build(name, recs)) == none and dump(layouts.build(name, recs)) == none
        assert dump(getattr(layouts, name)(recs)) == none
    t = layouts.apt_table1(recs)
    assert t.title == "pixel AUROC: APT Table 1 layout" and apt_table2(recs).title.startswith("pixel AUROC: APT")
    assert apt_table3(recs, metric="aupro").title == "AUPRO: APT Table 3 layout (ablation), 1-shot, w/o VG"
    assert apt_table2(recs, metric="my_metric").title == "my_metric: APT Table 2 layout (zero-shot comparison)"


def test_layouts_built_at_call_time_carry_their_paper_and_parser():
    from fsadbench.reports.paper import layouts

    lay = layouts._layout("apt_table3", apt_table3, layouts._apt_table3_options, "d")
    assert (lay.name, lay.table, lay.description, lay.build, lay.options) == (
        "apt_table3", "Table 3", "d", apt_table3, layouts._apt_table3_options)
    assert lay.paper.startswith("Chen et al. 2025, Beyond Human-prompting")


def test_zero_shot_rows_take_w_o_vg_else_the_first_variant():
    recs = [_rec({"name": "memory", "id": "memory"}, "mvtec", "c1", 0, 0, {"w/ VG": {"pixel_auroc": 0.7},
                                                                          "w/o VG": {"pixel_auroc": 0.6}}),
            _rec({"name": "winclip", "id": "winclip"}, "mvtec", "c1", 0, 0, {"w/ VG": {"pixel_auroc": 0.8},
                                                                            "x": {"pixel_auroc": 0.9}})]
    rows = {r[0][0]: r[1][0] for r in apt_table2(recs, datasets=["mvtec"]).rows}
    assert rows["Memory bank (zero-shot)"].mean == pytest.approx(60.0)
    assert rows["WinCLIP (zero-shot, w/ VG)"].mean == pytest.approx(80.0)


def test_a_published_only_row_of_table2(monkeypatch):
    from fsadbench.reports.paper import layouts

    data = {**layouts.table_data("apt_table2"), "rows": [{"label": "Theirs", "values": {"mvtec": 90.5}},
                                                         {"zero_shot": True}]}
    monkeypatch.setattr(layouts, "table_data", lambda key: data)
    t = apt_table2(table2_records(), show="under", datasets=["mvtec"])
    assert [tuple(r[0]) for r in t.rows][:2] == [("Theirs", "paper"), ("WinCLIP (zero-shot)", "measured")]
    assert t.rows[0][1][0].md == "90.50" and t.breaks == []  # one group: no rule
    assert [tuple(r[0]) for r in apt_table2(table2_records(), datasets=["mvtec"]).rows] == [("WinCLIP (zero-shot)",)]
