"""Tables I and II of arXiv 2502.11258 from a sweep folder (written by sweep.py), as Markdown on stdout.

    python report.py sweeps/glue > report.md
    python report.py sweeps/glue --plots figures   # with matplotlib: dev metric and dev CMI against lambda
    python report.py sweeps/new-seeds --pool sweeps/glue   # the same arms, more seeds: pooled
    python report.py sweeps/cola --add-tasks sweeps/mrpc   # more tasks, from their own folders: over tasks too

Every number is a run's best epoch (by the task's dev metric) from its results.json; a setting's value is
the median over its seeds. First, every arm against the ce run of the same seed: the paired differences, their
t-tests and confidence intervals, and what those show about an effect of a stated size; the arms that several tasks
have, over those tasks. Table I: plain fine-tuning
(ce) against min-CMI fine-tuning at its best lambda, the lambda with the highest median dev metric, with what that
choice gains with no effect at all and how it fares on seeds it was not made on. Table II: the DistilBERT students
of the ce teacher and of the max-CMI teacher, each at its best (alpha, T). Behind each choice, the table of every
setting with each seed's value, and which teachers were selected and why. Metrics print as percentages, like the
paper. Needs scipy (pip install -e ".[stats]").
"""
import argparse
import json
import statistics
import sys
import textwrap
from pathlib import Path

from study.markdown import table
from study.reading import SweepFiles
from study.stats import (DRAWS, PairedTest, heterogeneity, inverse_variance, mean_se, over_tasks,
                           paired_selection_gain, paired_test, selection_gain, verdict)
from study.arms import (TRAIN_SETTINGS, Arm, Pooling, Study, TaskRuns, baseline_of, computed, load_study, median)
from study.sweeps import TEACHERS, num

try:  # optional: pip install -e ".[plot]"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None

STUDENT_SETTINGS = ("epochs", "batch_size", "lr", "max_train_samples", "student_layers", "student")
CHOOSING_SEEDS = 3  # the held-out check chooses λ on as many seeds as the paper has, and tests it on the rest
DELTA = 1.0  # the effect (metric points) whose exclusion the verdict lines test, unless --delta says otherwise


# -----------------------------------------------------------------------------
# Markdown


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def diff(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{100 * (a - b):+.1f}"


def cmi(x: float) -> str:
    return f"{x:.3g}"


def shown(folder: Path) -> Path:
    """A folder as the report names it: relative to the working directory when it lies below it."""
    return folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder


def seed_list(seeds) -> str:
    """Seeds with their runs of three or more as ranges: 0–4, 7, 8, 11–14."""
    runs = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs)


def seed_values(seeds: dict[int, dict], key: str) -> str:
    return ", ".join(f"{seed}: {pct(results[key])}" for seed, results in sorted(seeds.items()))


def settings_line(results: list[dict], keys: tuple[str, ...]) -> str:
    """The run arguments `keys`, one value each; several values are flagged (a sweep run with other options)."""
    parts = []
    for key in keys:
        values = sorted({json.dumps(r["args"].get(key)) for r in results})
        if values != ["null"]:
            mixed = " (MIXED: runs with other options)" if len(values) > 1 else ""
            parts.append(f"{key} {' / '.join(values)}{mixed}")
    return ", ".join(parts)


def pooling_lines(pooling: Pooling) -> list[str]:
    """What --pool added: the seeds of each arm, the arms left out, the settings recorded in one folder only."""
    added = [f"{label} (seeds {seed_list(seeds)})" for label, seeds in pooling.added.items()]
    lines = [f"Pooled with {shown(pooling.folder)}, as more seeds of the same arms: " + (", ".join(added) or "none")
             + "; the runs of each arm there recorded the same settings as here."]
    if pooling.other_arms:
        lines.append(f"Its other arms are left out: {', '.join(pooling.other_arms)}.")
    if pooling.only_one:
        settings = ", ".join(f"{key} {' / '.join(values)}" for key, values in pooling.only_one.items())
        lines.append("Settings that the runs of only one of the two folders record (not compared; options added to "
                     f"train.py in between): {settings}.")
    return lines + [""]


def left_out(read: SweepFiles, where: str = "") -> list[str]:
    """The runs of a folder the report leaves out: started and not finished, or with files it cannot read."""
    lines = []
    if read.unfinished:
        lines += [f"Not finished{where} ({len(read.unfinished)}): " + ", ".join(f"`{f}`" for f in read.unfinished), ""]
    if read.unreadable:
        lines += [f"Left out{where}, files that cannot be read ({len(read.unreadable)}):", ""]
        lines += [f"- `{folder}`: {why}" for folder, why in read.unreadable.items()] + [""]
    return lines


