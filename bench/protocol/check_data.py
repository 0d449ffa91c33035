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

Images are read exactly as a run reads them (:func:`fsadbench.core.io.read_rgb`:
every PIL mode to 8-bit RGB, 16-bit scaled, alpha over black, or an error
naming the file); each category lists the modes and bit depths it saw, e.g.
``images: I;16 16-bit (scaled to 8-bit) x 3, RGB 8-bit x 40``. Masks are read
with :func:`fsadbench.core.io.read_mask`: any non-zero pixel is anomalous.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fsadbench.core.errors import BenchError, ConfigError, DataError
from fsadbench.core.io import image_info, mode_note, read_mask, read_rgb

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
    image_modes: Counter = field(default_factory=Counter)  # "RGB 8-bit" -> count
    mask_modes: Counter = field(default_factory=Counter)

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
        for what, modes in (("images", self.image_modes), ("masks", self.mask_modes)):
            if modes:
                out.append(f"    {what}: " + ", ".join(f"{k} x {n}" for k, n in sorted(modes.items())))
        out += [f"    error: {e.split(LAYOUT_MARK)[0].rstrip()}" for e in self.errors]
        out += [f"    warning: {w}" for w in self.warnings]
        return out


def _image_hw(path: Path, decode: bool, modes: Counter) -> tuple[int, int]:
    """Size of an image; with ``decode`` it is read exactly as a run reads it (8-bit RGB)."""
    info = image_info(path)
    modes[info.label] += 1
    if mode_note(info.mode, info.bits) == "unsupported":
        raise DataError(f"image file {path} has PIL mode {info.mode}, which has no defined mapping to RGB; "
                        f"save it as 8-bit RGB or grayscale")
    if decode:
        read_rgb(path)
    return info.height, info.width


def _mask_mode(path: Path, modes: Counter) -> None:
    try:
        modes[image_info(path).label.split(" (")[0]] += 1
    except DataError:
        pass  # read_mask reports it


def check_category(dataset: Any, category: str, decode: bool = True) -> CategoryReport:
    """Load one category through its plugin and check every file of the split."""
    from fsadbench.datasets.base import split_counts

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
            hw = _image_hw(s.image_path, decode, rep.image_modes)
        except DataError as exc:
            rep.errors.append(str(exc))
            continue
        if s.mask_path is None:
            if s.label:
                rep.warnings.append(f"anomalous image {s.image_path} has no mask: image-level metrics only")
            continue
        _mask_mode(s.mask_path, rep.mask_modes)
        try:
            mask = read_mask(s.mask_path, expected_hw=hw)
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
