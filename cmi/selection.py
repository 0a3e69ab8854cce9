"""Teacher selection, the one place that chooses a teacher (distill.py --teacher-sweep, sweep.py, report.py).

The max-CMI teacher: among the max-CMI runs of a task, the one with the highest ratio of its dev metric to its
dev CMI, as the paper picks its teachers: one that classifies well with widely spread feature clusters.
In practice the dev metrics of the candidates differ by a few points while their dev CMIs differ by factors, so
the rule picks the run with the lowest dev CMI, which is usually the one with the smallest lambda: the weakest
max-CMI term, not the strongest. The CE teacher: among the ce runs, the one with the highest dev metric.

A sweep folder holds one run per sub-folder, each as train.py writes it: results.json (the arguments, the best
epoch and that epoch's dev metrics, eval_cmi among them) and best/ (the model of that epoch).
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import TrainingError

RULES = {"max": "ratio", "ce": "dev metric"}  # what makes the best teacher of each kind (args.mode)


@dataclass
class Candidate:
    run: Path
    metric: float  # the task's primary dev metric at the best epoch
    eval_cmi: float | None  # the dev CMI at the same epoch
    args: dict

    @property
    def ratio(self) -> float:
        return self.metric / self.eval_cmi

    @property
    def best(self) -> Path:
        return self.run / "best"

    def score(self, kind: str) -> float:
        """What a teacher of `kind` is chosen by: max, the ratio of the dev metric to the dev CMI; ce, the metric."""
        return self.ratio if kind == "max" else self.metric


@dataclass
class Selection:
    chosen: Candidate
    candidates: list[Candidate]  # every usable run of the kind, best first
    notes: list[str] = field(default_factory=list)  # runs left out, ties: one line each
    kind: str = "max"
    metric: str = "metric"  # the name of the dev metric

    def summary(self) -> str:
        c, n = self.chosen, len(self.candidates)
        if self.kind == "ce":
            return f"teacher {c.best}: dev {self.metric} {c.metric:.4g}, the highest of {n} ce runs"
        return (f"teacher {c.best}: {c.metric:.4g} / eval_cmi {c.eval_cmi:.4g} = ratio {c.ratio:.4g}, "
                f"the highest of {n} max-CMI runs")


def select_teacher(sweep: str | Path, task: str, metric: str, need_model: bool = True, *, kind: str = "max",
                   read: dict[Path, dict] | None = None, among: set[str] | None = None) -> Selection:
    """The teacher of `kind` among the runs under `sweep` with args.mode == kind and args.task == `task`: for max
    the highest results[metric] / results["eval_cmi"], for ce the highest results[metric]. Runs without
    results.json or (need_model: a teacher to distil from) best/, with an unreadable results.json, or whose
    metric is missing or (max) whose CMI is not positive (the ratio means nothing) are left out with a note; a tie
    goes to the first run by folder name, also noted. TrainingError (one line) when no run is usable.
    need_model=False: which run the rule picks, from the run files alone (a committed study keeps no best/).
    `read`: the results.json of runs already read (a report's), by resolved folder; the others are read here.
    `among`: the names of the sub-folders to choose from (a sweep's grid); None: all of them."""
    if kind not in RULES:
        raise ValueError(f"teacher kind must be one of {tuple(RULES)}, got {kind!r}")
    sweep, read = Path(sweep), read or {}
    if not sweep.is_dir():
        raise TrainingError(f"{sweep}: not a folder")
    candidates, notes = [], []
    for run in sorted(p for p in sweep.iterdir() if p.is_dir()):
        if among is not None and run.name not in among:
            notes.append(f"{run.name}: skipped, not a run of this sweep's grid")
            continue
        try:
            results = read.get(run.resolve()) or json.loads((run / "results.json").read_text())
        except FileNotFoundError:
            notes.append(f"{run.name}: skipped, no results.json (an unfinished run?)")
            continue
        except ValueError as e:
            notes.append(f"{run.name}: skipped, results.json is not valid JSON ({e})")
            continue
        args = results.get("args") or {}
        if args.get("mode", kind) != kind or args.get("task", task) != task:
            continue  # another task or objective: not a candidate (a run that records neither counts by its folder)
        value, cmi = results.get(metric), results.get("eval_cmi", math.nan if kind == "ce" else None)
        if not isinstance(value, (int, float)) or not isinstance(cmi, (int, float)):
            notes.append(f"{run.name}: skipped, results.json lacks {metric!r} or 'eval_cmi'")
        elif kind == "max" and not cmi > 0:
            notes.append(f"{run.name}: skipped, eval_cmi is {cmi}, so {metric} / eval_cmi is undefined")
        elif need_model and not (run / "best").is_dir():
            notes.append(f"{run.name}: skipped, no best/ folder")
        else:
            candidates.append(Candidate(run, float(value), cmi, args))
    if not candidates:
        detail = "; ".join(notes) if notes else "no sub-folder holds one"
        what = "max-CMI" if kind == "max" else "ce"
        raise TrainingError(f"{sweep}: no usable {what} run of task {task} ({detail})")
    candidates.sort(key=lambda c: -c.score(kind))  # stable: equal scores keep the folder-name order
    best = candidates[0].score(kind)
    tied = [c.run.name for c in candidates if c.score(kind) == best]
    if len(tied) > 1:
        notes.append(f"runs {', '.join(tied)} tie at {RULES[kind]} {best:.4g}: took {tied[0]}, the first by name")
    return Selection(candidates[0], candidates, notes, kind, metric)