def table_one(tasks: list[TaskRuns]) -> list[str]:
    rows = [(t.name, t.metric, pct(t.ce_median()), pct(t.min_median()),
                "–" if t.best_lam is None else num(t.best_lam), diff(t.min_median(), t.ce_median())) for t in tasks]
    return table(["task", "metric", "CE", "min-CMI", "best λ", "Δ (min − CE)"], rows)


def table_two(tasks: list[TaskRuns]) -> list[str]:
    def best(t, kind):
        setting = t.best_student[kind]
        return "–" if setting is None else f"{num(setting[0])}, {num(setting[1])}"
    rows = [(t.name, t.metric, pct(t.teacher_value("ce")), pct(t.student_median("ce")), best(t, "ce"),
                pct(t.teacher_value("max")), pct(t.student_median("max")), best(t, "max"),
                diff(t.student_median("max"), t.student_median("ce"))) for t in tasks]
    return table(["task", "metric", "CE teacher", "its student", "α, T", "max-CMI teacher", "its student", "α, T",
                  "Δ (students)"], rows)


def lambda_table(t: TaskRuns) -> list[str]:
    rows = []
    if t.ce:
        rows.append(("ce", "–", pct(median(t.ce, t.metric)), seed_values(t.ce, t.metric),
                        cmi(median(t.ce, "eval_cmi"))))
    for mode in ("min", "max"):
        for lam, seeds in t.lams[mode].items():
            mark = " ← best" if mode == "min" and lam == t.best_lam else ""
            rows.append((mode, num(lam), pct(median(seeds, t.metric)) + mark, seed_values(seeds, t.metric),
                            cmi(median(seeds, "eval_cmi"))))
    header = ["run", "λ", "median", "seeds", "dev CMI (median)"]
    return [f"### {t.name}: dev {t.metric} (%) by λ", ""] + table(header, rows)


def teacher_section(t: TaskRuns) -> list[str]:
    def rel(path: Path) -> str:
        return f"`{path.relative_to(t.sweep) if path.is_relative_to(t.sweep) else path}`"

    lines = [f"### {t.name}: teachers", ""]
    if t.chosen["ce"]:
        value = t.results_at(t.chosen["ce"])[t.metric]
        lines.append(f"- CE teacher: {rel(t.chosen['ce'])}, dev {t.metric} {pct(value)}: the highest of "
                     f"{len(t.runs['ce'])} ce runs.")
    if t.selection_error:
        lines.append(f"- max-CMI teacher: none, {t.selection_error}")
    if t.selection:
        c = t.selection.chosen
        lines.append(f"- max-CMI teacher: {rel(c.run)}, dev {t.metric} / dev CMI = {c.metric:.4g} / {c.eval_cmi:.4g} = "
                     f"{c.ratio:.4g}: the highest ratio of {len(t.selection.candidates)} max runs (the paper's rule).")
        lines += [f"- note: {note}" for note in t.selection.notes]
    for kind in TEACHERS:
        if t.used[kind]:
            changed = t.used[kind] != [t.chosen[kind]]
            differs = ("" if not changed else " (teachers from outside this sweep folder)" if t.chosen[kind] is None
                       else " (not the teacher chosen now: the sweep folder changed since)")
            lines.append(f"- the students of the {kind} teacher were distilled from "
                         + ", ".join(map(rel, t.used[kind])) + differs + ".")
    lines.append("")
    if t.selection:
        rows = [(rel(c.run), pct(c.metric), cmi(c.eval_cmi), f"{c.ratio:.4g}" + (" ← selected" if i == 0 else ""))
                for i, c in enumerate(t.selection.candidates)]
        lines += table(["max run", f"dev {t.metric} (%)", "dev CMI", "ratio"], rows)
    return lines


def student_table(t: TaskRuns) -> list[str]:
    rows = []
    for kind in ("ce", "max"):
        for (alpha, temperature), seeds in t.students[kind].items():
            mark = " ← best" if (alpha, temperature) == t.best_student[kind] else ""
            rows.append((kind, num(alpha), num(temperature), pct(median(seeds, t.metric)) + mark,
                            seed_values(seeds, t.metric)))
    return [f"### {t.name}: students, dev {t.metric} (%) by teacher, α and T", ""] + \
        table(["teacher", "α", "T", "median", "seeds"], rows)


