"""study.stats against hand-computed cases: the t distribution with 1 and 2 degrees of freedom has a closed form
(df 1: the Cauchy distribution, F(t) = 1/2 + atan(t) / pi; df 2: F(t) = 1/2 + t / (2 sqrt(t^2 + 2))), so p and the
confidence interval of two or three differences are checked without any table or library."""
import math

import pytest

from study.stats import (PairedTest, heterogeneity, inverse_variance, mean_se, over_tasks, paired_selection_gain,
                           paired_test, verdict)


def test_mean_and_standard_error_by_hand():
    # [1, 2, 6]: mean 3, squared deviations 4 + 1 + 9 = 14, variance 14 / 2 = 7, se sqrt(7 / 3)
    assert mean_se([1.0, 2.0, 6.0]) == (3.0, pytest.approx(math.sqrt(7 / 3)))
    assert mean_se([0.25]) == (0.25, None)  # one value: no spread, no standard error


def test_paired_test_with_two_degrees_of_freedom_is_the_closed_form():
    test = paired_test([1.0, 2.0, 6.0])
    se = math.sqrt(7 / 3)
    t = 3 / se
    assert (test.n, test.mean, test.se, test.t) == (3, pytest.approx(3.0), pytest.approx(se), pytest.approx(t))
    assert test.p == pytest.approx(1 - t / math.sqrt(t * t + 2))  # two-sided: 2 (1 - F(t))
    # the 97.5% quantile: t / sqrt(t^2 + 2) = 0.95, so t^2 = 2 * 0.95^2 / (1 - 0.95^2): 4.303
    quantile = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))
    assert quantile == pytest.approx(4.3027, abs=1e-4)
    assert (test.low, test.high) == (pytest.approx(3 - quantile * se), pytest.approx(3 + quantile * se))


def test_paired_test_with_one_degree_of_freedom_is_the_cauchy_closed_form():
    test = paired_test([0.01, 0.03])  # mean 0.02, sd 0.01 sqrt(2), se 0.01, t 2
    assert (test.mean, test.se, test.t) == (pytest.approx(0.02), pytest.approx(0.01), pytest.approx(2.0))
    assert test.p == pytest.approx(1 - 2 * math.atan(2) / math.pi)
    quantile = math.tan(math.pi * (0.975 - 0.5))  # 12.706
    assert (test.low, test.high) == (pytest.approx(0.02 - quantile * 0.01), pytest.approx(0.02 + quantile * 0.01))
    with pytest.raises(ValueError):
        paired_test([0.01])


@pytest.mark.parametrize("low, high, delta, expected", [
    (0.2, 1.5, 1.0, "shown"),  # above 0: a gain, even one smaller than delta would be
    (0.2, 0.8, 1.0, "shown"),
    (-2.0, -0.1, 1.0, "a loss shown"),  # below 0
    (-0.5, 0.8, 1.0, "excluded"),  # a gain of 1 or more is ruled out, none is shown
    (-0.5, 0.8, 0.5, "not shown"),  # ... but a gain of 0.5 is not ruled out
    (-0.2, 1.7, 1.0, "not shown"),
])
def test_the_verdict_reads_the_confidence_interval(low, high, delta, expected):
    assert verdict(low, high, delta) == expected


def test_the_paired_null_of_a_selection_by_hand():
    # two seeds, baseline 0 and 0; the arms' differences (1, -1) and (-1, 1), already centred. The 4 equally likely
    # draws of seeds (0,0), (0,1), (1,0), (1,1) give medians (means of two) 1, 0, 0, -1 and -1, 0, 0, 1: the best
    # arm gains 1, 0, 0, 1 over the baseline's median 0, so 0.5 on average
    assert paired_selection_gain([0.0, 0.0], [[1.0, -1.0], [-1.0, 1.0]]) == pytest.approx(0.5, abs=0.01)
    # an arm that differs from the baseline by the same amount on every seed has, its mean removed, no gain at all
    baseline = [0.1, 0.5, 0.2, 0.4]
    assert paired_selection_gain(baseline, [[v + 0.3 for v in baseline]]) == pytest.approx(0.0, abs=1e-12)
    # its effect removed, an arm that moves with the baseline seed by seed is the baseline: the best of three
    # copies gains nothing, where the unpaired design would credit the best of three independent medians
    assert paired_selection_gain(baseline, [[v + c for v in baseline] for c in (0.0, 0.1, -0.2)]) == \
        pytest.approx(0.0, abs=1e-12)


