"""Drills of issue 33, the data: generated sets stay in the cache, nothing trains on the wrong set.

The synthetic generator never writes into the user's ``--data-root`` (a run or a
``--dry-run``); with a ``--data-root`` the synthetic target and ``synthetic-aux``
are two generated folders (AnomalyCLIP trained on the target's own test split
before); an auxiliary set is checked like a target (anomalies, masks).
"""

from __future__ import annotations

from fixtures_transfer import SYN, transfer_config
from fsadbench.cli import main
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
