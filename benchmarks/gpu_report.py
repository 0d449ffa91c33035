"""Figures, extrapolation and the printed report of ``python -m benchmarks.gpu_protocol``."""

from __future__ import annotations

from statistics import mean
from typing import Any, Sequence

from fsadbench.results.records import STATUS_OK

#: the APT Table 1 protocol: dataset -> (categories, test images); KolektorSDD's test part is its
#: 25 % split of 399 images (approximate); CVC is ColonDB
PROTOCOL_DATASETS = {"mvtec": (15, 1725), "visa": (12, 2162), "mpdd": (6, 458), "sdd": (1, 100),
                     "cvc-colondb": (1, 380)}
PROTOCOL_SHOTS = 3
PROTOCOL_SEEDS = 5
PROTOCOL_METHODS = 5


def method_figures(recs: Sequence[Any], wall: float) -> dict[str, Any]:
    """Per-cell means and the two rates the extrapolation uses, from one sweep's records and wall time."""
    ok = [r for r in recs if r.status == STATUS_OK]
    if not ok:
        return {"cells": len(recs), "ok": 0, "wall_s": wall}
    fits: dict[tuple, float] = {}  # one fit per job: per category, or per dataset for dataset-scope methods
    for r in ok:
        scope = r.method.get("fit_scope", "category")
        fits[(r.key["shots"], r.key["seed"], r.key["category"] if scope == "category" else "*")] = \
            r.timings.get("fit_s", 0.0)
    tests = sum(r.n_test for r in ok)
    return {
        "cells": len(recs), "ok": len(ok), "wall_s": wall, "precision": ok[0].backbone.get("precision"),
        "fit_scope": ok[0].method.get("fit_scope", "category"),
        "fit_s_per_cell": mean(r.timings.get("fit_s", 0.0) for r in ok),
        "predict_s_per_cell": mean(r.timings.get("predict_s", 0.0) for r in ok),
        "eval_s_per_cell": mean(r.timings.get("eval_s", 0.0) for r in ok),
        "fits": len(fits), "fit_s_per_fit": mean(fits.values()), "test_images_evaluated": tests,
        "encoded_images": sum(int(r.encoder.get("encoded", 0)) for r in ok),
        "rest_s_per_test_image": max(0.0, wall - sum(fits.values())) / max(1, tests),
    }


def extrapolate(methods: dict[str, dict[str, Any]], a: Any) -> dict[str, Any]:
    """GPU-hours of the whole protocol per method and precision (EXTRAPOLATED; module constants)."""
    per: dict[str, dict[str, float]] = {}
    for m, by_prec in methods.items():
        for prec, f in by_prec.items():
            if "fit_s_per_fit" not in f:
                continue
            one = sum((n_cat if f["fit_scope"] == "category" else 1) * f["fit_s_per_fit"]
                      + n_test * f["rest_s_per_test_image"] for n_cat, n_test in PROTOCOL_DATASETS.values())
            per.setdefault(prec, {})[m] = one * PROTOCOL_SHOTS * PROTOCOL_SEEDS / 3600.0
    total = {p: {"gpu_hours": sum(v.values()), "methods": sorted(v),
                 "complete": len(v) == PROTOCOL_METHODS} for p, v in per.items()}
    return {"extrapolated": True, "datasets": PROTOCOL_DATASETS, "shots": PROTOCOL_SHOTS,
            "seeds_measured": len(a.seeds), "seeds_extrapolated_to": PROTOCOL_SEEDS,
            "gpu_hours_per_method": per, "total": total,
            "model": "per dataset: fits x fit time per fit + test images x (sweep wall - fits) per test image; "
                     "x 3 shots x 5 seeds; a cold feature cache per method, so encoding is over-counted"}


def _fmt_bytes(n: Any) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def _status(c: dict[str, Any]) -> str:
    st = c.get("check", {})
    return st.get("status", "?") + (f" ({st['why']})" if "why" in st else "")


