"""The statistics of report.py, as pure functions of lists of numbers: paired differences against a baseline (the
mean, its standard error, the t-test and confidence interval, and what the interval shows for an effect of a given
size), the same over several tasks, and what a best-of selection gains when no arm has any effect. Distributions
come from scipy.stats."""
import math
import statistics
from dataclasses import dataclass

import numpy as np

try:
    from scipy import stats as scipy_stats
except ImportError as e:  # the report's tests need it; say how to get it rather than fail on a bare import
    raise ImportError("report.py needs scipy: pip install -e '.[stats]'") from e

DRAWS = 20000  # Monte Carlo and resampling draws, with a fixed seed so that reports repeat exactly


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """The mean and its standard error (sd / sqrt(n)); no standard error from one value."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return statistics.fmean(values), se


# -----------------------------------------------------------------------------
# paired differences: one value per seed, an arm minus its baseline of the same seed


@dataclass(frozen=True)
class PairedTest:
    """The two-sided one-sample t-test of paired differences against 0, and the t confidence interval of their
    mean."""
    n: int
    mean: float
    se: float
    low: float  # the confidence interval of the mean
    high: float
    t: float
    p: float


def paired_test(differences: list[float], confidence: float = 0.95) -> PairedTest:
    """The t-test of `differences` (at least 2) against a mean of 0, with n - 1 degrees of freedom."""
    if len(differences) < 2:
        raise ValueError(f"a t-test needs at least 2 differences, got {len(differences)}")
    result = scipy_stats.ttest_1samp(differences, 0.0)
    interval = result.confidence_interval(confidence)
    mean, se = mean_se(differences)
    return PairedTest(len(differences), mean, se, float(interval.low), float(interval.high),
                      float(result.statistic), float(result.pvalue))


def over_tasks(tests: list[PairedTest], confidence: float = 0.95) -> PairedTest:
    """The paired tests of several tasks (one arm each, against its baseline) as one: the tasks' mean differences
    given equal weight, like the GLUE average (so MCC and F1 points are averaged as points), the standard error from
    theirs (the tasks' seeds are independent), and the t-test and interval with the Welch-Satterthwaite degrees of
    freedom. n: the pairs of all tasks. A summary of these tasks (fixed effects), not a prediction for others; one
    task gives its own test back."""
    variances = [test.se ** 2 for test in tests]
    mean, se = statistics.fmean(test.mean for test in tests), math.sqrt(sum(variances)) / len(tests)
    n = sum(test.n for test in tests)
    if se == 0:  # every difference equal within each task: no spread to test against, as ttest_1samp says too
        return PairedTest(n, mean, 0.0, mean, mean, math.nan, math.nan)
    df = sum(variances) ** 2 / sum(v * v / (test.n - 1) for v, test in zip(variances, tests))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * se
    t = mean / se
    return PairedTest(n, mean, se, float(mean - half), float(mean + half), t, float(2 * scipy_stats.t.sf(abs(t), df)))


def verdict(low: float, high: float, delta: float) -> str:
    """What a confidence interval (low, high) of a mean difference shows about an effect of size `delta`: "shown"
    (a gain: it lies above 0), "a loss shown" (below 0), "excluded" (a gain of delta or more: it lies below
    +delta), else "not shown". From the interval, so that a small p of a tiny effect and a large p of a wide
    interval read differently."""
    if low > 0:
        return "shown"
    if high < 0:
        return "a loss shown"
    if high < delta:
        return "excluded"
    return "not shown"


# -----------------------------------------------------------------------------
# what best-of selection gains with no effect at all


def selection_gain(k: int, n: int, sd: float, draws: int = DRAWS, k_baseline: int = 1) -> float:
    """The paper's unpaired design: the expected gain of the best of k medians of n seeds over the best of
    k_baseline medians (Table I: one median) when no arm has any effect and the arms are independent (every value
    drawn from one normal distribution of standard deviation sd). Monte Carlo."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.normal(0.0, sd, size=(draws, k + k_baseline, n)), axis=-1)
    return float((medians[:, k_baseline:].max(axis=1) - medians[:, :k_baseline].max(axis=1)).mean())


def paired_selection_gain(baseline: list[float], arms: list[list[float]], draws: int = DRAWS) -> float:
    """A paired design's own null: the expected gain of the best of the arms' medians over the baseline's median
    when no arm has any effect, from the study's values themselves. Each arm keeps its paired differences against
    the baseline, centred at 0 (its mean effect removed: baseline + d - mean(d)), so the arms keep the seeds' shared
    part and their spread about it; seeds are drawn with replacement, the same draw for every arm and the
    baseline. `baseline` and each arm: one value per seed, the same seeds in the same order."""
    base = np.asarray(baseline)
    differences = np.asarray(arms) - base
    null = base + differences - differences.mean(axis=1, keepdims=True)  # (arms, seeds)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(base), size=(draws, len(base)))  # (draws, seeds)
    best = np.median(null[:, picks], axis=-1).max(axis=0)  # (draws,): the best arm's median per draw
    return float((best - np.median(base[picks], axis=-1)).mean())
