"""Paired differences: every arm of a task against the run of its baseline with the same seed (same data,
initialisation and batch order), at the best and at the last epoch, with their t-tests and what each confidence
interval shows about an effect of δ points."""
import statistics

from study.arms import Arm, TaskRuns, baseline_of
from study.formatting import cmi, pm, seed_list, test_cells, verdict_text
from study.markdown import table
from study.provenance import commit_of
from study.stats import paired_test
from study.sweeps import num

DELTA = 1.0  # the effect (metric points) whose exclusion the verdict lines test, unless --delta says otherwise


def paired(arm: Arm, base: Arm, metric: str, last: bool = False) -> list[float]:
    """arm − base of the same seed, over the seeds both have: at the best epoch or, with last, the last."""
    return [arm.seeds[s].value(metric, last) - base.seeds[s].value(metric, last)
            for s in sorted(arm.seeds) if s in base.seeds]


def compared(t: TaskRuns, students: bool | None = None) -> list[tuple[Arm, Arm]]:
    """The task's arms that have a baseline, each with it (the baseline with itself): the fine-tuning arms, the
    students, or (None) both."""
    return [(arm, t.arms[baseline_of(key)]) for key, arm in t.arms.items()
            if baseline_of(key) in t.arms and students in (None, key[0].startswith("student"))]


def code_note(arm: Arm, base: Arm) -> list[str]:
    """A line for a pair whose two runs of one seed come from different code (another commit, or uncommitted
    changes): their difference is then the code's as well as the arm's. Nothing where no pair does (a run that does
    not record its commit is not compared)."""
    commits = {s: (commit_of(arm.seeds[s]), commit_of(base.seeds[s]))
               for s in sorted(arm.seeds.keys() & base.seeds.keys())}
    seeds = [s for s, (a, b) in commits.items() if a and b and a != b]
    if not seeds:
        return []
    mine, theirs = (" / ".join(sorted({commits[s][side] for s in seeds})) for side in (0, 1))
    return [f"- {arm.label} against {base.label}: two code versions, commit {mine} against {theirs} "
            f"(seed{'s' * (len(seeds) > 1)} {seed_list(seeds)}): each difference is the code's as well as the arm's."]


def paired_sections(tasks: list[TaskRuns], delta: float) -> list[str]:
    """The report's first section: each task's paired differences and their tests."""
    lines = ["## Paired differences against CE", "",
             "Every arm against the ce run of the same seed (same data, initialisation and batch order), the "
             "comparison that can show an effect; the paper-format tables below pick the best setting per task "
             "and carry the gain of that selection too.", ""]
    for t in tasks:
        lines += paired_section(t, delta)
    return lines


def paired_section(t: TaskRuns, delta: float) -> list[str]:
    """Every fine-tuning arm against ce, every student against the student of the ce teacher, paired by seed: the
    best-epoch and the last-epoch dev metric (mean ± standard error of the differences over seeds), and the
    arm's train and dev CMI after its last epoch; then the t-test of each arm's differences."""
    lines = []
    for kind, against in (("fine-tuning", "ce"), ("students", "the student of the ce teacher")):
        pairs = compared(t, kind == "students")
        if not pairs:
            continue
        rows = []
        for arm, base in pairs:
            d_best, d_last = paired(arm, base, t.metric), paired(arm, base, t.metric, last=True)
            rows.append((arm.label, len(arm.seeds), pm([f.results[t.metric] for f in arm.seeds.values()]).lstrip("+"),
                         "(baseline)" if arm is base else pm(d_best) if d_best else "–",
                         "(baseline)" if arm is base else pm(d_last) if d_last else "–",
                         cmi(statistics.fmean(f.epochs[-1]["train_cmi"] for f in arm.seeds.values())),
                         cmi(statistics.fmean(f.epochs[-1]["eval_cmi"] for f in arm.seeds.values()))))
        header = ["arm", "seeds", f"dev {t.metric}, best epoch (mean ± se)", "Δ best epoch", "Δ last epoch",
                  "train CMI (last epoch)", "dev CMI (last epoch)"]
        note = (f"Δ: the arm's dev {t.metric} minus that of {against} with the same seed, in points, mean ± "
                "standard error over the seeds both have. A difference within about two standard errors of 0 is no "
                "evidence of an effect.")
        lines += [f"### {t.name}, {kind}: paired differences against {against}", "", note, ""]
        lines += table(header, rows)
        versions = [line for arm, base in pairs if arm is not base for line in code_note(arm, base)]
        lines += [*versions, ""] if versions else []
        lines += tests_section(t, [(arm, base) for arm, base in pairs if arm is not base], delta)
    return lines


def tests_section(t: TaskRuns, pairs: list[tuple[Arm, Arm]], delta: float) -> list[str]:
    """The paired t-test of every arm at the best and at the last epoch, and what each confidence interval shows
    about an effect of `delta` points."""
    if not pairs:
        return []
    rows, verdicts = [], []
    for arm, base in pairs:
        d_best, d_last = paired(arm, base, t.metric), paired(arm, base, t.metric, last=True)
        best, last = (paired_test(d) if len(d) > 1 else None for d in (d_best, d_last))
        rows.append((arm.label, len(d_best), *test_cells(best), *test_cells(last)))
        verdicts.append(f"- {arm.label}: best epoch {verdict_text(best, delta)}; "
                        f"last epoch {verdict_text(last, delta)}.")
    header = ["arm", "pairs", "best epoch: Δ (mean ± se)", "95% CI", "p", "last epoch: Δ (mean ± se)", "95% CI", "p"]
    return ["Paired t-tests of the same differences: two-sided, scipy.stats.ttest_1samp against 0 with pairs − 1 "
            "degrees of freedom, and the t confidence interval of the mean; each arm on its own, not corrected for "
            "the number of arms. The last epoch involves no selection over epochs.", "",
            *table(header, rows),
            f"An effect of δ = {num(delta)} point{'s' * (delta != 1)}, read from the 95% confidence interval (not "
            "from p): **shown**, a gain (the interval lies above 0); **a loss shown** (it lies below 0); "
            "**excluded**, a gain of δ or more (it lies below +δ); otherwise **not shown**.", "",
            *verdicts, ""]
