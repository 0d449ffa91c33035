"""Figures (matplotlib, Agg backend; every figure is written as PNG and PDF).

* :func:`category_bars` — per-category bar chart of a metric for one dataset
  and shot count: one bar per method x variant, height = mean over seeds,
  error bar = std over seeds (ddof=0, as in the tables); from records.
* :func:`qualitative_grid` — the papers' qualitative figure: one row per test
  image of a category, columns image | ground truth | each method's map (every
  variant of each method), from one fit per method
  (:func:`fsadbench.run.fit.fitted_method`). Maps go through the
  evaluation protocol's post-processing (bilinear upsampling to ``eval_size``,
  Gaussian with the run's sigma or the method's paper sigma) and are drawn
  over the image with one colour scale per column (min-max over the images
  shown), so a column compares images, not methods.

Images shown: anomalous test images evenly spaced over the category's list
(all when fewer than asked), normal ones only when there is no anomalous one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fsadbench.results.aggregate import METRIC_LABELS, per_category, records_frame
from fsadbench.core.errors import ConfigError
from fsadbench.core.io import atomic_write_bytes
from fsadbench.results.records import Record


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=150, format=fmt)
    return buf.getvalue()


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """``fig`` rendered in memory (then closed), e.g. to embed it in the HTML report."""
    try:
        return _render(fig, fmt)
    finally:
        pyplot().close(fig)


def save_figure(fig, path: str | Path) -> list[Path]:
    """``fig`` as PNG and PDF beside ``path`` (its suffix dropped), rendered in memory, then each file written
    atomically (:func:`fsadbench.core.io.atomic_write_bytes`: never a partial figure, one-line errors)."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix.lower() in (".png", ".pdf") else p
    out = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    try:
        data = [_render(fig, o.suffix[1:]) for o in out]
    finally:
        pyplot().close(fig)
    for o, d in zip(out, data):
        atomic_write_bytes(o, d)
    return out


# -- bar charts from records -------------------------------------------------------------------
def category_bars(records: Iterable[Record], dataset: str, shots: int, path: str | Path,
                  metric: str = "pixel_auroc", variants: Sequence[str] | None = None) -> list[Path]:
    """Per-category bars (mean ± std over seeds, %) of every method x variant; returns the files written."""
    return save_figure(bars_figure(records, dataset, shots, metric, variants), path)


