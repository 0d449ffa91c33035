"""When two records' numbers may stand side by side, and what a results folder must hold.

A results folder holds ONE comparable run: every record of one method was
measured with the same backbone (family, model, pretrained weights, weights
fingerprint, precision; methods on their own backbones may differ from each
other: one backbone per method per folder), and every record with the same
metric version and the same protocol (protocol version, evaluation size,
configured sigma, test-image cap). Commits may differ; tables say which
(:func:`commit_summary`).

``CHECKS`` are the per-cell checks ``compare`` applies between two sides (the
protocol there uses the sigma the method actually used, and the dataset
fingerprint is checked too). ``RUN_CHECKS`` name the fields a folder must not
mix; :func:`run_identity` is what a run's configuration must match before it
writes into a folder.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

from fsadbench.results.records import Record


def backbone_family(r: Record) -> str:
    """The record's backbone family (records before schema 3 are open_clip)."""
    return (r.backbone or {}).get("family") or "open_clip"


def backbone_name(r: Record) -> str:
    """The model a record's figure came from, as tables print it (``wide_resnet50_2-tiny``)."""
    return str((r.backbone or {}).get("model") or "?")


def backbone_id(r: Record) -> tuple:
    b = r.backbone or {}
    return (backbone_family(r), b.get("model"), b.get("pretrained"), b.get("weights_fingerprint"),
            b.get("precision", "fp32"))


def cell_protocol(r: Record) -> tuple:
    p = r.protocol or {}
    return (p.get("version"), p.get("eval_size"), p.get("sigma_used"), p.get("max_test_images"))


def run_protocol(r: Record) -> tuple:
    p = r.protocol or {}
    return (p.get("version"), p.get("eval_size"), p.get("sigma"), p.get("max_test_images"))


# check name -> (what it covers, getter); records that differ in a checked field are not compared
CHECKS: dict[str, tuple[str, Callable[[Record], Any]]] = {
    "metric_version": ("metric version", lambda r: r.metric_version),
    "backbone": ("backbone (family, model, pretrained, weights fingerprint, precision)", backbone_id),
    "protocol": ("protocol (version, eval_size, sigma used, max_test_images)", cell_protocol),
    "dataset": ("dataset fingerprint", lambda r: (r.dataset or {}).get("fingerprint")),
}

# what one results folder must not mix (the per-method sigma may differ; the configured one may not;
# the backbone is compared per method: see ``mixed``)
RUN_CHECKS: dict[str, tuple[str, Callable[[Record], Any]]] = {
    "metric_version": CHECKS["metric_version"],
    "backbone": ("backbone of one method (family, model, pretrained, weights fingerprint, precision)",
                 lambda r: (r.key["method"], *backbone_id(r))),
    "protocol": ("protocol (version, eval_size, sigma, max_test_images)", run_protocol),
}


def mismatches(base: Record, head: Record, checks: Sequence[str] | None = None) -> list[tuple[str, Any, Any]]:
    """(description, base value, head value) of every per-cell check that differs."""
    names = CHECKS if checks is None else checks
    return [(CHECKS[n][0], CHECKS[n][1](base), CHECKS[n][1](head)) for n in names
            if CHECKS[n][1](base) != CHECKS[n][1](head)]


def mixed(records: Iterable[Record]) -> dict[str, dict[Any, int]]:
    """The run checks that take several values among ``records``: name -> {value: n records}. The
    backbone counts only when one method's records name several (methods may differ from each other)."""
    records = list(records)
    out = {}
    for name, (_, get) in RUN_CHECKS.items():
        c = Counter(get(r) for r in records)
        if name == "backbone":
            per_method = Counter(v[0] for v in c)
            c = Counter({v: n for v, n in c.items() if per_method[v[0]] > 1})
            if c:
                out[name] = dict(c)
        elif len(c) > 1:
            out[name] = dict(c)
    return out


def describe_mixed(mix: Mapping[str, Mapping[Any, int]]) -> list[str]:
    """One line per mixed field, naming every value and its record count."""
    return [f"{RUN_CHECKS[name][0]} differs between records: "
            + "; ".join(f"{v!r} ({n} record(s))" for v, n in values.items()) for name, values in mix.items()]


def run_identity(r: Record) -> dict[str, Any]:
    """The run-level identity a configuration can state before loading any model.

    ``backbone`` leaves out the weights fingerprint (known only once the weights are loaded; it is part
    of every cell's resume key and of ``mixed``).
    """
    b = r.backbone or {}
    return {"metric_version": r.metric_version,
            "backbone": {"family": backbone_family(r), "model": b.get("model"), "pretrained": b.get("pretrained"),
                         "precision": b.get("precision", "fp32")},
            "protocol": dict(zip(("version", "eval_size", "sigma", "max_test_images"), run_protocol(r)))}


def folder_conflicts(records: Iterable[Record], expected: Mapping[str, Any],
                     backbones: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[Record, list[str]]]:
    """Records whose :func:`run_identity` differs from ``expected``, each with what differs.

    ``backbones`` (method id -> expected ``backbone``) checks the backbone per method: a record of a
    method this run names must have that method's backbone; records of other methods keep theirs.
    """
    out = []
    for r in records:
        have = run_identity(r)
        want_bb = (backbones or {}).get(r.key["method"])
        checks = {**expected, "backbone": want_bb} if want_bb is not None else expected
        diffs = []
        for k, want in checks.items():
            got = have.get(k)
            if isinstance(want, Mapping) and isinstance(got, Mapping):
                who = f"{r.key['method']} " if k == "backbone" and want_bb is not None else ""
                diffs += [f"{who}{k}.{f}: folder has {got.get(f)!r}, this run {w!r}" for f, w in want.items()
                          if got.get(f) != w]
            elif got != want:
                diffs.append(f"{k}: folder has {got!r}, this run {want!r}")
        if diffs:
            out.append((r, diffs))
    return out


def short_commit(r: Record) -> str:
    """``abcdef1234`` (+``+dirty``) of the tree a record was made from, ``unknown`` when not recorded."""
    g = (r.provenance or {}).get("git") or {}
    return (g.get("commit") or "unknown")[:10] + ("+dirty" if g.get("dirty") else "")


def commit_summary(records: Iterable[Record]) -> str:
    """"commit abc (12 records)" or "commits abc (8), def+dirty (4)": where a table's figures come from."""
    c = Counter(short_commit(r) for r in records)
    if not c:
        return "no records"
    parts = [f"{k} ({n} record{'s' if n != 1 else ''})" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
    dirty = any(k.endswith("+dirty") for k in c)
    return (f"commit{'s' if len(c) > 1 else ''} " + ", ".join(parts)
            + ("; +dirty = made from a working tree with uncommitted changes" if dirty else ""))
