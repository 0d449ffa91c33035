"""Behaviours of the protocol core a reader relies on, each checked against a hand-computed answer.

Masks resized with nearest neighbour (never dilated); k shots distinct and reproducible; seed counts
that leave undefined seeds out; a dataset figure that is the mean over the categories present (the gap
marked, never counted as 0); bold within each shot block; a resume identity whose shot fingerprint
follows the seed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fsadbench.core.types import CategorySplit, Sample
from fsadbench.protocol.evaluator import gt_mask
from fsadbench.protocol.sampler import content_fingerprint, sample_shots
from fsadbench.reports.export import summary_long
from fsadbench.reports.tables import main_table
from fsadbench.results.aggregate import records_frame
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import CellKey, Record


def _png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _masked_sample(tmp_path: Path, mask: np.ndarray, name: str) -> Sample:
    img = _png(tmp_path / f"{name}.png", np.full(mask.shape, 128))
    m = _png(tmp_path / f"{name}_mask.png", mask.astype(np.uint8) * 255)
    return Sample(img, 1, "dent", m, f"test/dent/{name}.png")


# -- (a) masks: nearest neighbour, as the evaluator's docstring says ---------------------------------
def test_mask_upsized_by_nearest_is_each_pixel_repeated_not_dilated(tmp_path):
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    got = gt_mask(_masked_sample(tmp_path, mask, "up"), 8)
    # nearest, 4 -> 8: every source pixel becomes a 2 x 2 block; a smoothing resample then "> 0" grows it
    assert got.dtype == bool and got.shape == (8, 8)
    assert np.array_equal(got, np.repeat(np.repeat(mask, 2, 0), 2, 1))
    assert got.sum() == 4


def test_mask_downsized_by_nearest_keeps_the_sampled_pixels(tmp_path):
    mask = np.zeros((8, 8), bool)
    mask[1::4, 1::4] = True  # sampled by nearest 8 -> 4 (source index 2i + 1)
    mask[0, 6] = True  # never sampled: a smoothing resample would let it bleed into output pixel (0, 3)
    got = gt_mask(_masked_sample(tmp_path, mask, "down"), 4)
    assert np.array_equal(got, mask[1::2, 1::2])
    assert got.sum() == 4 and not got[0, 3]


def test_normal_image_mask_is_all_normal():
    m = gt_mask(Sample(Path("n.png"), 0), 5)
    assert m.dtype == bool and m.shape == (5, 5) and not m.any()


# -- (b) shots: distinct, reproducible, the seeded numpy draw without replacement ----------------------
def _pool(tmp_path: Path, n: int) -> list[Sample]:
    """n normals with distinct bytes, relative paths train/good/000.png, 001.png, ..."""
    names = [f"{i:03d}.png" for i in range(n)]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"normal %d" % i)
    return [Sample(tmp_path / name, 0, "good", None, "train/good/" + name) for name in names]


@pytest.mark.parametrize("seed", range(8))
def test_shots_are_distinct_images(tmp_path, seed):
    pool = _pool(tmp_path, 6)
    shots = sample_shots(pool, 5, seed)
    assert len({s.rel_path for s in shots}) == 5  # with replacement, 5 of 6 repeats one almost always
    assert [s.rel_path for s in sample_shots(pool, 6, seed)] == [s.rel_path for s in pool]


def test_shots_are_the_seeded_draw_in_pool_order_and_reproducible(tmp_path):
    pool = _pool(tmp_path, 12)
    for seed in (0, 1, 7):
        want = sorted(np.random.default_rng(seed).choice(12, size=4, replace=False).tolist())
        got = sample_shots(list(reversed(pool)), 4, seed)
        assert [s.rel_path for s in got] == [pool[i].rel_path for i in want]
        assert got == sample_shots(pool, 4, seed)
    assert sample_shots(pool, 4, 0) != sample_shots(pool, 4, 1)


# -- hand-made records --------------------------------------------------------------------------------
def rec(method, cat, seed, value, shots=1, status="ok", error=None, dataset="mvtec"):
    return Record(key=CellKey(method, dataset, cat, shots, seed).__dict__, status=status, config_hash="h",
                  method={"name": method, "label": method},
                  metrics={"w/o VG": {"pixel_auroc": value}} if status == "ok" else {},
                  undefined={"w/o VG": {"pixel_auroc": "no anomalous pixel"}} if status == "ok" and value is None
                  else {}, backbone={"model": "x"}, error=error,
                  provenance={"git": {"commit": "a" * 40, "dirty": False}})


# -- (c) n_seeds counts the seeds whose metric is defined ---------------------------------------------
def test_per_category_seed_count_leaves_undefined_seeds_out():
    recs = [rec("A", "c1", 0, 0.8), rec("A", "c1", 1, None), rec("A", "c1", 2, 0.6),
            rec("A", "c2", 0, 0.5), rec("A", "c2", 1, 0.7), rec("A", "c2", 2, 0.9)]
    rows = summary_long(records_frame(recs), ["pixel_auroc"], categories=True)
    cat = rows[rows["level"] == "category"].set_index("category")
    assert cat.loc["c1", "n_seeds"] == 2 and cat.loc["c1", "mean"] == pytest.approx(70.0)
    assert cat.loc["c1", "std"] == pytest.approx(10.0)
    assert cat.loc["c2", "n_seeds"] == 3 and cat.loc["c2", "mean"] == pytest.approx(70.0)
    ds = rows[rows["level"] == "dataset"].iloc[0]
    # seed 0: (80 + 50) / 2 = 65; seed 1: c2 only = 70; seed 2: (60 + 90) / 2 = 75
    assert ds["n_seeds"] == 3 and ds["mean"] == pytest.approx(70.0)


def test_a_seed_undefined_in_every_category_is_not_a_seed_of_the_dataset_figure():
    recs = [rec("A", "c1", 0, 0.8), rec("A", "c1", 1, None), rec("A", "c2", 0, 0.6), rec("A", "c2", 1, None)]
    ds = summary_long(records_frame(recs), ["pixel_auroc"]).iloc[0]
    assert ds["n_seeds"] == 1 and ds["mean"] == pytest.approx(70.0) and ds["std"] == pytest.approx(0.0)
    f = ResultSet(recs).dataset_figure("A", "mvtec", 1, "w/o VG", "pixel_auroc")
    assert f.n_seeds == 1 and f.mean == pytest.approx(70.0) and not f.complete


# -- (d) the dataset figure: mean over the categories present, the gap marked --------------------------
def test_dataset_figure_is_the_mean_over_present_categories_with_the_gap_marked():
    recs = [rec("A", "c1", 0, 0.9), rec("A", "c2", 0, 0.6), rec("A", "c3", 0, None, status="failed",
                                                                  error="Traceback\nRuntimeError: boom"),
            rec("A", "c1", 1, 0.8), rec("A", "c2", 1, 0.7), rec("A", "c3", 1, None)]
    f = ResultSet(recs).dataset_figure("A", "mvtec", 1, "w/o VG", "pixel_auroc")
    # seed 0: (90 + 60) / 2 = 75 (not 150 / 3 = 50); seed 1: (80 + 70) / 2 = 75
    assert f.seeds == pytest.approx({0: 75.0, 1: 75.0}) and f.mean == pytest.approx(75.0)
    assert not f.complete
    assert f.coverage.describe() == ("covers 2/3 categories x 2/2 seeds; missing: category c3 "
                                     "(failed: RuntimeError: boom; pixel_auroc undefined: no anomalous pixel)")
    t = main_table(ResultSet(recs))
    assert (0, 0) in t.marks and t.problems and (0, 0) not in t.bold
    assert t.rows[0][1][0].mean == pytest.approx(75.0)
    # the export's dataset figure is the same mean over the categories present
    ds = summary_long(records_frame(recs), ["pixel_auroc"]).iloc[0]
    assert ds["mean"] == pytest.approx(75.0)


# -- (e) bold within each shot block, never across blocks ---------------------------------------------
def test_bold_is_picked_within_each_shot_block_when_blocks_differ():
    vals = {(1, "A"): 0.90, (1, "B"): 0.80, (4, "A"): 0.60, (4, "B"): 0.70}
    recs = [rec(m, "c1", s, v + 0.01 * s, shots=k) for (k, m), v in vals.items() for s in (0, 1)]
    t = main_table(ResultSet(recs))
    rows = [tuple(r[0]) for r in t.rows]
    assert rows == [("1-shot", "A"), ("1-shot", "B"), ("4-shot", "A"), ("4-shot", "B")]
    # over the whole column only 1-shot A would be bold; per block 4-shot B is the best of its block
    assert t.bold == {(0, 0), (3, 0)}
    assert t.breaks == [2]


# -- (f) the resume identity's shot fingerprint follows the seed ---------------------------------------
class _Data:
    """A DataSource stand-in: one split per category, and the identity cache the real one carries."""

    def __init__(self, split: CategorySplit):
        self._split = split
        self.identities: dict = {}

    def split(self, spec, category):
        return self._split


def test_cell_identity_fingerprints_the_shots_of_its_own_seed(tmp_path):
    from fsadbench.run.config import DatasetSpec, MethodSpec, RunConfig
    from fsadbench.run.identity import cell_hash, cell_identity
    from fsadbench.run.plan import Job

    train = _pool(tmp_path, 10)
    test = [_masked_sample(tmp_path, np.eye(4, dtype=bool), "t0")]
    split = CategorySplit(SimpleNamespace(name="c1"), tmp_path, train, test)
    cfg = RunConfig(model="fsad-tiny-vit", pretrained="none", device="cpu")
    data = _Data(split)
    jobs = [Job(MethodSpec("memory"), DatasetSpec("synthetic"), ["c1"], 2, seed) for seed in (0, 1, 2)]
    got = [cell_identity(cfg, data, j)["dataset"]["data"]["c1"] for j in jobs]  # one shared cache
    want = [content_fingerprint(test, sample_shots(train, 2, j.seed)) for j in jobs]
    assert got == want and len(set(got)) == 3
    assert len({cell_hash(cfg, data, j) for j in jobs}) == 3