def report(sweep: Path, more: list[Path] = (), pool: Path | None = None, delta: float = DELTA,
           added: list[Path] = ()) -> str:
    """The Markdown report of a sweep folder, with the arms of the --with folders `more`, the seeds of the
    folder `pool` and the tasks of the `added` folders; `delta`: the effect, in metric points, the verdict lines
    test."""
    return markdown(load_study(sweep, more, pool, added), delta)


def markdown(study: Study, delta: float = DELTA) -> str:
    """The report of a study read already (load_study)."""
    tasks = study.tasks
    train_results = [v.results for r, v in study.runs.items() if not r.is_student]
    student_results = [v.results for r, v in study.runs.items() if r.is_student]
    lines = [f"# Sweep {shown(study.sweep.folder)}", "",
             f"{len(train_results)} fine-tuning runs and {len(student_results)} students finished; values are dev "
             "metrics in %, the median over seeds of each run's best epoch.", ""]
    for other in study.added:
        names = ", ".join(t.name for t in study.tasks if t.sweep == other.folder)
        lines += [f"With the tasks of {shown(other.folder)}: {names or 'none finished'}.", ""]
    if study.pooling:
        lines += pooling_lines(study.pooling)
    if train_results:
        lines += [f"Fine-tuning: {settings_line(train_results, TRAIN_SETTINGS)}.", ""]
    if student_results:
        lines += [f"Students: {settings_line(student_results, STUDENT_SETTINGS)}.", ""]
    lines += left_out(study.sweep)
    for folder in ([study.pooled] if study.pooled else []) + [folder for _, folder in study.more] + study.added:
        lines += left_out(folder, f" in {shown(folder.folder)}")
    lines += ["## Paired differences against CE", "",
              "Every arm against the ce run of the same seed (same data, initialisation and batch order), the "
              "comparison that can show an effect; the paper-format tables below pick the best setting per task "
              "and carry the gain of that selection too.", ""]
    for t in tasks:
        lines += paired_section(t, delta)
    lines += over_tasks_section(tasks, delta)
    if train_results:
        lines += ["## Table I: CE vs. min-CMI fine-tuning (best-of selection)", "",
                  "The paper's format: per task, the λ with the highest median over seeds against the ce median. "
                  "This is a best-of selection: with no effect at all it still gains, by about this much:", ""]
        lines += [line for t in tasks for line in selection_line(t) + paired_selection_line(t)] + [""]
        lines += table_one(tasks)
        held_out = [line for t in tasks for line in held_out_lines(t)]
        if held_out:
            lines += [f"Held out: λ chosen on the first {CHOOSING_SEEDS} seeds that ce and every λ share, by each of "
                      "two rules, then compared with ce on the seeds the choice did not see:", "", *held_out, ""]
    lines += ["## Table II: DistilBERT students of a CE and of a max-CMI teacher (best-of selection)", "",
              "The paper's format: per task and teacher, the (α, T) with the highest median over seeds. Both columns "
              "are best-of selections, so with no effect at all the Δ gains by about this much:", ""]
    lines += [line for t in tasks for line in student_selection_line(t)] + [""]
    lines += table_two(tasks)
    lines += ["## Per task", ""]
    for t in tasks:
        lines += (lambda_table(t) if any(t.runs.values()) else []) + teacher_section(t)
        if any(t.students.values()):
            lines += student_table(t)
    lines += ["## How the runs were made", "",
              "Per arm, what the runs' results.json record of how they ran (several values: the seeds differ; –: not "
              "recorded, older runs). The two runs of every pair are checked to record the same (study.arms."
              "check_pairs), the arm aside.", ""]
    for t in tasks:
        lines += provenance_table(t)
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# paired differences: each arm against the ce run of the same seed


def provenance_table(t: TaskRuns) -> list[str]:
    """Each arm of the task with the commits, torch, devices, paths, threads, precision and compilation of its runs."""
    def values(arm: Arm, key: str) -> str:
        found = sorted({str(computed(f).get(key, f.results.get("provenance", {}).get(key, "–"))) for f in
                        arm.seeds.values()})
        return " / ".join(v[:7] if key == "commit" else v for v in found)
    keys = ("commit", "torch", "device", "path", "threads", "amp", "compile")
    rows = [(arm.label, len(arm.seeds), *(values(arm, key) for key in keys)) for arm in t.arms.values()]
    return [f"### {t.name}", "", *table(["arm", "seeds", *keys], rows)]


