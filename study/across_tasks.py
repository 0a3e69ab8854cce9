"""The arms that several tasks have, over those tasks: the tasks' paired tests combined (study.stats.over_tasks)
at the best and the last epoch, and the best-epoch tests pooled four ways with the tasks' heterogeneity, since how
to pool tasks is a choice."""
from study.arms import TaskRuns
from study.formatting import test_cells, verdict_text
from study.markdown import table
from study.paired import compared, paired
from study.stats import PairedTest, heterogeneity, inverse_variance, over_tasks, paired_test, verdict
from study.sweeps import num


def over_tasks_section(tasks: list[TaskRuns], delta: float) -> list[str]:
    """Each arm that two or more tasks have (by its label: min λ=1, student of max, α 0.5, T 2), against its
    baseline, over those tasks: study.stats.over_tasks of the tasks' paired tests, at the best and the last epoch;
    then the same best-epoch tests pooled four ways, with the tasks' heterogeneity (poolings_of)."""
    by_label = {}
    for t in tasks:
        for arm, base in compared(t):
            d_best, d_last = paired(arm, base, t.metric), paired(arm, base, t.metric, last=True)
            if arm is not base and len(d_best) > 1:
                by_label.setdefault(arm.label, []).append((t, paired_test(d_best), paired_test(d_last)))
    shared = {label: per_task for label, per_task in by_label.items() if len(per_task) > 1}
    if not shared:
        return []
    rows, verdicts, poolings = [], [], []
    for label, per_task in shared.items():
        best, last = (over_tasks([tests[i] for _, *tests in per_task]) for i in (0, 1))
        each = ", ".join(f"{t.name} ({t.metric}) {100 * b.mean:+.1f}, {b.n} pairs" for t, b, _ in per_task)
        rows.append((label, each, best.n, *test_cells(best), *test_cells(last)))
        verdicts.append(f"- {label}: best epoch {verdict_text(best, delta)}; last epoch {verdict_text(last, delta)}.")
        poolings += poolings_of(label, [b for _, b, _ in per_task], delta)
    header = ["arm", "tasks: Δ best epoch", "pairs", "best epoch: Δ (mean ± se)", "95% CI", "p",
              "last epoch: Δ (mean ± se)", "95% CI", "p"]
    return ["## Over tasks", "",
            "Each arm that two or more tasks have, against its baseline: the tasks' mean paired differences given "
            "equal weight, as the GLUE average does (so points of different metrics are averaged as points), with "
            "the standard error from the tasks' own and the t-test and 95% interval with Welch–Satterthwaite "
            "degrees of freedom. A summary of these tasks, not a prediction for others.", "",
            *table(header, rows), *verdicts, "",
            "How to pool tasks is a choice, a test only if made before the data: where the tasks disagree, other "
            "reasonable poolings give other answers. The best-epoch differences pooled four ways (equal weights and "
            "weights by pairs: t intervals, Welch–Satterthwaite; inverse-variance (fixed effect) and "
            "DerSimonian–Laird (random effects): normal intervals), with Cochran's Q of the tasks' means:", "",
            *poolings]


def poolings_of(label: str, tests: list[PairedTest], delta: float) -> list[str]:
    """One arm's best-epoch tests of several tasks pooled four ways, the heterogeneity, and the verdict that every
    pooling gives (or the part of it they share)."""
    pooled = {"equal weights": over_tasks(tests), "weights by pairs": over_tasks(tests, weights=[t.n for t in tests])}
    if all(t.se > 0 for t in tests):
        h = heterogeneity(tests)
        pooled |= {"inverse-variance": inverse_variance(tests),
                   f"DerSimonian–Laird (τ² {h.tau2 * 1e4:.2g} points²)": inverse_variance(tests, tau2=h.tau2)}
        spread = (f"Cochran's Q {h.q:.1f} on {h.df} degrees of freedom, p {h.p:.2g}, I² {h.i2:.2f}: the tasks "
                  + ("disagree beyond their sampling error." if h.p < 0.05 else "are not shown to disagree."))
    else:
        spread = "no heterogeneity test or inverse-variance pooling: a task's differences have no spread."
    rows = [(rule, *test_cells(test), verdict(test.low, test.high, delta / 100)) for rule, test in pooled.items()]
    verdicts = {row[-1] for row in rows}
    highest = max(test.high for test in pooled.values())
    common = (f"every pooling: {verdicts.pop()}" if len(verdicts) == 1 else
              f"a gain of δ = {num(delta)} excluded under every pooling (highest upper bound {100 * highest:+.1f})"
              if highest < delta / 100 else "no verdict holds under every pooling")
    return [f"{label}: {spread} What holds: {common}.", "",
            *table(["pooling", "best epoch: Δ (mean ± se)", "95% CI", "p", f"verdict, δ = {num(delta)}"], rows)]
