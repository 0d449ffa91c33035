"""Method notes of a table: each method's fidelity notes (its declared departures from the paper and the
reference code, ``describe()["fidelity_notes"]`` of its records) once per method per table, and the
``--notes full|short|none`` forms of them (:func:`shape_notes`).

Several method ids of one method (the settings of an ablation, APT Table 3) share one line; a note only
some of them carry is labelled by those ids. The notes are :class:`MethodNote` strings among a table's
other notes, so any builder (a paper layout plugin too) gets the three forms without knowing of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from fsadbench.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.reports.tables import Table
    from fsadbench.results.records import Record


def _notes_by_method(records: Iterable[Record]) -> dict[str, dict[str, list[str]]]:
    """Registered method name -> method id -> its fidelity notes (the first record of the id that has any)."""
    out: dict[str, dict[str, list[str]]] = {}
    for r in records:
        notes = ((r.method or {}).get("describe") or {}).get("fidelity_notes") or ()
        mid = r.key["method"]
        ids = out.setdefault((r.method or {}).get("name") or mid.split("[")[0], {})
        if notes and mid not in ids:
            ids[mid] = [str(n) for n in notes]
    return {name: ids for name, ids in out.items() if ids}


def _grouped(name: str, ids: dict[str, list[str]], label_of) -> list[tuple[str, list[str]]]:
    """(label, notes) of one method: a note every id carries once under the method's label (``label_of(name)``;
    its id's label when it has one id), a note only some ids carry under those ids' labels; notes in order of
    first appearance."""
    holders: dict[str, tuple[str, ...]] = {}
    for mid, notes in ids.items():
        for n in notes:
            holders[n] = holders.get(n, ()) + (mid,)
    groups: dict[tuple[str, ...], list[str]] = {}
    for n, who in holders.items():
        groups.setdefault(who, []).append(n)
    every = tuple(ids)

    def label(who: tuple[str, ...]) -> str:
        if who == every and len(who) > 1:
            return label_of(name)
        return ", ".join(label_of(m) for m in who)
    return [(label(who), notes) for who, notes in groups.items()]


def fidelity_notes(records: Iterable[Record], label_of=None) -> list[str]:
    """Each method's fidelity notes (``describe()["fidelity_notes"]``) once per table: ``label: n1; n2``, by
    method (several ids of one method, e.g. the settings of an ablation, share one line), see :func:`_grouped`."""
    return [f"{lab}: " + "; ".join(ns) for name, ids in _notes_by_method(records).items()
            for lab, ns in _grouped(name, ids, label_of or str)]


class MethodNote(str):
    """A table note holding one method's fidelity notes (``method notes: apt: ...``); ``method`` and ``count``
    give its ``--notes short`` form (:func:`shape_notes`)."""

    method: str
    count: int

    def __new__(cls, text: str, method: str, count: int) -> "MethodNote":
        note = super().__new__(cls, text)
        note.method, note.count = method, count
        return note


NOTES = ("full", "short", "none")  # --notes: method notes in full, one line counting them, or none


def method_notes(records: Iterable[Record], label_of=None) -> list[MethodNote]:
    """The table notes of :func:`fidelity_notes` (``method notes: LABEL: ...``), once per method."""
    return [MethodNote(f"method notes: {lab}: " + "; ".join(ns), name, len(ns))
            for name, ids in _notes_by_method(records).items() for lab, ns in _grouped(name, ids, label_of or str)]


def shape_notes(t: Table, mode: str = "full") -> Table:
    """``t`` with its method notes as ``mode`` asks (``--notes``): ``full`` unchanged; ``short`` one line
    counting each method's notes, where the first was; ``none`` without them."""
    if mode not in NOTES:
        raise ConfigError(f"--notes {mode!r}: use one of {', '.join(NOTES)}")
    if mode == "full":
        return t
    counts: dict[str, int] = {}
    for n in t.notes:
        if isinstance(n, MethodNote):
            counts[n.method] = counts.get(n.method, 0) + n.count
    out: list[str] = []
    for n in t.notes:
        if not isinstance(n, MethodNote):
            out.append(n)
        elif mode == "short" and counts:
            out.append("method notes (departures from the paper / reference code; --notes full prints them, "
                       "run_bench.py list --method NAME explains them): "
                       + ", ".join(f"{m} {c}" for m, c in counts.items()) + ".")
            counts = {}
    t.notes = out
    return t
