"""Tables I and II in the paper's format: per task, ce against min-CMI fine-tuning at its best λ, and the
DistilBERT students of the ce and of the max-CMI teacher at their best (α, T); each with what its best-of
selection gains with no effect at all (study.best_of)."""
from study.arms import TaskRuns
from study.best_of import (CHOOSING_SEEDS, held_out_lines, paired_selection_line, selection_line,
                           student_selection_line)
from study.formatting import diff, pct
from study.markdown import table
from study.sweeps import num


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


def table_one_section(tasks: list[TaskRuns]) -> list[str]:
    """Table I, after what its selection gains with no effect, and before the λ chosen held out."""
    lines = ["## Table I: CE vs. min-CMI fine-tuning (best-of selection)", "",
             "The paper's format: per task, the λ with the highest median over seeds against the ce median. "
             "This is a best-of selection: with no effect at all it still gains, by about this much:", ""]
    lines += [line for t in tasks for line in selection_line(t) + paired_selection_line(t)] + [""]
    lines += table_one(tasks)
    held_out = [line for t in tasks for line in held_out_lines(t)]
    if held_out:
        lines += [f"Held out: λ chosen on the first {CHOOSING_SEEDS} seeds that ce and every λ share, by each of "
                  "two rules, then compared with ce on the seeds the choice did not see:", "", *held_out, ""]
    return lines


def table_two_section(tasks: list[TaskRuns]) -> list[str]:
    """Table II, after what its selection gains with no effect."""
    lines = ["## Table II: DistilBERT students of a CE and of a max-CMI teacher (best-of selection)", "",
             "The paper's format: per task and teacher, the (α, T) with the highest median over seeds. Both columns "
             "are best-of selections, so with no effect at all the Δ gains by about this much:", ""]
    lines += [line for t in tasks for line in student_selection_line(t)] + [""]
    return lines + table_two(tasks)
