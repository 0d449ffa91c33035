"""RegAD's Gaussian: the chunked, position-batched fit and Mahalanobis scoring against the official plain
per-position loop (``test.py`` l. 150-157, 199-205: per position ``torch.cov`` + 0.01 I, its inverse, the
distance of every test image), in this process on the same random features.

    python -m benchmarks.regad_speed                # ResNet-18 size: 2 shots x 22 views, 448 x 56 x 56, 8 test images
    python -m benchmarks.regad_speed --quick        # tiny sizes (the test runs this)
    python -m benchmarks.regad_speed --shots 8 --device cuda

Features are post-ReLU-like random numbers (``relu(N(0, 1))``). The two sides run alternately
``--repeats`` times; reported: the median wall seconds of each, the ratio plain / ours, the max |distance
difference| between them, and the working memory of ours' chunk (``--chunk`` positions: the centred
samples and one n x n inverse per position, never C x C per position as the official cov tensor is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fsadbench.methods.regad.torch_model import N_AUGMENTED, fit_gaussian, loop_mahalanobis, mahalanobis


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--channels", type=int, default=448)  # 64 + 128 + 256 (ResNet-18 layer1-3)
    p.add_argument("--grid", type=int, default=56)  # layer1 of a 224 px input
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: 1 shot, 32 channels, 6 x 6 grid")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    a = p.parse_args(argv)
    if a.quick:
        a.shots, a.channels, a.grid, a.images, a.chunk, a.repeats = 1, 32, 6, 3, 7, 2
    return a


def timed(fn) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    out = fn()
    if out.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main(argv=None) -> dict:
    a = parse(argv)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    n = a.shots * N_AUGMENTED
    train = torch.randn(n, a.channels, a.grid, a.grid, generator=g).relu().to(dev)
    test = torch.randn(a.images, a.channels, a.grid, a.grid, generator=g).relu().to(dev)

    def ours():
        return mahalanobis(test, fit_gaussian(train, chunk=a.chunk), chunk=a.chunk)

    def plain():
        return loop_mahalanobis(train, test)

    o_times, p_times = [], []
    for _ in range(a.repeats):
        t, mo = timed(ours)
        o_times.append(t)
        t, mp = timed(plain)
        p_times.append(t)
    o, p = statistics.median(o_times), statistics.median(p_times)
    chunk_mb = min(a.chunk, a.grid * a.grid) * (n * a.channels + n * n) * 8 / 2 ** 20
    out = {"device": str(dev), "samples": n, "channels": a.channels, "positions": a.grid * a.grid,
           "test_images": a.images, "chunk": a.chunk, "ours_s": o, "plain_s": p, "ratio": p / o,
           "max_abs_diff": float((mo - mp).abs().max()), "chunk_mb": chunk_mb,
           "official_cov_mb": a.channels * a.channels * a.grid * a.grid * 4 / 2 ** 20}
    print(f"regad gaussian on {dev}: {n} samples ({a.shots} shot(s) x {N_AUGMENTED} views) x {a.channels} channels "
          f"x {a.grid} x {a.grid} positions, {a.images} test images")
    print(f"  ours (chunked, batched) {o:.3f} s; plain per-position loop {p:.3f} s; ratio plain / ours "
          f"{p / o:.1f}x; max |difference| {out['max_abs_diff']:.2e}")
    print(f"  working memory of one chunk of {a.chunk} positions: {chunk_mb:.1f} MB (the official C x C x H x W "
          f"covariance: {out['official_cov_mb']:.0f} MB)")
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
