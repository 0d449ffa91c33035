"""Paper configs' ``table:`` key: which layout a config regenerates and with which arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsadbench.core.errors import ConfigError
from fsadbench.core.yamlsafe import load_file
from fsadbench.reports.paper.layouts import LAYOUTS


def table_spec(config_path: str | Path) -> tuple[str, dict[str, Any], str | None]:
    """(layout, layout keyword arguments, results_dir) from a paper config's ``table:`` key.

    ``table:`` is a layout name or a mapping {layout, metric, datasets (or columns), shots, variant,
    rows, switches, method}; without ``layout`` the file name (apt_table1/2/3) names it. Ablation row
    names come from ``table.rows`` / ``published.rows`` entries {label, <switch>: bool, ...}.
    """
    p = Path(config_path)
    if not p.is_file():
        raise ConfigError(f"--config {p} does not exist")
    data = load_file(p, "--config") or {}
    spec = data.get("table")
    if spec is None:
        raise ConfigError(f"{p}: no 'table:' key naming the layout (one of {', '.join(LAYOUTS)})")
    if isinstance(spec, str):
        spec = {"layout": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{p}: 'table' must be a layout name or a mapping with 'layout'")
    layout = spec.get("layout") or next((name for name in LAYOUTS if name in p.stem), None)
    if layout not in LAYOUTS:
        raise ConfigError(f"{p}: table.layout {layout!r} unknown; use one of {', '.join(LAYOUTS)}")
    kw: dict[str, Any] = {}
    if spec.get("metric"):
        kw["metric"] = spec["metric"]
    ds = spec.get("datasets") or spec.get("columns")
    if ds:
        kw["datasets"] = list(ds)
    if layout == "apt_table3":
        from fsadbench.reports.paper.published import table_data

        if spec.get("shots") is not None:
            kw["shots"] = int(spec["shots"])
        for key in ("variant", "method"):
            if spec.get(key):
                kw[key] = spec[key]
        switches = list(spec.get("switches") or table_data("apt_table3")["switches"])
        if spec.get("switches"):
            kw["switches"] = switches
        prow = (data.get("published") or {}).get("rows") if isinstance(data.get("published"), dict) else None
        labels = {tuple(bool(r.get(s)) for s in switches): str(r["label"])
                  for rows in (prow or [], spec.get("rows") or []) for r in rows
                  if isinstance(r, dict) and "label" in r and all(s in r for s in switches)}
        if labels:
            kw["labels"] = labels
    elif layout == "apt_table1" and spec.get("shots"):
        kw["shots"] = [int(k) for k in spec["shots"]]
    return layout, kw, data.get("results_dir")
