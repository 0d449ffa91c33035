"""VisA, MPDD, KolektorSDD/SDD2, CVC and the generic folder layout on fixture trees copying the releases."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fixtures_layouts import (make_cvc, make_folder, make_mpdd, make_mvtec, make_sdd2, make_sdd_raw, make_visa_1cls,
                              make_visa_raw, write_image)
from fsadbench.datasets.base import load_mask, split_counts
from fsadbench.datasets.cvc import CVCClinicDB, CVCColonDB, pair_images_masks
from fsadbench.datasets.folder import FolderDataset
from fsadbench.datasets.kolektor import KolektorSDD, KolektorSDD2, split_normals, third_bounds
from fsadbench.datasets.mpdd import MPDD
from fsadbench.datasets.visa import VisA
from fsadbench.protocol.sampler import content_fingerprint
from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.registry import DATASETS


# -- VisA -------------------------------------------------------------------------------
def test_visa_raw_csv_split_and_mask_encodings(tmp_path):
    root = make_visa_raw(tmp_path / "VisA_20220922")
    ds = VisA.from_config(data_root=tmp_path)
    assert ds.root == root
    for cat in ("candle", "pcb1"):  # candle masks are 0/255, pcb1 masks 0/1
        split = ds.load(cat)
        assert [s.rel_path for s in split.train] == [f"{cat}/Data/Images/Normal/{i:04d}.JPG" for i in range(3)]
        bad = [s for s in split.test if s.label]
        assert [s.image_path.name for s in bad] == ["000.JPG", "001.JPG"]
        assert all(s.defect_type == "bad" and load_mask(s.mask_path).sum() == 36 for s in bad)
        assert split.meta == {"layout": "raw", "split_csv": "split_csv/1cls.csv"}
    assert ds.load("pcb1").info.class_name == "printed circuit board"


def test_visa_missing_files_give_one_error_naming_them(tmp_path):
    root = make_visa_raw(tmp_path / "visa")
    (root / "candle/Data/Images/Normal/0001.JPG").unlink()
    (root / "candle/Data/Masks/Anomaly/001.png").unlink()
    with pytest.raises(DataError) as exc:
        VisA.from_config(root=root).load("candle")
    msg = str(exc.value)
    assert "2 file(s) listed in" in msg and "Normal/0001.JPG" in msg and "Anomaly/001.png" in msg
    VisA.from_config(root=root).load("pcb1")  # other categories still load


def test_visa_bad_header_and_unknown_category(tmp_path):
    root = make_visa_raw(tmp_path / "visa")
    with pytest.raises(DataError, match=r"no rows for category 'fryum' \(objects: candle, pcb1\)"):
        VisA.from_config(root=root).load("fryum")
    rows = list(csv.reader(open(root / "split_csv/1cls.csv")))
    rows[0] = ["object", "split", "label", "image"]
    with open(root / "split_csv/1cls.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(DataError, match="expected object,split,label,image,mask"):
        VisA.from_config(root=root).load("candle")


def test_visa_converted_1cls_masks_by_stem(tmp_path):
    root = make_visa_1cls(tmp_path / "visa_pytorch")
    split = VisA.from_config(data_root=tmp_path).load("capsules")
    bad = [s for s in split.test if s.label]
    assert [(s.image_path.name, s.mask_path.name) for s in bad] == [("000.JPG", "000.png"), ("001.JPG", "001.png")]
    assert split.meta["layout"] == "1cls" and len(split.train) == 3
    assert VisA.from_config(root=root, layout="1cls").load("capsules").meta["layout"] == "1cls"
    with pytest.raises(ConfigError, match="layout='zip'"):
        VisA.from_config(root=root, layout="zip")
    with pytest.raises(DataError, match=r"split_csv/1cls.csv does not exist(.|\n)*Data/Images/Normal"):
        VisA.from_config(root=root, layout="raw").load("capsules")


def test_visa_wrong_root_shows_both_layouts(tmp_path):
    with pytest.raises(DataError, match=r"split_csv/1cls.csv(.|\n)*ground_truth/bad/000.png"):
        VisA.from_config(data_root=tmp_path)


# -- MPDD -------------------------------------------------------------------------------
def test_mpdd_masks_with_and_without_suffix(tmp_path):
    root = make_mpdd(tmp_path / "MPDD")
    ds = MPDD.from_config(data_root=tmp_path)
    assert ds.root == root
    names = {c: [s.mask_path.name for s in ds.load(c).test if s.label] for c in ("bracket_black", "tubes")}
    assert names == {"bracket_black": ["000_mask.png"], "tubes": ["000.png"]}
    assert ds.load("bracket_black").info.class_name == "bracket black"
    assert ds.expected("tubes") == {"train": 122, "test": 101}
    assert sum(v[0] for v in MPDD.expected_counts.values()) == 888


# -- KolektorSDD ------------------------------------------------------------------------
def test_third_bounds_and_seeded_split():
    assert third_bounds(62) == [(0, 21), (21, 41), (41, 62)]
    assert third_bounds(9) == [(0, 3), (3, 6), (6, 9)]
    names = [f"n{i}" for i in range(8)]
    train, test = split_normals(names, seed=0, fraction=0.75)
    assert len(train) == 6 and len(test) == 2 and sorted(train + test) == sorted(names)
    assert split_normals(list(reversed(names)), 0, 0.75) == (train, test)  # input order does not matter
    perm = np.random.default_rng(0).permutation(8)  # hand check: the first 6 of the permutation go to train
    assert set(train) == {f"n{i}" for i in perm[:6]}


def test_sdd_raw_conversion_labels_crops_from_masks(tmp_path):
    root = make_sdd_raw(tmp_path / "KolektorSDD")
    cache = tmp_path / "cache"
    ds = KolektorSDD.from_config(data_root=tmp_path, cache_dir=cache)
    split = ds.load("sdd")
    bad = sorted(s.image_path.stem for s in split.test if s.label)
    # kos01/Part1: defect rows 25..30 -> middle third only; kos02/Part0: rows 18..24 -> thirds 0 and 1
    assert bad == ["kos01_Part1_1", "kos02_Part0_0", "kos02_Part0_1"]
    assert len(split.train) + len(split.test) == 3 * 12
    assert len(split.train) == round(0.75 * (36 - 3))
    m = load_mask(next(s.mask_path for s in split.test if s.image_path.stem == "kos02_Part0_0"))
    assert m.shape == (21, 20) and np.argwhere(m)[:, 0].min() == 18  # rows 18..20 of the first third
    meta = split.meta
    assert meta["split_seed"] == 0 and meta["train_fraction"] == 0.75 and meta["source"] == str(root)
    assert meta["counts"] == {"source_images": 12, "defective_source_images": 2}
    recorded = json.loads((cache / "kolektorsdd" / meta["converted_root"].split("/")[-1] / "split.json").read_text())
    assert sorted(recorded["train"]) == sorted(s.image_path.stem for s in split.train)
    assert split.info.name == "sdd" and split.info.class_name == "electrical commutator"


def test_sdd_conversion_is_cached_and_seed_changes_split(tmp_path):
    make_sdd_raw(tmp_path / "KolektorSDD")
    cache = tmp_path / "cache"
    a = KolektorSDD.from_config(data_root=tmp_path, cache_dir=cache).load("sdd")
    first = sorted((cache / "kolektorsdd").iterdir())
    mtime = (first[0] / "split.json").stat().st_mtime_ns
    b = KolektorSDD.from_config(data_root=tmp_path, cache_dir=cache).load("sdd")
    assert [s.rel_path for s in a.train] == [s.rel_path for s in b.train]
    assert sorted((cache / "kolektorsdd").iterdir()) == first and (first[0] / "split.json").stat().st_mtime_ns == mtime
    c = KolektorSDD.from_config(data_root=tmp_path, cache_dir=cache, split_seed=1).load("sdd")
    assert {s.rel_path for s in c.train} != {s.rel_path for s in a.train} and c.meta["split_seed"] == 1
    assert len(list((cache / "kolektorsdd").iterdir())) == 2
    assert not [p for p in (cache / "kolektorsdd").iterdir() if p.name.startswith(".")]  # no leftovers


def test_sdd_converted_tree_and_missing_label(tmp_path):
    raw = make_sdd_raw(tmp_path / "raw")
    converted = KolektorSDD.from_config(root=raw, cache_dir=tmp_path / "cache").load("sdd")
    # the converted tree (as other tools ship it) loads as is
    tree = tmp_path / "cache" / "kolektorsdd" / converted.meta["converted_root"].split("/")[-1]
    again = KolektorSDD.from_config(root=tree, cache_dir=tmp_path / "other").load("sdd")
    assert again.meta["layout"] == "converted" and len(again.test) == len(converted.test)
    assert not (tmp_path / "other").exists()
    (raw / "kos03" / "Part2_label.bmp").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) have no <stem>_label mask(.|\n)*kos03/Part2.jpg"):
        KolektorSDD.from_config(root=raw, cache_dir=tmp_path / "cache").load("sdd")
    with pytest.raises(ConfigError, match="train_fraction"):
        KolektorSDD.from_config(root=raw, train_fraction=1.5)


def test_sdd2_labels_from_gt_and_excludes_defective_train(tmp_path):
    root = make_sdd2(tmp_path / "KolektorSDD2")
    split = KolektorSDD2.from_config(data_root=tmp_path).load("sdd2")
    assert [s.image_path.name for s in split.train] == ["10000.png", "10001.png", "10003.png"]
    assert [(s.image_path.name, s.label) for s in split.test] == [
        ("20000.png", 0), ("20001.png", 1), ("20002.png", 0), ("20003.png", 1)]
    assert [s.mask_path.name for s in split.test if s.label] == ["20001_GT.png", "20003_GT.png"]
    assert split.meta["counts"] == {"train_defective_excluded": 1}
    assert split.info.class_name == "surface" and not split.info.is_texture
    (root / "test" / "20002_GT.png").unlink()
    with pytest.raises(DataError, match=r"have no <id>_GT.png mask(.|\n)*20002.png"):
        KolektorSDD2.from_config(root=root).load("sdd2")


# -- CVC --------------------------------------------------------------------------------
def test_cvc_test_only_and_normal_source(tmp_path):
    root = make_cvc(tmp_path / "CVC-ColonDB", n=3)
    ds = CVCColonDB.from_config(data_root=tmp_path)
    split = ds.load("colondb")
    assert ds.test_only and split.train == [] and split.meta["normal_source"] == "none"
    assert split.info.class_name == "colon" and split.info.defect_types == ("polyp",)
    assert [(s.image_path.name, s.mask_path.name, s.label) for s in split.test] == [
        ("1.png", "1.png", 1), ("2.png", "2.png", 1), ("3.png", "3.png", 1)]
    normals = tmp_path / "normals"
    write_image(normals / "a" / "n1.jpg")
    write_image(normals / "n0.png")
    split = CVCColonDB.from_config(root=root, normal_source=str(normals)).load("colondb")
    assert [s.rel_path for s in split.train] == ["normal_source/a/n1.jpg", "normal_source/n0.png"]
    assert split.meta["normal_source"] == str(normals) and all(s.label == 0 for s in split.train)
    with pytest.raises(DataError, match="normal_source=.*is not a folder"):
        CVCColonDB.from_config(root=root, normal_source=str(tmp_path / "none")).load("colondb")
    cls, _ = DATASETS.get("cvc")  # the APT paper's "CVC" column
    assert cls is CVCColonDB


def test_cvc_clinicdb_release_folders_and_tif(tmp_path):
    make_cvc(tmp_path / "CVC-ClinicDB", n=11, ext=".tif", clinic=True)
    split = CVCClinicDB.from_config(data_root=tmp_path).load("clinicdb")
    assert [s.image_path.name for s in split.test][:3] == ["1.tif", "2.tif", "3.tif"]
    assert split.test[-1].image_path.name == "11.tif" and split.test[-1].mask_path.name == "11.tif"


def test_cvc_pairing_by_order_and_mismatch(tmp_path):
    imgs = [write_image(tmp_path / "images" / f"{i}.png") for i in (1, 2, 10)]
    masks = [write_image(tmp_path / "masks" / f"m{i}.png") for i in (10, 2, 1)]
    pairs = pair_images_masks(imgs, sorted(masks))
    assert [(i.name, m.name) for i, m in pairs] == [("1.png", "m1.png"), ("2.png", "m2.png"), ("10.png", "m10.png")]
    with pytest.raises(DataError, match=r"3 images but 2 masks"):
        pair_images_masks(imgs, masks[:2])


# -- generic folder ---------------------------------------------------------------------
def test_folder_layout_optional_masks(tmp_path):
    root = make_folder(tmp_path / "mine")
    ds = FolderDataset.from_config(data_root=root)
    assert ds.root == root and ds.list_categories() == ["widget"]
    split = ds.load("widget")
    assert {s.image_path.name: (s.label, s.mask_path.name if s.mask_path else None) for s in split.test} == {
        "ok0.png": (0, None), "d0.png": (1, "d0_mask.png"), "s0.bmp": (1, None)}
    assert split.info.defect_types == ("dent", "smudge")
    assert split_counts(split)["test_anomalous"] == 2
    with pytest.raises(DataError, match=r"no category folder with a test/ subfolder"):
        FolderDataset.from_config(root=tmp_path / "mine" / "widget" / "train").list_categories()


# -- every loader: data_root, explicit root, wrong root ---------------------------------------
LOADERS = [
    ("mvtec", "MVTec-AD", "bottle", make_mvtec, "000_mask.png"),
    ("visa", "VisA", "candle", make_visa_raw, "1cls.csv"),
    ("mpdd", "MPDD", "tubes", make_mpdd, "bracket_white"),
    ("sdd", "KolektorSDD", "sdd", make_sdd_raw, "Part0_label.bmp"),
    ("sdd2", "KolektorSDD2", "sdd2", make_sdd2, "10000_GT.png"),
    ("cvc-colondb", "CVC-ColonDB", "colondb", make_cvc, "normal_source"),
    ("cvc-clinicdb", "CVC-ClinicDB", "clinicdb", make_cvc, "Ground Truth"),
]


@pytest.mark.parametrize("name,folder,category,build,layout_word", LOADERS, ids=[x[0] for x in LOADERS])
def test_data_root_explicit_root_and_wrong_root(tmp_path, name, folder, category, build, layout_word):
    cls, _ = DATASETS.get(name)
    root = build(tmp_path / "data" / folder)
    by_data_root = cls.from_config(data_root=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert by_data_root.root == root
    explicit = cls.from_config(data_root=tmp_path / "nowhere", root=root, cache_dir=tmp_path / "cache")
    a, b = by_data_root.load(category), explicit.load(category)
    assert [s.rel_path for s in a.test] == [s.rel_path for s in b.test] and a.test
    assert content_fingerprint(a.test, a.train) == content_fingerprint(b.test, b.train)  # the same files
    with pytest.raises(DataError) as exc:
        cls.from_config(data_root=tmp_path / "empty", cache_dir=tmp_path / "cache")
    assert "does not exist" in str(exc.value) and layout_word in str(exc.value)


def test_cvc_normal_source_reaches_the_record(tmp_path):
    """End to end (tiny random backbone): a configured normal source is used and recorded; image AUROC undefined."""
    import yaml

    from fsadbench.cli import main as bench_main

    root = make_cvc(tmp_path / "CVC-ColonDB", n=2)
    normals = tmp_path / "normals"
    write_image(normals / "n0.png", 24, 30)
    cfg = {"methods": ["memory"], "shots": [1], "seeds": [0],
           "datasets": [{"name": "cvc", "root": str(root), "options": {"normal_source": str(normals)}}],
           "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"}, "protocol": {"eval_size": 32}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    rc = bench_main(["--config", str(tmp_path / "cfg.yaml"), "--results-dir", str(tmp_path / "res"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 0
    rec = json.loads((tmp_path / "res/records/memory/cvc/colondb/k1_s0.json").read_text())
    assert rec["status"] == "ok" and rec["dataset"]["meta"]["normal_source"] == str(normals)
    assert rec["manifest"][0]["rel_path"] == "normal_source/n0.png"
    assert rec["metrics"]["w/ VG"]["image_auroc"] is None and "image_auroc" in rec["undefined"]["w/ VG"]
    assert 0.0 <= rec["metrics"]["w/ VG"]["pixel_auroc"] <= 1.0