def pm(values: list[float], scale: float = 100) -> str:
    mean, se = mean_se(values)
    return f"{scale * mean:+.1f}" + ("" if se is None else f" ± {scale * se:.1f}")


def paired(arm: Arm, base: Arm, metric: str, last: bool = False) -> list[float]:
    """arm − base of the same seed, over the seeds both have: at the best epoch or, with last, the last."""
    return [arm.seeds[s].value(metric, last) - base.seeds[s].value(metric, last)
            for s in sorted(arm.seeds) if s in base.seeds]


def compared(t: TaskRuns, students: bool | None = None) -> list[tuple[Arm, Arm]]:
    """The task's arms that have a baseline, each with it (the baseline with itself): the fine-tuning arms, the
    students, or (None) both."""
    return [(arm, t.arms[baseline_of(key)]) for key, arm in t.arms.items()
            if baseline_of(key) in t.arms and students in (None, key[0].startswith("student"))]


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
        lines += tests_section(t, [(arm, base) for arm, base in pairs if arm is not base], delta)
    return lines


def interval(test: PairedTest) -> str:
    return f"{100 * test.low:+.1f} to {100 * test.high:+.1f}"


def test_cells(test: PairedTest | None) -> tuple[str, str, str]:
    """mean ± se, the 95% confidence interval and p, in points; "–" without a test (fewer than 2 pairs)."""
    if test is None:
        return "–", "–", "–"
    p = "< 0.001" if test.p < 0.001 else f"{test.p:.2g}"
    return f"{100 * test.mean:+.1f} ± {100 * test.se:.1f}", interval(test), p


def verdict_text(test: PairedTest | None, delta: float) -> str:
    if test is None:
        return "not estimated (fewer than 2 pairs)"
    return f"{verdict(test.low, test.high, delta / 100)} ({interval(test)})"


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


# -----------------------------------------------------------------------------
# best-of selection: what it gains with no effect at all, and how it fares held out


def common_seeds(t: TaskRuns) -> list[int]:
    """The seeds that ce and every min λ share."""
    return sorted(set(t.ce).intersection(*t.lams["min"].values()))


def selection_line(t: TaskRuns) -> list[str]:
    """What Table I's best-of selection gains with no effect at all in the paper's unpaired design: independent
    medians with the seeds' spread."""
    k, counts = len(t.lams["min"]), sorted(len(seeds) for seeds in t.lams["min"].values())
    if k < 2:
        return [f"- {t.name}: none: {k} λ, so no choice is made (the Δ is that of the one λ's median)."] if k else []
    if len(t.ce) < 2:
        return [f"- {t.name}: not estimated yet: the seeds' spread needs at least 2 ce seeds ({len(t.ce)} finished)."]
    sd = statistics.stdev(r[t.metric] for r in t.ce.values())
    n = counts[0]  # with unequal seed counts the fewest, which gains the most
    fewest = "" if counts[0] == counts[-1] else f" (the fewest of any λ, which have {counts[0]}–{counts[-1]})"
    gain = selection_gain(k, n, sd)
    return [f"- {t.name}, the paper's unpaired design: choosing the best of {k} λ by the median of {n} seeds{fewest} "
            f"gains {100 * gain:+.1f} points over one median with no effect at all (ce seeds' sd {100 * sd:.1f}, "
            f"normal model, {DRAWS:,} draws)."]


def paired_selection_line(t: TaskRuns) -> list[str]:
    """What the same selection gains with no effect in this study's paired design, resampled from its own values
    (the arms share each seed's effect), under two counterfactuals: no λ has any effect; only the λ Table I picks
    has none, the others keep their observed effects (a λ that clearly hurts then rarely wins the selection)."""
    k, seeds = len(t.lams["min"]), common_seeds(t)
    if k < 2:
        return []
    if len(seeds) < 2:
        return [f"- {t.name}, this study's paired design: not estimated: ce and every λ share {len(seeds)} seed(s)."]
    lams = list(t.lams["min"])
    values = [[t.lams["min"][lam][s][t.metric] for s in seeds] for lam in lams]
    ce = [t.ce[s][t.metric] for s in seeds]
    every, chosen = paired_selection_gain(ce, values), paired_selection_gain(ce, values, null=[lams.index(t.best_lam)])
    return [f"- {t.name}, this study's paired design, resampled from its own values on the {len(seeds)} seeds ce and "
            f"every λ share (seeds drawn with replacement, the same draw for every arm, {DRAWS:,} draws; an arm assumed "
            "to have no effect is shifted so that its median alone gains 0 over ce's): if no λ had any effect, "
            f"{100 * every:+.1f} points; if λ {num(t.best_lam)} (Table I's pick) had none and the other λ their "
            f"observed effects, {100 * chosen:+.1f}."]


