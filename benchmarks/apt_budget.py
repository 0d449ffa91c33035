"""Benchmark: how far do APT's learned contexts move, and what does the training budget buy?

    python -m benchmarks.apt_budget                          # tiny random model, CPU, a few minutes
    python -m benchmarks.apt_budget --budgets 1x1,10x1 --seeds 0

The paper gives "100 epochs" and nothing about what an epoch holds. APT's
``steps_per_epoch`` (Adam steps per epoch) and ``synth_per_shot`` (synthetic
samples per shot in each step's batch) make the budget explicit. For each
budget "STEPSxSAMPLES" this fits APT (w/o VG, the paper's other defaults) on
1 shot of each synthetic category and seed, and prints

* the context movement: ||p_end - p_start|| / ||p_start|| per context group
  (prefix G, normal N, abnormal A), mean over fits;
* the final L_ano and the w/o VG pixel AUROC on the synthetic test images
  (maps upsampled and smoothed as the harness evaluates them), mean over fits;
* the fit time.

With the tiny RANDOM backbone the AUROC only says whether the learned prompts
separate noised from clean features of this encoder; it is a budget probe, not
a result. Run it with ``--model ViT-B-16-plus-240 --pretrained FILE`` on a GPU
for the real encoder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

CATEGORIES = ("disc", "stripes")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.apt_budget", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fsad-tiny-vit")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--budgets", default="1x1,1x4,4x1,10x1",
                   help="comma list of STEPS_PER_EPOCHxSYNTH_PER_SHOT (default 1x1 = the method's default)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", default="0")
    p.add_argument("--categories", default=",".join(CATEGORIES))
    p.add_argument("--image-size", type=int, default=120)
    p.add_argument("--test-images", type=int, default=8, help="anomalous test images per category (+ half normal)")
    p.add_argument("--eval-size", type=int, default=120)
    p.add_argument("--device", default="cpu")
    return p


def parse_budgets(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        steps, _, samples = item.strip().lower().partition("x")
        out.append((int(steps), int(samples or 1)))
    return out


def context_movement(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> dict[str, float]:
    """||end - start|| / ||start|| per context group."""
    return {k: float((end[k] - start[k]).norm() / start[k].norm()) for k in start}


def _fit_one(ctx, info, shots, test, masks, steps: int, samples: int, epochs: int, eval_size: int):
    from fsadbench.methods.apt.model import APT
    from fsadbench.protocol.evaluator import postprocess
    from fsadbench.protocol.metrics import auroc

    kept: dict[str, dict[str, torch.Tensor]] = {}

    class Probe(APT):
        def _init_params(self, gen):
            params = super()._init_params(gen)
            kept["start"] = {k: v.detach().clone() for k, v in params.items()}
            kept["live"] = params  # Adam updates these tensors in place
            return params

    m = Probe(ctx, epochs=epochs, meta_rounds=min(5, epochs), steps_per_epoch=steps, synth_per_shot=samples)
    t0 = time.perf_counter()
    m.fit(shots, info)
    seconds = time.perf_counter() - t0
    pred = m.predict(test)["w/o VG"]
    maps = postprocess(pred.maps, eval_size, APT.default_sigma).numpy()
    end = {k: v.detach() for k, v in kept["live"].items()}
    return {"move": context_movement(kept["start"], end), "l_ano": m.history.ano[-1],
            "auroc": auroc(maps.reshape(-1), masks.reshape(-1)), "seconds": seconds}


def run(args: argparse.Namespace) -> list[dict]:
    from fsadbench.backbone.clip import Backbone, BackboneSpec
    from fsadbench.backbone.features import FeatureStore
    from fsadbench.datasets.synthetic import SyntheticDataset
    from fsadbench.protocol.evaluator import gt_mask
    from fsadbench.protocol.method import MethodContext
    from fsadbench.protocol.sampler import image_ref

    torch.set_num_threads(1)
    bb = Backbone(BackboneSpec(args.model, args.pretrained), device=args.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="apt_budget_") as tmp:
        ds = SyntheticDataset(root=Path(tmp) / "data", size=args.image_size, n_train=4,
                              n_test_good=max(1, args.test_images // 2), n_test_bad=args.test_images)
        store = FeatureStore(bb, cache_dir=Path(tmp) / "cache", batch_size=16)
        data = {}
        for cat in args.categories.split(","):
            split = ds.load(cat)
            masks = np.stack([gt_mask(s, args.eval_size) for s in split.test])
            data[cat] = (split.info, [image_ref(s) for s in split.train], [image_ref(s) for s in split.test], masks)
        for steps, samples in parse_budgets(args.budgets):
            fits = []
            for seed in [int(s) for s in args.seeds.split(",")]:
                ctx = MethodContext(backbone=bb, features=store, device=torch.device(args.device), seed=seed)
                for cat, (info, train, test, masks) in data.items():
                    fits.append(_fit_one(ctx, info, train[:1], test, masks, steps, samples, args.epochs,
                                         args.eval_size))
            groups = fits[0]["move"].keys()
            rows.append({"budget": f"{steps}x{samples}", "steps": args.epochs * steps,
                         **{f"move_{g}": float(np.mean([f["move"][g] for f in fits])) for g in groups},
                         "l_ano": float(np.mean([f["l_ano"] for f in fits])),
                         "auroc": float(np.mean([f["auroc"] for f in fits])),
                         "seconds": float(np.mean([f["seconds"] for f in fits]))})
    return rows


def report(rows: Sequence[dict]) -> str:
    keys = [k for k in rows[0] if k.startswith("move_")]
    head = ["budget", "Adam steps"] + [f"moved {k[5:]}" for k in keys] + ["L_ano end", "pixel AUROC w/o VG", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["budget"], str(r["steps"])] + [f"{100 * r[k]:.1f}%" for k in keys]
        cells += [f"{r['l_ano']:.4f}", f"{100 * r['auroc']:.2f}", f"{r['seconds']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    rows = run(args)
    print(f"APT training budget (STEPS_PER_EPOCH x SYNTH_PER_SHOT), {args.epochs} epochs, 1 shot, model "
          f"{args.model} ({args.pretrained}), categories {args.categories}, seeds {args.seeds}")
    print(report(rows))


if __name__ == "__main__":
    main()
