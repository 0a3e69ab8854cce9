"""A report's study: the sweep folders read (study.reading), SWEEP's runs pooled with the seeds of another folder
of the same protocol, and the runs grouped by task, setting and arm, with the choices that Tables I and II make
from them (the best λ and (α, T) by median, the teachers as sweep.py chooses them). report.py writes it out."""
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from cmi.selection import select_teacher
from common.errors import TrainingError
from data.tasks import primary_metric
from study.reading import RunFiles, SweepFiles, read_sweep
from study.sweeps import TEACHERS, TRAIN_MODES, Run, num, results_of, task_order

TRAIN_SETTINGS = ("model", "epochs", "batch_size", "lr", "max_train_samples", "cmi_scale", "cmi_feature", "tau")
PER_RUN = ("seed", "out", "teacher", "resume", "overwrite")  # arguments that differ between the seeds of one arm
# what may differ between the two runs of a pair: the arm (the objective and its options, the teacher of a student)
# and what is no part of a run's identity (harness.runfiles.NOT_IDENTITY)
ARM_ARGS = {"mode", "lam", "centroids", "cmi_feature", "cmi_scale", "tau", "cmi_weighting", "gamma", "teacher",
            "resume", "overwrite", "out", "keep_last", "log_every", "tensorboard"}
# how a run computed, from its results.json provenance (harness.runlog.settings): the same in both runs of a pair
COMPUTE = ("path", "threads", "amp", "compile", "world_size", "data")


def seeds_by_setting(runs: dict[Run, dict], setting) -> dict:
    """{setting(run): {seed: results}}, settings in the grid's order."""
    table = {}
    for run in sorted(runs, key=Run.sort_key):
        table.setdefault(setting(run), {})[run.seed] = runs[run]
    return table


def median(seeds: dict[int, dict], key: str) -> float:
    return statistics.median(results[key] for results in seeds.values())


def best_setting(table: dict, metric: str):
    """The setting with the highest median dev metric (ties: the first in sorted order); None if empty."""
    return max(table, key=lambda s: median(table[s], metric), default=None)


@dataclass
class Arm:
    """The runs of one setting (mode, lambda; from SWEEP or from a --with folder), by seed."""
    label: str
    seeds: dict[int, RunFiles]


def arms_of(task: str, runs: dict[Run, RunFiles], suffix: str = "") -> dict[tuple, Arm]:
    """The arms of a task in one sweep folder: fine-tuning (mode, lam, suffix) and students (student-KIND,
    (alpha, T), suffix) -> Arm."""
    arms = {}
    for run in sorted((r for r in runs if r.task == task), key=Run.sort_key):
        if run.is_student:
            key = (run.group, (run.alpha, run.temperature), suffix)
            label = f"student of {run.teacher}, α {num(run.alpha)}, T {num(run.temperature)}"
        else:
            key = (run.mode, run.lam, suffix)
            label = run.mode + ("" if run.lam is None else f" λ={num(run.lam)}")
        arms.setdefault(key, Arm(label + (f" ({suffix})" if suffix else ""), {})).seeds[run.seed] = runs[run]
    return arms


def baseline_of(key: tuple) -> tuple:
    """The arm an arm is compared with: ce for fine-tuning, the student of the ce teacher (same α, T) for students."""
    return ("student-ce", key[1], "") if key[0].startswith("student") else ("ce", None, "")


