"""Run the paper's grid of fine-tuning and distillation runs: resumable, and split over GPUs by --shard.

    python sweep.py --out sweeps/glue                       # the paper's protocol (Tables I and II)
    python sweep.py --tasks cola --lams 0.1,0.5 --seeds 0,1 --out sweeps/cola --data-dir glue --dry-run
    python sweep.py --train-file mine.csv --validation-file mine_dev.csv --out sweeps/mine   # your own data
    CUDA_VISIBLE_DEVICES=1 python sweep.py --out sweeps/glue --shard 1/4    # one of 4 GPUs
    python report.py sweeps/glue                            # the tables, as Markdown

Every run is a subprocess (train.py or distill.py) writing into its own folder under --out, named by its
settings:

    TASK/ce/seedS                               plain fine-tuning (lambda plays no part: one run per seed)
    TASK/min/lamL-seedS, TASK/max/lamL-seedS    fine-tuning with +lambda*CMI, -lambda*CMI
    TASK/student-ce/alphaA-TT-seedS             DistilBERT from the ce run with the highest dev metric
    TASK/student-max/alphaA-TT-seedS            DistilBERT from the max run selected by dev metric / dev CMI

TASK is the GLUE task, or with --train-file and --validation-file (and --text-fields, --label-field) the
stem of the training file, as train.py names a run on your own data: the grid is then that one task.

A run with results.json is finished and skipped; any other is started, or resumed from its last.pt, so the
same command continues an interrupted sweep. A folder holding a run of other arguments or other data (a GLUE
CoLA run where a cola.csv run would go, a training file edited since) stops the sweep before any run starts,
as do bad flags and bad data anywhere in the grid. --shard i/n takes the runs at positions i, i+n, i+2n, ... of
the sorted grid (of the --stage): n processes given the same grid options split it with no coordination,
and a lock in each run folder keeps two processes from ever running the same run at once. A student waits for
its task's teacher runs (all of the grid's ce or max runs of the task) to finish; run `--stage train` on
every shard first, then `--stage distill`, or run the whole sweep twice. Options not listed below are passed
to train.py unchanged, and those train.py and distill.py share (harness.cli.add_training_args) to distill.py too.
"""
import argparse
import fcntl
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from cmi.selection import select_teacher
from common.errors import TrainingError
from data.tasks import TASKS, own_task_name, primary_metric
from harness.cli import (SWEEP_RUN, Parser, add_training_args, data_source, parse_distill_args, parse_train_args,
                         run_main)
from harness.runfiles import differences
from study.sweeps import TEACHERS, TRAIN_MODES, Run, expand, finished, num, results_of, shard, teacher_runs
from harness.rundata import check_data
from models.checkpoint import read_json
from models.student import check_layers, layer_count

ROOT = Path(__file__).resolve().parent
STAGES = ("train", "distill", "all")
# the sweep resumes its runs itself (it refuses --resume): its own command, unchanged, continues it
INTERRUPTED = ("finished runs are kept, the interrupted one from its last complete epoch: run the same command to "
               "continue")
SET_BY_SWEEP = ("--task", "--mode", "--lam", "--seed", "--resume", "--overwrite", "--teacher", "--teacher-sweep",
                "--alpha", "--temperature")


class NotReady(Exception):
    """A student's teacher cannot be chosen yet: some of the grid's teacher runs are not finished."""


class Teachers:
    """The teacher of each task and kind, chosen once, when its first student asks, and announced with why."""

    def __init__(self, grid: list[Run], out: Path, own_files: bool):
        self.grid, self.out, self.own_files, self.chosen = grid, out, own_files, {}

    def best_dir(self, student: Run) -> Path:
        """The student's --teacher: the best/ folder of the chosen run. NotReady while any of the grid's
        teacher runs of the task is unfinished (another shard may still be training it); TrainingError when
        no run can be a teacher."""
        key = (student.task, student.teacher)
        if key not in self.chosen:
            candidates = teacher_runs(student, self.grid)
            waiting = [r.folder for r in candidates if not finished(self.out / r.folder)]
            if waiting:
                raise NotReady(f"waiting for {len(waiting)} of {len(candidates)} {student.teacher} teacher runs "
                               f"(e.g. {waiting[0]}): {unfinished(self.out / waiting[0])}")
            # among the grid's runs only: their arguments are this sweep's (check_identities); a run the folder
            # holds from another sweep (another --model, other data) is not
            selection = select_teacher(self.out / student.task / student.teacher, student.task,
                                       primary_metric(student.task, self.own_files), kind=student.teacher,
                                       among={Path(r.folder).name for r in candidates})
            self.chosen[key] = selection.chosen.run
            print(f"{student.task}: the {student.teacher} teacher is {selection.chosen.run.relative_to(self.out)}: "
                  f"{selection.summary()}", file=sys.stderr)
        return self.chosen[key] / "best"


