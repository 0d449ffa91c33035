"""Speed and agreement of FastRecon's batched, chunked closed form against plain loops, on the same features.

    python -m benchmarks.fastrecon_speed               # MVTec-size: 4 shots, 100 test images, WRN-50 widths, CPU
    python -m benchmarks.fastrecon_speed --quick       # tiny sizes (the test runs this)
    python -m benchmarks.fastrecon_speed --device cuda --images 400

Features are post-ReLU-like random numbers (``relu(N(0, 1))``) already embedded: 4 shots and ``--images``
test images of 1536 x 28 x 28 (WRN-50 layer2 + layer3 at 224 px). The support coreset (ratio 0.01 of the
shots' rows, the official README's) and mu are fitted once; each side then scores every test image:

* ``ours``: :func:`fsadbench.methods.fastrecon.torch_model.residual_map` (the inverse of S S^T from the fit,
  query rows of several images per matrix product, pieces of at most ``--chunk`` entries) and the max.
* ``per-image``: the official test step (``main.py`` l. 389-410) as a loop over images: (1 + lambda) S S^T
  and its inverse, W, Q_hat and the residual norms for one image at a time.
* ``per-position``: one solve per test position (the regression row by row), on the first
  ``--position-images`` images only; its ratio compares the time per image.

The sides alternate ``--repeats`` times; reported are the median wall (and process CPU) seconds, the ratio
plain / ours, the max |map difference| of ours and of the plain loop against float64, and the growth of the
peak resident memory during each side's first run (``ru_maxrss`` only grows: a later side's figure is its
growth beyond the earlier ones).
"""

from __future__ import annotations

import argparse
import json

import torch

from fsadbench.methods.fastrecon.torch_model import (CORESET_RATIO, DEFAULT_CHUNK, LAMBDA, fit_reconstructor,
                                                     residual_map)

from benchmarks.timing import interleaved


def plain_per_image(tests: torch.Tensor, support: torch.Tensor, mean: torch.Tensor, lam: float) -> torch.Tensor:
    """main.py l. 389-402 image by image: inverse of (1 + lam) S S^T, W, Q_hat = W S, norms of |Q - Q_hat|."""
    maps = []
    for emb in tests:
        q = emb.flatten(1).T
        gram = support @ support.T
        w = (q @ support.T + lam * (mean @ support.T)) @ torch.linalg.inv(gram + lam * gram)
        maps.append(torch.norm(torch.abs(q - w @ support), dim=1).reshape(emb.shape[1:]))
    return torch.stack(maps)


def plain_per_position(tests: torch.Tensor, support: torch.Tensor, mean: torch.Tensor, lam: float) -> torch.Tensor:
    """The regression solved row by row: for each position, (1 + lam) S S^T w = S (q + lam mu), q_hat = w S."""
    gram = (1.0 + lam) * (support @ support.T)
    maps = torch.empty(tests.shape[0], tests.shape[2] * tests.shape[3], device=tests.device)
    for i, emb in enumerate(tests):
        q = emb.flatten(1).T
        for p in range(q.shape[0]):
            w = torch.linalg.solve(gram, support @ (q[p] + lam * mean[p]))
            maps[i, p] = torch.linalg.vector_norm(q[p] - w @ support)
    return maps.reshape(tests.shape[0], *tests.shape[2:])


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    side, dim = (6, 48) if args.quick else (28, 1536)
    shots = torch.randn(args.shots, dim, side, side, generator=g).relu_().to(device)
    tests = torch.randn(args.images, dim, side, side, generator=g).relu_().to(device)
    rec = fit_reconstructor(shots, args.ratio, args.lam)
    s, mu = rec.support.to(device), rec.mean.to(device)
    n_pos = min(args.position_images, args.images)
    fns = {"ours": lambda: residual_map(tests, rec, args.chunk),
           "per-image": lambda: plain_per_image(tests, s, mu, args.lam),
           "per-position": lambda: plain_per_position(tests[:n_pos], s, mu, args.lam)}
    runs = dict(zip(fns, interleaved(list(fns.values()), args.repeats, device)))
    n = min(args.check, args.images)
    exact = plain_per_image(tests[:n].double(), s.double(), mu.double(), args.lam)
    ours = runs["ours"]
    out: dict = {"device": str(device), "threads": torch.get_num_threads(), "support": list(s.shape),
                 "queries": [args.images * side * side, dim], "chunk": args.chunk,
                 "ours_s": ours["wall"], "ours_cpu_s": ours["cpu"], "peak_growth_mib": ours["peak"]}
    print(f"{args.shots} shots, {args.images} test images of {dim} x {side} x {side}; support {s.shape[0]} rows "
          f"(ratio {args.ratio}), lambda {args.lam:g}, chunk {args.chunk} entries, device {device}")
    print(f"{'ours':13s} {ours['wall']:8.3f} s (CPU {ours['cpu']:.3f} s)   peak +{ours['peak']:.1f} MiB   "
          f"max |diff| vs float64 on {n} images {(ours['out'][:n].double() - exact).abs().max().item():.2e}")
    for name, images in (("per-image", args.images), ("per-position", n_pos)):
        r = runs[name]
        scale = args.images / images  # per-image time ratio
        ratio, ratio_cpu = r["wall"] * scale / ours["wall"], r["cpu"] * scale / ours["cpu"]
        diff = (r["out"] - ours["out"][:images]).abs().max().item()
        out[name] = {"plain_s": r["wall"], "plain_cpu_s": r["cpu"], "images": images, "ratio": ratio,
                     "ratio_cpu": ratio_cpu, "max_abs_diff": diff, "peak_growth_mib": r["peak"]}
        print(f"{name:13s} {r['wall']:8.3f} s (CPU {r['cpu']:.3f} s) on {images} images   ratio per image "
              f"{ratio:7.2f}x (CPU {ratio_cpu:.2f}x)   max |diff| vs ours {diff:.2e}   peak +{r['peak']:.1f} MiB")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--shots", type=int, default=4)
    p.add_argument("--images", type=int, default=None, help="test images (default 100, quick 3)")
    p.add_argument("--position-images", type=int, default=2, help="images the per-position loop scores")
    p.add_argument("--ratio", type=float, default=CORESET_RATIO, help="coreset ratio (official README: 0.01)")
    p.add_argument("--lam", type=float, default=LAMBDA, help="lambda (official main.py l. 453: 2)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="query entries per piece of ours")
    p.add_argument("--repeats", type=int, default=3, help="alternate runs of each side (medians reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--check", type=int, default=2, help="images also scored in float64 as the exact value")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.images is None:
        args.images = 3 if args.quick else 100
    if args.quick and args.ratio == CORESET_RATIO:
        args.ratio = 0.1  # 4 x 36 rows: 14 support rows
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