def print_report(out: dict[str, Any]) -> None:
    d = out["data"]
    cats = d["categories"]
    print(f"gpu_protocol: {out['model']} with {'RANDOM weights (--pretrained none): times only, no accuracy' if out['random_weights'] else out['pretrained']}"
          f"{' [REDUCED mode]' if out['reduced'] else ''}")
    print(f"device: {out['device']} ({out['device_name']}), torch {out['torch']}; data: {len(cats)} MVTec-sized "
          f"stand-in(s), {d['test_images']} test images at {d['image_size']} px (generated in {d['generation_s']:.1f} s, "
          f"not timed); eval {out['args']['eval_size']} px; shots {out['args']['shots']}, seeds {out['args']['seeds']}")
    enc = out["encoder"]
    parts = [f"{p} {e['images_per_s']:.1f} images/s (batch {e['batch']}, {e['image_size']} px)" if "images_per_s" in e
             else f"{p} {_status({'check': e})}" for p, e in enc.items()]
    print("encoder (image tower only, batch already on the device): " + ("; ".join(parts) or "not measured"))
    unit = "GPU" if out["device"].startswith("cuda") else "CPU"
    print(f"{'method':<9} {'prec':<5} {'cells':>5} {'fit/cell':>9} {'pred/cell':>9} {'eval/cell':>9} {'wall':>8} "
          f"{'build':>6} {'encoded':>7} {'GPU peak':>10} {unit + '-h (extrap.)*':>16}")
    hours = out.get("protocol", {}).get("gpu_hours_per_method", {})
    for m, by_prec in out["methods"].items():
        for prec, f in by_prec.items():
            if "fit_s_per_cell" not in f:
                print(f"{m:<9} {prec:<5} {_status({'check': f}) if 'status' in f else 'no ok cell: ' + str(f.get('failures'))}")
                continue
            h = hours.get(prec, {}).get(m)
            print(f"{m:<9} {prec:<5} {f['ok']:>2}/{f['cells']:<2} {f['fit_s_per_cell']:8.2f}s {f['predict_s_per_cell']:8.2f}s "
                  f"{f['eval_s_per_cell']:8.2f}s {f['wall_s']:7.1f}s {f['backbone_build_s']:5.1f}s "
                  f"{f['encoded_images']:>7} {_fmt_bytes(f['gpu_peak_bytes']):>10} {h if h is None else round(h, 3):>16}")
    pr = out.get("protocol", {})
    for prec, t in pr.get("total", {}).items():
        print(f"* protocol {prec}: {t['gpu_hours']:.3f} {unit}-hours on this device, EXTRAPOLATED from {pr['seeds_measured']} measured "
              f"seed(s) to {pr['seeds_extrapolated_to']}, 5 datasets x {len(t['methods'])} method(s)"
              f"{'' if t['complete'] else ' (INCOMPLETE: not all 5 methods measured)'} x 3 shots "
              f"(datasets {', '.join(f'{k} {c}/{n}' for k, (c, n) in pr['datasets'].items())} categories/test images)")
    ch = out["checks"]
    me = ch.get("cuda_metrics_equal_cpu")
    if me:
        cuda = f"{me['cuda_s']:.2f} s" if me.get("cuda_s") is not None else "n/a"
        print(f"metric engine, {me['category']} ({me['test_images']} maps at {me['eval_size']} px): "
              f"CPU {me['cpu_s']:.2f} s, CUDA {cuda}")
    print("checks:")
    if me:
        print(f"  CUDA metrics == CPU metrics (exact): {_status(me)} {'; '.join(me['check'].get('differences', []))}")
    bf = ch.get("bf16_maps_within_tol")
    if bf:
        extra = f", max relative deviation {bf['max_rel_dev']:.2e}" if "max_rel_dev" in bf else ""
        print(f"  bf16 maps within {bf['tolerance']} of the fp32 range: {_status(bf)}{extra}")
        for k, v in bf.get("per_method", {}).items():
            print(f"    {k}: max |bf16 - fp32| {v['max_abs_dev']:.3e} over range {v['fp32_range']:.3e}"
                  f" = {v['rel_dev']:.2e}")
    ex = ch.get("gpus_executor_equals_local")
    if ex:
        print(f"  gpus executor records == local records ({ex['cells']} cell(s); wall local "
              f"{ex['wall_s']['local']:.1f} s, gpus {ex['wall_s']['gpus']:.1f} s): {_status(ex)}"
              f"{' differing: ' + ', '.join(ex['differences']) if ex['differences'] else ''}"
              f"{' failed: ' + ', '.join(ex['failed_local']) if ex['failed_local'] else ''}")
    mc = ch.get("map_copies_per_batch")
    if mc:
        print(f"  host<->device map copies <= 1 per batch ({mc['method']}, {mc['category']}, {mc['device']}): "
              f"{_status(mc)}; {mc['predictions']} prediction(s) in {mc['batches']} batch(es), "
              f"{mc['per_batch_copies']} per-batch map copies ({mc['excess']} beyond one per batch), "
              f"{mc['compute_copies']} in compute(), {mc['mask_copies']} mask copies")
    if out["skipped_blocks"]:
        print(f"skipped at the deadline: {', '.join(out['skipped_blocks'])}")
    print(f"elapsed {out['elapsed_s']:.1f} s")
