"""Where a report's runs come from and how they were made: its title, the folders added and pooled, the settings
the runs recorded, the runs left out, and per arm the commits, devices, paths and precision its runs record."""
import json
from pathlib import Path

from study.arms import TRAIN_SETTINGS, Arm, Pooling, Study, TaskRuns, computed
from study.formatting import seed_list
from study.markdown import table
from study.reading import RunFiles, SweepFiles

STUDENT_SETTINGS = ("epochs", "batch_size", "lr", "max_train_samples", "student_layers", "student")


def shown(folder: Path) -> Path:
    """A folder as the report names it: relative to the working directory when it lies below it."""
    return folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder


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


def opening(study: Study) -> list[str]:
    """The report's title, then what it reads: the runs finished, the folders of more tasks and of pooled seeds,
    the settings the fine-tuning runs and the students recorded, and the runs of each folder left out."""
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
    return lines


def commit_of(files: RunFiles) -> str | None:
    """The code a run was made from, as the report names it: its commit (7 digits), `+dirty` when the work tree held
    uncommitted changes (harness.runfiles.provenance), which the commit alone does not name; None: not recorded."""
    provenance = files.results.get("provenance", {})
    commit = provenance.get("commit")
    return None if commit is None else commit[:7] + "+dirty" * bool(provenance.get("dirty"))


def dirty_seeds(arm: Arm) -> list[int]:
    """The seeds of an arm whose runs were made from uncommitted code."""
    return [seed for seed, files in sorted(arm.seeds.items()) if files.results.get("provenance", {}).get("dirty")]


def provenance_table(t: TaskRuns) -> list[str]:
    """Each arm of the task with the commits, torch, devices, paths, threads, precision and compilation of its runs,
    and a line naming the runs made from uncommitted code, if any."""
    def values(arm: Arm, key: str) -> str:
        if key == "commit":
            return " / ".join(sorted({commit_of(f) or "–" for f in arm.seeds.values()}))
        return " / ".join(sorted({str(computed(f).get(key, f.results.get("provenance", {}).get(key, "–")))
                                  for f in arm.seeds.values()}))
    keys = ("commit", "torch", "device", "path", "threads", "amp", "compile")
    rows = [(arm.label, len(arm.seeds), *(values(arm, key) for key in keys)) for arm in t.arms.values()]
    lines = [f"### {t.name}", "", *table(["arm", "seeds", *keys], rows)]
    dirty = {arm.label: dirty_seeds(arm) for arm in t.arms.values()}
    named = [f"{label} (seed{'s' * (len(seeds) > 1)} {seed_list(seeds)})" for label, seeds in dirty.items() if seeds]
    if named:
        lines += [f"Made from uncommitted code (results.json dirty: true, the commit shown +dirty), so no commit "
                  f"repeats them: {', '.join(named)}.", ""]
    return lines


def provenance_section(tasks: list[TaskRuns]) -> list[str]:
    """The report's last section: how the runs of every task's arms were made."""
    lines = ["## How the runs were made", "",
             "Per arm, what the runs' results.json record of how they ran (several values: the seeds differ; –: not "
             "recorded, older runs). The two runs of every pair are checked to record the same (study.arms."
             "check_pairs), the arm aside.", ""]
    for t in tasks:
        lines += provenance_table(t)
    return lines
