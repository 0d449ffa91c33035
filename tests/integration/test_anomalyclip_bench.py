"""The AnomalyCLIP throughput benchmark on the tiny backbone: figures present, one encoder pass per image."""

from __future__ import annotations

import math

import pytest

from benchmarks import anomalyclip_speed as bench


def test_benchmark_runs_and_encodes_each_auxiliary_image_once(capsys):
    r = bench.run("fsad-tiny-vit", "cpu", n_images=4, epochs=2, size=32)
    for k in ("plain_s", "fit_s", "predict_s"):
        assert math.isfinite(r[k]) and r[k] > 0
    assert r["fit_encoder_passes"] == 4  # 2 epochs, the frozen pass cached
    assert r["fit_images_per_s"] == pytest.approx(8 / r["fit_s"])
    assert r["ratio_fit_vs_plain"] == pytest.approx(r["fit_images_per_s"] / r["plain_images_per_s"])
    assert r["ratio_predict_vs_plain"] == pytest.approx(r["predict_images_per_s"] / r["plain_images_per_s"])


def test_auxiliary_set_of_the_benchmark(tmp_path):
    aux = bench.auxiliary(tmp_path, 4, 16)
    assert aux.labels == (0, 1, 0, 1) and [m is None for m in aux.masks] == [True, False, True, False]
