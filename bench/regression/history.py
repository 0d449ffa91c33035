"""A metric over commits for one method and dataset: a table and a plot.

``python run_bench.py history --method apt --dataset mvtec [--shots 1] [--variant "w/ VG"]
[--metric pixel_auroc] [--results-dir DIR ...] [--plot history.png]``

Records carry ``provenance.git.commit`` (+ ``dirty``) and ``time_utc``. Every
results folder given (default: every folder under ``results/`` holding
``records/``, baselines included) is scanned. The comparability rules of
``compare`` and ``report`` apply: records are split by *setup* (metric
version, backbone, protocol: eval size, sigma, test-image cap; the fields a
results folder must not mix), and points of different setups are never pooled
(each setup is its own line and row, labelled A, B, ...; the note names what
differs). The records of one commit and setup form one point per (shots,
variant): the dataset figure of a seed is the mean over categories, the point
is mean ± std over seeds (as in the tables; one seed prints "n = 1"). The
planned categories and seeds are those of the setup's records (as in
``report``); a point over fewer is marked and its note names what is missing
and why. The same cell found twice at one commit and setup: the latest record
counts. Records made from a dirty tree form their own point
(``<commit>+dirty``). Commits are ordered by the time of their earliest record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from fsadbench.core.errors import ConfigError
from fsadbench.core.gitinfo import commit_subject
from fsadbench.regression.sources import latest_per_cell, record_time, scan_folders
from fsadbench.results.aggregate import METRIC_LABELS
from fsadbench.results.comparability import RUN_CHECKS, short_commit
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import STATUS_OK, Record, RecordStore


def _subject(commit: str) -> str:
    """The commit's subject line when git knows it here, else ''.

    ``commit`` comes from a record file: anything but 4-40 hex digits is never handed to git, and the
    id goes after ``--end-of-options`` (a record cannot smuggle in an option such as ``--output=F``).
    """
    c = commit.split("+")[0]
    return "" if c == "unknown" else commit_subject(c)


def setup_of(r: Record) -> tuple:
    """What must match for two history points to be compared (the rules of a results folder)."""
    return tuple(get(r) for _, get in RUN_CHECKS.values())


def _setup_fields(r: Record) -> dict[str, str]:
    b, p = r.backbone or {}, r.protocol or {}
    return {"metric version": str(r.metric_version), "backbone": f"{b.get('model')} / {b.get('pretrained')}",
            "weights": str(b.get("weights_fingerprint")), "precision": str(b.get("precision", "fp32")),
            "protocol version": str(p.get("version")), "eval_size": str(p.get("eval_size")),
            "sigma": str(p.get("sigma")), "max_test_images": str(p.get("max_test_images"))}


def describe_setups(examples: dict[str, Record]) -> list[str]:
    """One line per setup label naming only the fields in which the setups differ."""
    fields = {label: _setup_fields(r) for label, r in examples.items()}
    names = [n for n in next(iter(fields.values()), {}) if len({f[n] for f in fields.values()}) > 1]
    return [f"setup {label}: " + ", ".join(f"{n} {f[n]}" for n in names) for label, f in fields.items()]


def history_frame(records: Iterable[Record], method: str, dataset: str, metric: str = "pixel_auroc",
                  shots: Sequence[int] | None = None, variant: str | None = None) -> pd.DataFrame:
    """One row per (commit, setup, shots, variant): time, mean, std (%), n_seeds, n_cells, coverage.

    ``method`` matches a method id (``apt[la=false]``) or, when no id matches, a method name run
    with a single id. Records are first split by setup (:func:`setup_of`: metric version, backbone,
    protocol with eval size, sigma and test-image cap), labelled A, B, ... in time order: points of two
    setups are never pooled, and at one commit each setup is its own point. Within a setup the plan
    (categories, seeds) is the union of its records' plans, as in ``report``: a point over fewer
    categories or seeds carries the coverage note naming what is missing (``coverage``, '' when
    complete). ``DataFrame.attrs["setups"]`` describes the setups when there are several.
    """
    recs = [r for r in records if r.key["dataset"] == dataset]
    by_id = [r for r in recs if r.key["method"] == method]
    recs = by_id or [r for r in recs if (r.method or {}).get("name") == method]
    ids = sorted({r.key["method"] for r in recs})
    if len(ids) > 1:
        raise ConfigError(f"history --method {method!r} matches several method ids ({', '.join(ids)}); "
                          f"give one of them")
    if shots:
        recs = [r for r in recs if r.key["shots"] in set(shots)]
    recs.sort(key=record_time)
    labels: dict[tuple, str] = {}
    examples: dict[str, Record] = {}
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in recs:
        setup = setup_of(r)
        if setup not in labels:
            labels[setup] = chr(ord("A") + len(labels)) if len(labels) < 26 else f"S{len(labels) + 1}"
            examples[labels[setup]] = r
        groups.setdefault((short_commit(r), labels[setup]), []).append(r)
    of_setup = {lab: [r for r in recs if labels[setup_of(r)] == lab] for lab in examples}
    rows = []
    for (commit, lab), rs in groups.items():
        rs = latest_per_cell(rs)
        ok = [r for r in rs if r.status == STATUS_OK]
        if not ok:
            continue
        t = min(record_time(r) for r in rs)
        point = ResultSet(rs, plans_from=of_setup[lab])  # the plan: every record of the setup
        mid = ok[0].key["method"]
        for k in sorted({r.key["shots"] for r in ok}):
            variants = list(dict.fromkeys(v for r in ok if r.key["shots"] == k for v in r.metrics))
            for v in variants if not variant else [x for x in variants if x == variant]:
                fig = point.dataset_figure(mid, dataset, k, v, metric)
                if fig is None:
                    continue
                cov = fig.coverage
                rows.append({"commit": commit, "setup": lab, "time": t, "shots": int(k), "variant": v,
                             "mean": fig.mean, "std": fig.std, "n_seeds": fig.n_seeds, "n_cells": len(ok),
                             "methods": (ok[0].method or {}).get("label") or mid,
                             "coverage": "" if cov is None or cov.complete else cov.describe()})
    cols = ["commit", "setup", "time", "shots", "variant", "mean", "std", "n_seeds", "n_cells", "methods", "coverage"]
    out = pd.DataFrame(rows, columns=cols)
    out = out.sort_values(["time", "commit", "setup", "shots", "variant"]).reset_index(drop=True)
    out.attrs["setups"] = describe_setups(examples) if len(examples) > 1 else []
    return out


def _figure_text(mean: float, std: float, n_seeds: int) -> str:
    return f"{mean:.2f} (n = 1)" if n_seeds == 1 else f"{mean:.2f} ± {std:.2f}"


def history_markdown(h: pd.DataFrame, method: str, dataset: str, metric: str, subjects: bool = True) -> str:
    """Rows = (commit, setup) points (oldest first), columns = (shots, variant) figures; marks [a], [b], ...
    on incomplete figures with their coverage notes, and one line per setup when there are several."""
    title = f"**{METRIC_LABELS.get(metric, metric)} (%) of {method} on {dataset} over commits**"
    if h.empty:
        return f"{title}\n\n(no records)\n"
    setups = list(h.attrs.get("setups") or [])
    series = list(dict.fromkeys(zip(h["shots"], h["variant"])))
    points = list(dict.fromkeys(zip(h["commit"], h["setup"])))
    body, notes = [], []
    for c, lab in points:
        sub = h[(h["commit"] == c) & (h["setup"] == lab)]
        row = [c] + ([lab] if setups else []) + [str(sub["time"].iloc[0])[:19]]
        if subjects:
            row.append(_subject(c)[:60])
        for k, v in series:
            hit = sub[(sub["shots"] == k) & (sub["variant"] == v)]
            if not len(hit):
                row.append("–")
                continue
            x = hit.iloc[0]
            text = _figure_text(x["mean"], x["std"], int(x["n_seeds"]))
            if x["coverage"]:
                mark = chr(ord("a") + len(notes)) if len(notes) < 26 else str(len(notes) + 1)
                notes.append(f"> [{mark}] {c}{f' setup {lab}' if setups else ''}, {k}-shot {v}: {x['coverage']}")
                text += f" [{mark}]"
            row.append(text)
        body.append(row)
    headers = (["commit"] + (["setup"] if setups else []) + ["time (UTC)"] + (["subject"] if subjects else [])
               + [f"{k}-shot {v}" for k, v in series])
    lines = ["> mean ± std over seeds of the dataset figure (mean over categories); oldest commit first."]
    if setups:
        lines.append("> SETUPS DIFFER: figures of different setups are not comparable (never pooled): "
                     + "; ".join(setups) + ".")
    lines += notes
    table = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)
    return f"{title}\n\n" + "\n".join(lines) + "\n\n" + table + "\n"


def plot_history(h: pd.DataFrame, path: str | Path, method: str, dataset: str, metric: str) -> list[Path]:
    """Line plot with error bars (std over seeds), one line per (shots, variant); writes PNG and PDF."""
    from fsadbench.reports.figures import pyplot, save_figure

    plt = pyplot()
    if h.empty:
        raise ConfigError(f"history: no records of {method} on {dataset} to plot")
    commits = list(dict.fromkeys(h["commit"]))
    x = {c: i for i, c in enumerate(commits)}
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(commits) + 2), 3.2))
    several = len(set(h["setup"])) > 1
    for (k, v, lab), sub in h.groupby(["shots", "variant", "setup"], sort=True):  # setups never joined
        ax.errorbar([x[c] for c in sub["commit"]], sub["mean"], yerr=sub["std"], marker="o", capsize=3,
                    label=f"{k}-shot {v}" + (f" (setup {lab})" if several else ""))
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
