"""Speed and agreement of the memory-bank scoring against plain torch, on the same random features.

    python -m benchmarks.knn_speed                  # MVTec-size: 100 test images, 4-shot memories, CPU
    python -m benchmarks.knn_speed --quick          # tiny sizes (the test runs this)
    python -m benchmarks.knn_speed --device cuda --images 200

Three comparisons, each in this process on the same features (post-ReLU-like
random numbers: ``relu(N(0, 1))``), ours first, then the plain one:

* ``patchcore``: 4-shot WRN-50 memory (4 x 28 x 28 rows x 1536) against
  ``--images`` x 784 test patches. Ours: ``patch_scores`` + ``image_scores``
  (num_neighbors 9). Plain: per batch of ``--batch`` images, ``torch.cdist``
  + ``topk`` for the map, and anomalib's re-weighting with ``torch.cdist``.
* ``anomalydino``: 4 shots x 8 rotations x 32 x 32 DINOv2 ViT-S tokens
  (x 384) against ``--images`` x 1024 test tokens. Ours: ``patch_distances``
  + ``image_scores``. Plain: per batch, ``torch.cdist`` of the unit vectors,
  squared and halved (the reference's formula) + ``topk``, mean of the top 1 %.
* ``coreset``: the 4-shot PatchCore memory, ratio ``--ratio``. Ours:
  ``k_center_greedy`` on the projected rows; plain: anomalib's KCenterGreedy
  loop (``k_center_greedy.py`` l. 68-141, re-written here), same projection and
  start. Reported: the ratio and whether the selected indices are equal.
  The plain loop allocates an N x D difference every step; whether those
  come from a warm heap or from freshly mapped pages differs from process to
  process (measured on 2 CPU cores: 0.11-0.17 s against 0.5-0.8 s, the slow
  runs with ~150k more minor page faults), so run it a few times and read
  the lower plain time as its speed.

For each: ours and plain run alternately ``--repeats`` times (the machine
may be shared: interleaving spreads the noise over both); reported are the
median wall seconds and the median process CPU seconds of each side and the
ratio plain / ours of the medians (wall; CPU in brackets), the max |score
difference| (maps and image scores) between ours and plain, and of each
against the plain formula in float64 on the first ``--check`` images (which
of the two float32 results is the closer one), and the growth of the
process's peak resident memory during ours' first run and during plain's
(``ru_maxrss`` only grows, so plain's figure is the growth beyond ours).
For the two searches a third line times the bare matrix product of all
queries with the memory in ``--batch``-image pieces (``gemm``): any exact
method that ranks by the same products takes at least that long, so plain /
gemm is the ceiling of the ratio on this machine.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from fsadbench.methods.anomalydino.torch_model import image_scores as dino_image_scores
from fsadbench.methods.anomalydino.torch_model import patch_distances
from fsadbench.methods.common.knn import DEFAULT_BLOCK, jl_dimension, k_center_greedy, sparse_random_projection
from fsadbench.methods.patchcore.torch_model import image_scores as pc_image_scores
from fsadbench.methods.patchcore.torch_model import patch_scores

from benchmarks.timing import interleaved


def _gemm(queries: torch.Tensor, memory: torch.Tensor, rows: int):
    """The bare products of the queries with the memory, ``rows`` query rows at a time (the floor)."""
    return lambda: [torch.mm(queries[s:s + rows], memory.T) for s in range(0, queries.shape[0], rows)][-1]


def plain_patchcore(tests: torch.Tensor, memory: torch.Tensor, batch: int, num_neighbors: int = 9):
    """torch.cdist + topk per batch of images, anomalib's re-weighting (torch_model.py l. 385-442) with cdist."""
    maps, scores = [], []
    b_all, d, h, w = tests.shape
    for s in range(0, b_all, batch):
        emb = tests[s:s + batch].permute(0, 2, 3, 1).reshape(-1, h * w, d)
        b = emb.shape[0]
        dist, loc = torch.cdist(emb.reshape(-1, d), memory).topk(1, dim=1, largest=False)
        dist, loc = dist.reshape(b, -1), loc.reshape(b, -1)
        worst = dist.argmax(dim=1)
        rows = torch.arange(b)
        star, nearest = dist[rows, worst], memory[loc[rows, worst]]
        support = torch.cdist(nearest, memory).topk(num_neighbors, dim=1, largest=False).indices
        to_support = torch.cdist(emb[rows, worst].unsqueeze(1), memory[support]).squeeze(1)
        scores.append((1.0 - torch.softmax(to_support, dim=1)[:, 0]) * star)
        maps.append(dist.reshape(b, h, w))
    return torch.cat(maps), torch.cat(scores)