class TaskRuns:
    """A task's runs grouped by setting, its arms, and the choices Tables I and II make from them. The teachers
    are those sweep.py chooses from SWEEP itself."""

    def __init__(self, name: str, runs: dict[Run, RunFiles], sweep: SweepFiles, more: list[tuple[str, SweepFiles]]):
        self.name, self.metric, self.sweep = name, primary_metric(name, name in sweep.own_tasks), sweep.folder
        mine = {r: files.results for r, files in runs.items() if r.task == name}
        self.read = {files.path: files.results for files in runs.values()}  # teachers in the sweep: read already
        self.runs = {mode: {r: v for r, v in mine.items() if r.mode == mode} for mode in TRAIN_MODES}
        self.ce = seeds_by_setting(self.runs["ce"], lambda r: None).get(None, {})
        self.lams = {mode: seeds_by_setting(self.runs[mode], lambda r: r.lam) for mode in ("min", "max")}
        self.best_lam = best_setting(self.lams["min"], self.metric)
        self.students = {kind: seeds_by_setting({r: v for r, v in mine.items() if r.teacher == kind},
                                                lambda r: (r.alpha, r.temperature)) for kind in TEACHERS}
        self.best_student = {kind: best_setting(t, self.metric) for kind, t in self.students.items()}
        self.arms = arms_of(name, runs)
        for suffix, folder in more:
            self.arms |= arms_of(name, folder.runs, suffix)
        # the teachers as sweep.py chooses them, and those the students were distilled from (their --teacher)
        self.chosen = {kind: None for kind in TEACHERS}
        self.selection, self.selection_error = None, None
        for kind in TEACHERS:  # cmi.selection's rules, on the runs read with the sweep: one place for them
            among = {Path(r.folder).name for r in sweep.runs if r.task == name and r.mode == kind}
            if not among:
                continue
            try:
                selection = select_teacher(sweep.folder / name / kind, name, self.metric, need_model=False,
                                           kind=kind, read=self.read, among=among)
                self.chosen[kind] = selection.chosen.run
                if kind == "max":
                    self.selection = selection
            except (TrainingError, OSError) as e:
                if kind == "max":
                    self.selection_error = str(e)
        self.used = {kind: sorted({Path(v["args"]["teacher"]).parent for r, v in mine.items()
                                   if r.teacher == kind and v["args"].get("teacher")}) for kind in TEACHERS}

    def results_at(self, run: Path) -> dict | None:
        """A teacher's results.json: as read with the sweep, else from its folder (a teacher outside the sweep
        folder); None when it cannot be read."""
        if run.resolve() in self.read:
            return self.read[run.resolve()]
        try:
            return results_of(run)
        except TrainingError:
            return None

    def teacher_value(self, kind: str) -> float | None:
        """The dev metric of the teacher of `kind`: of the teachers its students used (the median when each seed
        had its own, as in a paired study), else of the one chosen now."""
        results = [self.results_at(run) for run in self.used[kind] or [self.chosen[kind]] if run is not None]
        values = [r[self.metric] for r in results if r is not None]
        return statistics.median(values) if values else None

    def ce_median(self) -> float | None:
        return median(self.ce, self.metric) if self.ce else None

    def min_median(self) -> float | None:
        return median(self.lams["min"][self.best_lam], self.metric) if self.best_lam is not None else None

    def student_median(self, kind: str) -> float | None:
        best = self.best_student[kind]
        return median(self.students[kind][best], self.metric) if best is not None else None


def computed(files: RunFiles) -> dict:
    """How a run computed (COMPUTE, and the device's kind), as far as its files record it: runs made before
    results.json recorded the path name it in their arguments (--padded), older ones not at all."""
    provenance = files.results.get("provenance", {})
    recorded = {key: provenance[key] for key in COMPUTE if key in provenance}
    if "path" not in recorded and "padded" in files.results["args"]:
        recorded["path"] = "padded" if files.results["args"]["padded"] else "unpadded"
    if "device" in provenance:
        recorded["device"] = provenance["device"].split(" ")[0]
    return recorded


def pair_differences(a: RunFiles, b: RunFiles) -> list[str]:
    """What two runs compared as a pair record differently, but for their arm (ARM_ARGS): "lr 5e-05 / 3e-05"; what
    only one of them records is not compared."""
    sides = []
    for files in (a, b):
        args = {k: v for k, v in files.results["args"].items() if k not in ARM_ARGS}
        sides.append({**args, **{f"{k} (results.json)": v for k, v in computed(files).items()}})
    return [f"{key} {json.dumps(sides[0][key])} / {json.dumps(sides[1][key])}"
            for key in sorted(sides[0].keys() & sides[1].keys()) if sides[0][key] != sides[1][key]]


def check_pairs(t: TaskRuns) -> None:
    """ValueError when the two runs of a pair (an arm and its baseline, same seed) differ other than in the arm: their
    difference would not be the arm's."""
    for key, arm in t.arms.items():
        base = t.arms.get(baseline_of(key))
        if base is None or base is arm:
            continue
        for seed in sorted(arm.seeds.keys() & base.seeds.keys()):
            differ = pair_differences(arm.seeds[seed], base.seeds[seed])
            if differ:
                raise ValueError(f"{t.name} {arm.label}, seed {seed}: its run and the {base.label} run it is paired "
                                 f"with differ in {'; '.join(differ)}: a pair may differ in its arm only")