def test_the_paired_null_is_centred_on_the_median_the_statistic_uses():
    # differences 0, 0, 3 against a flat baseline: their mean is 1, their median 0. Centred on the mean (values -1,
    # -1, 2), the median of 3 draws is 2 when two or three draws hit seed 2 (probability 7/27), else -1: an arm on
    # its own would "gain" 14/27 - 20/27 = -2/9 with no selection at all. Centred on its resampled median, it gains 0
    assert paired_selection_gain([0.0, 0.0, 0.0], [[0.0, 0.0, 3.0]]) == pytest.approx(0.0, abs=1e-12)
    # two seeds, arms (0, 2) and (2, 0) on a flat baseline: the 4 draws give the arms' medians 0, 1, 1, 2 and 2, 1, 1,
    # 0 (resampled mean 1 each, so each is shifted by -1): the best gains 1, 0, 0, 1, so 0.5
    assert paired_selection_gain([0.0, 0.0], [[0.0, 2.0], [2.0, 0.0]]) == pytest.approx(0.5, abs=0.01)


def test_the_paired_null_keeps_the_arms_not_assumed_null_at_their_observed_values():
    baseline = [0.1, 0.5, 0.2, 0.4]
    # no arm assumed null: an arm 0.3 above the baseline on every seed gains its 0.3
    assert paired_selection_gain(baseline, [[v + 0.3 for v in baseline]], null=[]) == pytest.approx(0.3)
    # a null arm beside one that clearly hurts (observed, 10 below on every seed): the hurt arm never wins, so the
    # best-of gains nothing over the null arm alone, where calling both null would credit the selection
    hurt, null_arm = [v - 10 for v in baseline], [0.3, 0.1, 0.9, 0.2]
    assert paired_selection_gain(baseline, [null_arm, hurt], null=[0]) == pytest.approx(0.0, abs=1e-12)
    assert paired_selection_gain(baseline, [null_arm, [0.9, 0.2, 0.3, 0.1]]) > 0.01  # two that differ seed by seed


def test_over_tasks_weighted_by_pairs():
    a = paired_test([1.0, 2.0, 6.0])  # mean 3, se^2 7/3, 3 pairs
    c = math.sqrt(7 / 6)
    b = paired_test([0.0, 0.0, 0.0, 0.0, 5 * c])  # mean c, se^2 7/6, 5 pairs
    pooled = over_tasks([a, b], weights=[3, 5])
    parts = [(3 / 8) ** 2 * 7 / 3, (5 / 8) ** 2 * 7 / 6]  # each task's share of the variance of the weighted mean
    assert (pooled.mean, pooled.se) == (pytest.approx((3 * 3 + 5 * c) / 8), pytest.approx(math.sqrt(sum(parts))))
    df = sum(parts) ** 2 / (parts[0] ** 2 / 2 + parts[1] ** 2 / 4)
    assert pooled.p == pytest.approx(2 * scipy_t_sf(pooled.mean / pooled.se, df))
    assert over_tasks([a, b], weights=[1, 1]) == over_tasks([a, b])  # equal weights are the default


def scipy_t_sf(t, df):
    from scipy.stats import t as t_distribution
    return t_distribution.sf(abs(t), df)


def fake_test(mean: float, se: float, n: int = 5) -> PairedTest:
    return PairedTest(n, mean, se, math.nan, math.nan, math.nan, math.nan)


