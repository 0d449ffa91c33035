"""End to end on the synthetic set with the tiny random backbone: records, resume, cache reuse, errors."""

from __future__ import annotations

import json

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import RecordStore
from fsadbench.run import sweep
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.resources import Resources

SYN_OPTS = {"size": 120, "n_train": 6, "n_test_good": 4, "n_test_bad": 6}


def _cats():
    from fsadbench.datasets.synthetic import SyntheticDataset

    return list(SyntheticDataset.categories[:2])


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(
        methods=[MethodSpec("memory")],
        datasets=[DatasetSpec("synthetic", categories=_cats(), options=dict(SYN_OPTS))],
        shots=[1, 2], seeds=[0], model="fsad-tiny-vit", pretrained="none",
        protocol=Protocol(eval_size=64), results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"),
        device="cpu", batch_size=8)
    base.update(kw)
    return RunConfig(**base)


def test_sweep_writes_records_with_provenance(tmp_path):
    cfg = _cfg(tmp_path)
    s = sweep(cfg)
    assert (s.computed, s.failed) == (4, 0)
    recs = list((tmp_path / "res" / "records").rglob("*.json"))
    assert len(recs) == 4
    r = json.loads(recs[0].read_text())
    assert r["status"] == "ok" and r["schema_version"] == 3 and r["backbone"]["family"] == "open_clip"
    assert set(r["metrics"]) == {"w/ VG"}
    m = r["metrics"]["w/ VG"]
    assert 0.0 <= m["pixel_auroc"] <= 1.0 and 0.0 <= m["image_auroc"] <= 1.0
    assert r["backbone"]["random_weights"] is True and r["backbone"]["weights_fingerprint"]
    assert r["manifest"] and all(len(x["sha1"]) == 40 for x in r["manifest"])
    assert r["dataset"]["fingerprint"] and r["metric_version"]
    assert r["provenance"]["git"]["commit"] is not None and "dirty" in r["provenance"]["git"]
    assert r["provenance"]["packages"]["torch"]
    assert r["config"]["shots"] == [1, 2] and r["protocol"]["sigma_used"] == 4.0
    assert r["encoder"]["encoded"] >= 0 and r["timings"]["total_s"] > 0


def test_resume_computes_nothing_and_force_recomputes(tmp_path):
    cfg = _cfg(tmp_path)
    sweep(cfg)
    s2 = sweep(cfg)
    assert (s2.computed, s2.skipped) == (0, 4)
    s3 = sweep(cfg, force=True)
    assert s3.computed == 4


def test_new_seeds_do_no_encoder_pass_on_test_images(tmp_path):
    """The second sweep (new seeds, same images) is served entirely from the feature cache."""
    sweep(_cfg(tmp_path, shots=[SYN_OPTS["n_train"]]))  # every image encoded once
    s = sweep(_cfg(tmp_path, seeds=[1, 2]))
    assert s.computed == 8 and s.encoded_images == 0


def test_one_encoder_pass_per_image_in_a_sweep(tmp_path):
    cfg = _cfg(tmp_path, shots=[1, 2, 4], seeds=[0, 1, 2])
    s = sweep(cfg)
    n_images = SYN_OPTS["n_train"] + SYN_OPTS["n_test_good"] + SYN_OPTS["n_test_bad"]
    assert s.computed == 18
    assert s.encoded_images <= 2 * n_images  # every image at most once, over two categories


def test_memory_beats_chance_on_synthetic(tmp_path):
    cfg = _cfg(tmp_path, shots=[2], seeds=[0])
    sweep(cfg)
    from fsadbench.results.aggregate import records_frame

    df = records_frame(RecordStore(cfg.results_dir))
    assert df["pixel_auroc"].mean() > 0.75


def test_config_change_invalidates_records(tmp_path):
    sweep(_cfg(tmp_path))
    # another protocol in the same folder is refused, naming the difference; --force sets the old records aside
    with pytest.raises(ConfigError, match="protocol.eval_size: folder has 64, this run 32"):
        sweep(_cfg(tmp_path, protocol=Protocol(eval_size=32)))
    s = sweep(_cfg(tmp_path, protocol=Protocol(eval_size=32)), force=True)
    assert s.computed == 4 and len(RecordStore(tmp_path / "res").superseded()) == 4


def test_shots_zero_is_not_applicable_for_memory(tmp_path):
    s = sweep(_cfg(tmp_path, shots=[0]))
    assert s.not_applicable == 2 and s.failed == 0


def test_unreadable_test_image_fails_that_category_naming_the_file(tmp_path):
    cfg = _cfg(tmp_path, shots=[1])
    split = Resources(cfg).split(cfg.datasets[0], _cats()[0])
    bad = split.test[0].image_path
    bad.write_bytes(b"not an image")
    try:
        s = sweep(cfg)
        assert s.failed == 1 and s.computed == 1
        rec = next(r for r in RecordStore(cfg.results_dir) if r.status == "failed")
        assert str(bad) in rec.error
    finally:
        bad.unlink()  # the generated set is rebuilt next time it is needed


def test_cli_unknown_method_lists_registered(capsys):
    from fsadbench.cli import main

    assert main(["--methods", "nosuch", "--preset", "smoke", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nosuch'" in err and "memory" in err


def test_cli_missing_data_root_shows_layout(tmp_path, capsys):
    from fsadbench.cli import main

    rc = main(["--methods", "memory", "--datasets", "mvtec", "--data-root", str(tmp_path / "nope"),
               "--model", "fsad-tiny-vit", "--pretrained", "none", "--results-dir", str(tmp_path / "r"),
               "--no-progress", "--categories", "bottle"])
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert rc != 0
    assert "ground_truth" in text and "train/good" in text


def test_folder_dataset_unmasked_anomaly_is_recorded_and_run(tmp_path):
    """A user folder with one unmasked anomaly runs end to end; the record says how many were image-only."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from fixtures_layouts import make_folder

    root = make_folder(tmp_path / "mine", size=48)
    cfg = _cfg(tmp_path, datasets=[DatasetSpec("folder", root=str(root), categories=["widget"])],
               shots=[1])
    s = sweep(cfg)
    assert (s.computed, s.failed) == (1, 0)
    r = json.loads(next((tmp_path / "res" / "records").rglob("*.json")).read_text())
    assert r["n_test"] == 3 and r["n_test_anomalous"] == 2
    assert r["dataset"]["anomalous_without_mask"] == 1
    assert r["metrics"]["w/ VG"]["pixel_auroc"] is not None
