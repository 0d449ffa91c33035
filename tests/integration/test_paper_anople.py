"""AnoPLe's paper layouts from a real sweep of their configs (synthetic set, tiny random model, 1 epoch),
and a layout plugin installed from a package's entry point.

One sweep runs the union of the five configs' methods (each config's cells exactly: the method ids of
configs/paper/anople_table*.yaml with epochs=1, depth=1 added), on 2 synthetic categories, 1 shot, 1
seed; every layout then renders in Markdown and LaTeX with the published figures beside, each
measured row filled for the synthetic column, coverage notes for the missing ones.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fixtures_plugins import install_plugin
from fsadbench.cli import main
from fsadbench.reports.paper.catalog import build, get_layout, layout_names
from fsadbench.reports.paper.published import table_data
from fsadbench.reports.paper.spec import table_spec
from fsadbench.reports.render import to_latex, to_markdown
from fsadbench.results.coverage import Figure
from fsadbench.results.records import RecordStore

REPO = Path(__file__).resolve().parents[2]
TABLES = [f"anople_table{i}" for i in range(1, 6)]
SYN = {"size": 64, "n_train": 2, "n_test_good": 1, "n_test_bad": 2}
FAST = {"anople": {"epochs": 1, "depth": 1}, "anople-oc": {"epochs": 1, "depth": 1},
        "maple-draem": {"epochs": 1, "depth": 1}, "promptad": {"epochs": 1}, "promptad-g": {"epochs": 1},
        "inctrl": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "train_shots": 1},
        "regad": {"epochs": 1, "batch_size": 2}}
PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs,graphicx,amssymb}\n\\begin{document}\n"


def config_methods():
    """The (name, options) of every config's methods, deduplicated, with the fast options added."""
    from fsadbench.run.config import MethodSpec

    out = {}
    for t in TABLES:
        for m in yaml.safe_load((REPO / "configs" / "paper" / f"{t}.yaml").read_text())["methods"]:
            opts = {**(m.get("options") or {}), **FAST.get(m["name"], {})}
            out[(m["name"], tuple(sorted(opts.items())))] = MethodSpec(m["name"], opts)
    return list(out.values())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from fsadbench.run import sweep
    from fsadbench.run.config import PIPELINE_CHECK, DatasetSpec, Protocol, RunConfig

    tmp = tmp_path_factory.mktemp("anople_tables")
    cfg = RunConfig(methods=config_methods(), datasets=[DatasetSpec("synthetic", categories=["disc", "stripes"],
                                                                    options=dict(SYN))],
                    shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=48),
                    results_dir=str(tmp / "res"), cache_dir=str(tmp / "cache"), device="cpu", batch_size=8,
                    preset=PIPELINE_CHECK)  # InCTRL trains on synthetic-aux, as in the pipeline check
    s = sweep(cfg)
    assert s.failed == 0, s.failures
    return tmp / "res"


@pytest.mark.parametrize("name", TABLES)
def test_config_names_its_layout_and_runs_exactly_its_rows(name):
    from fsadbench.run.config import build_config

    layout, kw, results_dir = table_spec(REPO / "configs" / "paper" / f"{name}.yaml")
    assert layout == name and results_dir == f"results/{name}" and kw == {}
    cfg = build_config(None, str(REPO / "configs" / "paper" / f"{name}.yaml"))
    data = table_data(name)
    assert len(cfg.seeds) == data["protocol"]["seeds"] and {d.name for d in cfg.datasets} == set(data["datasets"])
    assert cfg.protocol.eval_size == data["protocol"]["eval_size"]
    shots = sorted({int(c.get("shots", data.get("shots", 1))) for c in data["columns"]})
    assert cfg.shots == shots
    # every measurable row's setting is run once, nothing else
    from fsadbench.reports.paper.grid import method_class, switches_of
    from fsadbench.core.registry import METHODS

    sw = switches_of(data["rows"])
    want = set()
    for r in data["rows"]:
        if r.get("method") in METHODS:
            _, d = method_class(r["method"])
            want.add((r["method"], tuple((k, (r.get("options") or {}).get(k, d.get(k))) for k in sw[r["method"]])))
    got = set()
    for m in cfg.methods:
        _, d = method_class(m.name)
        got.add((m.name, tuple((k, m.options.get(k, d.get(k))) for k in sw.get(m.name, []))))
    assert got == want


