"""The built-in synthetic generator: determinism, exact masks, defects on objects, atomic cache, detectability."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from fsadbench.datasets.synthetic import (OBJECT_CATEGORIES, TEXTURE_CATEGORIES, SyntheticDataset, _normal, _rng,
                                          defect_types, generate_synthetic, render)
from fsadbench.core.errors import ConfigError, DataError

SMALL = dict(size=48, n_train=2, n_test_good=1, n_test_bad=4)


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = _digests(generate_synthetic(tmp_path / "a", ["stripes", "disc"], seed=3, **SMALL))
    b = _digests(generate_synthetic(tmp_path / "b", ["stripes", "disc"], seed=3, **SMALL))
    c = _digests(generate_synthetic(tmp_path / "c", ["stripes", "disc"], seed=4, **SMALL))
    assert a == b and len(a) == 2 * (2 + 1 + 4 + 4)
    assert "disc/ground_truth/hole/000_mask.png" in a and "stripes/test/stain/000.png" in a
    assert set(a) == set(c) and all(a[k] != c[k] for k in a if "/train/" in k)


@pytest.mark.parametrize("category", TEXTURE_CATEGORIES + OBJECT_CATEGORIES)
def test_masks_are_exact_and_nonempty(category):
    for i, defect in enumerate(defect_types(category)):
        normal, none = render(category, "test_bad", i, 64, seed=0)  # same stream, before the defect
        img, mask = render(category, "test_bad", i, 64, seed=0, defect=defect)
        assert none is None and mask.dtype == bool and mask.any()
        assert np.array_equal(mask, np.any(img != normal, axis=2)), (category, defect)
        assert mask.mean() < 0.25  # a local defect, not a new image


@pytest.mark.parametrize("category", OBJECT_CATEGORIES)
def test_object_defects_lie_on_the_object(category):
    for i in range(8):
        defect = defect_types(category)[i % len(defect_types(category))]
        _, obj, _ = _normal(category, 64, _rng(0, category, "test_bad", i))
        _, mask = render(category, "test_bad", i, 64, seed=0, defect=defect)
        assert mask.any() and not (mask & ~obj).any(), (category, defect, i)


def test_written_masks_are_0_255_and_match_images(tmp_path):
    root = generate_synthetic(tmp_path, ["pill"], **SMALL)
    for m in (root / "pill" / "ground_truth").rglob("*_mask.png"):
        arr = np.asarray(Image.open(m))
        img = Image.open(root / "pill" / "test" / m.parent.name / m.name.replace("_mask", ""))
        assert set(np.unique(arr)) == {0, 255} and arr.shape == (img.height, img.width) == (48, 48)


def test_dataset_generates_once_into_cache(tmp_path):
    ds = SyntheticDataset.from_config(cache_dir=tmp_path, **SMALL)
    assert ds.root.parent == tmp_path / "synthetic"
    split = ds.load("grain")
    assert len(split.train) == 2 and len(split.test) == 5 and split.info.defect_types == ("hole", "scratch", "stain")
    assert split.info.is_texture and split.meta["size"] == 48
    stamp = (ds.root / "grain" / "train" / "good" / "000.png").stat().st_mtime_ns
    again = SyntheticDataset.from_config(cache_dir=tmp_path, **SMALL)
    assert again.root == ds.root
    again.load("grain")
    assert (ds.root / "grain" / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    assert [p.name for p in ds.root.iterdir()] == ["grain"]  # no temporary folders left
    other = SyntheticDataset.from_config(cache_dir=tmp_path, **{**SMALL, "seed": 1})
    assert other.root != ds.root


def test_options_and_errors(tmp_path):
    ds = SyntheticDataset.from_config(cache_dir=tmp_path, categories="disc,stripes", **SMALL)
    assert ds.list_categories() == ["disc", "stripes"]
    assert SyntheticDataset.from_config(cache_dir=tmp_path).list_categories() == list(SyntheticDataset.categories)
    with pytest.raises(ConfigError, match="unknown option.*colour.*categories"):
        SyntheticDataset.from_config(cache_dir=tmp_path, colour=1)
    with pytest.raises(ConfigError, match="names unknown cube"):
        SyntheticDataset.from_config(cache_dir=tmp_path, categories=["cube"])
    with pytest.raises(DataError, match="no category 'cube'"):
        generate_synthetic(tmp_path / "x", ["cube"])


def test_nearest_neighbour_baseline_detects_defects(tmp_path, method_ctx):
    """Random-weight tiny CLIP patch tokens + nearest neighbour: pixel AUROC > 0.75 in every category."""
    from fsadbench.protocol.evaluator import postprocess
    from fsadbench.methods.memory import MemoryBank
    from fsadbench.protocol.sampler import image_ref

    ds = SyntheticDataset.from_config(cache_dir=tmp_path, size=120, n_train=2, n_test_good=1, n_test_bad=4)
    for category in SyntheticDataset.categories:
        split = ds.load(category)
        method = MemoryBank(method_ctx)
        method.fit([image_ref(s) for s in split.train], split.info)
        bad = [s for s in split.test if s.label]
        maps = postprocess(method.predict([image_ref(s) for s in bad])["w/ VG"].maps, 120, 4.0).numpy()
        gts = np.stack([np.asarray(Image.open(s.mask_path)) > 0 for s in bad])
        auroc = roc_auc_score(gts.ravel(), maps.ravel())
        assert auroc > 0.75, (category, auroc)
