"""Benchmark: does planning stay linear in the number of seeds?

    python -m benchmarks.plan_speed                  # 200 seeds vs 20,000 seeds (memory, synthetic/disc)
    python -m benchmarks.plan_speed --large 100000   # the size of issue 26's drill

It builds the run config (from a YAML list of seeds, as ``--config`` reads it)
and the plan (jobs, resume keys, records already done) of the pipeline check
with one method, one category and one shot count, once with ``--small`` seeds
and once with ``--large`` seeds, in one process with the synthetic data already
generated and the first plan's imports done, and prints the time per cell of
each and their ratio. Linear planning prints a ratio near 1; the quadratic
repeat check and the per-seed re-fingerprinting of every test image (before
issue 26) made 100,000 seeds take minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


def plan_seconds(n_seeds: int, work: Path) -> float:
    """Seconds to read a config of ``n_seeds`` seeds and plan it into an empty results folder."""
    from fsadbench.results.records import RecordStore
    from fsadbench.run.config import build_config
    from fsadbench.run.plan import Plan
    from fsadbench.run.resources import DataSource

    cfg_file = work / f"seeds{n_seeds}.yaml"
    cfg_file.write_text("seeds: [" + ", ".join(map(str, range(n_seeds))) + "]\n")
    t0 = time.perf_counter()
    cfg = build_config("smoke", str(cfg_file), {"methods": ["memory"], "shots": [1],
                                               "results_dir": str(work / f"res{n_seeds}")}, categories=["disc"])
    plan = Plan.build(cfg, DataSource(cfg), RecordStore(cfg.results_dir))
    assert plan.n_todo_cells == n_seeds, plan.n_todo_cells
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plan_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=200)
    p.add_argument("--large", type=int, default=20_000)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plan_seconds(10, Path(tmp))  # warm-up: imports, synthetic data generation
        small = plan_seconds(a.small, Path(tmp))
        large = plan_seconds(a.large, Path(tmp))
    per_small, per_large = small / a.small * 1e3, large / a.large * 1e3
    print(f"{a.small:>7,} seeds: {small:7.2f} s ({per_small:.3f} ms per cell)")
    print(f"{a.large:>7,} seeds: {large:7.2f} s ({per_large:.3f} ms per cell)")
    print(f"ratio of per-cell planning time, large / small: {per_large / per_small:.2f} (linear: about 1)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
