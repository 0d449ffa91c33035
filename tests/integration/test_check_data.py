"""``check-data``: counts next to expected ones, every problem listed, exit status 1 on errors only."""

from __future__ import annotations

import pytest

from fixtures_layouts import make_cvc, make_mvtec, make_visa_raw, write_image, write_mask
from fsadbench.protocol.check_data import check_category
from fsadbench.cli.data import main as cli_main
from fsadbench.cli import main as bench_main
from fsadbench.datasets.mvtec import MVTecAD
from fsadbench.core.errors import ConfigError


def test_clean_tree_passes_with_count_warnings(tmp_path, capsys):
    make_mvtec(tmp_path / "mvtec")
    rc = cli_main(["--datasets", "mvtec", "--data-root", str(tmp_path), "--categories", "bottle,grid"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "bottle: train 3 (expected 209), test 5 (expected 83), test_good 2, test_anomalous 3  [warning]" in out
    assert "counts differ from the published ones" in out and "check-data: 0 error(s), 2 warning(s)" in out


def test_wrong_mask_size_is_an_error_naming_the_file(tmp_path, capsys):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",))
    write_mask(root / "bottle/ground_truth/crack/000_mask.png", 10, 10)
    rc = bench_main(["check-data", "--datasets", "mvtec", "--data-root", str(tmp_path), "--categories", "bottle"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "error: mask " in out and "crack/000_mask.png is 10x10 but its image is 24x24" in out


def test_every_problem_is_listed(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",))
    (root / "bottle/train/good/001.png").write_bytes(b"\x89PNG broken")
    write_mask(root / "bottle/ground_truth/broken_large/001_mask.png", 24, 24, box=None)  # empty defect mask
    (root / "bottle/ground_truth/broken_large/000_mask.png").write_bytes(b"junk")
    rep = check_category(MVTecAD.from_config(root=root), "bottle")
    assert len(rep.errors) == 2
    assert any("train/good/001.png cannot be read" in e for e in rep.errors)
    assert any("broken_large/000_mask.png cannot be read" in e for e in rep.errors)
    assert any("broken_large/001_mask.png of anomalous image" in w and "no anomalous pixel" in w
               for w in rep.warnings)


def test_empty_category_and_missing_masks_are_errors(tmp_path, capsys):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle", "grid"))
    (root / "grid/ground_truth/crack/000_mask.png").unlink()
    (root / "bottle").rename(tmp_path / "away")
    (root / "bottle/test/good").mkdir(parents=True)
    rc = cli_main(["--datasets", "mvtec", "--data-root", str(tmp_path), "--categories", "bottle,grid"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "bottle: train ? (expected 209)" in out and "no test images under" in out
    assert "1 anomalous test image(s) have no mask" in out and "crack/000.png" in out
    assert out.count("Expected layout:") == 1  # the layout is shown once per dataset


def test_visa_one_and_255_masks_pass_and_missing_rows_fail(tmp_path, capsys):
    root = make_visa_raw(tmp_path / "visa")
    assert cli_main(["--datasets", "visa", "--data-root", str(tmp_path), "--categories", "candle,pcb1"]) == 0
    out = capsys.readouterr().out
    assert "normal 4 (expected 1000), anomalous 2 (expected 100)" in out
    assert "no anomalous pixel" not in out  # 0/1 masks count as anomalous
    (root / "pcb1/Data/Images/Anomaly/001.JPG").unlink()
    assert cli_main(["--datasets", "visa", "--data-root", str(tmp_path), "--categories", "pcb1"]) == 1
    assert "1 file(s) listed in" in capsys.readouterr().out


def test_wrong_root_test_only_and_options(tmp_path, capsys):
    assert cli_main(["--datasets", "mpdd", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "mpdd:\n  error:" in out and "ground_truth/<defect>/000_mask.png" in out
    make_cvc(tmp_path / "polyps")
    normals = tmp_path / "normals"
    write_image(normals / "n0.png")
    rc = cli_main(["--datasets", "cvc", "--root", f"cvc={tmp_path / 'polyps'}", "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0 and "test-only" in out and "normal_source" in out
    rc = cli_main(["--datasets", "cvc", "--root", f"cvc={tmp_path / 'polyps'}",
                   "--dataset-option", f"cvc.normal_source={normals}"])
    out = capsys.readouterr().out
    assert rc == 0 and "normal_source_images 1" in out and "few-shot cells cannot run" not in out
    with pytest.raises(ConfigError, match="DATASET.OPTION=VALUE"):
        cli_main(["--datasets", "cvc", "--dataset-option", "normal_source=x"])
    with pytest.raises(ConfigError, match="not in --datasets"):
        cli_main(["--datasets", "cvc", "--root", "visa=/x"])
