"""Per-image score files: exact round trip, and metrics recomputed from them equal the evaluator's."""

from pathlib import Path

import numpy as np
import pytest

from fsadbench.core.types import Prediction, Sample
from fsadbench.protocol.evaluator import CategoryEvaluator
from fsadbench.results.scores import CellScores, ScoreCollector, metrics_from_scores, scores_path


def _batch(rng, n, size=16):
    maps = rng.random((n, 6, 6)).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    labels = (np.arange(n) % 3 == 0).astype(int)
    masks = [np.zeros((size, size), bool) for _ in range(n)]
    samples = []
    for i in range(n):
        if labels[i]:
            masks[i][2 + i % 5:8 + i % 5, 3:9] = True
        # image 4 is anomalous without a mask: image metrics only
        samples.append(Sample(Path(f"/d/{i}.png"), int(labels[i]), mask_path=None if (i == 3 or not labels[i])
                              else Path(f"/d/{i}_mask.png")))
    return maps, scores, samples, masks


@pytest.mark.parametrize("save_maps", [True, False])
def test_round_trip_and_rescore_equal_the_evaluator(tmp_path, save_maps):
    rng = np.random.default_rng(0)
    size, sigma = 16, 1.5
    ev = {v: CategoryEvaluator(size, sigma) for v in ("w/o VG", "w/ VG")}
    col = ScoreCollector(save_maps=save_maps)
    for n in (5, 4):  # two batches
        maps, scores, samples, masks = _batch(rng, n, size)
        col.add_batch([s.image_path for s in samples], [s.label for s in samples],
                      [not s.label or s.mask_path is not None for s in samples], masks)
        for j, v in enumerate(ev):
            pred = Prediction(maps + j, scores * (j + 1))
            col.add_variant(v, pred.scores, ev[v].add(pred, samples, masks))
    cs = col.result({"protocol": {"version": "p1"}})
    path = scores_path(tmp_path / "k1_s0.json")
    assert path.name == "k1_s0.scores.npz"
    cs.save(path)
    back = CellScores.load(path)
    assert back.variants == ["w/o VG", "w/ VG"] and back.images[0] == "/d/0.png" and back.meta["protocol"]
    assert back.has_maps is save_maps and back.pixel_truth.tolist().count(False) == 2  # image 3 of each batch
    for v in ev:
        np.testing.assert_array_equal(back.scores[v], cs.scores[v])
        expected, undefined = ev[v].compute()
        got, got_undefined = metrics_from_scores(back, v)
        if save_maps:
            np.testing.assert_array_equal(back.maps[v], cs.maps[v])
            np.testing.assert_array_equal(back.masks, cs.masks)
            assert got == expected  # exactly: the same inputs, the same code
        else:
            assert got == {k: x for k, x in expected.items() if k.startswith("image_")}
        assert got_undefined == {k: r for k, r in undefined.items() if k in got}


def test_unreadable_scores_file_names_the_fix(tmp_path):
    bad = tmp_path / "k1_s0.scores.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="--force"):
        CellScores.load(bad)


@pytest.mark.parametrize("keep", [0.5, 0.95, 40])
def test_truncated_scores_file_names_the_file_and_the_fix(tmp_path, keep):
    """Drill of issue 33 (was: "File is not a zip file", naming no file)."""
    from fsadbench.core.errors import BenchError

    col = ScoreCollector(save_maps=True)
    maps, scores, samples, masks = _batch(np.random.default_rng(1), 4)
    col.add_batch([s.image_path for s in samples], [s.label for s in samples], [True] * 4, masks)
    col.add_variant("w/ VG", scores, maps)
    path = col.result({}).save(tmp_path / "k1_s0.scores.npz")
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(BenchError) as err:
        CellScores.load(path)
    assert str(err.value).startswith(f"scores file {path} is unreadable (") and "--force" in str(err.value)


@pytest.mark.parametrize("masked, want", [(0, "no masks: none of the 2 anomalous test image(s) has a mask file"),
                                          (1, "empty masks: the masks of the 1 anomalous test image(s) mark no "
                                              "anomalous pixel; 1 more have no mask file")])
def test_rescore_names_missing_or_empty_masks_as_the_sweep_does(masked, want):
    """A category whose anomalies have no (or only empty) masks: the reason is the evaluator's, not
    "one class only", when the metrics are recomputed from the scores file."""
    samples = [Sample(Path("/d/n.png"), 0), *(Sample(Path(f"/d/{i}.png"), 1, mask_path=Path(f"/d/{i}_m.png")
                                                     if i < masked else None) for i in range(2))]
    masks = [np.zeros((8, 8), bool)] * 3  # an empty mask for the masked one
    pred = Prediction(np.random.default_rng(0).random((3, 4, 4)).astype(np.float32), np.array([0.1, 0.9, 0.8]))
    ev = CategoryEvaluator(8, 0.0, aupro=False)
    col = ScoreCollector(save_maps=True)
    col.add_batch([str(s.image_path) for s in samples], [s.label for s in samples],
                  [not s.label or s.mask_path is not None for s in samples], masks)
    col.add_variant("w/o VG", pred.scores, ev.add(pred, samples, masks))
    expected, undefined = ev.compute()
    got, got_undefined = metrics_from_scores(col.result({}), "w/o VG")
    assert undefined["pixel_auroc"].startswith(want) and got_undefined["pixel_auroc"] == undefined["pixel_auroc"]
    assert {k: r for k, r in got_undefined.items() if k in undefined} == {k: r for k, r in undefined.items()
                                                                           if k in got}
