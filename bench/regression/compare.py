"""Compare two sets of records (commit to commit, run to run): deltas, flags, exit status.

``python run_bench.py compare BASE HEAD`` where each side is

* a results folder (a path holding ``records/``),
* a run id (a sub-folder of ``--results-root``, default ``results/``), or
* a git commit (hash prefix or ref such as ``HEAD~1``): the records whose
  ``provenance.git.commit`` is that commit, searched in ``--results-dir``
  (repeatable; default: every results folder under the results root). The
  same cell found in several folders: the latest record (``time_utc``) wins.

Only ``ok`` records carry numbers. All deltas are HEAD - BASE in percentage
points (records store fractions).

Cell level (one seed): a metric is flagged ``drop`` when delta < -tol.

Table level (method, dataset, shots, variant, metric): the dataset figure of
a seed is the mean over the categories present on BOTH sides with the metric
defined on both, so a category that appears on one side never moves it.
When both sides have the same seeds the comparison is paired:
``d_s = head_s - base_s``, delta = mean(d), SE = std(d, ddof=1)/sqrt(n);
otherwise it is unpaired: delta = mean(head) - mean(base),
SE = sqrt(var_h/n_h + var_b/n_b) (ddof=1, Welch). The noise band is z * SE
(z = 2 by default, about a 95 % band for a normal mean; with 2-5 seeds it is
a rule of thumb, not a test). SE needs at least two seeds on each side (two
pairs when paired); without it the noise band is unknown.

A table row is a *regression* when its delta < -tol AND (delta < -z * SE, or
SE is unknown). A drop within the seeds' noise passes; a drop within the
tolerance passes.

Other outcomes that make the exit status 1 (CI gates): a cell that was ``ok``
in BASE and failed or is missing in HEAD (``--allow-missing`` relaxes the
missing part), cells whose records are not comparable (different metric
version, backbone, weights, protocol or dataset fingerprint;
``--allow-mismatch`` compares them anyway and says so), and in ``--strict``
mode any cell metric that moved by more than tol in either direction (the
deterministic smoke gate: any change is a real change). Cells only in HEAD
are listed as new and never fail.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
from tabulate import tabulate

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import STATUS_OK, CellKey, Record, RecordStore

DEFAULT_TOL = 0.5  # percentage points
DEFAULT_Z = 2.0
METRIC_ORDER = ("pixel_auroc", "image_auroc", "aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max")


# -- sides -------------------------------------------------------------------------------------
@dataclass
class Side:
    """One side of a comparison: its records (one per cell) and where they came from."""

    spec: str
    kind: str  # "folder", "run", "commit", "records"
    source: str
    records: list[Record]

    @property
    def by_cell(self) -> dict[CellKey, Record]:
        return {r.cell: r for r in self.records}

    def describe(self) -> str:
        commits = sorted({short_commit(r) for r in self.records})
        shown = ", ".join(commits[:3]) + (f" (+{len(commits) - 3} more)" if len(commits) > 3 else "")
        return f"`{self.spec}` ({self.kind}: {self.source}; {len(self.records)} record(s); commit {shown or '?'})"


def short_commit(r: Record) -> str:
    g = (r.provenance or {}).get("git") or {}
    c = g.get("commit") or "unknown"
    c = c[:10] if c != "unknown" else c
    return c + ("+dirty" if g.get("dirty") else "")


def _time(r: Record) -> str:
    return str((r.provenance or {}).get("time_utc") or "")


def results_folders(root: str | Path) -> list[Path]:
    """Every results folder (one holding ``records/``) at depth 0-2 under ``root``."""
    root = Path(root)
    found = [p.parent for pat in ("records", "*/records", "*/*/records") for p in root.glob(pat) if p.is_dir()]
    return sorted(set(found))


def _latest(records: Iterable[Record]) -> list[Record]:
    best: dict[CellKey, Record] = {}
    for r in records:
        k = r.cell
        if k not in best or _time(r) > _time(best[k]):
            best[k] = r
    return [best[k] for k in sorted(best, key=lambda c: (c.method, c.dataset, c.category, c.shots, c.seed))]


def _git_resolve(ref: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_side(spec: str, results_dirs: Sequence[str | Path] | None = None,
              results_root: str | Path = "results", what: str = "side") -> Side:
    """Resolve BASE or HEAD: results folder, then run id, then git commit (see the module doc)."""
    p = Path(spec)
    if p.is_dir():
        if not (p / "records").is_dir():
            raise ConfigError(f"{what} {spec!r}: folder has no records/ sub-folder; give a results folder "
                              f"(the --results-dir of a run), a run id under {results_root}/, or a commit")
        return Side(spec, "folder", str(p), RecordStore(p).records())
    run = Path(results_root) / spec
    if "/" not in spec and (run / "records").is_dir():
        return Side(spec, "run", str(run), RecordStore(run).records())
    folders = [Path(d) for d in results_dirs] if results_dirs else results_folders(results_root)
    missing = [str(d) for d in folders if not (Path(d) / "records").is_dir()]
    if missing:
        raise ConfigError(f"--results-dir {', '.join(missing)}: no records/ sub-folder there")
    full = _git_resolve(spec)
    prefix = (full or spec).lower()
    if len(prefix) < 4 or any(ch not in "0123456789abcdef" for ch in prefix):
        raise ConfigError(f"{what} {spec!r} is not a results folder, not a run id under {results_root}/ "
                          f"and not a git commit; give one of those three")
    recs = [r for d in folders for r in RecordStore(d)
            if str(((r.provenance or {}).get("git") or {}).get("commit") or "").lower().startswith(prefix)]
    if not recs:
        where = ", ".join(map(str, folders)) or f"(no results folders under {results_root}/)"
        raise ConfigError(f"{what} {spec!r}: no records made at commit {prefix[:12]} in {where}; "
                          f"pass --results-dir with the folder that holds them")
    return Side(spec, "commit", prefix[:12] + " in " + ", ".join(map(str, folders)), _latest(recs))


def side_from_records(records: Iterable[Record], name: str = "records") -> Side:
    return Side(name, "records", name, _latest(records))


# -- comparability -----------------------------------------------------------------------------
def _bb(r: Record) -> tuple:
    b = r.backbone or {}
    return (b.get("model"), b.get("pretrained"), b.get("weights_fingerprint"))


def _proto(r: Record) -> tuple:
    p = r.protocol or {}
    return (p.get("version"), p.get("eval_size"), p.get("sigma_used"), p.get("max_test_images"))


# check name -> (what it covers, getter); records that differ in any checked field are not compared
COMPARABILITY: dict[str, tuple[str, Callable[[Record], Any]]] = {
    "metric_version": ("metric version", lambda r: r.metric_version),
    "backbone": ("backbone (model, pretrained, weights fingerprint)", _bb),
    "protocol": ("protocol (version, eval_size, sigma, max_test_images)", _proto),
    "dataset": ("dataset fingerprint", lambda r: (r.dataset or {}).get("fingerprint")),
}


def mismatches(base: Record, head: Record, checks: Sequence[str] | None = None) -> list[tuple[str, Any, Any]]:
    """(description, base value, head value) of every comparability check that differs."""
    names = COMPARABILITY if checks is None else checks
    return [(COMPARABILITY[n][0], COMPARABILITY[n][1](base), COMPARABILITY[n][1](head)) for n in names
            if COMPARABILITY[n][1](base) != COMPARABILITY[n][1](head)]


# -- the comparison ------------------------------------------------------------------------------
@dataclass
class Comparison:
    base: Side
    head: Side
    tol: float
    z: float
    strict: bool
    allow_missing: bool
    allow_mismatch: bool
    cells: pd.DataFrame  # one row per (cell, variant, metric) compared
    tables: pd.DataFrame  # one row per (method, dataset, shots, variant, metric)
    only_base: list[CellKey] = field(default_factory=list)
    only_head: list[CellKey] = field(default_factory=list)
    failed_head: list[tuple[CellKey, str]] = field(default_factory=list)
    fixed_head: list[CellKey] = field(default_factory=list)
    mismatched: list[tuple[CellKey, list[tuple[str, Any, Any]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.tables[self.tables["regression"]] if len(self.tables) else self.tables

    @property
    def cell_drops(self) -> pd.DataFrame:
        return self.cells[self.cells["delta"] < -self.tol] if len(self.cells) else self.cells

    @property
    def cell_changes(self) -> pd.DataFrame:
        return self.cells[self.cells["delta"].abs() > self.tol] if len(self.cells) else self.cells

    def reasons(self) -> list[str]:
        """Why the comparison fails (empty = pass)."""
        out = []
        if len(self.regressions):
            out.append(f"{len(self.regressions)} table figure(s) fell beyond tolerance ({self.tol:g} pp) "
                       f"and beyond the seeds' noise")
        if self.strict and len(self.cell_changes):
            out.append(f"{len(self.cell_changes)} cell metric(s) changed by more than {self.tol:g} pp "
                       f"(strict: the run is deterministic, so any change is real)")
        if self.failed_head:
            out.append(f"{len(self.failed_head)} cell(s) ok in base did not succeed in head")
        if self.only_base and not self.allow_missing:
            out.append(f"{len(self.only_base)} cell(s) of base are missing in head")
        if self.mismatched and not self.allow_mismatch:
            out.append(f"{len(self.mismatched)} cell(s) are not comparable (different metric version, backbone, "
                       f"protocol or data); not compared")
        return out

    @property
    def ok(self) -> bool:
        return not self.reasons()

    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_markdown(self, all_cells: bool = False, max_list: int = 50) -> str:
        return render_markdown(self, all_cells=all_cells, max_list=max_list)


def _metric_names(base: Record, head: Record, variant: str, metrics: Sequence[str] | None) -> list[str]:
    names = set(base.metrics.get(variant, {})) & set(head.metrics.get(variant, {}))
    if metrics:
        names &= set(metrics)
    order = {m: i for i, m in enumerate(METRIC_ORDER)}
    return sorted(names, key=lambda m: (order.get(m, len(order)), m))


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def table_stats(base: dict[int, float], head: dict[int, float], z: float) -> dict[str, Any]:
    """Delta and noise of one dataset figure from per-seed values (in pp) on each side.

    Paired (same seed sets): mean and SE of per-seed differences; else Welch (see module doc).
    """
    b = {s: v for s, v in base.items() if not math.isnan(v)}
    h = {s: v for s, v in head.items() if not math.isnan(v)}
    out: dict[str, Any] = {"base": float("nan"), "head": float("nan"), "delta": float("nan"),
                           "se": float("nan"), "paired": False, "n_base": len(b), "n_head": len(h)}
    if not b or not h:
        return out
    bs, hs = pd.Series(b), pd.Series(h)
    out["base"], out["head"] = float(bs.mean()), float(hs.mean())
    if set(b) == set(h):
        d = hs - bs.reindex(hs.index)
        out["paired"] = True
        out["delta"] = float(d.mean())
        if len(d) >= 2:
            out["se"] = float(d.std(ddof=1) / math.sqrt(len(d)))
    else:
        out["delta"] = out["head"] - out["base"]
        if len(b) >= 2 and len(h) >= 2:
            out["se"] = float(math.sqrt(bs.var(ddof=1) / len(bs) + hs.var(ddof=1) / len(hs)))
    out["band"] = z * out["se"] if not math.isnan(out["se"]) else float("nan")
    return out


def compare(base: Side, head: Side, tol: float = DEFAULT_TOL, z: float = DEFAULT_Z,
            metrics: Sequence[str] | None = None, strict: bool = False, allow_missing: bool = False,
            allow_mismatch: bool = False, checks: Sequence[str] | None = None) -> Comparison:
    """Compare two sides cell by cell and table by table (see the module doc for the rules).

    ``checks``: the comparability checks to apply (names of ``COMPARABILITY``; default all).
    """
    if tol < 0 or z < 0:
        raise ConfigError(f"--tol ({tol}) and --z ({z}) must be >= 0")
    bad = sorted(set(checks or ()) - set(COMPARABILITY))
    if bad:
        raise ConfigError(f"comparability check(s) {bad} unknown; known: {sorted(COMPARABILITY)}")
    B, H = base.by_cell, head.by_cell
    cmp = Comparison(base, head, tol, z, strict, allow_missing, allow_mismatch,
                     pd.DataFrame(), pd.DataFrame())
    ok_b = {k for k, r in B.items() if r.status == STATUS_OK}
    ok_h = {k for k, r in H.items() if r.status == STATUS_OK}
    cmp.only_base = sorted((k for k in ok_b if k not in H), key=_ck)
    cmp.only_head = sorted((k for k in H if k not in B), key=_ck)
    cmp.failed_head = sorted(((k, H[k].status) for k in ok_b if k in H and k not in ok_h), key=lambda t: _ck(t[0]))
    cmp.fixed_head = sorted((k for k in ok_h if k in B and k not in ok_b), key=_ck)
    rows = []
    for k in sorted(ok_b & ok_h, key=_ck):
        rb, rh = B[k], H[k]
        mm = mismatches(rb, rh, checks)
        if mm:
            cmp.mismatched.append((k, mm))
            if not allow_mismatch:
                continue
        if rb.config_hash and rh.config_hash and rb.config_hash != rh.config_hash:
            cmp.notes.append(f"{k}: config hash differs ({rb.config_hash} -> {rh.config_hash}): method options "
                             f"or their defaults changed")
        for v in [v for v in rb.metrics if v in rh.metrics]:
            for m in _metric_names(rb, rh, v, metrics):
                vb, vh = _num(rb.metrics[v][m]) * 100, _num(rh.metrics[v][m]) * 100
                rows.append({"method": k.method, "dataset": k.dataset, "category": k.category, "shots": k.shots,
                             "seed": k.seed, "variant": v, "metric": m, "base": vb, "head": vh,
                             "delta": vh - vb, "mismatch": bool(mm)})
    cols = ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base", "head", "delta", "mismatch"]
    cells = pd.DataFrame(rows, columns=cols)
    cmp.cells = cells
    trows = []
    gkeys = ["method", "dataset", "shots", "variant", "metric"]
    for g, sub in cells.groupby(gkeys, sort=True):
        # categories defined on both sides for every seed of this figure
        both = sub.dropna(subset=["base", "head"])
        base_ps = both.groupby("seed")["base"].mean().to_dict()
        head_ps = both.groupby("seed")["head"].mean().to_dict()
        st = table_stats(base_ps, head_ps, z)
        d, band = st["delta"], st.get("band", float("nan"))
        beyond_tol = bool(d < -tol)
        beyond_noise = None if math.isnan(band) else bool(d < -band)
        trows.append({**dict(zip(gkeys, g)), **st, "n_categories": both["category"].nunique(),
                      "beyond_tol": beyond_tol, "beyond_noise": beyond_noise,
                      "regression": beyond_tol and beyond_noise is not False})
    tcols = gkeys + ["base", "head", "delta", "se", "band", "paired", "n_base", "n_head", "n_categories",
                     "beyond_tol", "beyond_noise", "regression"]
    tables = pd.DataFrame(trows, columns=tcols)
    order = {m: i for i, m in enumerate(METRIC_ORDER)}
    if len(tables):
        tables["_o"] = tables["metric"].map(lambda m: order.get(m, len(order)))
        tables = tables.sort_values(["method", "dataset", "shots", "variant", "_o", "metric"]).drop(columns="_o")
    cmp.tables = tables.reset_index(drop=True)
    dirty = [s for s in (base, head) if any(((r.provenance or {}).get("git") or {}).get("dirty") for r in s.records)]
    for s in dirty:
        cmp.notes.insert(0, f"side `{s.spec}` holds records made from a working tree with uncommitted changes")
    return cmp


def _ck(k: CellKey) -> tuple:
    return (k.method, k.dataset, k.category, k.shots, k.seed)


# -- rendering ------------------------------------------------------------------------------------
def _f(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def _cells_list(keys: Sequence[CellKey], max_list: int) -> list[str]:
    out = [f"- {k}" for k in keys[:max_list]]
    if len(keys) > max_list:
        out.append(f"- ... and {len(keys) - max_list} more")
    return out


def render_markdown(c: Comparison, all_cells: bool = False, max_list: int = 50) -> str:
    reasons = c.reasons()
    L = ["# Comparison", "", f"- base: {c.base.describe()}", f"- head: {c.head.describe()}",
         f"- deltas are head - base in percentage points; tolerance {c.tol:g} pp; noise band {c.z:g} x SE over "
         f"seeds (paired by seed when both sides have the same seeds)" + ("; strict: any cell change fails"
                                                                         if c.strict else ""),
         "", f"**Verdict: {'FAIL' if reasons else 'PASS'}**" + ("" if reasons else " (no regression)")]
    L += [f"- {r}" for r in reasons]
    if c.mismatched:
        L += ["", "## Not comparable" + (" (compared anyway: --allow-mismatch)" if c.allow_mismatch else
                                         " (not compared)")]
        groups: dict[tuple, list[CellKey]] = {}
        for k, mm in c.mismatched:
            for name, vb, vh in mm:
                groups.setdefault((name, repr(vb), repr(vh)), []).append(k)
        for (name, vb, vh), ks in groups.items():
            L.append(f"- {name}: base {vb} vs head {vh} in {len(ks)} cell(s), e.g. {ks[0]}")
    L += ["", "## Tables (dataset figure: mean over categories, then over seeds)", ""]
    if len(c.tables):
        rows = []
        for _, t in c.tables.iterrows():
            flags = []
            if t["regression"]:
                flags.append("**REGRESSION**")
            elif t["beyond_tol"]:
                flags.append("drop within noise")
            if t["delta"] > c.tol:
                flags.append("gain")
            noise = "paired" if t["paired"] else "unpaired"
            rows.append([t["method"], t["dataset"], t["shots"], t["variant"], t["metric"], _f(t["base"]),
                         _f(t["head"]), _f(t["delta"], True), _f(t["band"]),
                         f"{t['n_base']}/{t['n_head']} {noise}", t["n_categories"], " ".join(flags)])
        L.append(_md(rows, ["method", "dataset", "shots", "variant", "metric", "base", "head", "Δ",
                            "noise band", "seeds", "categories", "flags"]))
    else:
        L.append("(no cell in common)")
    changed = c.cells if all_cells else c.cell_changes
    title = "all cells" if all_cells else f"cells that moved by more than {c.tol:g} pp"
    L += ["", f"## Cells ({title}: {len(changed)} of {len(c.cells)} cell metrics)", ""]
    if len(changed):
        rows = [[r["method"], r["dataset"], r["category"], r["shots"], r["seed"], r["variant"], r["metric"],
                 _f(r["base"]), _f(r["head"]), _f(r["delta"], True),
                 "drop" if r["delta"] < -c.tol else ("gain" if r["delta"] > c.tol else "")]
                for _, r in changed.head(max_list * 4).iterrows()]
        L.append(_md(rows, ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base", "head",
                            "Δ", "flag"]))
        if len(changed) > max_list * 4:
            L.append(f"\n... and {len(changed) - max_list * 4} more rows")
    if c.failed_head:
        L += ["", f"## Ok in base, not ok in head ({len(c.failed_head)})", ""]
        L += [f"- {k}: {st}" for k, st in c.failed_head[:max_list]]
    if c.only_base:
        L += ["", f"## Only in base: missing in head ({len(c.only_base)})", ""] + _cells_list(c.only_base, max_list)
    if c.only_head:
        L += ["", f"## Only in head: new ({len(c.only_head)})", ""] + _cells_list(c.only_head, max_list)
    if c.fixed_head:
        L += ["", f"## Not ok in base, ok in head ({len(c.fixed_head)})", ""] + _cells_list(c.fixed_head, max_list)
    if c.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in c.notes[:max_list]]
        if len(c.notes) > max_list:
            L.append(f"- ... and {len(c.notes) - max_list} more")
    return "\n".join(L) + "\n"


# -- committed baselines and the smoke gate ------------------------------------------------------
BASELINES_DIR = Path("results") / "baselines"
GATE_TOL = 1e-3  # pp: the smoke run is deterministic on CPU; float noise moves AUROC by far less
# PNG bytes (hence the size-based dataset fingerprint) may differ between zlib builds while pixels do not;
# the gate's strict cell check catches any change in the data that matters
GATE_CHECKS = ("metric_version", "backbone", "protocol")


def run_preset(preset: str, results_dir: str | Path, cache_dir: str | Path | None = None,
               force: bool = False, log: Callable[[str], None] | None = None):
    """Run a preset sweep into ``results_dir`` (local executor, the CLI's path); returns its summary."""
    from fsadbench.run import sweep
    from fsadbench.run.config import build_config

    overrides: dict[str, Any] = {"results_dir": str(results_dir)}
    if cache_dir is not None:
        overrides["cache_dir"] = str(cache_dir)
    cfg = build_config(preset, None, overrides)
    return sweep(cfg, "local", force=force, log=log)


def gate(preset: str, head_dir: str | Path, baseline_dir: str | Path | None = None,
         tol: float = GATE_TOL) -> Comparison:
    """Compare a fresh run of ``preset`` (in ``head_dir``) with its committed baseline, strictly.

    Cells of the baseline must be present and unchanged; cells new in head are listed, never fail.
    """
    base_dir = Path(baseline_dir) if baseline_dir else BASELINES_DIR / preset
    base = load_side(str(base_dir), what="baseline")
    if not base.records:
        raise ConfigError(f"baseline {base_dir} holds no records; create it with "
                          f"`python run_bench.py baseline --preset {preset}`")
    head = load_side(str(head_dir), what="head")
    return compare(base, head, tol=tol, strict=True, checks=GATE_CHECKS)


def write_baseline(preset: str, out: str | Path | None = None, cache_dir: str | Path | None = None,
                   log: Callable[[str], None] | None = None):
    """Run ``preset`` from scratch into ``out`` (default results/baselines/<preset>); returns (summary, folder).

    The previous baseline is kept aside and put back when the run fails or any cell fails.
    """
    import shutil

    out = Path(out) if out else BASELINES_DIR / preset
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    try:
        summary = run_preset(preset, out, cache_dir, force=True, log=log)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if old.exists():
            old.rename(out)
        raise
    if summary.failed:
        shutil.rmtree(out, ignore_errors=True)
        if old.exists():
            old.rename(out)
    elif old.exists():
        shutil.rmtree(old)
    return summary, out
