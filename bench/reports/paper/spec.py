"""Paper configs' ``table:`` key: which layout a config regenerates and with which arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsadbench.core.errors import ConfigError
from fsadbench.core.yamlsafe import load_file
from fsadbench.reports.paper.catalog import get_layout, layout_names


def table_spec(config_path: str | Path) -> tuple[str, dict[str, Any], str | None]:
    """(layout, layout keyword arguments, results_dir) from a paper config's ``table:`` key.

    ``table:`` is a layout name or a mapping {layout, metric, datasets (or columns), ...: the
    layout's own keys, read by its ``options`` parser}; without ``layout`` a registered layout name
    contained in the file name names it (configs/paper/apt_table1.yaml).
    """
    p = Path(config_path)
    if not p.is_file():
        raise ConfigError(f"--config {p} does not exist")
    data = load_file(p, "--config") or {}
    spec = data.get("table")
    if spec is None:
        raise ConfigError(f"{p}: no 'table:' key naming the layout (one of {', '.join(layout_names())})")
    if isinstance(spec, str):
        spec = {"layout": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{p}: 'table' must be a layout name or a mapping with 'layout'")
    name = spec.get("layout") or next((n for n in sorted(layout_names(), key=len, reverse=True) if n in p.stem),
                                      None)
    if name is None:
        raise ConfigError(f"{p}: table.layout missing; use one of {', '.join(layout_names())}")
    try:
        layout = get_layout(str(name))
    except ConfigError as exc:
        raise ConfigError(f"{p}: table.layout: {exc}") from exc
    return layout.name, layout.options(spec, data), data.get("results_dir")
