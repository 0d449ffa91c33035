"""Throughput of AnomalyCLIP's fit on an auxiliary set and of its predict, against a plain encoder pass.

    python -m benchmarks.anomalyclip_speed                      # CPU, the tiny model, 16 auxiliary images
    python -m benchmarks.anomalyclip_speed --images 64 --epochs 3 --device cuda

What is timed (wall clock, CUDA synchronised), all on the same images, each
on a fresh memory-only feature store whose pixels and masks were decoded
beforehand (decoding is not timed):

* ``plain``: the ordinary encoder pass (``token_spec()``) over the images,
  the baseline: one encoder pass per image;
* ``fit``: ``AnomalyCLIP.fit_auxiliary`` for ``--epochs`` epochs over the
  images (half of them anomalous with a mask): the frozen DPAM pass runs once
  per image (cached), every epoch after the first only runs the text pass and
  the losses; images/s = images x epochs / seconds;
* ``predict``: ``AnomalyCLIP.predict`` on the images with a cold cache
  (the DPAM pass + the maps), images/s.

It prints the encoder passes counted by the feature store (the fit encodes
each image once whatever the epochs) and the ratios fit/plain and
predict/plain in images per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec, resolve_device
from fsadbench.backbone.features import FeatureStore, token_spec
from fsadbench.core.types import AuxiliarySet, ImageRef
from fsadbench.methods.anomalyclip.model import AnomalyCLIP
from fsadbench.protocol.method import MethodContext
from fsadbench.protocol.sampler import file_digest


def auxiliary(folder: Path, n: int, size: int, seed: int = 0) -> AuxiliarySet:
    """``n`` random images, every second one anomalous with a square mask."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, masks, labels = [], [], []
    for i in range(n):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        images.append(ImageRef(p, file_digest(p), p.name))
        mask = None
        if i % 2:
            q = folder / f"mask{i:03d}.png"
            m = np.zeros((size, size), np.uint8)
            m[size // 4:size // 2, size // 4:size // 2] = 255
            Image.fromarray(m).save(q)
            mask = ImageRef(q, file_digest(q), q.name)
        masks.append(mask)
        labels.append(i % 2)
    return AuxiliarySet("bench", tuple(images), tuple(labels), tuple(masks))


def _store(backbone: Backbone, aux: AuxiliarySet) -> FeatureStore:
    store = FeatureStore(backbone, cache_dir=None, batch_size=8)
    store.pixels(list(aux.images))
    store.masks(list(aux.masks))
    return store


def _timed(device: torch.device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def run(model: str = TINY_MODEL, device: str = "cpu", n_images: int = 16, epochs: int = 2,
        size: int = 64) -> dict:
    dev = resolve_device(device)
    bb = Backbone(BackboneSpec(model, "none"), device=dev)
    with tempfile.TemporaryDirectory() as tmp:
        aux = auxiliary(Path(tmp), n_images, size)
        refs = list(aux.images)
        store = _store(bb, aux)
        plain_s = _timed(dev, lambda: store.get(refs, token_spec()))
        store = _store(bb, aux)
        method = AnomalyCLIP(MethodContext(backbone=bb, features=store, device=dev, seed=0), epochs=epochs)
        fit_s = _timed(dev, lambda: method.fit_auxiliary(aux))
        fit_encoded = store.stats.encoded
        method.ctx.features = _store(bb, aux)
        predict_s = _timed(dev, lambda: method.predict(refs))
    out = {"model": model, "device": str(dev), "images": n_images, "epochs": epochs,
           "plain_s": plain_s, "fit_s": fit_s, "predict_s": predict_s, "fit_encoder_passes": fit_encoded,
           "plain_images_per_s": n_images / plain_s, "fit_images_per_s": n_images * epochs / fit_s,
           "predict_images_per_s": n_images / predict_s}
    out["ratio_fit_vs_plain"] = out["fit_images_per_s"] / out["plain_images_per_s"]
    out["ratio_predict_vs_plain"] = out["predict_images_per_s"] / out["plain_images_per_s"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=TINY_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args(argv)
    r = run(a.model, a.device, a.images, a.epochs)
    print(json.dumps(r, indent=1))
    print(f"fit: {r['fit_images_per_s']:.1f} images/s over {a.epochs} epochs "
          f"({r['fit_encoder_passes']} encoder passes for {a.images} images); predict: "
          f"{r['predict_images_per_s']:.1f} images/s; plain pass: {r['plain_images_per_s']:.1f} images/s "
          f"(fit/plain {r['ratio_fit_vs_plain']:.2f}, predict/plain {r['ratio_predict_vs_plain']:.2f})")


if __name__ == "__main__":
    main()