def held_out_lines(t: TaskRuns) -> list[str]:
    """λ chosen on the first seeds by the median of each λ (Table I's rule) and by the mean paired difference
    against ce, each then compared with ce on the seeds the choice did not see."""
    lams, seeds = t.lams["min"], common_seeds(t)
    if len(lams) < 2:
        return []
    if len(seeds) <= CHOOSING_SEEDS:
        return [f"- {t.name}: no held-out check: ce and every λ share {len(seeds)} seeds, {CHOOSING_SEEDS} to choose "
                "on and at least one to test on are needed."]
    choose = seeds[:CHOOSING_SEEDS]
    rules = {"the median of each λ": (lambda lam: statistics.median(lams[lam][s][t.metric] for s in choose), pct),
             "the mean paired difference against ce": (lambda lam: statistics.fmean(
                 lams[lam][s][t.metric] - t.ce[s][t.metric] for s in choose), lambda x: f"{100 * x:+.1f}")}
    lines = []
    for rule, (score, text) in rules.items():
        best = max(lams, key=score)
        rest = [s for s in sorted(lams[best]) if s in t.ce and s not in choose]
        d = [lams[best][s][t.metric] - t.ce[s][t.metric] for s in rest]
        scores = ", ".join(f"λ {num(lam)} {text(score(lam))}" for lam in lams)
        lines.append(f"- {t.name}, by {rule} on seeds {seed_list(choose)} ({scores}): λ {num(best)}; against ce on "
                     f"seeds {seed_list(rest)}: " + ", ".join(f"{100 * x:+.1f}" for x in d) + f" (mean {pm(d)}).")
    return lines


def student_selection_line(t: TaskRuns) -> list[str]:
    """What Table II's Δ gains with no effect: the best of the max teacher's (α, T) against the best of the ce
    teacher's, each a median of the students' seeds; the spread is that of the ce teacher's students."""
    k = {kind: len(t.students[kind]) for kind in TEACHERS}
    if not all(k.values()):
        missing = " and ".join(kind for kind in TEACHERS if not k[kind])
        return [f"- {t.name}: no Δ: this sweep holds no student of a {missing} teacher."]
    if max(k.values()) == 1:
        return [f"- {t.name}: one (α, T) per teacher, no selection: the Δ is a plain difference of medians."]
    per_setting = [statistics.stdev(r[t.metric] for r in seeds.values())
                   for seeds in t.students["ce"].values() if len(seeds) > 1]
    if not per_setting:
        return [f"- {t.name}: not estimated yet: the seeds' spread needs at least 2 seeds of a ce teacher's student."]
    sd = statistics.fmean(per_setting)
    n = len({s for seeds in t.students["max"].values() for s in seeds})
    gain = selection_gain(k["max"], n, sd, k_baseline=k["ce"])
    return [f"- {t.name}: the best of {k['max']} (α, T) against the best of {k['ce']}, medians of {n} seeds: "
            f"{100 * gain:+.1f} points with no effect at all (sd {100 * sd:.1f}, the mean over (α, T) of the ce "
            f"teacher's students' sd; normal model, {DRAWS:,} draws)."]


# -----------------------------------------------------------------------------
# plots


