"""Throughput of WinCLIP's predict() against a plain encoder pass and a per-window loop.

    python -m benchmarks.winclip_speed                 # CPU, 1 image, ViT-B-16-plus-240 (random weights)
    python -m benchmarks.winclip_speed --device cuda --images 32 --repeats 3 [--amp]

What is timed (wall clock, CUDA synchronised, best of ``--repeats``), all on
the same images, each timing on a fresh memory-only feature store whose
pixels were decoded beforehand (decoding is not timed):

* ``plain``: the ordinary encoder pass (``token_spec()``: CLS embedding and
  patch tokens) through the feature store, 1 + N tokens per image;
* ``predict``: ``WinCLIP.predict`` (fitted on one shot, so both variants):
  full-image pass + batched windows of scales 2 and 3 + scoring;
* ``loop``: the same window embeddings computed one window at a time
  (``windows.window_embeddings_loop``) plus the full-image pass, no scoring.
  On CPU (to stay under ~2 minutes on 2 cores) only ``--loop-windows`` (12)
  evenly spread windows per scale are run and their time is scaled to all
  windows of the scale; the output says so. ``--loop-windows 0`` runs all.

The FLOP floor is the ratio of transformer FLOPs of the windows pass
(196 sequences of 5 tokens, 169 of 10, plus the full image: ~2,900 tokens)
to the plain pass (226 tokens), patch embedding included once in both
(``windows.vit_flops``). No measured ratio can go below it without skipping work.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fsadbench.backbone.clip import DEFAULT_MODEL, Backbone, BackboneSpec, resolve_device
from fsadbench.backbone.features import FeatureStore, token_spec
from fsadbench.protocol.method import MethodContext
from fsadbench.protocol.sampler import file_digest
from fsadbench.core.types import CategoryInfo, ImageRef


def _images(folder: Path, n: int, size: int, seed: int) -> list[ImageRef]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    refs = []
    for i in range(n):
        p = folder / f"img{seed}_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p)
        refs.append(ImageRef(path=p, digest=file_digest(p), rel_path=p.name))
    return refs


def flop_floor(backbone: Backbone, scales=(2, 3)) -> dict[str, float]:
    """Transformer FLOPs per image: plain pass, windows pass (full image + all windows), ratio."""
    from fsadbench.methods.winclip.windows import vit_flops, window_index

    n = backbone.grid[0] * backbone.grid[1]
    w, layers = backbone.width, backbone.n_layers
    mlp = backbone.image_tower.mlp_ratio
    patch_embed = 2.0 * n * 3 * backbone.patch_size ** 2 * w
    plain = patch_embed + vit_flops(1 + n, w, layers, mlp)
    windows = plain + sum(window_index(backbone.grid, s).shape[0] * vit_flops(1 + s * s, w, layers, mlp)
                          for s in scales)
    tokens = 1 + n + sum(window_index(backbone.grid, s).shape[0] * (1 + s * s) for s in scales)
    return {"plain_gflop": plain / 1e9, "windows_gflop": windows / 1e9, "ratio": windows / plain,
            "plain_tokens": 1 + n, "windows_tokens": tokens}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _store(backbone: Backbone, refs, batch_size: int, amp: bool) -> FeatureStore:
    store = FeatureStore(backbone, cache_dir=None, batch_size=batch_size, amp=amp)
    store.pixels(refs)  # decode now: not part of any timing
    return store


def run(model: str = DEFAULT_MODEL, device: str = "auto", n_images: int = 1, repeats: int = 1,
        batch_size: int = 32, amp: bool = False, loop: bool = True, warmup: bool | None = None,
        loop_windows: int = 0) -> dict:
    from fsadbench.methods.winclip.windows import window_embeddings_loop, window_index
    from fsadbench.methods.winclip.model import WinCLIP

    dev = resolve_device(device)
    backbone = Backbone(BackboneSpec(model, "none"), device=dev)
    warmup = dev.type == "cuda" if warmup is None else warmup
    with tempfile.TemporaryDirectory(prefix="bench_winclip_") as tmp:
        refs = _images(Path(tmp), n_images, backbone.image_size, seed=1)
        shot = _images(Path(tmp), 1, backbone.image_size, seed=2)
        info = CategoryInfo("bench", "object", "object")

        def ctx(store):
            return MethodContext(backbone=backbone, features=store, device=dev, batch_size=batch_size, amp=amp)

        method = WinCLIP(ctx(_store(backbone, shot, batch_size, amp)))
        # Text embeddings are made in fit(), never in predict(), and with random weights their values mean
        # nothing: fill the per-class cache with random ones instead of encoding 231 prompts (~40 s on CPU).
        method.text_cache[info.class_name] = torch.randn(
            2, backbone.embed_dim, generator=torch.Generator().manual_seed(0)).to(dev)
        method.fit(shot, info)  # one-shot memories (not timed)
        spec = token_spec()

        def time_plain():
            store = _store(backbone, refs, batch_size, amp)
            _sync(dev)
            t = time.perf_counter()
            store.get(refs, spec)
            _sync(dev)
            return time.perf_counter() - t

        def time_predict():
            method.ctx = ctx(_store(backbone, refs, batch_size, amp))
            _sync(dev)
            t = time.perf_counter()
            preds = method.predict(refs)
            _sync(dev)
            if set(preds) != {"w/o VG", "w/ VG"}:
                raise RuntimeError(f"winclip predict() returned {sorted(preds)}; expected both variants")
            return time.perf_counter() - t

        def time_loop():
            """Per-window loop; with ``loop_windows`` set, timed on that many evenly spread windows per
            scale and scaled by (windows of the scale / windows timed): every call of a scale has the
            same shape, so the per-call time does not depend on which window it is."""
            tower = backbone.image_tower
            px = _store(backbone, refs, batch_size, amp).pixels(refs).to(dev)
            total = 0.0
            with torch.no_grad(), method.ctx.features._autocast():
                for i in range(px.shape[0]):
                    _sync(dev)
                    t = time.perf_counter()
                    x = tower.embed(px[i:i + 1])
                    tower.post_norm(tower.run_blocks(x))
                    _sync(dev)
                    total += time.perf_counter() - t
                    for s in method.options.scales:
                        idx = window_index(backbone.grid, s)
                        nw = idx.shape[0]
                        if loop_windows and loop_windows < nw:
                            idx = idx[torch.linspace(0, nw - 1, loop_windows).round().long()]
                        _sync(dev)
                        t = time.perf_counter()
                        window_embeddings_loop(tower, x, idx)
                        _sync(dev)
                        total += (time.perf_counter() - t) * nw / idx.shape[0]
            return total

        if warmup:
            time_plain()
            time_predict()
        plain = min(time_plain() for _ in range(repeats))
        predict = min(time_predict() for _ in range(repeats))
        looped = min(time_loop() for _ in range(repeats)) if loop else None
    out = {
        "model": model, "weights": "random (timing only)", "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(), "images": n_images, "repeats": repeats,
        "precision": method.ctx.features.precision,
        "plain_s": plain, "predict_s": predict, "loop_s": looped,
        "plain_img_per_s": n_images / plain, "predict_img_per_s": n_images / predict,
        "loop_img_per_s": None if looped is None else n_images / looped,
        "loop_windows_timed": loop_windows or "all",
        "ratio_predict_vs_plain": predict / plain,
        "speedup_vs_loop": None if looped is None else looped / predict,
        "flops": flop_floor(backbone, method.options.scales),
    }
    return out


def report(r: dict) -> str:
    f = r["flops"]
    lines = [
        f"WinCLIP predict() throughput — {r['model']} ({r['weights']}), {r['device_name']}, "
        f"{r['precision']}, {r['images']} image(s), best of {r['repeats']}, torch threads {r['torch_threads']}",
        f"  plain encoder pass : {r['plain_img_per_s']:9.4g} img/s  ({f['plain_tokens']} tokens/img, "
        f"{f['plain_gflop']:.1f} GFLOP/img)",
        f"  WinCLIP predict()  : {r['predict_img_per_s']:9.4g} img/s  ({f['windows_tokens']} tokens/img, "
        f"{f['windows_gflop']:.1f} GFLOP/img)",
    ]
    if r["loop_s"] is not None:
        how = ("all windows" if r["loop_windows_timed"] == "all" else
               f"timed on {r['loop_windows_timed']} windows per scale, scaled to all")
        lines.append(f"  per-window loop    : {r['loop_img_per_s']:9.4g} img/s  (features only, one window per call; "
                     f"{how})")
    lines += [
        f"  predict / plain time ratio : {r['ratio_predict_vs_plain']:.2f}x  (target <= 3x; "
        f"FLOP floor {f['ratio']:.2f}x)",
        f"  -> {'within' if r['ratio_predict_vs_plain'] <= 3 else 'NOT within'} 3x of the plain pass; "
        f"the floor alone is {'below' if f['ratio'] <= 3 else 'above'} 3x",
    ]
    if r["speedup_vs_loop"] is not None:
        lines.append(f"  batched vs per-window loop : {r['speedup_vs_loop']:.2f}x faster")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.winclip_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")
    p.add_argument("--images", type=int, default=None, help="images per timing (default 1 on CPU, 32 on GPU)")
    p.add_argument("--repeats", type=int, default=None, help="timings per path, best kept (default 1 CPU, 3 GPU)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPU only)")
    p.add_argument("--no-loop", action="store_true", help="skip the per-window loop timing")
    p.add_argument("--loop-windows", type=int, default=None,
                   help="windows per scale timed in the loop, scaled to all (default 12 on CPU, all on GPU; 0 = all)")
    p.add_argument("--json", help="also write the numbers to this file")
    a = p.parse_args(argv)
    gpu = resolve_device(a.device).type == "cuda"
    loop_windows = a.loop_windows if a.loop_windows is not None else (0 if gpu else 12)
    r = run(a.model, a.device, a.images or (32 if gpu else 1), a.repeats or (3 if gpu else 1), a.batch_size,
            a.amp, loop=not a.no_loop, loop_windows=loop_windows)
    print(report(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
