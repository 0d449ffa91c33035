"""``python run_bench.py check-data``: verify dataset folders before a long run.

For every dataset and category it loads the split with the dataset's own
plugin, prints the counts found next to the published ones (where known), and
lists every problem:

errors (exit status 1): a folder or category that cannot be loaded (wrong
root, missing masks, CSV rows naming missing files), an empty category, an
unreadable image or mask, a mask whose size differs from its image's;

warnings (exit status 0 when there are only warnings): counts that differ
from the published ones, an anomalous image whose mask has no anomalous pixel,
an anomalous image with no mask (image-level only), a category without train
normals (few-shot cells cannot run; zero-shot ones can).

Masks are read with :func:`fsadbench.datasets.base.load_mask`: any non-zero
pixel is anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fsadbench.core.errors import BenchError, ConfigError, DataError

#: loaders end their errors with the expected layout; check-data prints it once per dataset
LAYOUT_MARK = "Expected layout:"


@dataclass
class CategoryReport:
    dataset: str
    category: str
    counts: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        keys = [k for k in self.counts if k not in ("normal", "anomalous")]
        keys += [k for k in (self.expected or {}) if k not in keys]
        parts = []
        for k in keys:
            found = self.counts.get(k, "?")
            exp = (self.expected or {}).get(k)
            parts.append(f"{k} {found}" + (f" (expected {exp})" if exp is not None else ""))
        status = "ERROR" if self.errors else ("warning" if self.warnings else "ok")
        out = [f"  {self.category}: {', '.join(parts) or 'no counts'}  [{status}]"]
        out += [f"    error: {e.split(LAYOUT_MARK)[0].rstrip()}" for e in self.errors]
        out += [f"    warning: {w}" for w in self.warnings]
        return out


def _image_hw(path: Path, decode: bool) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        if decode:
            im.load()
        return im.height, im.width


def check_category(dataset: Any, category: str, decode: bool = True) -> CategoryReport:
    """Load one category through its plugin and check every file of the split."""
    from fsadbench.datasets.base import load_mask, split_counts

    rep = CategoryReport(dataset.name, category, expected=dataset.expected(category))
    try:
        split = dataset.load(category)
    except BenchError as exc:
        rep.errors.append(str(exc))
        return rep
    rep.counts = split_counts(split)
    if not split.train and not split.test:
        rep.errors.append("the category is empty (no train and no test images)")
        return rep
    if not split.train:
        rep.warnings.append("no normal train images: few-shot cells cannot run (zero-shot ones can)"
                            + ("; this set is test-only, configure the option normal_source"
                               if getattr(dataset, "test_only", False) else ""))
    for s in list(split.train) + list(split.test):
        try:
            hw = _image_hw(s.image_path, decode)
        except (OSError, ValueError) as exc:
            rep.errors.append(f"image {s.image_path} cannot be read ({exc})")
            continue
        if s.mask_path is None:
            if s.label:
                rep.warnings.append(f"anomalous image {s.image_path} has no mask: image-level metrics only")
            continue
        try:
            mask = load_mask(s.mask_path, expected_hw=hw)
        except DataError as exc:
            rep.errors.append(str(exc))
            continue
        if s.label and not mask.any():
            rep.warnings.append(f"mask {s.mask_path} of anomalous image {s.image_path} has no anomalous pixel")
    if rep.expected:
        diff = [f"{k} {rep.counts[k]} vs {v}" for k, v in rep.expected.items() if k in rep.counts
                and rep.counts[k] != v]
        if diff:
            rep.warnings.append("counts differ from the published ones (a subset or another copy?): " + ", ".join(diff))
    return rep


def check_datasets(names: Sequence[str], data_root: str | Path | None = None,
                   categories: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                   roots: Mapping[str, str] | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
                   decode: bool = True, out: Callable[[str], None] = print) -> tuple[int, int]:
    """Check every category of each dataset, printing through ``out``; returns (errors, warnings)."""
    from fsadbench.core.defaults import default_cache_dir
    from fsadbench.core.registry import DATASETS

    roots, options = dict(roots or {}), dict(options or {})
    for n in set(options) | set(roots):
        if n not in names:
            raise ConfigError(f"option or root given for dataset {n!r}, which is not in --datasets {','.join(names)}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    n_err = n_warn = 0
    for name in names:
        cls, defaults = DATASETS.get(name)
        try:
            ds = cls.from_config(data_root=data_root, root=roots.get(name), cache_dir=cache,
                                 **{**defaults, **options.get(name, {})})
            cats = list(categories or ds.list_categories())
        except BenchError as exc:
            out(f"{name}:\n  error: {exc}")
            n_err += 1
            continue
        out(f"{name} ({ds.root})")
        show_layout = False
        for cat in cats:
            rep = check_category(ds, cat, decode=decode)
            out("\n".join(rep.lines()))
            n_err += len(rep.errors)
            n_warn += len(rep.warnings)
            show_layout |= any(LAYOUT_MARK in e for e in rep.errors)
        if show_layout:
            out(f"  {LAYOUT_MARK}\n{ds.layout}")
    return n_err, n_warn
