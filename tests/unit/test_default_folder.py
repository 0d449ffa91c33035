"""``report`` and ``figures`` on the empty default folder fall back, as ``status`` does, to the most recent
sweep under results/ (the pipeline check's results/smoke after the README's first command), saying so."""

from __future__ import annotations

import os

import pytest

from fsadbench.cli import main
from fsadbench.results.records import RecordStore
from tests.unit.test_method_notes import _ablation


@pytest.fixture
def smoke_only(tmp_path, monkeypatch):
    """A working folder whose results/ holds only results/smoke (records + run.json), no results/run."""
    store = RecordStore(tmp_path / "results" / "smoke")
    for r in _ablation():
        store.write(r)
    (tmp_path / "results" / "smoke" / "run.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_report_on_the_empty_default_folder_shows_the_recent_sweep(smoke_only, capsys):
    assert main(["report"]) == 0
    out = capsys.readouterr()
    assert "note: results/run holds no records; showing results/smoke, the most recent sweep under results/" in out.err
    assert "apt[so=false]" in out.out and "pixel AUROC" in out.out


def test_figures_bars_on_the_empty_default_folder_uses_it_too(smoke_only, capsys):
    assert main(["figures", "bars", "--dataset", "mvtec", "--shots", "1", "--output", "figs/bars"]) == 0
    err = capsys.readouterr().err
    assert "showing results/smoke" in err and os.path.exists("figs/bars.png")


def test_an_explicit_folder_never_falls_back_and_rescore_never_does(smoke_only, capsys):
    assert main(["report", "--results-dir", "results/other"]) == 2
    assert "results/other: no records there" in capsys.readouterr().err
    assert main(["rescore"]) == 2  # it writes: only the folder named
    assert "no records there" in capsys.readouterr().err


def test_nothing_anywhere_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "no records there" in err and "--preset smoke" in err