def bars_figure(records: Iterable[Record], dataset: str, shots: int, metric: str = "pixel_auroc",
                variants: Sequence[str] | None = None):
    """The figure of :func:`category_bars` (y axis from 0 to 100 %: bar heights compare honestly)."""
    df = records_frame(records)
    df = df[(df["dataset"] == dataset) & (df["shots"] == shots)]
    if variants:
        df = df[df["variant"].isin(variants)]
    if df.empty:
        raise ConfigError(f"figures bars: no successful records for {dataset}, {shots}-shot"
                          + (f", variants {list(variants)}" if variants else ""))
    pc = per_category(df, metric).dropna(subset=["mean"])
    if pc.empty:
        raise ConfigError(f"figures bars: {metric} is undefined in every category of {dataset}")
    cats = sorted(pc["category"].unique())
    series = list(dict.fromkeys(zip(pc["label"], pc["variant"])))
    plt = pyplot()
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(cats) * len(series) + 2.0), 3.4))
    for i, (lab, v) in enumerate(series):
        sub = pc[(pc["label"] == lab) & (pc["variant"] == v)].set_index("category").reindex(cats)
        xs = np.arange(len(cats)) + (i - (len(series) - 1) / 2) * width
        ax.bar(xs, sub["mean"].to_numpy(), width, yerr=sub["std"].fillna(0).to_numpy(), capsize=2,
               label=f"{lab} {v}")
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels(cats, rotation=45 if len(cats) > 4 else 0, ha="right" if len(cats) > 4 else "center")
    ax.set_ylim(0.0, 100.0)  # bars start at 0: a cut axis exaggerates differences
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (%)")
    random = bool(df["random_weights"].any())
    ax.set_title(f"{dataset}, {shots}-shot" + ("\n(RANDOM weights: pipeline check)" if random else ""), fontsize=9)
    ax.legend(fontsize=7, ncol=min(3, len(series)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# -- qualitative grid from fitted methods ------------------------------------------------------------
def pick_images(test, n: int) -> list:
    """n anomalous test samples evenly spaced over the list (normals when there is no anomalous one)."""
    pool = [s for s in test if s.label == 1] or list(test)
    if len(pool) <= n:
        return pool
    idx = np.linspace(0, len(pool) - 1, n).round().astype(int)
    return [pool[i] for i in sorted(set(idx.tolist()))]


def qualitative_grid(res, methods, dataset, category: str, shots: int, seed: int, path: str | Path,
                     n_images: int = 4) -> list[Path]:
    """Image | ground truth | every method x variant map, one row per test image; returns the files written.

    ``res`` is a :class:`fsadbench.run.resources.Resources`; ``methods`` are MethodSpecs, ``dataset`` a DatasetSpec.
    """
    import torch
    from PIL import Image

    from fsadbench.protocol.evaluator import gt_mask, postprocess
    from fsadbench.protocol.sampler import image_ref
    from fsadbench.run.fit import fitted_method
    from fsadbench.run.identity import smoothing_for

    size = res.cfg.protocol.eval_size
    columns: list[tuple[str, np.ndarray]] = []  # (title, maps n x size x size)
    samples = None
    for spec in methods:
        method, split = fitted_method(res, spec, dataset, category, shots, seed)
        if samples is None:
            samples = pick_images(split.test, n_images)
            if not samples:
                raise ConfigError(f"figures grid: {dataset.name}/{category} has no test images")
        with torch.no_grad():
            preds = method.predict([image_ref(s) for s in samples])
        sigma = smoothing_for(res.cfg.protocol, type(method))
        for v, p in preds.items():
            columns.append((f"{spec.display} {v}", postprocess(p.maps, size, sigma, samples).numpy()))
    images = [np.asarray(Image.open(s.image_path).convert("RGB").resize((size, size), Image.BICUBIC))
              for s in samples]
    masks = [gt_mask(s, size) for s in samples]
    note = " (RANDOM backbone: pipeline check)" if res.backbone.is_random else ""
    return save_figure(draw_grid(images, masks, [s.defect_type for s in samples], columns,
                                 f"{dataset.name}/{category}, {shots}-shot, seed {seed}{note}"), path)


def draw_grid(images: Sequence[np.ndarray | None], masks: Sequence[np.ndarray], row_labels: Sequence[str],
              columns: Sequence[tuple[str, np.ndarray]], title: str):
    """The grid figure: image | ground truth | one column per (title, n x S x S maps); an image may be None."""
    plt = pyplot()
    ncol = 2 + len(columns)
    n = len(masks)
    fig, axes = plt.subplots(n, ncol, figsize=(1.6 * ncol, 1.6 * n + 0.4), squeeze=False)
    for r in range(n):
        if images[r] is not None:
            axes[r][0].imshow(images[r])
        axes[r][1].imshow(masks[r], cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(row_labels[r], fontsize=7)
        for c, (_, maps) in enumerate(columns):
            lo, hi = float(maps.min()), float(maps.max())
            ax = axes[r][2 + c]
            if images[r] is not None:
                ax.imshow(images[r])
            ax.imshow((maps[r] - lo) / (hi - lo) if hi > lo else np.zeros_like(maps[r]), cmap="jet",
                      alpha=0.5 if images[r] is not None else 1.0, vmin=0, vmax=1)
    for c, t in enumerate(["image", "ground truth"] + [t for t, _ in columns]):
        axes[0][c].set_title(t, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
