"""Validation of a record file's JSON against the record schema (``records.SCHEMA_VERSION``).

A record that fails is *corrupt*: :class:`~fsadbench.results.records.RecordStore`
names it, sets it aside (``<results>/corrupt/records/...``) and counts its cell
as not done, so report, status, compare and a sweep never crash on it and a
wrong shape never passes as numbers. Keys unknown to this version are ignored
(older readers of a newer minor change); a newer major version is refused by
``Record.from_dict``, not called corrupt.
"""

from __future__ import annotations

import math
from typing import Any

KEY_FIELDS = {"method": str, "dataset": str, "category": str, "shots": int, "seed": int}
STATUSES = ("ok", "failed", "not_applicable")
_MAPPINGS = ("method", "encoder", "protocol", "backbone", "dataset", "provenance", "config", "timings")


class SchemaError(ValueError):
    """A record's JSON does not have the record schema's shape (names the field)."""


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_record(d: Any) -> None:
    """Raise :class:`SchemaError` naming the first field of ``d`` that breaks the record schema."""
    if not isinstance(d, dict):
        raise SchemaError(f"top level is a JSON {type(d).__name__}, not an object")
    for name in ("key", "status", "config_hash"):
        if name not in d:
            raise SchemaError(f"field {name!r} is missing")
    key = d["key"]
    if not isinstance(key, dict):
        raise SchemaError("field 'key' is not an object")
    for name, typ in KEY_FIELDS.items():
        v = key.get(name)
        if not (_int(v) if typ is int else isinstance(v, typ)) or (typ is str and not v):
            raise SchemaError(f"key.{name} is {v!r}, expected a{'n integer' if typ is int else ' non-empty string'}")
    if key["shots"] < 0:
        raise SchemaError(f"key.shots is {key['shots']}, expected >= 0")
    if d["status"] not in STATUSES:
        raise SchemaError(f"status is {d['status']!r}, expected one of {', '.join(STATUSES)}")
    if not isinstance(d["config_hash"], str):
        raise SchemaError("config_hash is not a string")
    for name in _MAPPINGS:
        if name in d and not isinstance(d[name], dict):
            raise SchemaError(f"field {name!r} is a {type(d[name]).__name__}, expected an object")
    metrics = d.get("metrics", {})
    if not isinstance(metrics, dict):
        raise SchemaError(f"metrics is a {type(metrics).__name__}, expected {{variant: {{metric: number}}}}")
    for variant, m in metrics.items():
        if not isinstance(m, dict):
            raise SchemaError(f"metrics[{variant!r}] is a {type(m).__name__}, expected {{metric: number}}")
        for name, v in m.items():
            if v is not None and not (_number(v) and 0.0 <= v <= 1.0):
                raise SchemaError(f"metrics[{variant!r}][{name!r}] is {v!r}, expected a fraction in [0, 1] or null")
    undefined = d.get("undefined", {})
    if not isinstance(undefined, dict) or not all(isinstance(u, dict) for u in undefined.values()):
        raise SchemaError("undefined is not {variant: {metric: reason}}")
    for name in ("n_test", "n_test_anomalous"):
        if name in d and not (_int(d[name]) and d[name] >= 0):
            raise SchemaError(f"{name} is {d[name]!r}, expected an integer >= 0")
    if not isinstance(d.get("manifest", []), list):
        raise SchemaError("manifest is not a list")
    for name in ("metric_version",):
        if name in d and not isinstance(d[name], str):
            raise SchemaError(f"{name} is not a string")
    if d.get("error") is not None and not isinstance(d["error"], str):
        raise SchemaError("error is neither a string nor null")
    if "schema_version" in d and not _int(d["schema_version"]):
        raise SchemaError(f"schema_version is {d['schema_version']!r}, expected an integer")
