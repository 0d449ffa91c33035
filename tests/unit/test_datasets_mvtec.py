"""MVTec AD loader and the shared Dataset helpers (from_config, load_mask, atomic_dir) on fixture trees."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_layouts import make_mvtec, write_image, write_mask
from fsadbench.backbone.clip import load_image
from fsadbench.datasets.base import atomic_dir, load_mask, natural_key, split_counts
from fsadbench.datasets.mvtec import MVTecAD
from fsadbench.core.errors import ConfigError, DataError


@pytest.fixture()
def mvtec_root(tmp_path):
    return make_mvtec(tmp_path / "data" / "mvtec_anomaly_detection")


def test_mvtec_loads_split_defects_and_masks(mvtec_root):
    ds = MVTecAD.from_config(data_root=mvtec_root.parent)
    assert ds.root == mvtec_root
    split = ds.load("bottle")
    assert [s.rel_path for s in split.train] == [f"bottle/train/good/{i:03d}.png" for i in range(3)]
    assert split.info.defect_types == ("broken_large", "crack")  # sorted, "good" excluded
    assert split.info.class_name == "bottle" and not split.info.is_texture
    bad = [s for s in split.test if s.label]
    assert len(bad) == 3 and len(split.test) == 5
    assert all(s.mask_path.name == s.image_path.stem + "_mask.png" for s in bad)
    assert all(s.mask_path.parent.name == s.defect_type for s in bad)
    assert split_counts(split) == {"train": 3, "test": 5, "test_good": 2, "test_anomalous": 3,
                                   "normal": 5, "anomalous": 3}
    assert ds.expected("bottle") == {"train": 209, "test": 83}


def test_mvtec_grayscale_images_become_three_channels(mvtec_root):
    split = MVTecAD.from_config(root=mvtec_root).load("grid")
    assert Image.open(split.train[0].image_path).mode == "L"
    img = load_image(split.train[0].image_path)
    assert img.mode == "RGB" and np.asarray(img).shape == (24, 24, 3)
    assert split.info.is_texture and split.info.class_name == "grid"


def test_root_resolution_precedence(tmp_path, mvtec_root):
    # data_root that already is the MVTec folder
    assert MVTecAD.from_config(data_root=mvtec_root).root == mvtec_root
    # an explicit root wins over data_root
    other = make_mvtec(tmp_path / "elsewhere", categories=("bottle",))
    assert MVTecAD.from_config(data_root=mvtec_root.parent, root=other).root == other


def test_wrong_root_shows_expected_layout(tmp_path):
    with pytest.raises(DataError, match=r"does not exist(.|\n)*ground_truth/<defect>/000_mask.png"):
        MVTecAD.from_config(data_root=tmp_path / "nothing")
    with pytest.raises(DataError, match="no --data-root"):
        MVTecAD.from_config()


def test_missing_category_and_unknown_option(mvtec_root):
    ds = MVTecAD.from_config(root=mvtec_root)
    with pytest.raises(DataError, match=r"category folder .*cable does not exist \(found: bottle, grid\)"):
        ds.load("cable")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) colour; known options: \(none\)"):
        MVTecAD.from_config(root=mvtec_root, colour=1)


def test_missing_masks_are_listed_in_one_error(mvtec_root):
    for i in range(2):
        (mvtec_root / "bottle" / "ground_truth" / "broken_large" / f"{i:03d}_mask.png").unlink()
    with pytest.raises(DataError, match=r"2 anomalous test image\(s\) have no mask(.|\n)*000.png(.|\n)*001.png"):
        MVTecAD.from_config(root=mvtec_root).load("bottle")


@pytest.mark.parametrize("value", [1, 255, 7])
def test_load_mask_any_nonzero_is_anomalous(tmp_path, value):
    m = load_mask(write_mask(tmp_path / "m.png", 6, 8, value, box=(1, 2, 3, 5)))
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:3, 2:5] = True
    assert m.dtype == bool and np.array_equal(m, expected)


def test_load_mask_palette_rgb_and_16bit(tmp_path):
    arr = np.zeros((4, 4), dtype=np.uint8)
    arr[0, 0] = 1
    pal = Image.fromarray(arr, "P")
    pal.putpalette([0, 0, 0, 1, 0, 0] + [0] * 762)  # index 1 = a colour whose luminance rounds to 0
    pal.save(tmp_path / "p.png")
    assert load_mask(tmp_path / "p.png").sum() == 1
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[2, 3, 2] = 200
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    assert np.argwhere(load_mask(tmp_path / "rgb.png")).tolist() == [[2, 3]]
    Image.fromarray(np.array([[0, 1], [0, 0]], dtype=np.uint16)).save(tmp_path / "i16.png")
    assert load_mask(tmp_path / "i16.png").tolist() == [[False, True], [False, False]]


def test_load_mask_size_mismatch_and_unreadable_name_the_file(tmp_path):
    p = write_mask(tmp_path / "000_mask.png", 10, 12)
    assert load_mask(p, expected_hw=(10, 12)).shape == (10, 12)
    with pytest.raises(DataError, match=r"000_mask.png is 12x10 but its image is 24x24"):
        load_mask(p, expected_hw=(24, 24))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png cannot be read"):
        load_mask(bad)


def test_natural_key_orders_numbers():
    assert sorted(["10.png", "2.png", "1.tif", "b.png", "a10.png", "a9.png"], key=natural_key) == \
        ["1.tif", "2.png", "10.png", "a9.png", "a10.png", "b.png"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            write_image(tmp / "a.png")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        write_image(tmp / "a.png")
    assert (target / "a.png").is_file() and [p.name for p in tmp_path.iterdir()] == ["out"]
    # a target that another process completed first is kept
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("mine")
    assert not (target / "b.txt").exists() and (target / "a.png").is_file()