def plain_anomalydino(tokens: torch.Tensor, memory: torch.Tensor, batch: int):
    """cdist of unit vectors, squared / 2 = 1 - cos, topk 1, mean of the top 1 % per image."""
    mem = F.normalize(memory, dim=-1)
    dists, scores = [], []
    top = max(1, int(tokens.shape[1] * 0.01))
    for s in range(0, tokens.shape[0], batch):
        q = F.normalize(tokens[s:s + batch], dim=-1)
        d = (torch.cdist(q.reshape(-1, q.shape[-1]), mem) ** 2 / 2.0).topk(1, dim=1, largest=False).values
        d = d.reshape(q.shape[0], -1)
        dists.append(d)
        scores.append(d.topk(top, dim=1).values.mean(dim=1))
    return torch.cat(dists), torch.cat(scores)


def plain_greedy(features: torch.Tensor, size: int, start: int) -> list[int]:
    """anomalib KCenterGreedy.select_coreset_idxs after the projection (l. 68-141), plain."""
    min_d, idx, out = None, torch.tensor(start), [torch.tensor(start)]
    for _ in range(size - 1):
        d = torch.linalg.norm(features - features[idx].squeeze(), ord=2, dim=1, keepdim=True)
        min_d = d if min_d is None else torch.minimum(min_d, d)
        idx = torch.max(min_d.squeeze(1), dim=0)[1]
        min_d.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
        out.append(idx)
    return torch.stack(out).cpu().tolist()


def _line(name: str, ours: dict, plain: dict, extra: str) -> None:
    print(f"{name:12s} ours {ours['wall']:8.3f} s   plain {plain['wall']:8.3f} s   ratio "
          f"{plain['wall'] / ours['wall']:6.2f}x (CPU {ours['cpu']:.3f} / {plain['cpu']:.3f} s: "
          f"{plain['cpu'] / ours['cpu']:.2f}x)   {extra}")


def _floor(name: str, gemm: dict, plain: dict) -> dict:
    print(f"{name + ' gemm':12s} bare products {gemm['wall']:8.3f} s (CPU {gemm['cpu']:.3f} s): ceiling of the "
          f"ratio plain / gemm {plain['wall'] / gemm['wall']:.2f}x (CPU {plain['cpu'] / gemm['cpu']:.2f}x)")
    return {"gemm_s": gemm["wall"], "ceiling": plain["wall"] / gemm["wall"], "ceiling_cpu": plain["cpu"] / gemm["cpu"]}


def _summary(ours: dict, plain: dict) -> dict:
    return {"ours_s": ours["wall"], "plain_s": plain["wall"], "ratio": plain["wall"] / ours["wall"],
            "ours_cpu_s": ours["cpu"], "plain_cpu_s": plain["cpu"], "ratio_cpu": plain["cpu"] / ours["cpu"],
            "peak_growth_mib": [ours["peak"], plain["peak"]]}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(args.seed)
    out: dict = {"device": str(device), "threads": torch.get_num_threads()}
    side, dim, shots = (6, 32, 2) if args.quick else (28, 1536, 4)
    memory = torch.randn(shots * side * side, dim, generator=g).relu_().to(device)
    if "patchcore" in args.parts:
        _patchcore(args, g, device, memory, side, dim, out)
    if "anomalydino" in args.parts:
        _anomalydino(args, g, device, shots, out)
    if "coreset" in args.parts:
        _coreset(args, g, device, memory, dim, out)
    return out


def _vs64(pairs, exact, n: int) -> list[float]:
    return [max((a[:n].double() - exact[0]).abs().max().item(), (b[:n].double() - exact[1]).abs().max().item())
            for a, b in pairs]


