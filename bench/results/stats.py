"""Small-sample tests over seeds: paired t and Welch t (scipy's t distribution).

With 2-5 seeds a normal band (2 x SE) is far too narrow: for 2 seeds the
paired t statistic has 1 degree of freedom and P(T_1 < -2) = 14.8 %, so a
2-sigma rule flags noise as a regression about one time in seven. These tests
use the t quantile for the actual degrees of freedom.

* paired (same seeds on both sides): d_s = a_s - b_s, mean(d), SE = sd(d, ddof=1) / sqrt(n),
  t = mean(d) / SE, df = n - 1;
* Welch (different seeds): delta = mean(a) - mean(b), SE = sqrt(var_a / n_a + var_b / n_b)
  (ddof=1), df by Welch-Satterthwaite: SE^4 / ((var_a/n_a)^2/(n_a-1) + (var_b/n_b)^2/(n_b-1)).

``p_lower`` is the one-sided p-value of "a is lower than b" (small = significantly lower).
With zero spread (every difference equal) the test is exact: p = 0 for a
negative difference, 1 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from scipy import stats as _st


@dataclass(frozen=True)
class TTest:
    """One t test of a - b. ``se``/``t``/``df``/``p_lower`` are NaN when there are too few seeds."""

    kind: str  # "paired t" or "Welch t"
    n_a: int
    n_b: int
    delta: float  # a - b (means)
    se: float
    df: float
    t: float
    p_lower: float

    @property
    def defined(self) -> bool:
        return not math.isnan(self.se)

    def band(self, alpha: float) -> float:
        """Half-width h such that delta < -h is significant at one-sided level ``alpha``."""
        if not self.defined:
            return float("nan")
        if self.se == 0:
            return 0.0
        return float(_st.t.ppf(1 - alpha, self.df) * self.se)

    def describe(self) -> str:
        if not self.defined:
            return f"{self.kind}: too few seeds ({self.n_a}/{self.n_b}) for a noise estimate"
        df = f"{self.df:.0f}" if self.kind == "paired t" else f"{self.df:.1f}"
        return f"{self.kind}, n={self.n_a}/{self.n_b}, df={df}, p={self.p_lower:.3f}"


def _p_lower(t: float, df: float, delta: float, se: float) -> float:
    if se == 0:
        return 0.0 if delta < 0 else 1.0
    return float(_st.t.cdf(t, df))


def paired_t(a: Mapping[int, float], b: Mapping[int, float]) -> TTest:
    """Paired t test of a - b over the seeds both sides hold (NaNs dropped)."""
    seeds = sorted(s for s in set(a) & set(b) if not (math.isnan(a[s]) or math.isnan(b[s])))
    d = [a[s] - b[s] for s in seeds]
    n = len(d)
    nan = float("nan")
    if n == 0:
        return TTest("paired t", 0, 0, nan, nan, nan, nan, nan)
    mean = sum(d) / n
    if n < 2:
        return TTest("paired t", n, n, mean, nan, nan, nan, nan)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    if se < 1e-12 * max(1.0, abs(mean)):
        se = 0.0
    t = mean / se if se > 0 else (-math.inf if mean < 0 else (math.inf if mean > 0 else 0.0))
    return TTest("paired t", n, n, mean, se, float(n - 1), t, _p_lower(t, n - 1, mean, se))


def welch_t(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's unequal-variance t test of mean(a) - mean(b) (NaNs dropped)."""
    a = [x for x in a if not math.isnan(x)]
    b = [x for x in b if not math.isnan(x)]
    nan = float("nan")
    if not a or not b:
        return TTest("Welch t", len(a), len(b), nan, nan, nan, nan, nan)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    delta = ma - mb
    if len(a) < 2 or len(b) < 2:
        return TTest("Welch t", len(a), len(b), delta, nan, nan, nan, nan)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se < 1e-12 * max(1.0, abs(delta)):
        return TTest("Welch t", len(a), len(b), delta, 0.0, float(len(a) + len(b) - 2),
                     -math.inf if delta < 0 else (math.inf if delta > 0 else 0.0), 0.0 if delta < 0 else 1.0)
    df = se ** 4 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = delta / se
    return TTest("Welch t", len(a), len(b), delta, se, df, t, _p_lower(t, df, delta, se))


def compare_seeds(a: Mapping[int, float], b: Mapping[int, float]) -> TTest:
    """Paired t when both sides hold the same seeds, else Welch t."""
    sa = {s for s, v in a.items() if not math.isnan(v)}
    sb = {s for s, v in b.items() if not math.isnan(v)}
    if sa == sb:
        return paired_t(a, b)
    return welch_t([a[s] for s in sorted(sa)], [b[s] for s in sorted(sb)])