# -----------------------------------------------------------------------------
# commands


def shared_options() -> set[str]:
    """The option strings of the options train.py and distill.py share (harness.cli.add_training_args)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_training_args(parser)
    return {s for action in parser._actions for s in action.option_strings}  # argparse lists them nowhere public


def option_chunks(tokens: list[str]) -> list[list[str]]:
    """Group command-line tokens by option: ['--lr', '1e-3', '--amp', 'off'] -> [['--lr', '1e-3'], ['--amp', 'off']]."""
    chunks = []
    for token in tokens:
        if token.startswith("--"):
            chunks.append([token])
        elif chunks:
            chunks[-1].append(token)
        else:
            raise ValueError(f"unexpected argument {token!r}: options are passed on as --name value")
    return chunks


def option_name(chunk: list[str]) -> str:
    return chunk[0].split("=", 1)[0]


def unfinished(folder: Path) -> str:
    """Why a run that is not finished (study.sweeps.finished) is not, for a waiting student and a dry run's plan."""
    if (folder / "results.json").exists():  # there, but it does not read back
        try:
            results_of(folder)
        except TrainingError as e:
            return str(e)
    return "started, not finished" if (folder / "args.json").exists() else "not started"


def resume_flag(folder: Path) -> list[str]:
    """--resume for a run that was started (train.py and distill.py start afresh when no epoch was saved)."""
    return ["--resume"] if (folder / "args.json").exists() else []


def task_option(task: str, args) -> list[str]:
    """--task TASK for a GLUE task; nothing for own files, which the passed-on --train-file names."""
    return [] if args.own_files else ["--task", task]


def train_command(run: Run, folder: Path, args, extra: list[str]) -> list[str]:
    lam = [] if run.lam is None else ["--lam", num(run.lam)]
    resume = resume_flag(folder)
    return [sys.executable, str(ROOT / "train.py"), *task_option(run.task, args), "--mode", run.mode, *lam,
            "--seed", str(run.seed), "--epochs", str(args.epochs), "--out", str(folder), *resume, *extra]


def student_options(args) -> list[str]:
    """The sweep's options that distill.py takes: how the student is made."""
    return (["--student-layers", args.student_layers] if args.student_layers else []) + \
           (["--student", args.student] if args.student else [])


def student_command(run: Run, folder: Path, teacher: str, args, extra: list[str]) -> list[str]:
    resume = resume_flag(folder)
    return [sys.executable, str(ROOT / "distill.py"), *task_option(run.task, args), "--teacher", teacher,
            *student_options(args), "--alpha", num(run.alpha), "--temperature", num(run.temperature),
            "--seed", str(run.seed), "--epochs", str(args.student_epochs), "--out", str(folder), *resume, *extra]


