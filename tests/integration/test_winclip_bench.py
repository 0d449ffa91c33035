"""The WinCLIP throughput benchmark on the tiny backbone: numbers present, FLOP floor hand-checked."""

from __future__ import annotations

import math

import pytest

from benchmarks import winclip_speed as bench_winclip
from fsadbench.methods.winclip.windows import vit_flops


def test_flop_floor_counts_every_window_token(tiny_backbone):
    f = bench_winclip.flop_floor(tiny_backbone)
    assert f["plain_tokens"] == 226 and f["windows_tokens"] == 226 + 196 * 5 + 169 * 10
    # tiny model: width 64, 12 blocks, MLP ratio 4, patch 8
    embed = 2.0 * 225 * 3 * 64 * 64
    plain = embed + vit_flops(226, 64, 12)
    windows = plain + 196 * vit_flops(5, 64, 12) + 169 * vit_flops(10, 64, 12)
    assert f["plain_gflop"] == pytest.approx(plain / 1e9)
    assert f["ratio"] == pytest.approx(windows / plain)
    assert f["ratio"] > 3  # the windows alone cost more than 3 plain passes


def test_benchmark_runs_and_reports(capsys):
    r = bench_winclip.run("fsad-tiny-vit", "cpu", n_images=1, repeats=1, loop_windows=3)
    for k in ("plain_s", "predict_s", "loop_s"):
        assert math.isfinite(r[k]) and r[k] > 0
    assert r["ratio_predict_vs_plain"] == pytest.approx(r["predict_s"] / r["plain_s"])
    assert r["loop_windows_timed"] == 3
    text = bench_winclip.report(r)
    assert "FLOP floor" in text and "per-window loop" in text and "scaled to all" in text
