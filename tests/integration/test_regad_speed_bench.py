"""benchmarks/regad_speed.py --quick: runs, agrees with the official per-position loop, reports its ratio."""

from __future__ import annotations

from benchmarks import regad_speed


def test_quick_benchmark_agrees_with_the_plain_loop(capsys):
    out = regad_speed.main(["--quick", "--json"])
    printed = capsys.readouterr().out
    assert out["ours_s"] > 0 and out["plain_s"] > 0 and out["ratio"] == out["plain_s"] / out["ours_s"]
    assert out["max_abs_diff"] <= 1e-3
    assert (out["samples"], out["channels"], out["positions"], out["chunk"]) == (22, 32, 36, 7)
    assert "ratio plain / ours" in printed and '"device": "cpu"' in printed
    assert out["chunk_mb"] == 7 * (22 * 32 + 22 * 22) * 8 / 2 ** 20
