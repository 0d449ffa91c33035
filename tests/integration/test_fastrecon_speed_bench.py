"""benchmarks/fastrecon_speed.py --quick: runs, the plain loops agree with ours, it reports what it promises."""

from __future__ import annotations

import torch

from benchmarks import fastrecon_speed


def test_quick_benchmark_agrees_with_the_plain_loops_and_reports_ratios(capsys):
    out = fastrecon_speed.main(["--quick", "--json"])
    printed = capsys.readouterr().out
    assert out["support"] == [14, 48] and out["queries"] == [3 * 36, 48] and out["ours_s"] > 0
    for name, images in (("per-image", 3), ("per-position", 2)):
        r = out[name]
        assert name in printed and r["plain_s"] > 0 and r["images"] == images
        assert r["ratio"] == r["plain_s"] * 3 / images / out["ours_s"]
        assert r["max_abs_diff"] <= 1e-5
    assert "vs float64 on 2 images" in printed and '"device": "cpu"' in printed
    assert "support 14 rows (ratio 0.1), lambda 2" in printed


def test_plain_loops_are_the_official_formula():
    """Both plain loops against the hand-solved 2 x 2 case (S = diag(1, 2), q = [3, 4], mu = [1, 0], lambda 2:
    Q_hat = [5/3, 4/3], residual norm sqrt(80) / 3)."""
    s, mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    q = torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)
    want = torch.tensor([[[80 ** 0.5 / 3]]])
    assert torch.allclose(fastrecon_speed.plain_per_image(q, s, mu, 2.0), want)
    assert torch.allclose(fastrecon_speed.plain_per_position(q, s, mu, 2.0), want)
