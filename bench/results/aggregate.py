"""Records -> pandas tables: per cell, per (dataset, seed) mean over categories, mean±std over seeds.

Metrics are stored as fractions; tables show percentages. The dataset figure
of a seed is the mean over categories (categories whose metric is undefined
are left out of that mean, and counted); mean ± std is over seeds (population
std, ddof=0, as numpy).
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from fsadbench.results.records import STATUS_OK, Record

METRICS = ("pixel_auroc", "image_auroc", "aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max")
METRIC_LABELS = {"pixel_auroc": "pixel AUROC", "image_auroc": "image AUROC", "aupro": "AUPRO",
                 "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
                 "image_ap": "image AP", "image_f1_max": "image F1-max"}


def records_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per (cell, variant) of the successful records."""
    rows = []
    for r in records:
        if r.status != STATUS_OK:
            continue
        for variant, m in r.metrics.items():
            row = {**r.key, "method_name": r.method.get("name"), "label": r.method.get("label") or r.key["method"],
                   "variant": variant, "random_weights": bool(r.backbone.get("random_weights")),
                   "backbone": r.backbone.get("model"), "metric_version": r.metric_version,
                   "encoded": r.encoder.get("encoded", 0), "total_s": r.timings.get("total_s")}
            for k in METRICS:
                row[k] = m.get(k)
            rows.append(row)
    cols = ["method", "dataset", "category", "shots", "seed", "method_name", "label", "variant", "random_weights",
            "backbone", "metric_version", "encoded", "total_s", *METRICS]
    df = pd.DataFrame(rows, columns=cols)
    for k in METRICS:
        df[k] = pd.to_numeric(df[k], errors="coerce")
    return df


def per_seed(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Dataset figure per seed: mean over categories (undefined categories skipped)."""
    keys = ["method", "label", "variant", "dataset", "shots", "seed"]
    g = df.groupby(keys, dropna=False)[metric]
    return g.mean().rename(metric).to_frame().join(g.count().rename("n_categories")).reset_index()


def summary(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """mean and std over seeds of the per-seed dataset figures (in %)."""
    ps = per_seed(df, metric)
    keys = ["method", "label", "variant", "dataset", "shots"]
    g = ps.groupby(keys, dropna=False)[metric]
    out = pd.DataFrame({"mean": g.mean() * 100, "std": g.std(ddof=0) * 100, "n_seeds": g.count()}).reset_index()
    return out


def per_category(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    keys = ["method", "label", "variant", "dataset", "category", "shots"]
    g = df.groupby(keys, dropna=False)[metric]
    return pd.DataFrame({"mean": g.mean() * 100, "std": g.std(ddof=0) * 100, "n_seeds": g.count()}).reset_index()
