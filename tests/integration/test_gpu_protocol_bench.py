"""The GPU protocol benchmark's smallest reduced run on CPU: the JSON carries every figure and check."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_protocol
from benchmarks.gpu_checks import CopyCounter


def test_copy_counter_counts_cross_device_float_copies_in_scope():
    # 'meta' stands in for a second device on CPU: .to() across devices is what is counted
    to_before = torch.Tensor.to
    with CopyCounter().installed() as c:
        torch.zeros(4, 4).to("meta")  # outside any scope: not counted
        c.scope = "add"
        torch.zeros(4, 4).to("meta")  # a map in add(): per batch
        torch.zeros(4, 4).to("cpu")  # same device: no copy
        torch.zeros(4, 4, dtype=torch.bool).to("meta")  # a mask
        torch.zeros(4, dtype=torch.int64).to("meta")  # counts: not map values
        c.scope = "prediction"
        torch.zeros(3).to("meta")  # image scores: not maps
        torch.zeros(3, 4, 4).to("meta")  # the batch's maps
        c.scope = "compute"
        torch.zeros(7).to("meta")
        c.scope = ""
    assert (c.per_batch, c.masks, c.in_compute) == (2, 1, 1)
    assert torch.Tensor.to is to_before  # restored


@pytest.mark.slow
def test_reduced_smallest_run_writes_every_field(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    rc = gpu_protocol.main(["--reduced", "--categories", "bottle", "--images-per-category", "4",
                            "--methods", "memory", "--shots", "1", "--device", "cpu", "--amp", "both",
                            "--data-dir", str(tmp_path / "data"), "--output", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["random_weights"] is True and r["reduced"] is True and r["device"] == "cpu"
    assert r["data"]["categories"] == {"bottle": {"test": 4, "normal": 1, "anomalous": 3}}
    assert r["data"]["test_images"] == 4 and r["skipped_blocks"] == []
    # the encoder: fp32 measured; bf16 is CUDA-only and says so instead of passing
    assert r["encoder"]["fp32"]["images_per_s"] > 0 and r["encoder"]["fp32"]["precision"] == "fp32"
    assert r["encoder"]["bf16"]["status"] == "SKIPPED"
    f = r["methods"]["memory"]["fp32"]
    assert (f["cells"], f["ok"], f["fits"], f["test_images_evaluated"]) == (1, 1, 1, 4)
    assert f["precision"] == "fp32" and f["gpu_peak_bytes"] is None and f["encoded_images"] == 5  # 4 test + 1 shot
    assert r["methods"]["memory"]["bf16"]["status"] == "SKIPPED"
    p = r["protocol"]
    assert p["extrapolated"] is True and (p["seeds_measured"], p["seeds_extrapolated_to"], p["shots"]) == (1, 5, 3)
    assert set(p["datasets"]) == {"mvtec", "visa", "mpdd", "sdd", "cvc-colondb"}
    assert p["total"]["fp32"]["methods"] == ["memory"] and p["total"]["fp32"]["complete"] is False
    c = r["checks"]
    # CUDA-only checks are SKIPPED on CPU, never PASS
    for name in ("cuda_metrics_equal_cpu", "bf16_maps_within_tol", "map_copies_per_batch"):
        assert c[name]["check"]["status"] == "SKIPPED", name
    assert c["map_copies_per_batch"]["predictions"] == c["map_copies_per_batch"]["batches"] == 1
    assert c["map_copies_per_batch"]["per_batch_copies"] == 0
    assert set(c["cuda_metrics_equal_cpu"]["metrics_cpu"]["w/ VG"]) >= {"image_auroc", "pixel_auroc", "aupro"}
    # the executor check runs on CPU too: one cell each way, equal records
    assert c["gpus_executor_equals_local"]["check"]["status"] == "PASS"
    assert c["gpus_executor_equals_local"]["cells"] == 1
    text = capsys.readouterr().out
    assert "RANDOM weights" in text and "EXTRAPOLATED" in text and "SKIPPED (no CUDA)" in text
