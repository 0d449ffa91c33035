"""Drills of issue 33, paper tables: ``paper-table --metric bogus`` is refused as ``report`` refuses it
(was: a table of "undefined" and exit 0); a broken layout plugin is named and skipped, a clash with a built-in
refused by name, layout data missing a key named (were: --list broken, a bare KeyError, dropped silently)."""

from __future__ import annotations

import pytest

from fsadbench.cli import main


@pytest.mark.parametrize("metric, fragment", [
    ("bogus", "--metric 'bogus': unknown ['bogus']; choose from"),
    ("pixel_auroc,image_auroc", "paper-table shows one metric"),
])
def test_paper_table_refuses_an_unknown_metric(tmp_path, capsys, metric, fragment):
    rc = main(["paper-table", "--table", "apt_table1", "--results-dir", str(tmp_path / "res"), "--metric", metric])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 2 and len(lines) == 1 and fragment in lines[0], err


def test_paper_table_takes_a_known_metric(tmp_path, capsys):
    assert main(["paper-table", "--table", "apt_table1", "--results-dir", str(tmp_path / "res"),
                 "--metric", "image_auroc"]) == 0
    assert "undefined" not in capsys.readouterr().out


# layout plugins: a broken one is named and skipped with one warning, the rest are listed ------------------------

GOOD = """
    from fsadbench.reports.paper.grid import grid_layout
    DATA = {"source": "Drill paper 2024", "table": "Table 9", "datasets": ["mvtec"],
            "columns": [{"metric": "image_auroc"}], "rows": [{"label": "bank", "method": "memory"}]}
    GOOD = grid_layout("good_drill", DATA, "a plugin layout that works")
"""
BROKEN = {  # module -> its source: each fails when the entry point is loaded
    "raises": "raise RuntimeError('the plugin is broken')\n",
    "syntax": "def oops(:\n",
    "nosource": "from fsad_layout_drill import DATA, grid_layout\n"
                "LAYOUT = grid_layout('nosource_drill', {k: v for k, v in DATA.items() if k != 'source'})\n",
    "nolabel": "from fsad_layout_drill import DATA, grid_layout\n"
               "LAYOUT = grid_layout('nolabel_drill', {**DATA, 'rows': [{'method': 'memory'}]})\n",
}


@pytest.fixture
def layout_plugins(tmp_path, monkeypatch):
    """A package with one working layout, four broken ones and one named as a built-in (other case); a
    fresh LAYOUTS registry reads its entry points."""
    from fixtures_plugins import install_plugin
    from fsadbench.core import builtin, registry

    entries = ['good_drill = "fsad_layout_drill:GOOD"', 'APT_Table1 = "fsad_layout_drill:GOOD"']
    entries += [f'{m}_drill = "fsad_layout_drill.{m}:LAYOUT"' for m in BROKEN]
    install_plugin(tmp_path, monkeypatch, "fsadbench.layouts", "\n".join(entries), GOOD)
    for module, source in BROKEN.items():
        (tmp_path / "site" / "fsad_layout_drill" / f"{module}.py").write_text(source)
    fresh = registry.Registry("layout", "fsadbench.layouts")
    builtin.register_builtins(registry.Registry("m", "none"), registry.Registry("d", "none"), fresh)
    monkeypatch.setattr(registry, "LAYOUTS", fresh)
    return fresh


def test_a_broken_layout_plugin_is_named_and_skipped_once(layout_plugins, capsys):
    assert main(["paper-table", "--list"]) == 0
    out, err = capsys.readouterr()
    assert "good_drill: Drill paper 2024, Table 9 (a plugin layout that works)" in out
    assert "apt_table1:" in out and "anople_table1:" in out
    for module in BROKEN:
        lines = [ln for ln in err.splitlines() if f"{module}_drill" in ln]
        assert len(lines) == 1 and lines[0].startswith("warning: "), err
        assert f"fsad_layout_drill.{module}:LAYOUT" in lines[0] and "skipped" in lines[0], lines
        assert f"{module}_drill" not in out
    assert "RuntimeError: the plugin is broken" in err and "SyntaxError" in err


@pytest.mark.parametrize("layout, key", [("nosource_drill", "'source'"), ("nolabel_drill", "'label'")])
def test_layout_data_without_a_key_names_the_layout_and_the_key(layout_plugins, capsys, tmp_path, layout, key):
    assert main(["paper-table", "--table", layout, "--results-dir", str(tmp_path / "res")]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and layout in lines[0] and f"no {key}" in lines[0] and "KeyError" not in lines[0], lines


def test_a_plugin_named_as_a_builtin_layout_is_refused_by_name(layout_plugins, capsys):
    assert main(["paper-table", "--list"]) == 0
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if "APT_Table1" in ln]
    assert len(lines) == 1 and "built-in layout" in lines[0] and "fsad_layout_drill:GOOD" in lines[0], err
    assert "apt_table1: Chen et al. 2025" in out and "[entry point fsad_layout_drill:GOOD]" not in out.split("apt_table1:")[1].splitlines()[0]