def plot_paired(t: TaskRuns, path: Path, delta: float = DELTA) -> bool:
    """The paired differences per arm: each seed a dot, and beside them the mean with its 95% t interval (the one
    the verdicts read), against 0 and +δ. False, drawing nothing, when no arm has a baseline to be paired with."""
    pairs = [(arm, base) for arm, base in compared(t) if arm is not base]
    if not pairs:
        return False
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 1.3 * len(pairs)), 4.5))
    for i, (arm, base) in enumerate(pairs):
        d = [100 * x for x in paired(arm, base, t.metric)]
        ax.scatter([i - 0.12] * len(d), d, color="tab:blue", alpha=0.5, s=16)
        if len(d) > 1:
            test = paired_test(d)
            ax.errorbar([i + 0.12], [test.mean], yerr=[[test.mean - test.low], [test.high - test.mean]], fmt="o",
                        color="black", capsize=4)
    ax.axhline(0, color="gray", linestyle="--")
    ax.axhline(delta, color="tab:green", linestyle=":", label=f"δ = +{num(delta)}")
    ax.set_xticks(range(len(pairs)), [textwrap.fill(arm.label, 20) for arm, _ in pairs], fontsize=9)
    ax.set_ylabel(f"Δ dev {t.metric} (points)")
    ax.legend(loc="lower right", fontsize=8)
    baselines = " / ".join(sorted({base.label for _, base in pairs}))
    ax.set_title(f"{t.name}: each arm minus {baselines} of the same seed\n(dots: seeds; beside them: the mean and its "
                 "95% t interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot(t: TaskRuns, path: Path) -> None:
    """Dev metric and dev CMI against lambda (min and max: the median and each seed), ce as a line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label, scale in [(axes[0], t.metric, f"dev {t.metric} (%)", 100), (axes[1], "eval_cmi", "dev CMI", 1)]:
        for mode, color in (("min", "tab:blue"), ("max", "tab:red")):
            lams = list(t.lams[mode])
            if not lams:
                continue
            ax.plot(lams, [scale * median(t.lams[mode][lam], key) for lam in lams], "o-", color=color,
                    label=f"{mode} (median)")
            for lam in lams:
                values = [scale * r[key] for r in t.lams[mode][lam].values()]
                ax.scatter([lam] * len(values), values, color=color, alpha=0.3, s=12)
        if t.ce:
            ax.axhline(scale * median(t.ce, key), color="black", linestyle="--", label="ce (median)")
        ax.set_xscale("log")
        lams = sorted({lam for mode in ("min", "max") for lam in t.lams[mode]})
        ax.set_xticks(lams, [num(lam) for lam in lams])
        ax.minorticks_off()
        ax.set_xlabel("λ")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(t.name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the sweep folder (sweep.py --out)")
    parser.add_argument("--plots", help="folder for the PNG plots, one per task (default: SWEEP/plots; "
                                        "needs matplotlib)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    parser.add_argument("--with", dest="more", action="append", default=[], metavar="DIR",
                        help="another sweep folder whose runs are more arms, paired with SWEEP's ce runs (an arm "
                             "that differs by a flag, e.g. --cmi-feature cls); repeatable")
    parser.add_argument("--pool", metavar="DIR",
                        help="another sweep folder of the same protocol whose runs are more seeds of SWEEP's arms "
                             "(its other arms are left out); refused when an arm's recorded settings differ other "
                             "than by seed and folder, or a seed is in both")
    parser.add_argument("--add-tasks", dest="added", action="append", default=[], metavar="DIR",
                        help="another sweep folder whose tasks SWEEP does not have (a study of another task, run to "
                             "its own folder): reported beside SWEEP's, and the arms they share summarised over "
                             "tasks; repeatable")
    parser.add_argument("--delta", type=float, default=DELTA, metavar="POINTS",
                        help="the effect size, in metric points, that each arm's verdict says is shown, excluded or "
                             "neither, from the 95%% confidence interval of its paired differences (default: "
                             "%(default)g)")
    args = parser.parse_args(argv)
    for folder in [args.sweep, *args.more, *([args.pool] if args.pool else []), *args.added]:
        if not Path(folder).is_dir():
            parser.exit(2, f"error: {folder} is not a folder\n")
    if not args.delta > 0:
        parser.exit(2, f"error: --delta {args.delta}: must be above 0\n")
    try:
        study = load_study(Path(args.sweep), [Path(f) for f in args.more], args.pool and Path(args.pool),
                           [Path(f) for f in args.added])
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    print(markdown(study, args.delta))
    if args.no_plots:
        return
    if plt is None:
        print("matplotlib is not installed: no plots (pip install -e '.[plot]')", file=sys.stderr)
        return
    folder = Path(args.plots) if args.plots else study.sweep.folder / "plots"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for t in study.tasks:
            if any(t.lams.values()):
                plot(t, folder / f"{t.name}.png")
                print(f"wrote {folder / f'{t.name}.png'}", file=sys.stderr)
            if plot_paired(t, folder / f"{t.name}-paired.png", args.delta):  # students too
                print(f"wrote {folder / f'{t.name}-paired.png'}", file=sys.stderr)
    except OSError as e:  # a read-only sweep folder: the report is printed, the plots cannot be
        parser.exit(2, f"error: {folder}: cannot write the plots ({e.strerror or e}); pass --plots DIR or --no-plots\n")


if __name__ == "__main__":
    main()
