"""The report as one Markdown document: its sections in the order a reader meets them, each written by the module
of its job (provenance, paired, across_tasks, tables, per_task)."""
from pathlib import Path

from study.across_tasks import over_tasks_section
from study.arms import Study, load_study
from study.paired import DELTA, paired_sections
from study.per_task import per_task_sections
from study.provenance import opening, provenance_section
from study.tables import table_one_section, table_two_section


def report(sweep: Path, more: list[Path] = (), pool: Path | None = None, delta: float = DELTA,
           added: list[Path] = ()) -> str:
    """The Markdown report of a sweep folder, with the arms of the --with folders `more`, the seeds of the
    folder `pool` and the tasks of the `added` folders; `delta`: the effect, in metric points, the verdict lines
    test."""
    return markdown(load_study(sweep, more, pool, added), delta)


def markdown(study: Study, delta: float = DELTA) -> str:
    """The report of a study read already (load_study): what it reads, the paired differences and their tests (per
    task, then over tasks), Tables I and II (Table I only with fine-tuning runs), each task's settings, teachers and
    students, and how the runs were made."""
    tasks = study.tasks
    lines = opening(study) + paired_sections(tasks, delta) + over_tasks_section(tasks, delta)
    if any(not run.is_student for run in study.runs):
        lines += table_one_section(tasks)
    lines += table_two_section(tasks) + per_task_sections(tasks) + provenance_section(tasks)
    return "\n".join(lines)
