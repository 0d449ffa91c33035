"""How often ``compare`` flags pure noise as a regression (its false-alarm rate), at the default settings.

    python -m benchmarks.compare_false_alarm                    # 1,000 trials, 2 seeds, 3 categories
    python -m benchmarks.compare_false_alarm --trials 5000 --seeds 3 --noise 0.5,1,2,5

Each trial builds a BASE and a HEAD side of one method on ``--categories``
categories x ``--seeds`` seeds, from the SAME distribution (pure noise, no
change): cell value = category level (uniform 80-95 %) + independent
N(0, noise^2) on each side and seed. Both go through :func:`compare` (default
tolerance 0.5 pp, one-sided alpha 0.025, paired t over the common seeds); a
trial is a false alarm when any table figure is flagged a regression.

Printed per noise level: the false-alarm rate of ``compare`` and, on the same
trials, that of the former rule (regression when delta < -tol and
delta < -2 x SE, the normal band without small-sample correction), which flags
2-seed noise several times as often. The paired t test alone has a 2.5 % rate
by construction (normal noise); the tolerance lowers it further.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from fsadbench.regression.compare import DEFAULT_ALPHA, DEFAULT_TOL, compare
from fsadbench.regression.sources import side_from_records
from fsadbench.results.records import CellKey, Record


def _side(levels: np.ndarray, noise_pp: float, seeds: int, rng: np.random.Generator) -> list[Record]:
    out = []
    for c, level in enumerate(levels):
        for s in range(seeds):
            v = float(np.clip(level + rng.normal(0.0, noise_pp / 100), 0.0, 1.0))
            out.append(Record(key=CellKey("m", "d", f"c{c}", 1, s).__dict__, status="ok", config_hash="h",
                              metrics={"w/ VG": {"pixel_auroc": v}}, backbone={"model": "x"},
                              protocol={"version": "p"}, metric_version="m"))
    return out


def false_alarm_rate(trials: int = 1000, seeds: int = 2, categories: int = 3, noise_pp: float = 1.0,
                     seed: int = 0) -> tuple[float, float]:
    """(rate of ``compare`` at its defaults, rate of the former 2 x SE rule) over ``trials`` noise trials."""
    rng = np.random.default_rng(seed)
    flagged = old = 0
    for _ in range(trials):
        levels = rng.uniform(0.80, 0.95, size=categories)
        c = compare(side_from_records(_side(levels, noise_pp, seeds, rng)),
                    side_from_records(_side(levels, noise_pp, seeds, rng)))
        flagged += bool(c.tables["regression"].any())
        t = c.tables.iloc[0]
        se = t["se"]
        old += bool(t["delta"] < -DEFAULT_TOL and (math.isnan(se) or t["delta"] < -2 * se))
    return flagged / trials, old / trials


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--categories", type=int, default=3)
    p.add_argument("--noise", default="0.5,1,2,5", help="per-cell noise sd in pp, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(f"pure noise, {a.trials} trials, {a.seeds} seeds x {a.categories} categories, default tolerance "
          f"{DEFAULT_TOL} pp, one-sided alpha {DEFAULT_ALPHA}")
    print(f"{'noise sd (pp)':>14} {'compare':>9} {'2xSE rule':>10}")
    worst = 0.0
    for noise in (float(x) for x in a.noise.split(",") if x):
        rate, old = false_alarm_rate(a.trials, a.seeds, a.categories, noise, a.seed)
        worst = max(worst, rate)
        print(f"{noise:>14g} {rate:>8.1%} {old:>9.1%}")
    print(f"false-alarm rate of compare: at most {worst:.1%} ({'<=' if worst <= 0.05 else '>'} 5 %)")
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