def arm_of(run: Run) -> tuple:
    """What the seeds of one arm share: everything but the seed."""
    return run.task, run.group, run.lam, run.alpha, run.temperature


def arm_label(run: Run) -> str:
    """An arm as the report names it across tasks: cola min λ=1, cola student-ce α 0.5, T 2."""
    setting = (f"α {num(run.alpha)}, T {num(run.temperature)}" if run.is_student else
               "" if run.lam is None else f"λ={num(run.lam)}")
    return " ".join(filter(None, (run.task, run.group, setting)))


def arm_settings(runs: list[RunFiles]) -> dict[str, set[str]]:
    """The arguments the runs of one arm recorded, each with its values (as JSON), but those that differ by run."""
    values = {}
    for files in runs:
        for key, value in files.results["args"].items():
            if key not in PER_RUN:
                values.setdefault(key, set()).add(json.dumps(value))
    return values


@dataclass
class Pooling:
    """What a folder pooled with SWEEP added, and what it did not."""
    folder: Path
    added: dict[str, list[int]]  # arm label -> the seeds it added to that arm of SWEEP
    other_arms: list[str]  # its arms that SWEEP does not have: left out
    only_one: dict[str, list[str]]  # arguments that the runs of only one of the folders record -> values (JSON)


def pool_runs(sweep: SweepFiles, pool: SweepFiles) -> tuple[dict[Run, RunFiles], Pooling]:
    """SWEEP's runs and, as more seeds of the same arms, the runs of `pool` in those arms. ValueError when an arm's
    recorded settings differ between the folders, or a seed is in both."""
    mine, theirs = {}, {}
    for runs, by_arm in ((sweep.runs, mine), (pool.runs, theirs)):
        for run, files in runs.items():
            by_arm.setdefault(arm_of(run), {})[run] = files
    merged, pooling = dict(sweep.runs), Pooling(pool.folder, {}, [], {})
    for arm, runs in theirs.items():
        label = arm_label(next(iter(runs)))
        if arm not in mine:
            pooling.other_arms.append(label)
            continue
        a, b = arm_settings(list(mine[arm].values())), arm_settings(list(runs.values()))
        differ = [f"{key} {' / '.join(sorted(a[key]))} against {' / '.join(sorted(b[key]))}"
                  for key in sorted(a.keys() & b.keys()) if a[key] != b[key]]
        if differ:
            raise ValueError(f"{label}: the runs differ in {'; '.join(differ)}: pooled seeds must come from the "
                             "same protocol")
        both = sorted({r.seed for r in runs} & {r.seed for r in mine[arm]})
        if both:
            raise ValueError(f"{label}: seeds {', '.join(map(str, both))} are in both folders")
        pooling.only_one |= {key: sorted((a | b)[key]) for key in sorted(a.keys() ^ b.keys())}  # a fixed order
        pooling.added[label] = sorted(r.seed for r in runs)
        merged |= runs
    return merged, pooling


def differing_settings(sweep: SweepFiles, other: SweepFiles) -> str:
    """The run arguments (TRAIN_SETTINGS) in which the runs of `other` differ from those of `sweep`, as a label:
    "cmi_feature cls"."""
    def settings(folder):
        return {k: json.dumps(v.results["args"].get(k)) for v in folder.runs.values() for k in TRAIN_SETTINGS}
    mine, theirs = settings(sweep), settings(other)
    differ = [f"{k} {json.loads(v)}" for k, v in theirs.items() if mine.get(k) != v]
    return ", ".join(differ) or other.folder.name


@dataclass
class Study:
    """What one report reads, each folder once: SWEEP, the folder pooled with it, the --with folders and the folders
    of more tasks."""
    sweep: SweepFiles
    pooled: SweepFiles | None
    more: list[tuple[str, SweepFiles]]  # (label, folder): more arms, paired with SWEEP's ce runs
    added: list[SweepFiles]  # folders of other tasks, reported beside SWEEP's
    runs: dict[Run, RunFiles]  # the runs of SWEEP, of the folder pooled with it and of the added folders
    pooling: Pooling | None
    tasks: list[TaskRuns]


