"""Keeping the encoder fed: threaded decode (same pixels as serial, once per image), precision in
keys, records and the cell hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from fixtures_layouts import random_image_refs

from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.backbone.features import FeatureStore, token_spec
from fsadbench.results.records import RecordStore
from fsadbench.run.cell import run_job
from fsadbench.run.identity import cell_hash
from fsadbench.run.plan import plan_jobs
from fsadbench.run.resources import Resources
from fsadbench.core.types import ImageRef


def _refs(tmp_path, n):
    return random_image_refs(tmp_path, n, 37, 53, seed=1, prefix="im")


def test_threaded_decode_equals_serial_and_runs_once_per_image(tiny_backbone, tmp_path):
    refs = _refs(tmp_path, 7)
    threaded = FeatureStore(tiny_backbone, cache_dir=None, batch_size=3, loader_workers=3)
    serial = FeatureStore(tiny_backbone, cache_dir=None, batch_size=3, loader_workers=1)
    a, b = threaded.pixels(refs), serial.pixels(refs)
    assert torch.equal(a, b) and torch.equal(a, tiny_backbone.load_pixels([r.path for r in refs]))
    assert threaded.stats.decoded == 7
    threaded.pixels(refs[::-1] + refs[:2])  # duplicates and a new order: all from memory
    assert threaded.stats.decoded == 7
    spec = token_spec((3,))
    f1 = threaded.get(refs, spec)  # encoding reuses the pixels decoded above
    assert threaded.stats.decoded == 7 and threaded.stats.encoded == 7 and threaded.stats.batches == 3
    f2 = serial.get(refs, spec)
    assert torch.equal(f1["layer3"], f2["layer3"])


def test_pixels_at_another_size_are_their_own_entries(tiny_backbone, tmp_path):
    """AnoPLe's 2S crops source: the same transform at another size, decoded once per (image, size)."""
    refs = _refs(tmp_path, 3)
    store = FeatureStore(tiny_backbone, cache_dir=None, loader_workers=2)
    small = store.pixels(refs)
    big = store.pixels(refs, size=240)
    assert small.shape == (3, 3, 120, 120) and big.shape == (3, 3, 240, 240)
    assert torch.equal(big, tiny_backbone.load_pixels([r.path for r in refs], 240))
    assert torch.equal(store.pixels(refs, size=120), small) and store.stats.decoded == 6
    store.pixels(refs[::-1], size=240)  # from memory
    assert store.stats.decoded == 6
    # the 2S image is the file resized once: not the S image upsampled
    up = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
    assert not torch.allclose(big, up, atol=1e-3)


def test_pixel_memory_is_bounded_in_bytes(tiny_backbone, tmp_path):
    refs = _refs(tmp_path, 5)
    one = tiny_backbone.load_pixels([refs[0].path])[0]
    size = one.numel() * one.element_size()
    store = FeatureStore(tiny_backbone, cache_dir=None, pixel_bytes=2 * size)
    store.pixels(refs)
    assert len(store._pixels) == 2 and store._pixels_used == 2 * size
    store.pixels(refs[-2:])  # the two newest are still there
    assert store.stats.decoded == 5
    store.pixels(refs[:1])  # the oldest was evicted: decoded again
    assert store.stats.decoded == 6


def test_precision_and_cache_keys(tiny_backbone):
    store = FeatureStore(tiny_backbone, cache_dir=None, amp=True)
    ref = ImageRef(Path(__file__), "d" * 40, "x")
    spec = token_spec((3,))
    # on CPU amp changes nothing: fp32, and the key is the one written before amp existed
    assert store.precision == "fp32"
    expected = hashlib.sha1(f"{'d' * 40}|{tiny_backbone.key}|{spec.key}".encode()).hexdigest()
    assert store.entry_key(ref, spec) == expected
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec

        gpu = FeatureStore(Backbone(BackboneSpec(TINY_MODEL, "none"), device="cuda"), amp=True)
        assert gpu.precision == "bf16-autocast" and gpu.entry_key(ref, spec) != expected


def test_amp_enters_cell_hash_and_record(tmp_path):
    base = dict(methods=[MethodSpec("memory")],
                datasets=[DatasetSpec("synthetic", categories=["grain"],
                                      options={"size": 120, "n_train": 2, "n_test_good": 2, "n_test_bad": 2})],
                shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=32),
                results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu")
    plain, amp = RunConfig(**base), RunConfig(**base, amp=True)
    res = Resources(plain)
    job = plan_jobs(plain, res)[0]
    assert cell_hash(plain, res, job) != cell_hash(amp, Resources(amp), job)  # bf16 never stands in for fp32
    rec = run_job(job, res, RecordStore(plain.results_dir))[0]
    assert rec.status == "ok" and rec.backbone["precision"] == "fp32" and rec.config["amp"] is False
    assert rec.encoder["decoded"] == rec.encoder["encoded"] == 5  # 4 test images + 1 shot, each decoded once
