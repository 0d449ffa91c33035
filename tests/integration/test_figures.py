"""Figures and history: files written and non-empty; history values over commits by hand."""

import pytest

from fsadbench.cli import main
from fsadbench.core.errors import ConfigError
from fsadbench.reports.figures import category_bars, pick_images, qualitative_grid
from fsadbench.regression.history import history_frame, history_markdown, plot_history
from fsadbench.results.records import CellKey, Record, RecordStore
from fsadbench.core.types import Sample

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(method, cat, seed, value, commit="a" * 40, time="2026-01-01T00:00:00+00:00", dirty=False, shots=1):
    return Record(key=CellKey(method, "mvtec", cat, shots, seed).__dict__, status="ok", config_hash="h",
                  method={"name": method, "label": method},
                  metrics={"w/o VG": {"pixel_auroc": value}, "w/ VG": {"pixel_auroc": value + 0.02}},
                  backbone={"model": "x", "random_weights": False},
                  provenance={"git": {"commit": commit, "dirty": dirty}, "time_utc": time})


def _check_files(files):
    assert [f.suffix for f in files] == [".png", ".pdf"]
    assert all(f.stat().st_size > 1000 for f in files)
    assert files[0].read_bytes()[:8] == PNG_MAGIC and files[1].read_bytes()[:5] == b"%PDF-"


def test_category_bars_written(tmp_path):
    recs = [rec(m, c, s, v + 0.01 * s) for m, v in (("A", 0.8), ("B", 0.9)) for c in ("c1", "c2", "c3")
            for s in (0, 1)]
    _check_files(category_bars(recs, "mvtec", 1, tmp_path / "bars.png"))
    with pytest.raises(ConfigError, match="no successful records"):
        category_bars(recs, "visa", 1, tmp_path / "x")


def test_history_over_commits(tmp_path):
    old = [rec("apt", c, s, 0.80 + 0.02 * s) for c in ("c1", "c2") for s in (0, 1)]
    new = [rec("apt", c, s, 0.85, commit="b" * 40, time="2026-02-01T00:00:00+00:00") for c in ("c1", "c2")
           for s in (0, 1)]
    dirty = [rec("apt", "c1", 0, 0.70, commit="b" * 40, time="2026-03-01T00:00:00+00:00", dirty=True)]
    other = [rec("winclip", "c1", 0, 0.5)]
    h = history_frame(new + old + dirty + other, "apt", "mvtec", variant="w/o VG")
    assert list(h["commit"]) == ["aaaaaaaaaa", "bbbbbbbbbb", "bbbbbbbbbb+dirty"]  # oldest first
    assert h["mean"].tolist() == pytest.approx([81.0, 85.0, 70.0])  # seeds 80 and 82 -> 81 ± 1
    assert h["std"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    md = history_markdown(h, "apt", "mvtec", "pixel_auroc", subjects=False)
    assert "81.00 ± 1.00" in md and "1-shot w/o VG" in md
    _check_files(plot_history(h, tmp_path / "hist", "apt", "mvtec", "pixel_auroc"))


def test_history_cli(tmp_path, capsys):
    store = RecordStore(tmp_path / "run")
    for r in [rec("apt", c, s, 0.8) for c in ("c1", "c2") for s in (0, 1)]:
        store.write(r)
    assert main(["history", "--method", "apt", "--dataset", "mvtec", "--results-dir", str(tmp_path / "run"),
                 "--plot", str(tmp_path / "h.png")]) == 0
    assert "80.00 ± 0.00" in capsys.readouterr().out and (tmp_path / "h.pdf").stat().st_size > 0


def test_pick_images_prefers_anomalous_evenly_spaced(tmp_path):
    test = [Sample(tmp_path / f"{i}.png", int(i >= 3)) for i in range(10)]  # 3 normal, 7 anomalous
    assert [s.image_path.stem for s in pick_images(test, 3)] == ["3", "6", "9"]
    assert len(pick_images(test[:3], 2)) == 2  # no anomalous image: normals


def test_qualitative_grid_smoke(tmp_path, monkeypatch):
    from fsadbench.run.config import build_config
    from fsadbench.run.resources import Resources

    monkeypatch.setenv("FSADBENCH_CACHE", str(tmp_path / "cache"))
    cfg = build_config("smoke", None, {"results_dir": str(tmp_path / "res"), "cache_dir": str(tmp_path / "cache"),
                                       "device": "cpu"})
    files = qualitative_grid(Resources(cfg), cfg.methods[:1], cfg.datasets[0], "disc", 1, 0, tmp_path / "grid",
                             n_images=2)
    _check_files(files)