def test_heterogeneity_inverse_variance_and_dersimonian_laird_by_hand():
    # means 0, 2, 4 with se 1 each: the inverse-variance mean is 2, Q = 4 + 0 + 4 = 8 on 2 degrees of freedom, whose
    # chi-squared survival function is exp(-Q / 2); I^2 = (8 - 2) / 8; tau^2 = (Q - df) / (sum w - sum w^2 / sum w)
    # = 6 / (3 - 1) = 3
    tests = [fake_test(0.0, 1.0), fake_test(2.0, 1.0), fake_test(4.0, 1.0)]
    h = heterogeneity(tests)
    assert (h.q, h.df, h.p, h.i2, h.tau2) == (pytest.approx(8.0), 2, pytest.approx(math.exp(-4)), pytest.approx(0.75),
                                              pytest.approx(3.0))
    z = 1.959964  # the normal 97.5% quantile
    fixed = inverse_variance(tests)
    assert (fixed.mean, fixed.se, fixed.n) == (pytest.approx(2.0), pytest.approx(1 / math.sqrt(3)), 15)
    assert (fixed.low, fixed.high) == (pytest.approx(2 - z / math.sqrt(3), abs=1e-6),
                                       pytest.approx(2 + z / math.sqrt(3), abs=1e-6))
    random = inverse_variance(tests, tau2=h.tau2)  # weights 1 / (1 + 3): the same mean, se 1 / sqrt(3 / 4)
    assert (random.mean, random.se) == (pytest.approx(2.0), pytest.approx(2 / math.sqrt(3)))
    # unequal se: means 0 and 3, se 1 and 2, so weights 1 and 1/4: mean 0.75 / 1.25 = 0.6, se 1 / sqrt(1.25);
    # Q = 0.6^2 + 2.4^2 / 4 = 1.8 on 1 df (p = erfc(sqrt(0.9))); tau^2 = 0.8 / (1.25 - 1.0625 / 1.25) = 2; the
    # random-effects weights 1/3 and 1/6 give mean 1 and se sqrt(2)
    tests = [fake_test(0.0, 1.0), fake_test(3.0, 2.0)]
    h = heterogeneity(tests)
    assert (h.q, h.p, h.i2, h.tau2) == (pytest.approx(1.8), pytest.approx(math.erfc(math.sqrt(0.9))),
                                        pytest.approx(0.8 / 1.8), pytest.approx(2.0))
    fixed, random = inverse_variance(tests), inverse_variance(tests, tau2=h.tau2)
    assert (fixed.mean, fixed.se) == (pytest.approx(0.6), pytest.approx(1 / math.sqrt(1.25)))
    assert (random.mean, random.se) == (pytest.approx(1.0), pytest.approx(math.sqrt(2)))
    assert heterogeneity([fake_test(1.0, 0.5), fake_test(1.0, 0.2)]).tau2 == 0.0  # agreeing tasks: no tau^2


def t_cdf_four_df(t: float) -> float:
    """The t distribution with 4 degrees of freedom in closed form: with s = sin(atan(t / 2)) and c its cosine,
    F(t) = 1/2 + s (1 + c^2 / 2) / 2."""
    angle = math.atan(t / 2)
    return 0.5 + math.sin(angle) * (1 + math.cos(angle) ** 2 / 2) / 2


def test_over_tasks_gives_tasks_equal_weight_with_welch_satterthwaite_degrees_of_freedom():
    a = paired_test([1.0, 2.0, 6.0])  # mean 3, se^2 7/3, 3 pairs
    c = math.sqrt(7 / 6)
    b = paired_test([0.0, 0.0, 0.0, 0.0, 5 * c])  # mean c, variance 5 c^2 = 35/6, se^2 7/6, 5 pairs
    pooled = over_tasks([a, b])
    se = math.sqrt(7 / 3 + 7 / 6) / 2  # the tasks' variances of their means, summed, over 2^2
    # df = (7/3 + 7/6)^2 / ((7/3)^2 / 2 + (7/6)^2 / 4) = (49/4) / (49/18 + 49/144) = 4, not the 2 + 4 pairs' 6
    assert (pooled.n, pooled.mean, pooled.se) == (8, pytest.approx((3 + c) / 2), pytest.approx(se))
    assert pooled.t == pytest.approx((3 + c) / 2 / se)
    assert pooled.p == pytest.approx(2 * (1 - t_cdf_four_df(pooled.t)))
    quantile = 2.776445  # t_cdf_four_df(quantile) = 0.975
    assert t_cdf_four_df(quantile) == pytest.approx(0.975, abs=1e-7)
    assert (pooled.low, pooled.high) == (pytest.approx(pooled.mean - quantile * se, abs=1e-6),
                                         pytest.approx(pooled.mean + quantile * se, abs=1e-6))
    assert over_tasks([a]) == a  # one task: its own paired test back
    no_spread = [PairedTest(2, 0.5, 0.0, 0.5, 0.5, math.nan, math.nan),
                 PairedTest(3, 0.0, 0.0, 0.0, 0.0, math.nan, math.nan)]
    flat = over_tasks(no_spread)  # every difference equal within each task: an interval of a point
    assert (flat.mean, flat.low, flat.high, flat.n) == (0.25, 0.25, 0.25, 5)
