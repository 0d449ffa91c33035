"""The protocol core as a reader relies on it: the shot pool's order, digests that follow content, the
data fingerprint of a cell, the evaluation of maps against masks (bad input named), hand-checked.

EQUIVALENT_MUTANTS lists, per module, the surviving mutants that cannot change behaviour.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.types import Prediction, Sample
from fsadbench.protocol import evaluator as ev
from fsadbench.protocol.sampler import content_fingerprint, file_digest, image_ref, sample_shots


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# -- sampler -------------------------------------------------------------------------------------------
def test_digest_of_a_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"image file .*nope\.png does not exist"):
        file_digest(tmp_path / "nope.png")


def test_digest_follows_a_rewrite_even_with_the_same_mtime_or_the_same_size(tmp_path):
    p = _write(tmp_path / "a.png", b"one")
    st = p.stat()
    assert file_digest(p) == _sha1(b"one")
    _write(p, b"three")  # another size, the old mtime restored: the memo must not answer
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(p) == _sha1(b"three")
    _write(p, b"fours")  # same size, another mtime
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert file_digest(p) == _sha1(b"fours")


def test_image_ref_carries_path_content_digest_and_relative_path(tmp_path):
    p = _write(tmp_path / "x.png", b"pixels")
    ref = image_ref(Sample(p, 1, "dent", None, "test/dent/x.png"))
    assert (ref.path, ref.digest, ref.rel_path) == (p, _sha1(b"pixels"), "test/dent/x.png")


def test_negative_shots_are_refused_with_the_value():
    with pytest.raises(ConfigError, match="shots must be >= 0, got -1"):
        sample_shots([], -1, 0)


def test_one_shot_is_one_image(tmp_path):
    pool = [Sample(_write(tmp_path / f"{i}.png", bytes([i])), 0, rel_path=f"train/good/{i}.png") for i in range(5)]
    got = sample_shots(pool, 1, 3)
    want = int(np.random.default_rng(3).choice(5, size=1, replace=False)[0])
    assert got == [pool[want]]


def test_pool_is_ordered_by_relative_path_else_by_file_path(tmp_path):
    # file names run opposite to the relative paths: the relative path decides the order
    pool = [Sample(_write(tmp_path / f"{9 - i}.png", bytes([i])), 0, rel_path=f"train/good/{i}.png")
            for i in range(10)]
    idx = sorted(np.random.default_rng(5).choice(10, size=3, replace=False).tolist())
    assert sample_shots(pool[::-1], 3, 5) == [pool[i] for i in idx]
    # no relative paths: the file path decides, whatever the input order
    bare = sorted((Sample(s.image_path, 0) for s in pool), key=lambda s: str(s.image_path))
    assert sample_shots(bare[::-1], 3, 5) == [bare[i] for i in idx]


def _fingerprint_oracle(test, shots) -> str:
    """The documented format, written out: one line per test image, a separator, one line per shot."""
    lines = []
    for s in test:
        mask = _sha1(s.mask_path.read_bytes()) if s.mask_path is not None else "-"
        lines.append(f"{s.rel_path}|{int(s.label)}|{_sha1(s.image_path.read_bytes())}|{mask}\n")
    lines.append("shots\n")
    lines += [f"{s.rel_path}|{_sha1(s.image_path.read_bytes())}\n" for s in shots]
    return _sha1("".join(lines).encode())[:16]


def test_content_fingerprint_covers_images_labels_masks_and_shots(tmp_path):
    good = Sample(_write(tmp_path / "g.png", b"g"), 0, "good", None, "test/good/g.png")
    bad = Sample(_write(tmp_path / "b.png", b"b"), 1, "dent", _write(tmp_path / "b_m.png", b"m1"), "test/dent/b.png")
    shot = Sample(_write(tmp_path / "s.png", b"s"), 0, "good", None, "train/good/s.png")
    base = content_fingerprint([good, bad], [shot])
    assert base == _fingerprint_oracle([good, bad], [shot]) and len(base) == 16
    seen = {base}
    unmasked = Sample(bad.image_path, 1, "dent", None, bad.rel_path)
    relabelled = Sample(good.image_path, 1, "good", None, good.rel_path)
    # one change at a time: a mask dropped, a label, no shot, the shot moved into the test list
    for variant in (([good, unmasked], [shot]), ([relabelled, bad], [shot]), ([good, bad], []),
                    ([good, bad, shot], [])):
        fp = content_fingerprint(*variant)
        assert fp == _fingerprint_oracle(*variant) and fp not in seen
        seen.add(fp)
    _write(bad.mask_path, b"m2")  # one mask pixel file changed (new size: the digest memo sees it)
    assert content_fingerprint([good, bad], [shot]) not in seen


# -- evaluator -----------------------------------------------------------------------------------------
def test_gaussian_kernel_radius_and_values():
    k = ev.gaussian_kernel1d(1.0)
    x = np.arange(-4, 5)
    want = np.exp(-0.5 * x ** 2)
    assert k.dtype == torch.float32 and k.numel() == 9  # radius round(4 * sigma)
    assert np.allclose(k.numpy(), want / want.sum(), atol=1e-7)
    assert ev.gaussian_kernel1d(0.6).numel() == 5 and ev.gaussian_kernel1d(0.6, truncate=2.0).numel() == 3


def test_blur_keeps_the_maps_dtype_and_equals_scipy_in_float64():
    from scipy import ndimage

    m = np.random.default_rng(2).random((1, 9, 7))
    got = ev.gaussian_blur(torch.from_numpy(m), 1.3)
    assert got.dtype == torch.float64
    assert np.allclose(got[0].numpy(), ndimage.gaussian_filter(m[0], 1.3, mode="reflect", truncate=4.0), atol=1e-6)


def test_upsample_at_the_evaluation_size_is_the_maps_themselves():
    m = torch.rand(2, 6, 6)
    assert ev.upsample(m, 6) is m and ev.upsample(m, 12).shape == (2, 12, 12)


def test_blur_without_sigma_returns_the_maps_unchanged():
    m = torch.rand(1, 5, 5)
    assert ev.gaussian_blur(m, 0) is m and ev.gaussian_blur(m, -1.0) is m and ev.gaussian_blur(m, None) is m


def test_postprocess_upsamples_then_blurs():
    from scipy import ndimage

    m = np.arange(16, dtype=np.float64).reshape(1, 4, 4)  # maps of any float dtype are evaluated in float32
    got = ev.postprocess(m, 8, 1.5)
    up = ev.upsample(torch.from_numpy(m).float(), 8)
    want = ndimage.gaussian_filter(up[0].double().numpy(), 1.5, mode="reflect", truncate=4.0)
    assert got.dtype == torch.float32 and got.shape == (1, 8, 8) and np.allclose(got[0].numpy(), want, atol=1e-5)


def test_a_mask_of_another_size_than_its_image_is_named(tmp_path):
    img = tmp_path / "i.png"
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(img)
    mask = tmp_path / "m.png"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(mask)
    with pytest.raises(DataError, match=r"mask .*m\.png is 5x4 but its image .*i\.png is 5x6; fix or regenerate"):
        ev.gt_mask(Sample(img, 1, "dent", mask), 8)


def test_non_finite_maps_or_scores_fail_naming_where_and_how_many():
    ok = Prediction(np.zeros((1, 2, 2), np.float32), np.zeros(1))
    ev.check_finite(ok, "memory/w/o VG")
    bad = Prediction(np.array([[[np.nan, 1.0], [np.inf, 0.0]]], np.float32), np.zeros(1))
    with pytest.raises(FloatingPointError, match=r"^memory/w/o VG: 2 non-finite value\(s\) \(NaN/inf\) in maps$"):
        ev.check_finite(bad, "memory/w/o VG")
    with pytest.raises(FloatingPointError, match=r"1 non-finite value\(s\) \(NaN/inf\) in scores"):
        ev.check_finite(Prediction(np.zeros((1, 2, 2), np.float32), np.array([np.nan])), "x")


def test_nan_to_none():
    assert ev.nan_to_none(None) is None and ev.nan_to_none(float("nan")) is None
    assert ev.nan_to_none(0.25) == 0.25 and isinstance(ev.nan_to_none(np.float32(0.5)), float)


def test_category_evaluator_returns_the_maps_as_evaluated_and_pools_every_image():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    maps = rng.random((4, 4, 4)).astype(np.float32)
    masks = [np.zeros((8, 8), bool) for _ in range(4)]
    masks[2][1:5, 2:6] = True
    masks[3][4:8, 0:3] = True
    samples = [Sample(Path(f"{i}.png"), int(i >= 2), "good" if i < 2 else "dent", Path(f"m{i}.png") if i >= 2
                      else None) for i in range(4)]
    e = ev.CategoryEvaluator(eval_size=8, sigma=1.0, aupro=False)
    out1 = e.add(Prediction(maps[:2], np.array([0.2, 0.4])), samples[:2], masks[:2])
    out2 = e.add(Prediction(maps[2:], np.array([0.3, 0.9])), samples[2:], masks[2:])
    assert torch.allclose(out1, ev.postprocess(maps[:2], 8, 1.0)) and out2.shape == (2, 8, 8)
    metrics, undefined = e.compute()
    pix = torch.cat([out1, out2]).numpy().ravel()
    gt = np.concatenate([m.ravel() for m in masks])
    assert metrics["pixel_auroc"] == pytest.approx(roc_auc_score(gt, pix), abs=1e-6)
    assert metrics["pixel_ap"] == pytest.approx(average_precision_score(gt, pix), abs=1e-4)
    assert metrics["image_auroc"] == pytest.approx(0.75)  # 0.3 < 0.4 is the one misordered pair of four
    assert undefined == {} and "aupro" not in metrics  # aupro=False: not computed, not reported


def test_category_evaluator_reports_why_a_metric_is_undefined():
    e = ev.CategoryEvaluator(eval_size=4, sigma=0, aupro=False)
    e.add(Prediction(np.random.default_rng(1).random((2, 4, 4)).astype(np.float32), np.array([0.1, 0.2])),
          [Sample(Path("a.png"), 0), Sample(Path("b.png"), 0)], [np.zeros((4, 4), bool)] * 2)
    metrics, undefined = e.compute()
    assert metrics["image_auroc"] is None or np.isnan(metrics["image_auroc"])
    assert "image_auroc" in undefined and "pixel_auroc" in undefined


def test_aupro_is_computed_by_default():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    maps = np.zeros((2, 4, 4), np.float32)
    maps[1][1:3, 1:3] = 1.0  # a perfect map
    for e in (ev.CategoryEvaluator(eval_size=4, sigma=0), ev.CategoryEvaluator(4, 0, aupro=True)):
        e.add(Prediction(maps, np.array([0.0, 1.0])), [Sample(Path("n.png"), 0), Sample(Path("a.png"), 1, "dent",
                                                                                         Path("m.png"))],
              [np.zeros((4, 4), bool), mask])
        assert e.compute()[0]["aupro"] == pytest.approx(1.0)


EQUIVALENT_MUTANTS = {
    "evaluator.gaussian_kernel1d: arange dtype float64 -> None / omitted": "integer offsets; the kernel is cast to "
                                                                          "float32, rounding below its resolution",
    "evaluator.gaussian_blur: sigma < 0": "sigma == 0 already returns through `not sigma`",
    "evaluator.gaussian_blur: .to(None / no device)": "the CPU tensors are already on the maps' device",
    "evaluator.gaussian_blur: kernel .to(device, None / omitted)": "float32 maps only differ with a float64 kernel "
                                                                  "at rounding level; float64 maps are tested",
    "evaluator.upsample: align_corners None / omitted": "None and omitted are interpolate's default False",
    "evaluator.CategoryEvaluator: PixelMetrics(device=None / omitted)": "CPU: the default device is the same",
    "evaluator.compute: pop('undefined', None / omitted)": "both metric functions always return an 'undefined' "
                                                           "dict",
    "evaluator.compute: scores dtype None / omitted": "the scores are Python floats: numpy makes them float64",
    "sampler.sample_shots: replace=None": "numpy reads a falsy replace as without replacement, like False",
}
