"""Checks of user values at the boundary (config files, command lines), before any work.

Each function returns the checked value or raises :class:`ConfigError` naming
``where`` (the file, preset or command line) and the field. Torch-free, so the
CLI parsers of every layer share them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

from fsadbench.core.errors import ConfigError

_INT = re.compile(r"\s*[+-]?\d+\s*")


def str_list(value: Any, field_name: str, where: str) -> list[str]:
    """A list of names. A string is ONE name, or several separated by commas (``bottle`` is one category)."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: '{field_name}' must be a list of names, e.g. [a, b] or a,b (got {value!r})")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ConfigError(f"{where}: '{field_name}' entry {i} is {v!r} ({type(v).__name__}); write names as "
                              f"strings (quote them in YAML)")
        if v.strip():
            out.append(v.strip())
    return out


def int_value(v: Any, field_name: str, where: str, minimum: int | None = None) -> int:
    """An integer (a string of digits from a command line too); ``1.7`` and ``true`` are refused."""
    if isinstance(v, str) and _INT.fullmatch(v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(f"{where}: '{field_name}' must be an integer (got {v!r})")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{where}: '{field_name}' must be >= {minimum} (got {v})")
    return v


def opt_str(v: Any, field_name: str, where: str, allow_none: bool = True) -> str | None:
    """A non-empty string (or None when ``allow_none``)."""
    if (v is None and allow_none) or (isinstance(v, str) and v):
        return v
    raise ConfigError(f"{where}: '{field_name}' must be a {'path or name' if allow_none else 'non-empty'} string "
                      f"(got {v!r})")


def mapping(v: Any, field_name: str, where: str) -> dict[str, Any]:
    """A mapping (None reads as empty)."""
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: '{field_name}' must be a mapping {{option: value}} (got {v!r})")
    return dict(v)


def parse_categories(value: Any, where: str = "command line", field_name: str = "categories") -> list[str]:
    """Category names, each a plain folder name inside its dataset root (no '/', '..', absolute path)."""
    out = [check_plain_name(c, f"{where}: '{field_name}' entry") for c in str_list(value, field_name, where)]
    refuse_repeats(out, field_name, where)
    return out


def refuse_repeats(items: Sequence[Any], field_name: str, where: str) -> None:
    """A ConfigError naming the first item listed twice (a repeat would plan a cell twice and miscount)."""
    seen: set[Any] = set()
    for v in items:
        if v in seen:
            raise ConfigError(f"{where}: '{field_name}' lists {v} twice; give each once")
        seen.add(v)


def int_list(value: Any, field_name: str, where: str) -> list[int]:
    """Integers >= 0 without repeats: ``[1, 2]``, ``1,2`` or ``1``; ``1.7``, ``-1``, ``true`` are refused."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    out: list[int] = []
    for v in value:
        if isinstance(v, str) and _INT.fullmatch(v):
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{where}: '{field_name}' must be a list of integers >= 0, e.g. 1,2,4 "
                              f"(got {v!r})")
        out.append(v)
    refuse_repeats(out, field_name, where)  # a set: linear in the list (100,000 seeds plan at once)
    return out


def check_plain_name(name: Any, what: str) -> str:
    """``name`` when it is a plain folder name (a category folder directly inside a dataset root).

    Refused: non-strings, empty names, ``.`` / ``..``, any ``/`` or ``\\``, absolute paths, NUL,
    leading or trailing spaces: such a name would read data outside the dataset root.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{what} {name!r} is a {type(name).__name__}; write the folder name as a string")
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or os.path.isabs(name) or name != name.strip())
    if bad:
        raise ConfigError(f"{what} {name!r} is not a plain folder name: a category is a folder directly inside "
                          f"the dataset root, without '/', '\\', '..' or an absolute path (point --data-root or "
                          f"the dataset's root at the parent folder instead)")
    return name
