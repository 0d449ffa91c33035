"""Method option ranges, declared once and checked by one function at planning and construction.

A method's ``Options`` dataclass declares the range of a number option in a table
beside its fields::

    @dataclass
    class Options:
        reg: float = 0.01
        ranges: ClassVar[Mapping[str, Range]] = {"reg": Range(gt=0)}

Tables are merged along the dataclass's bases (a subclass's entry wins), over
:data:`COMMON_RANGES`, the ranges of the option names every method shares (one
name per concept: ``epochs``, ``lr``, ``momentum``, ...). :func:`range_error` is
the one checker (``Method.check_option_types`` at planning; ``Method.make_options``,
when a method is built directly, checks the methods' own tables, the common names
being checked by each constructor with its own message): it also refuses a NaN or an infinity in any
number option, and :func:`coerce_numbers` reads a number written as text in a
float option (YAML 1.1 reads ``1e-9``, without a dot, as a string).
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Range:
    """The allowed interval of a number option; None = unbounded on that side."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    why: str = ""  # shown after the range, e.g. "(the paper: 2; 8 = 64 crops)"

    def holds(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def text(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if b is not None]
        return " and ".join(parts) + (f" {self.why}" if self.why else "")


#: ranges of the option names shared across methods (a method's own table overrides an entry)
COMMON_RANGES: Mapping[str, Range] = {
    "epochs": Range(ge=1),
    "batch_size": Range(ge=1),
    "lr": Range(gt=0),
    "lr_prompt": Range(gt=0),
    "lr_decoder": Range(gt=0),
    "lr_min": Range(ge=0),
    "momentum": Range(ge=0, lt=1),
    "weight_decay": Range(ge=0),
    "warmup_epochs": Range(ge=0),
    "num_neighbors": Range(ge=1),
    "temperature": Range(gt=0),
}

_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def declared_ranges(options_cls: type, common: bool = True) -> dict[str, Range]:
    """Every range that applies to ``options_cls``'s fields: the common ones (unless ``common`` is False),
    then the bases' tables."""
    fields = getattr(options_cls, "__dataclass_fields__", {})
    out = {k: v for k, v in COMMON_RANGES.items() if k in fields and common}
    for klass in reversed(options_cls.__mro__):
        out.update(vars(klass).get("ranges", {}))
    return out


def _takes_float(hint: Any) -> bool:
    if hint is float:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return float in typing.get_args(hint)
    return False


def coerce_numbers(options: Mapping[str, Any], hints: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with a float option written as number text (``"1e-9"``) read as the number."""
    out = dict(options)
    for name, value in options.items():
        if isinstance(value, str) and _takes_float(hints.get(name)) and _FLOAT_TEXT.fullmatch(value.strip()):
            out[name] = float(value)
    return out


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return []


def range_error(method: str, options: Mapping[str, Any], options_cls: type, common: bool = True) -> str:
    """'' when every option is finite and in its declared range, else the one-line message naming the
    first option out of range, its value and the allowed range (``common``: see :func:`declared_ranges`)."""
    ranges = declared_ranges(options_cls, common)
    for name, value in options.items():
        if any(isinstance(x, float) and not math.isfinite(x) for x in _numbers(value)):
            return f"method {method!r}: option {name!r} must be a finite number (got {value!r})"
        rng = ranges.get(name)
        if rng is not None and value is not None and _numbers(value) and not all(map(rng.holds, _numbers(value))):
            return f"method {method!r}: option {name!r} must be {rng.text()} (got {value!r})"
    return ""
