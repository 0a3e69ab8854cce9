"""harness.stats against hand-computed cases: the t distribution with 1 and 2 degrees of freedom has a closed form
(df 1: the Cauchy distribution, F(t) = 1/2 + atan(t) / pi; df 2: F(t) = 1/2 + t / (2 sqrt(t^2 + 2))), so p and the
confidence interval of two or three differences are checked without any table or library."""
import math

import pytest

from harness.stats import PairedTest, mean_se, over_tasks, paired_selection_gain, paired_test, verdict


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
