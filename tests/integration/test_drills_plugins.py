"""Drills of issue 33, paper tables: ``paper-table --metric bogus`` is refused as ``report`` refuses it
(was: a table of "undefined" and exit 0). The layout-plugin drills of the issue are still open."""

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
