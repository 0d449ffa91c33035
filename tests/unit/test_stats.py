"""Paired and Welch t tests over seeds, checked by hand (closed-form t CDFs for df = 1 and 2)."""

import math

import pytest

from fsadbench.results.stats import compare_seeds, paired_t, welch_t


def test_paired_t_by_hand_df2():
    # a - b = -1, +0.5, -0.3: mean -0.26667, sd (ddof 1) 0.75056, SE 0.43333, t -0.61538
    t = paired_t({0: 89.0, 1: 91.5, 2: 91.7}, {0: 90.0, 1: 91.0, 2: 92.0})
    assert t.kind == "paired t" and t.df == 2
    assert t.delta == pytest.approx(-0.8 / 3)
    assert t.se == pytest.approx(math.sqrt(((-1 + 0.8 / 3) ** 2 + (0.5 + 0.8 / 3) ** 2 + (-0.3 + 0.8 / 3) ** 2) / 2) / math.sqrt(3))
    # Student t, 2 df: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    tt = t.delta / t.se
    assert t.t == pytest.approx(tt) and t.p_lower == pytest.approx(0.5 + tt / (2 * math.sqrt(2 + tt * tt)))
    assert t.p_lower == pytest.approx(0.3005, abs=1e-4)


def test_band_uses_the_t_quantile_not_2_se():
    t = paired_t({0: 1.0, 1: 3.0}, {0: 0.0, 1: 0.0})  # d = 1, 3: mean 2, SE 1, df 1
    assert (t.delta, t.se, t.df) == pytest.approx((2.0, 1.0, 1.0))
    # Student t, 1 df: quantile 0.95 = tan(pi (0.95 - 1/2)) = 6.3138
    assert t.band(0.05) == pytest.approx(math.tan(math.pi * 0.45))
    assert t.p_lower == pytest.approx(0.5 + math.atan(2.0) / math.pi)


def test_welch_t_by_hand():
    t = welch_t([1.0, 2.0, 3.0], [2.0, 4.0])
    # var_a / n_a = 1/3, var_b / n_b = 2/2 = 1; SE = sqrt(4/3); df = (4/3)^2 / ((1/3)^2 / 2 + 1 / 1)
    assert t.kind == "Welch t" and t.delta == pytest.approx(-1.0)
    assert t.se == pytest.approx(math.sqrt(4 / 3))
    assert t.df == pytest.approx((16 / 9) / (1 / 18 + 1))


def test_zero_spread_and_too_few_seeds():
    same = paired_t({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})  # every difference -1: exact
    assert same.se == 0 and same.p_lower == 0.0 and same.band(0.05) == 0.0
    tie = paired_t({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert tie.p_lower == 1.0
    one = paired_t({0: 1.0}, {0: 2.0})
    assert not one.defined and one.delta == -1.0 and math.isnan(one.band(0.05)) and "too few" in one.describe()
    assert compare_seeds({0: 1.0, 1: 2.0}, {5: 1.0, 6: 2.0}).kind == "Welch t"
    assert compare_seeds({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).kind == "paired t"