def _report(name: str, args, runs: tuple, exact, memory_shape, queries: list[int], out: dict) -> None:
    """One k-NN comparison's tail: the largest difference of ours and plain (per-patch output and image
    scores), both against the float64 values ``exact(n)`` of the first n images, the summary, its printed
    line and the GEMM floor, stored under ``out[name]``."""
    r_ours, r_plain, r_gemm = runs
    ours, plain = r_ours["out"], r_plain["out"]
    diff = max((ours[0] - plain[0]).abs().max().item(), (ours[1] - plain[1]).abs().max().item())
    n = min(args.check, args.images)
    vs64 = _vs64((ours, plain), exact(n), n)
    out[name] = {**_summary(r_ours, r_plain), "max_abs_diff": diff, "max_abs_diff_vs_float64": vs64,
                 "memory": list(memory_shape), "queries": queries}
    _line(name, r_ours, r_plain, f"max |diff| {diff:.2e}; vs float64 on {n} images: "
                                 f"ours {vs64[0]:.2e}, plain {vs64[1]:.2e}")
    out[name].update(_floor(name, r_gemm, r_plain))


def _patchcore(args, g, device, memory, side, dim, out) -> None:
    tests = torch.randn(args.images, dim, side, side, generator=g).relu_().to(device)

    def ours():
        maps, idx = patch_scores(tests, memory, args.block)
        return maps, pc_image_scores(tests, memory, maps, idx, 9, args.block)

    rows = tests.permute(0, 2, 3, 1).reshape(-1, dim)
    r_ours, r_plain, r_gemm = interleaved((ours, lambda: plain_patchcore(tests, memory, args.batch),
                                            _gemm(rows, memory, args.batch * side * side)), args.repeats, device)
    _report("patchcore", args, (r_ours, r_plain, r_gemm),
            lambda n: plain_patchcore(tests[:n].double(), memory.double(), args.batch),
            memory.shape, [args.images * side * side, dim], out)


def _anomalydino(args, g, device, shots, out) -> None:
    grid, width = (4, 16) if args.quick else (32, 384)
    bank = torch.randn(shots * 8 * grid * grid, width, generator=g).to(device)
    tokens = torch.randn(args.images, grid * grid, width, generator=g).to(device)

    def ours():
        dist = patch_distances(tokens, bank, block=args.block)
        return dist, dino_image_scores(dist)

    unit_rows, unit_bank = F.normalize(tokens.reshape(-1, width), dim=-1), F.normalize(bank, dim=-1)
    r_ours, r_plain, r_gemm = interleaved((ours, lambda: plain_anomalydino(tokens, bank, args.batch),
                                            _gemm(unit_rows, unit_bank, args.batch * grid * grid)), args.repeats,
                                           device)
    _report("anomalydino", args, (r_ours, r_plain, r_gemm),
            lambda n: plain_anomalydino(tokens[:n].double(), bank.double(), args.batch),
            bank.shape, [args.images * grid * grid, width], out)


def _coreset(args, g, device, memory, dim, out) -> None:
    proj = sparse_random_projection(jl_dimension(memory.shape[0]), dim, g).to(device)
    feats = memory @ proj.T if proj.shape[0] < dim else memory
    size, start = int(memory.shape[0] * args.ratio), int(torch.randint(memory.shape[0], (1,), generator=g))
    r_ours, r_plain = interleaved((lambda: k_center_greedy(feats, size, start, args.block).tolist(),
                                    lambda: plain_greedy(feats, size, start)), args.repeats, device)
    same = r_ours["out"] == r_plain["out"]
    out["coreset"] = {**_summary(r_ours, r_plain), "equal_indices": same, "rows": list(feats.shape),
                      "selected": size}
    _line("coreset", r_ours, r_plain, f"{size} of {feats.shape[0]} rows x {feats.shape[1]}, same indices: {same}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--images", type=int, default=None, help="test images (default 100, quick 3)")
    p.add_argument("--batch", type=int, default=32, help="images per plain cdist call")
    p.add_argument("--ratio", type=float, default=0.1, help="coreset ratio (official run_patchcore.py l. 320)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="distance entries per block of ours")
    p.add_argument("--repeats", type=int, default=3, help="alternate runs of each side (medians reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--check", type=int, default=2, help="images also scored in float64 (plain) as the exact value")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.add_argument("--parts", default="patchcore,anomalydino,coreset", help="comma-separated comparisons to run")
    args = p.parse_args(argv)
    args.parts = set(args.parts.split(","))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.images is None:
        args.images = 3 if args.quick else 100
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
