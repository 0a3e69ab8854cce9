"""The report's sections per task: the dev metric of every λ with each seed's value, the teachers chosen and why,
and the students of every teacher, α and T; the settings behind the choices of Tables I and II."""
from pathlib import Path

from study.arms import TaskRuns, median
from study.formatting import cmi, pct, seed_values
from study.markdown import table
from study.sweeps import TEACHERS, num


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


def per_task_sections(tasks: list[TaskRuns]) -> list[str]:
    """Each task's λ table (when it has fine-tuning runs), its teachers, and its students' table (when it has
    students)."""
    lines = ["## Per task", ""]
    for t in tasks:
        lines += (lambda_table(t) if any(t.runs.values()) else []) + teacher_section(t)
        if any(t.students.values()):
            lines += student_table(t)
    return lines
