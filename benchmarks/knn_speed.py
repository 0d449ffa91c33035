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

For each: wall seconds (best of ``--repeats``), the ratio plain / ours, the
max |score difference| (maps and image scores) between ours and plain, and of
each against the plain formula in float64 on the first ``--check`` images
(which of the two float32 results is the closer one), and the growth of the
process's peak resident memory during ours and during plain (ours runs first;
``ru_maxrss`` only grows, so plain's figure is the growth beyond ours).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F

from fsadbench.methods.anomalydino.torch_model import image_scores as dino_image_scores
from fsadbench.methods.anomalydino.torch_model import patch_distances
from fsadbench.methods.common.knn import DEFAULT_BLOCK, jl_dimension, k_center_greedy, sparse_random_projection
from fsadbench.methods.patchcore.torch_model import image_scores as pc_image_scores
from fsadbench.methods.patchcore.torch_model import patch_scores


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeats: int, device: torch.device):
    best, out, before = float("inf"), None, _peak_mib()
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out, _peak_mib() - before


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


def _line(name: str, ours: float, plain: float, extra: str) -> None:
    print(f"{name:12s} ours {ours:8.3f} s   plain {plain:8.3f} s   ratio {plain / ours:6.2f}x   {extra}")


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


def _patchcore(args, g, device, memory, side, dim, out) -> None:
    tests = torch.randn(args.images, dim, side, side, generator=g).relu_().to(device)
    t_ours, (maps, idx), m_ours = _timed(lambda: patch_scores(tests, memory, args.block), args.repeats, device)
    t_img, scores, _ = _timed(lambda: pc_image_scores(tests, memory, maps, idx, 9, args.block), args.repeats, device)
    t_plain, (p_maps, p_scores), m_plain = _timed(lambda: plain_patchcore(tests, memory, args.batch), args.repeats,
                                                  device)
    diff = max((maps - p_maps).abs().max().item(), (scores - p_scores).abs().max().item())
    n = min(args.check, args.images)
    exact = plain_patchcore(tests[:n].double(), memory.double(), args.batch)
    vs64 = [max((a[:n].double() - exact[0]).abs().max().item(), (b[:n].double() - exact[1]).abs().max().item())
            for a, b in ((maps, scores), (p_maps, p_scores))]
    out["patchcore"] = {"ours_s": t_ours + t_img, "plain_s": t_plain, "ratio": t_plain / (t_ours + t_img),
                        "max_abs_diff": diff, "max_abs_diff_vs_float64": vs64, "peak_growth_mib": [m_ours, m_plain],
                        "memory": list(memory.shape), "queries": [args.images * side * side, dim]}
    _line("patchcore", t_ours + t_img, t_plain, f"max |diff| {diff:.2e}; vs float64 on {n} images: "
                                                f"ours {vs64[0]:.2e}, plain {vs64[1]:.2e}")


def _anomalydino(args, g, device, shots, out) -> None:
    grid, width = (4, 16) if args.quick else (32, 384)
    bank = torch.randn(shots * 8 * grid * grid, width, generator=g).to(device)
    tokens = torch.randn(args.images, grid * grid, width, generator=g).to(device)

    def ours_dino():
        dist = patch_distances(tokens, bank, block=args.block)
        return dist, dino_image_scores(dist)

    t_ours, (dist, d_scores), m_ours = _timed(ours_dino, args.repeats, device)
    t_plain, (p_dist, p_scores), m_plain = _timed(lambda: plain_anomalydino(tokens, bank, args.batch), args.repeats,
                                                  device)
    diff = max((dist - p_dist).abs().max().item(), (d_scores - p_scores).abs().max().item())
    n = min(args.check, args.images)
    exact = plain_anomalydino(tokens[:n].double(), bank.double(), args.batch)
    vs64 = [max((a[:n].double() - exact[0]).abs().max().item(), (b[:n].double() - exact[1]).abs().max().item())
            for a, b in ((dist, d_scores), (p_dist, p_scores))]
    out["anomalydino"] = {"ours_s": t_ours, "plain_s": t_plain, "ratio": t_plain / t_ours, "max_abs_diff": diff,
                          "max_abs_diff_vs_float64": vs64,
                          "peak_growth_mib": [m_ours, m_plain], "memory": list(bank.shape),
                          "queries": [args.images * grid * grid, width]}
    _line("anomalydino", t_ours, t_plain, f"max |diff| {diff:.2e}; vs float64 on {n} images: "
                                          f"ours {vs64[0]:.2e}, plain {vs64[1]:.2e}")


def _coreset(args, g, device, memory, dim, out) -> None:
    proj = sparse_random_projection(jl_dimension(memory.shape[0]), dim, g).to(device)
    feats = memory @ proj.T if proj.shape[0] < dim else memory
    size, start = int(memory.shape[0] * args.ratio), int(torch.randint(memory.shape[0], (1,), generator=g))
    t_ours, sel, _ = _timed(lambda: k_center_greedy(feats, size, start, args.block).tolist(), args.repeats, device)
    t_plain, p_sel, _ = _timed(lambda: plain_greedy(feats, size, start), args.repeats, device)
    out["coreset"] = {"ours_s": t_ours, "plain_s": t_plain, "ratio": t_plain / t_ours, "equal_indices": sel == p_sel,
                      "rows": list(feats.shape), "selected": size}
    _line("coreset", t_ours, t_plain, f"{size} of {feats.shape[0]} rows x {feats.shape[1]}, "
                                      f"same indices: {sel == p_sel}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--images", type=int, default=None, help="test images (default 100, quick 3)")
    p.add_argument("--batch", type=int, default=32, help="images per plain cdist call")
    p.add_argument("--ratio", type=float, default=0.1, help="coreset ratio (official run_patchcore.py l. 320)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="distance entries per block of ours")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--check", type=int, default=2, help="images also scored in float64 (plain) as the exact value")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.add_argument("--parts", default="patchcore,anomalydino,coreset", help="comma-separated comparisons to run")
    args = p.parse_args(argv)
    args.parts = set(args.parts.split(","))
    if args.images is None:
        args.images = 3 if args.quick else 100
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
