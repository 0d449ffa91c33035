"""Drills of issue 33, the data: generated sets stay in the cache, nothing trains on the wrong set.

The synthetic generator never writes into the user's ``--data-root`` (a run or a
``--dry-run``); with a ``--data-root`` the synthetic target and ``synthetic-aux``
are two generated folders (AnomalyCLIP trained on the target's own test split
before); an auxiliary set is checked like a target (anomalies, masks).
"""

from __future__ import annotations

import shutil

import pytest

from fixtures_layouts import make_mvtec
from fixtures_transfer import SYN, transfer_config
from fsadbench.cli import main
from fsadbench.core.errors import ConfigError
from fsadbench.run.config import DatasetSpec
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import PIPELINE_AUXILIARY, auxiliary_for

PIPE = ["--methods", "memory", "--categories", "disc", "--shots", "1", "--seeds", "0", "--no-progress"]


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- generated data lives under the cache ----------------------------------------------------------------
def test_a_dry_run_and_a_run_never_write_into_the_data_root(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    (data / "mine").mkdir(parents=True)
    rc = main([*PIPE, "--data-root", str(data), "--cache-dir", str(cache), "--results-dir", str(tmp_path / "r"),
               "--dry-run"])
    assert rc == 0, capsys.readouterr().err
    rc = main([*PIPE, "--data-root", str(data), "--cache-dir", str(cache), "--results-dir", str(tmp_path / "r")])
    assert rc == 0, capsys.readouterr().err
    assert _tree(data) == ["mine"]  # was: five generated categories beside the user's folder
    assert any((cache / "synthetic").glob("*/disc/train/good/*.png"))


def test_the_synthetic_target_and_its_auxiliary_set_are_two_generated_folders(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cfg = transfer_config(tmp_path, data_root=str(data))
    src = DataSource(cfg)
    target = cfg.datasets[0]
    aux = auxiliary_for(cfg, target, "anomalyclip")
    assert aux.name == PIPELINE_AUXILIARY
    t_root, a_root = src.dataset(target).root, src.dataset(aux).root
    assert t_root != a_root and data not in (t_root, a_root, t_root.parent, a_root.parent)
    t_digests = {r.digest for r in src.test_refs(target, "stripes")}
    a_digests = {r.digest for r in src.test_refs(aux, "stripes")}
    assert not t_digests & a_digests  # was: one folder, the target's own test split
    assert list(data.iterdir()) == []


def test_an_explicit_root_named_for_the_set_is_still_generated_into(tmp_path):
    cfg = transfer_config(tmp_path, datasets=[DatasetSpec("synthetic", root=str(tmp_path / "syn"),
                                                          categories=["disc"], options=dict(SYN))],
                          data_root=str(tmp_path / "data"))
    src = DataSource(cfg)
    assert src.dataset(cfg.datasets[0]).root == tmp_path / "syn"
    assert src.split(cfg.datasets[0], "disc").test


# -- an auxiliary set is checked like a target -------------------------------------------------------------
def _train_on_folder(tmp_path, data_root, dry_run=True):
    flags = ["--methods", "anomalyclip", "--datasets", "synthetic", "--categories", "disc", "--shots", "0",
             "--seeds", "0", "--train-on", "folder", "--data-root", str(data_root), "--model", "fsad-tiny-vit",
             "--pretrained", "none", "--method-option", "anomalyclip.backbone=fsad-tiny-vit",
             "--method-option", "anomalyclip.backbone_weights=none", "--results-dir", str(tmp_path / "res"),
             "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    return main(flags + (["--dry-run"] if dry_run else []))


def _aux_error(capsys, rc):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 2 and len(lines) == 1, err
    return lines[0]


def test_an_auxiliary_set_with_masks_is_planned(tmp_path, capsys):
    make_mvtec(tmp_path / "data", categories=("bottle",))
    assert _train_on_folder(tmp_path, tmp_path / "data") == 0
    assert "trained on folder" in capsys.readouterr().err


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_auxiliary_set_without_masks_is_refused_naming_set_and_category(tmp_path, capsys, dry_run):
    root = make_mvtec(tmp_path / "data", categories=("bottle",))
    for m in (root / "bottle" / "ground_truth" / "crack").iterdir():
        m.unlink()  # was: trained silently, the crack read as normal pixels
    line = _aux_error(capsys, _train_on_folder(tmp_path, root, dry_run))
    assert ("auxiliary dataset 'folder' of method 'anomalyclip': category 'bottle' has 1 of 3 anomalous test "
            "image(s) without a mask") in line and "--train-on NAME" in line
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.json"))


def test_an_auxiliary_set_without_anomalies_is_refused(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data", categories=("bottle",))
    for d in ("broken_large", "crack"):
        shutil.rmtree(root / "bottle" / "test" / d)
    shutil.rmtree(root / "bottle" / "ground_truth")
    line = _aux_error(capsys, _train_on_folder(tmp_path, root))
    assert "auxiliary dataset 'folder' of method 'anomalyclip': category 'bottle' has no anomalous test image" in line


def test_a_method_that_needs_no_masks_takes_an_unmasked_auxiliary_set(tmp_path):
    from fsadbench.run.transfer import check_auxiliary

    root = make_mvtec(tmp_path / "data", categories=("bottle",))
    shutil.rmtree(root / "bottle" / "ground_truth")
    cfg = transfer_config(tmp_path, data_root=str(root))
    src = DataSource(cfg)
    check_auxiliary(src, DatasetSpec("folder"), "m", needs_masks=False)  # labels suffice
    with pytest.raises(ConfigError, match="has 3 of 3 anomalous test image"):
        check_auxiliary(src, DatasetSpec("folder"), "m", needs_masks=True)