def run_locked(command: list[str], folder: Path) -> int | None:
    """Run `command` holding an exclusive lock on folder/sweep.lock, and return its exit code; None, running
    nothing, when another process holds the lock (the same run in an overlapping shard, or a job requeued
    while the old one still runs). The command inherits the lock, which ends with the last process holding
    it: a killed sweep leaves no stale lock, and its orphaned run still keeps the folder. An interruption is said
    by the sweep alone (harness.cli.SWEEP_RUN)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sweep.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        # a subprocess: a crash or an out-of-memory in one run does not end the sweep, and frees the GPU
        return subprocess.run(command, pass_fds=(lock.fileno(),), env={**os.environ, SWEEP_RUN: "1"}).returncode


# -----------------------------------------------------------------------------
# command line


def comma_list(kind, choices=None):
    """An argparse type: 'a,b,c' -> [kind(a), kind(b), kind(c)], each among `choices` when given."""
    def parse(text: str) -> list:
        values = [kind(item) for item in text.split(",") if item.strip()]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list"
                                             + (f" of {', '.join(map(str, choices))}" if choices else ""))
        return values
    return parse


def shard_spec(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(match.group(1)), int(match.group(2))


def own_task(chunks: list[list[str]], parser: Parser) -> str | None:
    """The task name of a sweep over the user's own files (data.tasks.own_task_name, as train.py names it), or
    None for GLUE tasks."""
    given = {option_name(chunk): chunk[0].split("=", 1)[1:] + chunk[1:] for chunk in chunks}
    if "--train-file" not in given:
        return None
    if "--validation-file" not in given:
        parser.error("--train-file needs --validation-file: the dev data that picks each run's best epoch")
    if len(given["--train-file"]) != 1:
        parser.error("--train-file takes one file")
    return own_task_name(given["--train-file"][0])


def sweep_parser() -> Parser:
    """The sweep's own options, in two groups: the grid, and what this process runs of it."""
    # allow_abbrev=False: --seed must not be read as --seeds, nor --task as --tasks
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    g = parser.add_argument_group("the grid (defaults: the paper's protocol)")
    g.add_argument("--out", required=True, help="the sweep folder: one subfolder per run")
    g.add_argument("--tasks", type=comma_list(str, list(TASKS)),
                   help="GLUE tasks (default: all 8; with --train-file, the file's task alone)")
    g.add_argument("--modes", type=comma_list(str, TRAIN_MODES), default=list(TRAIN_MODES),
                   help="fine-tuning objectives (default: ce,min,max); ce and max also make the students' teachers")
    g.add_argument("--lams", type=comma_list(float), default=[0.05, 0.1, 0.2, 0.5, 1.0],
                   help="lambdas of the min and max runs (default: 0.05,0.1,0.2,0.5,1; the paper: 0.05-1)")
    g.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2],
                   help="seeds of every setting, median reported (default: 0,1,2)")
    g.add_argument("--epochs", type=int, default=5, help="epochs of the fine-tuning runs (default: 5)")
    g.add_argument("--alphas", type=comma_list(float), default=[0.05, 0.5, 0.9],
                   help="distillation weights alpha of the students (default: 0.05,0.5,0.9; the paper: 0.05-0.9)")
    g.add_argument("--temperatures", type=comma_list(float), default=[1.0, 2.0, 5.0],
                   help="distillation temperatures T of the students (default: 1,2,5; the paper: 1-5)")
    g.add_argument("--student-epochs", type=int, default=10, help="epochs of the students (default: 10)")
    g.add_argument("--student-layers", help="passed to distill.py: teacher layers copied into the student")
    g.add_argument("--student", help="passed to distill.py: a pretrained DistilBERT instead of copied layers")
    g = parser.add_argument_group("what this process runs")
    g.add_argument("--stage", choices=STAGES, default="all",
                   help="train: fine-tuning runs only; distill: students only (default: all)")
    g.add_argument("--shard", type=shard_spec, default=(0, 1), metavar="i/n",
                   help="run only the runs at positions i, i+n, ... of the sorted grid (0 <= i < n)")
    g.add_argument("--dry-run", action="store_true", help="print each run's folder and command; run nothing")
    return parser


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """The sweep's options, then the options passed on to train.py and to distill.py."""
    parser = sweep_parser()
    args, extra = parser.parse_known_args(argv)
    for name in ("epochs", "student_epochs"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    try:
        chunks = option_chunks(extra)
    except ValueError as e:
        parser.error(str(e))
    own = own_task(chunks, parser)
    args.own_files = own is not None
    if args.own_files and args.tasks is not None:
        parser.error("--tasks is for GLUE tasks; with --train-file the sweep runs the file's own task")
    args.tasks = [own] if args.own_files else args.tasks or list(TASKS)
    for chunk in chunks:
        if option_name(chunk) in SET_BY_SWEEP:
            parser.error(f"{option_name(chunk)} is set by the sweep for each run (see --tasks, --modes, --lams, "
                         "--seeds, --alphas, --temperatures)")
    shared = shared_options()
    train_extra = [t for chunk in chunks for t in chunk]
    student_extra = [t for chunk in chunks if option_name(chunk) in shared for t in chunk]
    # a typo in a passed-on option, or a grid value out of range, should fail now, not in each of hundreds of runs
    task = task_option(args.tasks[0], args)
    for lam in args.lams:
        parse_train_args([*task, "--out", "unused", "--lam", str(lam), *train_extra])
    for alpha, temperature in itertools.product(args.alphas, args.temperatures):
        student = parse_distill_args([*task, "--teacher", "unused", "--out", "unused", "--alpha", str(alpha),
                                      "--temperature", str(temperature), *student_options(args), *student_extra])
    # the grid has students, and this stage trains them (--stage train leaves them to a later --stage distill)
    if args.stage != "train" and any(mode in TEACHERS for mode in args.modes) and args.alphas and args.temperatures:
        check_student_layers(student, parse_train_args([*task, "--out", "unused", *train_extra]).model, parser)
    # the data too, once per task: a file of one class should fail now, not in each run after its folder exists
    for task in args.tasks:
        check_data(data_source(parse_train_args([*task_option(task, args), "--out", "unused", *train_extra])))
    if Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out}: exists and is not a folder")
    return args, train_extra, student_extra