def paired_with(run: Run, itself: bool = False) -> tuple:
    """What identifies the run of SWEEP that a --with run is paired with (baseline_of, the same seed); itself: what
    identifies `run` in those terms."""
    group = run.group if itself else "student-ce" if run.is_student else "ce"
    return run.task, run.seed, group, *((run.alpha, run.temperature) if run.is_student else ())


def check_folders(main: SweepFiles, given: list[tuple[str, Path, SweepFiles]]) -> None:
    """What --with, --pool and --add-tasks are given (flag, path, the folder read), checked in one place:
    ValueError, one line, for a folder given twice or SWEEP itself (its runs paired or pooled with themselves), one
    without a finished run, a --with or --pool folder of no task of SWEEP's, and a --with folder none of whose runs
    has a baseline in SWEEP (paired_with): each would print a report with nothing compared."""
    seen = {main.folder: "SWEEP"}
    tasks = {r.task for r in main.runs}
    for flag, path, read in given:
        where = f"{flag} {path}"
        if read.folder in seen:
            raise ValueError(f"{where}: the same folder as {seen[read.folder]}; give each folder once")
        seen[read.folder] = where
        theirs = sorted({r.task for r in read.runs}, key=task_order)
        if not theirs:
            raise ValueError(f"{where}: no finished run (no TASK/GROUP/SETTING folder with a readable results.json)")
        if flag != "--add-tasks" and not tasks & set(theirs):
            raise ValueError(f"{where}: its runs are of task {', '.join(theirs)}, SWEEP's of "
                             f"{', '.join(sorted(tasks, key=task_order)) or 'none'}; {flag} takes runs of SWEEP's "
                             "tasks (a folder of other tasks: --add-tasks)")
        if flag == "--with" and not {paired_with(r) for r in read.runs} & {paired_with(r, True) for r in main.runs}:
            raise ValueError(f"{where}: none of its runs has a run to be paired with in SWEEP (a ce run of its task "
                             "and seed; for a student, SWEEP's student of the ce teacher with its α, T and seed)")


def load_study(sweep: Path, more: list[Path] = (), pool: Path | None = None, added: list[Path] = ()) -> Study:
    """Read the folders of a report; ValueError when a folder is not what its flag takes (check_folders), `pool`
    does not hold more seeds of SWEEP's protocol, or a task is in two of SWEEP and the `added` folders."""
    main = read_sweep(sweep.resolve())
    pooled = read_sweep(pool.resolve()) if pool is not None else None
    extra = [read_sweep(folder.resolve()) for folder in more]
    others = [read_sweep(folder.resolve()) for folder in added]
    given = [("--pool", pool, pooled)] if pooled is not None else []
    given += [("--with", path, read) for path, read in zip(more, extra)]
    check_folders(main, given + [("--add-tasks", path, read) for path, read in zip(added, others)])
    try:
        runs, pooling = pool_runs(main, pooled) if pooled is not None else (main.runs, None)
    except ValueError as e:
        raise ValueError(f"--pool {pool}: {e}") from None
    if pooling is not None and not pooling.added:
        raise ValueError(f"--pool {pool}: none of its arms is one of SWEEP's (it has {', '.join(pooling.other_arms)}); "
                         "it pools more seeds of SWEEP's arms")
    labelled = [(differing_settings(main, folder), folder) for folder in extra]
    tasks = [TaskRuns(name, runs, main, labelled) for name in sorted({r.task for r in runs}, key=task_order)]
    for path, other in zip(added, others):  # each task from one folder: its teachers and its arms are that folder's
        names = sorted({r.task for r in other.runs}, key=task_order)
        twice = [name for name in names if name in {t.name for t in tasks}]
        if twice:
            raise ValueError(f"--add-tasks {path}: task {', '.join(twice)} is in an earlier folder of the report too: "
                             "another folder's seeds of the same task are --pool's")
        tasks += [TaskRuns(name, other.runs, other, []) for name in names]
        runs = runs | other.runs
    for t in tasks:
        check_pairs(t)
    return Study(main, pooled, labelled, others, runs, pooling, tasks)
