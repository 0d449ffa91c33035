"""The per-image scores file: its documented layout, exact round trips, and rescoring by hand.

A reader (``rescore``, the HTML report) relies on the file holding exactly what the docstring of
results/scores.py promises: ``meta`` as JSON with the format tag, labels, pixel truth, float32 scores per
variant in variant order, and with maps the maps and bit-packed masks with their shape; and on pixel
metrics recomputed only from the images whose pixels are labelled.

EQUIVALENT_MUTANTS lists the surviving mutants of results/scores.py that cannot change behaviour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fsadbench.core.errors import BenchError
from fsadbench.results.scores import FORMAT, CellScores, ScoreCollector, metrics_from_scores, scores_path


def test_the_scores_file_sits_beside_its_record():
    assert scores_path("r/k1_s0.json") == Path("r/k1_s0.scores.npz")
    assert scores_path("r/a.b.json") == Path("r/a.b.scores.npz")
    assert scores_path("r/k1_s0") == Path("r/k1_s0.scores.npz")


def _cell(with_maps=True) -> CellScores:
    masks = np.zeros((3, 3, 3), bool)  # 9 pixels per image: not a whole number of bytes when packed
    masks[1, 0, 0] = masks[1, 2, 2] = masks[2, 1, :] = True
    maps = {"a": np.arange(27, dtype=np.float64).reshape(3, 3, 3) / 27, "b": np.ones((3, 3, 3)) * 0.5}
    return CellScores(["b", "a"], ["/d/0.png", "/d/1.png", "/d/2.png"], np.array([0, 1, 1]),
                      np.array([True, True, False]), {"a": np.array([0.1, 0.9, 0.5]), "b": np.array([0.3, 0.2, 0.1])},
                      maps if with_maps else None, masks if with_maps else None, {"key": {"seed": 3}})


def test_the_file_layout_is_the_documented_one(tmp_path):
    cs = _cell()
    cs.pixel_truth = [1, 1, 0]  # as a collector's list: stored as booleans all the same
    p = cs.save(tmp_path / "x.scores.npz")
    with np.load(p, allow_pickle=False) as z:
        assert sorted(z.files) == ["labels", "maps_0", "maps_1", "mask_shape", "masks", "meta", "pixel_truth",
                                   "scores_0", "scores_1"]
        assert json.loads(bytes(z["meta"]).decode()) == {"key": {"seed": 3}, "format": FORMAT, "variants": ["b", "a"],
                                                         "images": ["/d/0.png", "/d/1.png", "/d/2.png"]}
        assert FORMAT == "fsad-scores/1"
        assert z["labels"].dtype == np.int8 and z["labels"].tolist() == [0, 1, 1]
        assert z["pixel_truth"].dtype == bool and z["pixel_truth"].tolist() == [True, True, False]
        assert z["scores_0"].dtype == np.float32 and z["scores_0"].tolist() == pytest.approx([0.3, 0.2, 0.1])
        assert z["scores_1"].tolist() == pytest.approx([0.1, 0.9, 0.5])
        assert z["maps_1"].dtype == np.float32 and z["maps_1"].shape == (3, 3, 3)
        assert z["mask_shape"].tolist() == [3, 3, 3] and z["masks"].shape == (3, 2)  # 9 bits -> 2 bytes per image
        assert np.unpackbits(z["masks"][2], count=9).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]


def test_round_trip_with_and_without_maps(tmp_path):
    cs = _cell()
    back = CellScores.load(cs.save(tmp_path / "x.scores.npz"))
    assert back.variants == ["b", "a"] and back.images == cs.images and back.meta == {"key": {"seed": 3},
                                                                                       "format": FORMAT}
    assert back.labels.dtype == np.int64 and back.labels.tolist() == [0, 1, 1]
    assert back.pixel_truth.tolist() == [True, True, False] and back.has_maps
    np.testing.assert_array_equal(back.masks, cs.masks)
    for v in ("a", "b"):
        np.testing.assert_array_equal(back.maps[v], cs.maps[v].astype(np.float32))
        np.testing.assert_array_equal(back.scores[v], cs.scores[v].astype(np.float32))
    assert back.masks.dtype == bool and back.pixel_truth.dtype == bool
    light = CellScores.load(tmp_path / "x.scores.npz", maps=False)
    assert light.maps is None and light.masks is None and not light.has_maps and light.scores.keys() == {"a", "b"}
    plain = CellScores.load(_cell(with_maps=False).save(tmp_path / "y.scores.npz"))
    assert not plain.has_maps and plain.maps is None
    # maps without masks are not maps: nothing of them is written
    half = _cell()
    half.masks = None
    with np.load(half.save(tmp_path / "z.scores.npz")) as z:
        assert "maps_0" not in z.files and "masks" not in z.files


def test_masks_that_are_not_square_round_trip(tmp_path):
    masks = np.zeros((2, 2, 5), bool)
    masks[0, 0, 4] = masks[1, 1, 0] = True
    cs = CellScores(["a"], ["0", "1"], np.array([1, 1]), np.array([True, True]), {"a": np.array([0.5, 0.6])},
                    {"a": np.zeros((2, 2, 5))}, masks)
    back = CellScores.load(cs.save(tmp_path / "r.scores.npz"))
    assert back.masks.shape == (2, 2, 5)
    np.testing.assert_array_equal(back.masks, masks)


def test_an_unreadable_or_incomplete_file_names_itself_and_the_fix(tmp_path):
    cases = {"missing.scores.npz": None, "bad.scores.npz": b"not a zip"}
    for name, raw in cases.items():
        if raw is not None:
            (tmp_path / name).write_bytes(raw)
        with pytest.raises(BenchError, match=f"scores file {tmp_path / name} is unreadable .*; recompute the cell "
                                             f"with --force"):
            CellScores.load(tmp_path / name)
    p = _cell().save(tmp_path / "x.scores.npz")
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files if k != "scores_1"}
    np.savez(tmp_path / "cut.scores.npz", **arrays)
    with pytest.raises(BenchError, match="unreadable"):
        CellScores.load(tmp_path / "cut.scores.npz")


def test_rescoring_by_hand_uses_only_images_with_pixel_truth():
    # image metrics: scores a = (0.1, 0.9, 0.5) for labels (0, 1, 1): both anomalous above the normal -> 1.0
    # pixel metrics from images 0 and 1 only (image 2 has no pixel truth): its perfect map must not count
    masks = np.zeros((3, 2, 2), bool)
    masks[1, 0, 0] = masks[2, 1, 1] = True
    maps = np.zeros((3, 2, 2), np.float32)
    maps[0, 0, 0] = 0.9  # a normal pixel above the anomalous one
    maps[1, 0, 0] = 0.5
    maps[2, 1, 1] = 1.0
    cs = CellScores(["a"], ["0", "1", "2"], np.array([0, 1, 1]), np.array([True, True, False]),
                    {"a": np.array([0.1, 0.9, 0.5], np.float32)}, {"a": maps}, masks)
    got, undefined = metrics_from_scores(cs, "a")
    assert got["image_auroc"] == pytest.approx(1.0) and undefined == {}
    # 8 pixels, 1 anomalous (0.5), 7 normal: 0.9 above it, six 0.0 below it -> 6/7
    assert got["pixel_auroc"] == pytest.approx(6 / 7)
    cs.pixel_truth = np.array([True, True, True])
    assert metrics_from_scores(cs, "a")[0]["pixel_auroc"] != pytest.approx(6 / 7)
    cs.maps = None
    got, _ = metrics_from_scores(cs, "a")
    assert "pixel_auroc" not in got and got["image_auroc"] == pytest.approx(1.0)


def test_a_metric_undefined_on_rescoring_says_why():
    cs = CellScores(["a"], ["0", "1"], np.array([0, 0]), np.array([True, True]), {"a": np.array([0.1, 0.2])},
                    {"a": np.zeros((2, 2, 2), np.float32)}, np.zeros((2, 2, 2), bool))
    got, undefined = metrics_from_scores(cs, "a")
    assert got["image_auroc"] is None and got["pixel_auroc"] is None
    assert "image_auroc" in undefined and "pixel_auroc" in undefined


def test_the_collector_keeps_test_order_across_batches_and_maps_only_when_asked():
    col = ScoreCollector(save_maps=True)
    col.add_batch([Path("/d/0.png"), "/d/1.png"], [0, np.int64(1)], [1, 0], [np.ones((2, 2)), np.zeros((2, 2))])
    col.add_variant("a", np.array([[0.1], [0.2]]), torch.full((2, 2, 2), 0.5, dtype=torch.float64))
    col.add_batch(["/d/2.png"], [1], [True], [np.eye(2)])
    col.add_variant("a", np.array([0.3]), np.full((1, 2, 2), 0.7))
    cs = col.result({"m": 1})
    assert cs.images == ["/d/0.png", "/d/1.png", "/d/2.png"] and cs.labels.tolist() == [0, 1, 1]
    assert cs.labels.dtype == np.int64 and cs.pixel_truth.tolist() == [True, False, True]
    assert cs.scores["a"].dtype == np.float32 and cs.scores["a"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert cs.maps["a"].dtype == np.float32 and cs.maps["a"][:, 0, 0].tolist() == pytest.approx([0.5, 0.5, 0.7])
    assert cs.masks.dtype == bool and cs.masks.shape == (3, 2, 2) and cs.masks[2].tolist() == [[True, False],
                                                                                               [False, True]]
    assert cs.meta == {"m": 1} and cs.has_maps
    plain = ScoreCollector()
    plain.add_batch(["x"], [1], [True], [np.ones((2, 2))])
    plain.add_variant("a", np.array([0.4]), np.ones((1, 2, 2)))
    cs = plain.result({})
    assert cs.maps is None and cs.masks is None and plain.masks == [] and plain.maps == {}
    assert ScoreCollector(save_maps=True).result({}).maps is None  # nothing collected: no maps


EQUIVALENT_MUTANTS = {
    "scores.CellScores.save: np.asarray(masks, dtype=None / absent) for dtype=bool":
        "np.packbits packs any nonzero value as 1, so a 0/1 or 0/255 mask packs to the same bits",
    "scores.CellScores.save: reshape(n, -2) for reshape(n, -1); add_variant reshape(-2) for reshape(-1)":
        "numpy takes any negative size as the one inferred dimension",
    "scores.CellScores.save: mask_shape dtype None / absent for int64": "a shape tuple of ints is int64 already",
    "scores.CellScores.load: np.load(allow_pickle=None / absent) for False": "numpy's default refuses pickles too",
    "scores.metrics_from_scores: np.asarray(scores, dtype=None / absent) for float64":
        "the stored float32 scores widen exactly: the ranking, hence every image metric, is the same",
    "scores.metrics_from_scores: pop('undefined', None / absent) for pop('undefined', {})":
        "`or {}` turns a missing key's None into {}, as the {} default does",
    "scores.metrics_from_scores: PixelMetrics(device=None) for device=device":
        "device placement: on the CPU every device argument here is the CPU",
    "scores.ScoreCollector.add_variant: the .numpy() branch mutated (never / hasattr of another name)":
        "np.asarray of a CPU tensor is the same array as tensor.numpy()",
    "scores.ScoreCollector.add_variant: astype(float32, copy=None / True / absent)":
        "copying or not changes memory use, not the values collected",
    "scores.ScoreCollector.result: np.asarray(labels / truth, dtype=None / absent)":
        "lists of Python ints and bools become int64 and bool arrays by default",
}