def check_student_layers(student: argparse.Namespace, model: str, parser: Parser) -> None:
    """The students' layer copy against the layers of the local --model their teachers are fine-tuned from, before
    any run: else every student fails once all the fine-tuning is done."""
    if student.student is None and student.student_layers and (Path(model) / "config.json").is_file():
        try:
            check_layers(student.student_layers, layer_count(read_json(Path(model) / "config.json")))
        except ValueError as e:
            parser.error(f"--student-layers {','.join(map(str, student.student_layers))}: {e} (--model {model})")


def check_identities(grid: list[Run], out: Path, args, train_extra: list[str], student_extra: list[str]) -> None:
    """Every run folder of the grid that holds a run (args.json) holds this sweep's run: its arguments, the data's
    identity included, are those its command gives. A folder name cannot tell a GLUE CoLA run from one on a
    cola.csv, nor a file from the same file edited since; such a run is never taken as finished nor resumed.
    A student's teacher is chosen once its teachers are finished, so it is not compared."""
    for run in grid:
        folder = out / run.folder
        try:
            saved = json.loads((folder / "args.json").read_bytes())
        except (OSError, ValueError):  # none (not started), or damaged: train.py says so when it resumes it
            continue
        if not isinstance(saved, dict):
            continue
        if run.is_student:
            expected = parse_distill_args(student_command(run, folder, "unused", args, student_extra)[2:])
        else:
            expected = parse_train_args(train_command(run, folder, args, train_extra)[2:])
        diff = differences(saved, vars(expected), ignored=("teacher", "teacher_selection"))
        if diff:
            raise TrainingError(f"--out {out}: {run.folder} holds a run with other arguments ({', '.join(diff)}), "
                                "not this sweep's; choose another --out, or move that run away")


def main(argv=None) -> int:
    """Run (or list, --dry-run) this shard's runs of the grid. Returns 1 if any run failed, else 0."""
    args, train_extra, student_extra = parse_args(argv)
    out = Path(args.out).resolve()  # the same --out in every run's args.json, whatever the working folder
    grid = expand(args.tasks, args.modes, args.lams, args.seeds, args.alphas, args.temperatures)
    selected = [r for r in grid if args.stage == "all" or r.is_student == (args.stage == "distill")]
    index, count = args.shard
    runs = shard(selected, index, count)
    check_identities(grid, out, args, train_extra, student_extra)  # the whole grid: a student reads its teachers
    done, ran, failed, skipped, busy = 0, 0, [], [], []
    # from the whole grid: other shards may train a student's teachers
    teachers = Teachers(grid, out, args.own_files)
    for i, run in enumerate(runs, 1):
        folder = out / run.folder
        if finished(folder):
            done += 1
            if args.dry_run:
                print(f"{run.folder}  (finished)")
            continue
        if run.is_student:
            try:
                teacher = str(teachers.best_dir(run))
            except NotReady as e:
                if not args.dry_run:
                    skipped.append(run.folder)
                    print(f"[{i}/{len(runs)}] {run.folder}: skipped, {e}; run the sweep again once they are "
                          "finished", flush=True)
                    continue
                # the plan says why it has no teacher yet: a damaged results.json reads otherwise than no run
                teacher = f"<the {run.teacher} teacher of {run.task}, chosen once its runs are finished: {e}>"
            except TrainingError as e:
                failed.append(f"{run.folder} (no teacher: {e})")
                if args.dry_run:
                    print(f"{run.folder}  no teacher can be chosen: {e}")
                continue
            command = student_command(run, folder, teacher, args, student_extra)
        else:
            command = train_command(run, folder, args, train_extra)
        if args.dry_run:
            print(f"{run.folder}  {shlex.join(command)}")
            continue
        print(f"[{i}/{len(runs)}] {run.folder}: {'resuming' if '--resume' in command else 'starting'}", flush=True)
        returncode = run_locked(command, folder)
        if returncode is None:
            busy.append(run.folder)
            print(f"[{i}/{len(runs)}] {run.folder}: skipped, another process is running it", flush=True)
        elif returncode == 0:
            ran += 1
        else:
            failed.append(f"{run.folder} (exit code {returncode})")
            print(f"[{i}/{len(runs)}] {run.folder}: failed with exit code {returncode}", flush=True)
    summary = (f"shard {index}/{count}, stage {args.stage}: {len(runs)} runs, {done} already finished, "
               + ("nothing run (dry run)" if args.dry_run else
                  f"{ran} run now, {len(failed)} failed, {len(skipped)} waiting for their teachers, "
                  f"{len(busy)} running in another process"))
    print(summary, file=sys.stderr)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(lambda: sys.exit(main()), INTERRUPTED)
