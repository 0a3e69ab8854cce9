"""The statistics of report.py, as pure functions of lists of numbers: paired differences against a baseline (the
mean, its standard error, the t-test and confidence interval, and what the interval shows for an effect of a given
size), the same over several tasks, and what a best-of selection gains when no arm has any effect. Distributions
come from scipy.stats."""
import math
import statistics
from dataclasses import dataclass

import numpy as np

from common.optional import optional

DRAWS = 20000  # Monte Carlo and resampling draws, with a fixed seed so that reports repeat exactly


def scipy_stats():
    """scipy.stats, imported when a distribution is first needed (report.py asks before it reads anything), so that
    without scipy the report is one line, not a traceback."""
    return optional("scipy.stats", "report.py: the t-tests and confidence intervals need scipy, which is not "
                                   "installed: pip install -e '.[stats]'")


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
    result = scipy_stats().ttest_1samp(differences, 0.0)
    interval = result.confidence_interval(confidence)
    mean, se = mean_se(differences)
    return PairedTest(len(differences), mean, se, float(interval.low), float(interval.high),
                      float(result.statistic), float(result.pvalue))


def over_tasks(tests: list[PairedTest], confidence: float = 0.95, weights: list[float] | None = None) -> PairedTest:
    """The paired tests of several tasks (one arm each, against its baseline) as one: the tasks' mean differences
    averaged with `weights` (default equal, like the GLUE average, so MCC and F1 points are averaged as points;
    [test.n for test in tests] weighs each task by its pairs), the standard error from theirs (the tasks' seeds are
    independent), and the t-test and interval with the Welch-Satterthwaite degrees of freedom. n: the pairs of all
    tasks. A summary of these tasks (fixed effects), not a prediction for others; one task gives its own test back."""
    w = [1.0] * len(tests) if weights is None else [float(x) for x in weights]
    parts = [(x / sum(w)) ** 2 * test.se ** 2 for x, test in zip(w, tests)]  # each task's share of the variance
    mean, se = sum(x * test.mean for x, test in zip(w, tests)) / sum(w), math.sqrt(sum(parts))
    n = sum(test.n for test in tests)
    if se == 0:  # every difference equal within each task: no spread to test against, as ttest_1samp says too
        return PairedTest(n, mean, 0.0, mean, mean, math.nan, math.nan)
    df = sum(parts) ** 2 / sum(v * v / (test.n - 1) for v, test in zip(parts, tests))
    half = scipy_stats().t.ppf(0.5 + confidence / 2, df) * se
    t = mean / se
    return PairedTest(n, mean, se, float(mean - half), float(mean + half), t, float(2 * scipy_stats().t.sf(abs(t), df)))


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q of the tasks' mean differences about their inverse-variance mean, its chi-squared p on k - 1
    degrees of freedom, I^2 = max(0, (Q - df) / Q) (the share of the spread beyond sampling error), and the
    DerSimonian-Laird between-task variance tau^2."""
    q: float
    df: int
    p: float
    i2: float
    tau2: float


def heterogeneity(tests: list[PairedTest]) -> Heterogeneity:
    """Whether the tasks disagree beyond their own sampling error (every task's se > 0)."""
    w = [1 / test.se ** 2 for test in tests]
    fixed = inverse_variance(tests).mean
    q = sum(x * (test.mean - fixed) ** 2 for x, test in zip(w, tests))
    df = len(tests) - 1
    tau2 = max(0.0, (q - df) / (sum(w) - sum(x * x for x in w) / sum(w)))
    return Heterogeneity(q, df, float(scipy_stats().chi2.sf(q, df)), max(0.0, (q - df) / q) if q > 0 else 0.0, tau2)


def inverse_variance(tests: list[PairedTest], confidence: float = 0.95, tau2: float = 0.0) -> PairedTest:
    """The tasks' mean differences weighted by 1 / (se^2 + tau2): with tau2 0 the fixed-effect (inverse-variance)
    estimate, with heterogeneity(tests).tau2 DerSimonian-Laird's random-effects one; normal intervals, as those
    methods define them. Every task's se must be > 0 (or tau2 > 0)."""
    w = [1 / (test.se ** 2 + tau2) for test in tests]
    mean, se = sum(x * test.mean for x, test in zip(w, tests)) / sum(w), 1 / math.sqrt(sum(w))
    z = mean / se
    half = scipy_stats().norm.ppf(0.5 + confidence / 2) * se
    return PairedTest(sum(test.n for test in tests), mean, se, mean - half, mean + half, z,
                      float(2 * scipy_stats().norm.sf(abs(z))))


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


def paired_selection_gain(baseline: list[float], arms: list[list[float]], draws: int = DRAWS,
                          null: list[int] | None = None) -> float:
    """A paired design's own null: the expected gain of the best of the arms' medians over the baseline's median,
    from the study's values themselves, seeds drawn with replacement (the same draw for every arm and the
    baseline, so the arms keep each seed's shared part). The arms numbered in `null` (default: all) are assumed
    to have no effect: each is shifted so that, on its own, its median gains exactly 0 over the baseline's on
    these draws (the statistic is a median, so it is centred on medians, as resampled); the others keep their
    observed values. `baseline` and each arm: one value per seed, the same seeds in the same order."""
    base, values = np.asarray(baseline, dtype=float), np.asarray(arms, dtype=float)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(base), size=(draws, len(base)))  # (draws, seeds)
    base_medians = np.median(base[picks], axis=-1)  # (draws,)
    medians = np.median(values[:, picks], axis=-1)  # (arms, draws)
    for k in range(len(values)) if null is None else null:
        medians[k] -= medians[k].mean() - base_medians.mean()
    return float((medians.max(axis=0) - base_medians).mean())
