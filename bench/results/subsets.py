"""Notes for records computed on part of the data: ``--max-test-images`` and a subset of the categories.

Every table, export and the HTML report carries them ("SUBSET: ..."), so a quick run's figures are never
read as full-benchmark ones.
"""

from __future__ import annotations

from typing import Iterable

from fsadbench.results.records import STATUS_OK, Record


def _plugin_categories(dataset: str) -> tuple[str, ...]:
    from fsadbench.core.errors import BenchError
    from fsadbench.core.registry import DATASETS

    try:
        return tuple(DATASETS.get(dataset)[0].categories)
    except BenchError:  # a plugin no longer installed: no published list to compare with
        return ()


def subset_notes(records: Iterable[Record]) -> list[str]:
    """'SUBSET' notes for records run on part of the test images or of a dataset's categories."""
    records = [r for r in records if r.status == STATUS_OK]
    notes = []
    caps = sorted({int(r.protocol["max_test_images"]) for r in records if r.protocol.get("max_test_images")})
    if caps:
        notes.append(f"SUBSET: at most {', '.join(map(str, caps))} test image(s) per category "
                     f"(--max-test-images); not comparable with figures over the full test sets.")
    chosen: dict[str, set[str]] = {}
    for r in records:
        for d in (r.config or {}).get("datasets") or []:
            if isinstance(d, dict) and d.get("name") == r.key["dataset"] and d.get("categories"):
                chosen.setdefault(d["name"], set()).update(d["categories"])
    for name, cats in sorted(chosen.items()):
        full = set(_plugin_categories(name))
        if full and cats < full:
            notes.append(f"SUBSET: {name}: {len(cats)} of its {len(full)} categories ({', '.join(sorted(cats))}); "
                         f"the dataset figure is the mean over these only.")
    return notes
