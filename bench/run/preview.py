"""The plan a sweep prints before any work (and ``run --dry-run`` prints alone).

One line of totals, then one line per aspect: datasets and categories, methods
with the options that differ from their defaults, shots and seeds, one line per
backbone some method runs on (with those methods and where its weights come
from: ``fsadbench.backbone.load.weights_text``), the evaluation protocol, and
the encoder passes to expect. Reads dataset folders (to count test images) but
builds no model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from fsadbench.run.backbones import used_backbones
from fsadbench.run.config import PIPELINE_CHECK, MethodSpec, RunConfig
from fsadbench.run.identity import resolve_method
from fsadbench.run.plan import Plan
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import LEAVE_ONE_OUT_SCOPE


def option_changes(spec: MethodSpec) -> dict[str, Any]:
    """The resolved options of a method that differ from its class defaults (registered name included)."""
    cls, options = resolve_method(spec)
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Options) if f.default is not dataclasses.MISSING}
    return {k: v for k, v in options.items() if k not in defaults or defaults[k] != v}


def encoder_passes(cfg: RunConfig, plan: Plan, data: DataSource) -> int:
    """At most this many image-encoder passes: per category, each test image once per image-encoder path
    of the methods still to run, plus the shots and each auxiliary set a transfer method trains on (entries
    already in the feature cache are reused)."""
    paths: dict[tuple[str, str], set[str]] = {}
    shots: dict[tuple[str, str], int] = {}
    for job in plan.todo:
        cls, _ = resolve_method(job.method)
        image_paths = {p for p in getattr(cls, "feature_specs", ()) if "text" not in p} or {cls.name}
        for c in job.categories:
            key = (job.dataset.name, c)
            paths.setdefault(key, set()).update(f"{p}:{job.method.id}" for p in image_paths)
            shots[key] = shots.get(key, 0) + job.shots
    specs = {d.name: d for d in cfg.datasets}
    aux = {(j.method.id, j.auxiliary.name): j.auxiliary for j in plan.todo
           if j.auxiliary is not None and j.scope != LEAVE_ONE_OUT_SCOPE}
    trained = sum(len(data.split(a, c).test) for a in aux.values() for c in data.categories(a))
    held = {(j.method.id, j.dataset.name): j.dataset for j in plan.todo if j.scope == LEAVE_ONE_OUT_SCOPE}
    trained += sum(len(data.split(d, c).train) for d in held.values() for c in data.categories(d))
    return trained + sum(len(data.split(specs[d], c).test) * len(p) + shots[(d, c)] for (d, c), p in paths.items())


def plan_text(cfg: RunConfig, plan: Plan, data: DataSource) -> str:
    n_cells = sum(len(j.categories) for j in plan.jobs)
    lines = [f"plan: {n_cells} cell(s): {plan.n_todo_cells} to compute, {plan.skipped} already done "
             f"(in {cfg.results_dir}){plan.code_note()}"]
    cats = [f"{d.name} ({', '.join(data.categories(d))})" for d in cfg.datasets]
    note = ("  [pipeline check: no --datasets given, so the synthetic set on the tiny RANDOM backbone; "
            "add --datasets NAME --data-root DIR for a benchmark]" if cfg.preset == PIPELINE_CHECK else "")
    lines.append(f"  datasets: {'; '.join(cats)}{note}")
    methods = []
    for m in cfg.methods:  # the id names the options set explicitly; add those its registered name sets
        extra = {k: v for k, v in option_changes(m).items() if k not in m.options}
        methods.append(m.id + (f" ({', '.join(f'{k}={v!r}' for k, v in extra.items())})" if extra
                               else "" if m.options else " (defaults)"))
    lines.append(f"  methods: {', '.join(methods)}   (all options: run_bench.py list --method NAME)")
    lines.append(f"  shots: {int_ranges(cfg.shots)}; seeds: {int_ranges(cfg.seeds)}")
    from fsadbench.backbone.load import weights_text

    cache = str(cfg.resolved_cache_dir / "weights")
    for spec, ms in used_backbones(cfg).items():  # only those some method of the sweep runs on
        lines.append(f"  backbone: {spec.name} ({', '.join(m.id for m in ms)}); weights: {weights_text(spec, cache)}")
    pairs = sorted({f"{j.method.id} on {j.dataset.name} trained on {j.auxiliary.name}"
                    for j in plan.jobs if j.auxiliary is not None and j.scope != LEAVE_ONE_OUT_SCOPE})
    if pairs:
        lines.append(f"  zero-shot transfer: {'; '.join(pairs)}")
    held = sorted({f"{j.method.id} on {j.dataset.name} trained on its other categories"
                   for j in plan.jobs if j.scope == LEAVE_ONE_OUT_SCOPE})
    if held:
        lines.append(f"  leave-one-out training: {'; '.join(held)}")
    p = cfg.protocol
    lines.append(f"  evaluation: {p.eval_size} px, sigma {p.sigma if p.sigma is not None else 'per method'}, "
                 + (f"SUBSET of at most {p.max_test_images} test images per category"
                    if p.max_test_images else "all test images"))
    if plan.todo:
        lines.append(f"  encoder passes: at most {encoder_passes(cfg, plan, data):,} image(s)")
    return "\n".join(lines)


def int_ranges(values: Sequence[int], max_parts: int = 8) -> str:
    """A compact list of integers: runs as ``a-b``, at most ``max_parts`` parts, then the count:
    ``0, 1, 2`` -> "0, 1, 2"; 0..99999 -> "0-99999 (100,000 in all)"; scattered ones end in "... (N in all)"."""
    vals = list(values)
    parts: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts += [f"{vals[i]}-{vals[j]}"] if j - i >= 3 else [str(v) for v in vals[i:j + 1]]
        i = j + 1
    text = ", ".join(parts[:max_parts]) + (", ..." if len(parts) > max_parts else "")
    return text + (f" ({len(vals):,} in all)" if len(parts) > max_parts or len(vals) > 4 * max_parts else "")

