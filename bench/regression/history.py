"""A metric over commits for one method and dataset: a table and a plot.

``python run_bench.py history --method apt --dataset mvtec [--shots 1] [--variant "w/ VG"]
[--metric pixel_auroc] [--results-dir DIR ...] [--plot history.png]``

Records carry ``provenance.git.commit`` (+ ``dirty``) and ``time_utc``. Every
results folder given (default: every folder under ``results/`` holding
``records/``, baselines included) is scanned; the records of one commit form
one point per (shots, variant): the dataset figure of a seed is the mean over
categories, the point is mean ± std over seeds (as in the tables). The same
cell found twice at one commit: the latest record counts. Records made from a
dirty tree form their own point (``<commit>+dirty``). Commits are ordered by
the time of their earliest record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from fsadbench.core.errors import ConfigError
from fsadbench.core.gitinfo import commit_subject
from fsadbench.regression.sources import latest_per_cell, scan_folders
from fsadbench.results.aggregate import METRIC_LABELS, records_frame, summary
from fsadbench.results.comparability import short_commit
from fsadbench.results.records import STATUS_OK, Record, RecordStore


def _subject(commit: str) -> str:
    """The commit's subject line when git knows it here, else ''.

    ``commit`` comes from a record file: anything but 4-40 hex digits is never handed to git, and the
    id goes after ``--end-of-options`` (a record cannot smuggle in an option such as ``--output=F``).
    """
    c = commit.split("+")[0]
    return "" if c == "unknown" else commit_subject(c)


def history_frame(records: Iterable[Record], method: str, dataset: str, metric: str = "pixel_auroc",
                  shots: Sequence[int] | None = None, variant: str | None = None) -> pd.DataFrame:
    """One row per (commit, shots, variant): time, mean, std (%), n_seeds, n_cells.

    ``method`` matches a method id (``apt[la=false]``) or, when no id matches, a method name run
    with a single id.
    """
    recs = [r for r in records if r.status == STATUS_OK and r.key["dataset"] == dataset]
    by_id = [r for r in recs if r.key["method"] == method]
    recs = by_id or [r for r in recs if (r.method or {}).get("name") == method]
    ids = sorted({r.key["method"] for r in recs})
    if len(ids) > 1:
        raise ConfigError(f"history --method {method!r} matches several method ids ({', '.join(ids)}); "
                          f"give one of them")
    if shots:
        recs = [r for r in recs if r.key["shots"] in set(shots)]
    groups: dict[str, list[Record]] = {}
    for r in recs:
        groups.setdefault(short_commit(r), []).append(r)
    rows = []
    for commit, rs in groups.items():
        rs = latest_per_cell(rs)
        t = min(str((r.provenance or {}).get("time_utc") or "") for r in rs)
        df = records_frame(rs)
        if variant:
            df = df[df["variant"] == variant]
        if df.empty:
            continue
        s = summary(df, metric)
        for (k, v), sub in s.groupby(["shots", "variant"]):
            rows.append({"commit": commit, "time": t, "shots": int(k), "variant": v,
                         "mean": float(sub["mean"].mean()), "std": float(sub["std"].mean()),
                         "n_seeds": int(sub["n_seeds"].max()), "n_cells": len(rs),
                         "methods": ", ".join(sorted(set(sub["method"])))})
    cols = ["commit", "time", "shots", "variant", "mean", "std", "n_seeds", "n_cells", "methods"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["time", "commit", "shots", "variant"]).reset_index(drop=True)


def history_markdown(h: pd.DataFrame, method: str, dataset: str, metric: str, subjects: bool = True) -> str:
    """Rows = commits (oldest first), columns = (shots, variant) figures."""
    title = f"**{METRIC_LABELS.get(metric, metric)} (%) of {method} on {dataset} over commits**"
    if h.empty:
        return f"{title}\n\n(no records)\n"
    series = list(dict.fromkeys(zip(h["shots"], h["variant"])))
    commits = list(dict.fromkeys(h["commit"]))
    body = []
    for c in commits:
        sub = h[h["commit"] == c]
        row = [c, str(sub["time"].iloc[0])[:19]]
        if subjects:
            row.append(_subject(c)[:60])
        for k, v in series:
            hit = sub[(sub["shots"] == k) & (sub["variant"] == v)]
            row.append(f"{hit['mean'].iloc[0]:.2f} ± {hit['std'].iloc[0]:.2f}" if len(hit) else "–")
        body.append(row)
    headers = ["commit", "time (UTC)"] + (["subject"] if subjects else []) + [f"{k}-shot {v}" for k, v in series]
    note = "> mean ± std over seeds of the dataset figure (mean over categories); oldest commit first."
    return f"{title}\n\n{note}\n\n" + tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True) + "\n"


def plot_history(h: pd.DataFrame, path: str | Path, method: str, dataset: str, metric: str) -> list[Path]:
    """Line plot with error bars (std over seeds), one line per (shots, variant); writes PNG and PDF."""
    from fsadbench.reports.figures import pyplot, save_figure

    plt = pyplot()
    if h.empty:
        raise ConfigError(f"history: no records of {method} on {dataset} to plot")
    commits = list(dict.fromkeys(h["commit"]))
    x = {c: i for i, c in enumerate(commits)}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(commits) + 2), 3.2))
    for (k, v), sub in h.groupby(["shots", "variant"], sort=True):
        ax.errorbar([x[c] for c in sub["commit"]], sub["mean"], yerr=sub["std"], marker="o", capsize=3,
                    label=f"{k}-shot {v}")
    ax.set_xticks(range(len(commits)))
    ax.set_xticklabels([c[:7] + ("+d" if c.endswith("+dirty") else "") for c in commits], rotation=45, ha="right")
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (%)")
    ax.set_title(f"{method} on {dataset}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def collect(results_dirs: Sequence[str | Path] | None, results_root: str | Path = "results") -> list[Record]:
    folders = scan_folders(results_dirs, results_root)
    if not folders:
        raise ConfigError(f"history: no results folders under {results_root}/; pass --results-dir")
    return [r for d in folders for r in RecordStore(d)]