def test_list_shows_apt_and_anople_layouts(capsys):
    assert main(["paper-table", "--list"]) == 0
    out = capsys.readouterr().out
    for name in TABLES + ["apt_table1", "apt_table2", "apt_table3"]:
        assert name in out
    assert "AnoPLe: Few-Shot Anomaly Detection" in out and "Table 5" in out and "Beyond Human-prompting" in out
    assert get_layout("anople_table2").table == "Table 2"


@pytest.mark.parametrize("name", TABLES)
def test_layout_renders_from_the_sweep(results, name, tmp_path):
    recs = RecordStore(results).records()
    t = build(name, recs, "beside")
    data = table_data(name)
    measured = [r for r in data["rows"] if r.get("method") and r["method"] in {x.key["method"].split("[")[0]
                                                                             for x in recs}]
    assert measured
    # the layout's datasets, then the measured synthetic one: value, paper and diff per column
    assert [g for g, _ in t.groups] == ["MVTec", "VisA", "synthetic"]
    assert t.groups[-1] == ("synthetic", 3 * len(data["columns"]))
    first_syn = sum(n for _, n in t.groups[:-1])
    filled = [r for r in t.rows if isinstance(r[1][first_syn], Figure)]
    assert len(filled) >= len(measured)  # every measured row has its synthetic figure
    assert all(r[1][first_syn + 1].md == "–" for r in filled)  # the paper has no synthetic figure: no diff
    if name == "anople_table1":  # the classic baselines are measured rows, on their own (tiny) backbones
        assert all(any(r[0][0] == b and isinstance(r[1][first_syn], Figure) for r in t.rows)
                   for b in ("SPADE", "PaDiM", "PatchCore"))
    md, tex = to_markdown(t), to_latex(t)
    assert "missing" in md and "no record of this method" in md  # MVTec / VisA columns: coverage notes
    assert "PIPELINE CHECK" in md and "paper: Lee, Jang, Yoon 2024" in md
    assert tex.count("\\resizebox{") == 1
    if name == "anople_table1":
        assert t.row_headers == ["method", "multi-class", "few-shot transfer"]
        rows = {r[0][0]: r[0] for r in t.rows}
        assert [c.md for c in rows["AnoPLe"][1:]] == ["✓", "×"]
        assert [c.md for c in rows["RegAD"][1:]] == ["✓", "✓"] and [c.md for c in rows["InCTRL"][1:]] == ["×", "✓"]
    if shutil.which("pdflatex"):
        (tmp_path / "doc.tex").write_text(PREAMBLE + tex + "\n\\end{document}\n")
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        log = (tmp_path / "doc.log").read_text(errors="replace")
        assert r.returncode == 0, log[-3000:]
        assert "Overfull \\hbox" not in log


def test_cli_renders_each_layout(results, capsys):
    for name in TABLES:
        assert main(["paper-table", "--table", name, "--results-dir", str(results), "--published", "under"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"\|\s*paper\s*\|", out)) >= 5 and "MaPLe+DRAEM" in out and "T ↔ I (default)" in out
    assert main(["paper-table", "--table", "no_such_layout", "--results-dir", str(results)]) == 2
    assert "registered layouts:" in capsys.readouterr().err


def test_layout_plugin_from_an_entry_point(tmp_path, monkeypatch, results):
    """A package outside the repository adds a grid layout through the fsadbench.layouts group."""
    install_plugin(tmp_path, monkeypatch, "fsadbench.layouts", 'demo_table = "fsad_demo_layouts:DEMO"', """
        from fsadbench.reports.paper.grid import grid_layout
        DEMO = grid_layout("demo_table", {
            "source": "Demo et al. 2030", "table": "Table 9", "title": "demo",
            "datasets": ["mvtec"], "variant": "w/ VG", "shots": 1,
            "columns": [{"metric": "pixel_auroc", "label": "P"}],
            "rows": [{"label": "AnoPLe here", "method": "anople", "values": {"mvtec": [99.0]}},
                     {"label": "Someone else", "values": {"mvtec": [[98.0, 0.5]]}}]})
    """)
    from fsadbench.core import registry

    fresh = registry.Registry("layout", "fsadbench.layouts")  # reads the entry points anew
    monkeypatch.setattr(registry, "LAYOUTS", fresh)
    assert "demo_table" in layout_names()
    out = tmp_path / "demo.md"
    assert main(["paper-table", "--table", "demo_table", "--results-dir", str(results), "--published", "under",
                 "--output", str(out)]) == 0
    md = out.read_text()
    assert "Demo et al. 2030, Table 9" in md and "AnoPLe here" in md and "98.00 ± 0.50" in md
    assert "99.00" in md and "anople[depth=1,epochs=1]" in md
    assert main(["paper-table", "--list"]) == 0
