"""Reading a sweep folder back for report.py: every run folder's files read once, into memory. A run that cannot be
reported (a damaged results.json, no metrics.jsonl: a partial copy of a study) is listed with the reason and left
out, so that the report of the rest still prints; nothing in the folder is written."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import TrainingError
from data.tasks import own_task_name, primary_metric
from study.sweeps import Run, parse_folder, results_of

EPOCH_KEYS = ("train_cmi", "eval_cmi")  # besides the task's metric: what the report reads from the last epoch


@dataclass(frozen=True)
class RunFiles:
    """A finished run as its folder holds it."""
    path: Path  # the run folder
    results: dict  # results.json: the arguments and the best epoch
    epochs: list[dict]  # metrics.jsonl: one line per epoch

    def value(self, key: str, last: bool = False) -> float:
        """`key` at the best epoch (results.json) or, with last, at the last epoch (no selection over epochs)."""
        return self.epochs[-1][key] if last else self.results[key]


@dataclass
class SweepFiles:
    """A sweep folder read back: its finished runs, and those it holds but cannot report."""
    folder: Path
    runs: dict[Run, RunFiles] = field(default_factory=dict)
    own_tasks: frozenset[str] = frozenset()
    unfinished: list[str] = field(default_factory=list)  # started (args.json), no results.json yet: sweep.py resumes
    unreadable: dict[str, str] = field(default_factory=dict)  # run folder -> why it is left out


def read_args(folder: Path) -> dict:
    """A run's args.json; {} when it is missing or damaged (it only names the task of own files)."""
    try:
        args = json.loads((folder / "args.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return args if isinstance(args, dict) else {}


def epochs_of(folder: Path) -> list[dict]:
    """The run's metrics.jsonl, one dict per epoch, or TrainingError naming it."""
    path = folder / "metrics.jsonl"
    try:
        epochs = [json.loads(line) for line in path.read_text().splitlines()]
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not epochs or not all(isinstance(epoch, dict) for epoch in epochs):
        raise TrainingError(f"{path}: expected one JSON object per epoch")
    return epochs


def read_run(folder: Path, metric: str, named: Run) -> RunFiles:
    """A finished run's files, or TrainingError saying which is missing, damaged or lacks what the report needs, or
    that its arguments are not those of the run its folder is `named` for."""
    run = RunFiles(folder, results_of(folder), epochs_of(folder))
    lacking = [f"results.json {key}" for key in (metric, "eval_cmi", "args") if key not in run.results]
    lacking += [f"metrics.jsonl (last epoch) {key}" for key in (metric, *EPOCH_KEYS) if key not in run.epochs[-1]]
    if lacking:
        raise TrainingError("lacks " + ", ".join(lacking))
    recorded = dict(run.results["args"]) if isinstance(run.results["args"], dict) else {}
    if recorded.get("train_file"):
        recorded["task"] = own_task_name(recorded["train_file"])
    if "alpha" in recorded:  # distill.py's arguments
        recorded["mode"] = "student"
    setting = ("alpha", "temperature") if named.is_student else () if named.mode == "ce" else ("lam",)
    other = [f"{key} {recorded[key]} (the folder's: {getattr(named, key)})"  # what a run does not record is not compared
             for key in ("task", "mode", *setting, "seed") if key in recorded and recorded[key] != getattr(named, key)]
    if other:  # a copied or renamed folder: reported under its name, it would be another arm's or seed's run
        raise TrainingError("results.json args name another run than its folder: " + ", ".join(other))
    return run


def read_sweep(sweep: Path) -> SweepFiles:
    """Every run folder of a sweep (TASK/GROUP/SETTING, as Run.folder names them; other folders are ignored)."""
    folders = sorted(p for p in sweep.glob("*/*/*") if p.is_dir())
    args = {folder: read_args(folder) for folder in folders}
    # a task of the user's own files is named after its training file, which the runs' arguments hold
    own = frozenset(own_task_name(a["train_file"]) for a in args.values() if a.get("train_file"))
    read = SweepFiles(sweep, own_tasks=own)
    for folder in folders:
        name = folder.relative_to(sweep).as_posix()
        run = parse_folder(name, own)
        if run is None:
            continue
        if not (folder / "results.json").exists():
            if (folder / "args.json").exists():
                read.unfinished.append(name)
            continue
        try:
            read.runs[run] = read_run(folder, primary_metric(run.task, run.task in own), run)
        except TrainingError as e:
            read.unreadable[name] = str(e).replace(f"{folder}/", "")  # the file's name, not its whole path
    return read
