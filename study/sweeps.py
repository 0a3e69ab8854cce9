"""The grid of runs behind Tables I and II: each run's settings and folder (TASK/GROUP/SETTING-seedS), its
results, and the runs a student's teacher is chosen from. sweep.py runs the grid; report.py reads it back. TASK is
a GLUE task, or the user's own data named after its training file (train.py --train-file)."""
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import TrainingError
from data.tasks import TASKS

TRAIN_MODES = ("ce", "min", "max")
TEACHERS = ("ce", "max")  # the kinds of teacher a student is distilled from


def num(x: float) -> str:
    """The shortest text that reads back as exactly `x`: 0.1, 1, 0.05 (folder names and command lines)."""
    text = f"{x:g}"
    return text if float(text) == x else repr(x)


# -----------------------------------------------------------------------------
# the grid


@dataclass(frozen=True)
class Run:
    """One run of the grid: fine-tuning (mode ce, min or max; lam is None for ce) or a student (mode
    "student", distilled from a teacher of kind ce or max with alpha and temperature)."""
    task: str
    mode: str
    seed: int
    lam: float | None = None
    teacher: str | None = None
    alpha: float | None = None
    temperature: float | None = None

    @property
    def is_student(self) -> bool:
        return self.mode == "student"

    @property
    def group(self) -> str:
        """The folder of the task's runs of one kind: ce, min, max, student-ce, student-max."""
        return f"student-{self.teacher}" if self.is_student else self.mode

    @property
    def folder(self) -> str:
        """The run's folder relative to the sweep folder, e.g. cola/min/lam0.1-seed0: TASK/GROUP/SETTING-seedS.
        Each TASK/GROUP folder holds the runs of one kind directly, as distill.py --teacher-sweep reads them."""
        setting = ([f"alpha{num(self.alpha)}", f"T{num(self.temperature)}"] if self.is_student else
                   [] if self.mode == "ce" else [f"lam{num(self.lam)}"])
        return f"{self.task}/{self.group}/" + "-".join(setting + [f"seed{self.seed}"])

    def sort_key(self) -> tuple:
        """Fine-tuning before students (teachers first); then task, mode, settings, seed."""
        return (self.is_student, task_order(self.task), (TRAIN_MODES + ("student",)).index(self.mode),
                self.teacher or "", self.lam or 0.0, self.alpha or 0.0, self.temperature or 0.0, self.seed)


def task_order(task: str) -> tuple:
    """GLUE's order, then the tasks of own files by name."""
    return (list(TASKS).index(task), "") if task in TASKS else (len(TASKS), task)


FOLDER_PATTERNS = [  # the inverse of Run.folder
    (re.compile(r"([^/]+)/ce/seed(\d+)"), lambda t, s: Run(t, "ce", int(s))),
    (re.compile(r"([^/]+)/(min|max)/lam([^/]+)-seed(\d+)"), lambda t, m, lam, s: Run(t, m, int(s), float(lam))),
    (re.compile(r"([^/]+)/student-(ce|max)/alpha([^/]+)-T([^/]+)-seed(\d+)"),
     lambda t, k, a, temp, s: Run(t, "student", int(s), teacher=k, alpha=float(a), temperature=float(temp))),
]


def parse_folder(folder: str, own_tasks: frozenset[str] = frozenset()) -> Run | None:
    """The run a folder name (relative to the sweep folder) stands for, its task a GLUE task or one of
    `own_tasks` (the names own_task_name gives the runs' training files); None for any other folder."""
    for pattern, make in FOLDER_PATTERNS:
        match = pattern.fullmatch(folder)
        if match and (match.group(1) in TASKS or match.group(1) in own_tasks):
            try:
                run = make(*match.groups())
            except ValueError:  # lamx-seed0: not a number
                return None
            return run if run.folder == folder else None  # only the canonical spelling: lam0.10 is not lam0.1
    return None


def expand(tasks, modes, lams, seeds, alphas=(), temperatures=()) -> list[Run]:
    """Every run of the grid, each once, sorted. A ce run does not depend on lambda: one per (task, seed).
    Students come for each teacher kind (ce, max) that is among `modes`."""
    runs = set()
    for task, seed in itertools.product(tasks, seeds):
        for mode in modes:
            for lam in [None] if mode == "ce" else lams:
                runs.add(Run(task, mode, seed, lam))
        for teacher, alpha, temperature in itertools.product([t for t in TEACHERS if t in modes], alphas, temperatures):
            runs.add(Run(task, "student", seed, teacher=teacher, alpha=alpha, temperature=temperature))
    return sorted(runs, key=Run.sort_key)


def shard(runs: list, index: int, count: int) -> list:
    """The runs at positions index, index + count, ... : a pure function of the grid, so `count` processes
    split it with no coordination (interleaving also mixes long and short tasks in every shard)."""
    return runs[index::count]


def finished(folder: Path) -> bool:
    """A run is finished when its results.json reads back; a damaged one is resumed (and rewritten) instead."""
    try:
        results_of(folder)
    except TrainingError:
        return False
    return True


def results_of(folder: Path) -> dict:
    """The run's results.json, or TrainingError naming it."""
    path = folder / "results.json"
    try:
        results = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(results, dict):
        raise TrainingError(f"{path}: expected a JSON object")
    return results


# -----------------------------------------------------------------------------
# teachers


def teacher_runs(student: Run, grid: list[Run]) -> list[Run]:
    """The fine-tuning runs of the grid a student's teacher is chosen from: the task's ce or max runs."""
    return [r for r in grid if not r.is_student and r.task == student.task and r.mode == student.teacher]
