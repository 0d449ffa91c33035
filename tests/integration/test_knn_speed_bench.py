"""benchmarks/knn_speed.py --quick: runs, agrees with the plain implementations, reports what it promises."""

from __future__ import annotations

from benchmarks import knn_speed


def test_quick_benchmark_scores_equal_plain_and_coreset_indices_equal(capsys):
    out = knn_speed.main(["--quick", "--json"])
    printed = capsys.readouterr().out
    for name in ("patchcore", "anomalydino", "coreset"):
        assert name in printed and out[name]["ours_s"] > 0 and out[name]["plain_s"] > 0
        assert out[name]["ratio"] == out[name]["plain_s"] / out[name]["ours_s"]
    assert out["patchcore"]["max_abs_diff"] <= 1e-5
    assert out["anomalydino"]["max_abs_diff"] <= 1e-5
    assert out["coreset"]["equal_indices"] is True
    for name in ("patchcore", "anomalydino"):
        ours64, plain64 = out[name]["max_abs_diff_vs_float64"]
        assert ours64 <= 1e-5 and plain64 <= 1e-5 and "vs float64 on 2 images" in printed
    assert out["patchcore"]["memory"] == [2 * 36, 32] and out["patchcore"]["queries"] == [3 * 36, 32]
    assert out["anomalydino"]["memory"] == [2 * 8 * 16, 16] and out["coreset"]["selected"] == 7
    assert '"device": "cpu"' in printed


def test_plain_greedy_port_matches_ours_on_duplicates():
    import torch

    from fsadbench.methods.common.knn import k_center_greedy

    pts = torch.tensor([[0.0], [0.0], [2.0], [2.0], [5.0]])
    assert knn_speed.plain_greedy(pts, 5, 1) == k_center_greedy(pts, 5, 1).tolist() == [1, 4, 2, 0, 0]


def test_parts_select_the_comparisons(capsys):
    out = knn_speed.main(["--quick", "--parts", "coreset"])
    assert set(out) == {"device", "threads", "coreset"} and "patchcore" not in capsys.readouterr().out
