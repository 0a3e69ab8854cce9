"""sweep.py and report.py: the grid, --dry-run, sharding, and a real sweep that is killed, resumed and reported."""
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import report
import sweep
from models.bert import BertConfig, BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GLUE, MINILM = SHARED / "glue", SHARED / "models" / "all-MiniLM-L6-v2"


def dry_run(capsys, *argv) -> list[tuple[str, str]]:
    """(folder, command) of each line `sweep.py --dry-run` prints."""
    assert sweep.main([*argv, "--dry-run"]) == 0
    return [tuple(line.split("  ", 1)) for line in capsys.readouterr().out.splitlines()]


# -----------------------------------------------------------------------------
# the grid


def test_default_grid_is_the_papers_protocol():
    args, _, _ = sweep.parse_args(["--out", "unused"])
    assert args.tasks == ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert args.modes == ["ce", "min", "max"] and args.seeds == [0, 1, 2] and args.epochs == 5
    assert all(0.05 <= lam <= 1 for lam in args.lams) and min(args.lams) == 0.05 and max(args.lams) == 1
    assert all(0.05 <= a <= 0.9 for a in args.alphas) and all(1 <= t <= 5 for t in args.temperatures)
    assert args.student_epochs == 10
    grid = sweep.expand(args.tasks, args.modes, args.lams, args.seeds, args.alphas, args.temperatures)
    train_runs = [r for r in grid if not r.is_student]
    # per task and seed: one ce run (lambda plays no part), one min and one max run per lambda
    assert len(train_runs) == 8 * 3 * (1 + 2 * len(args.lams))
    assert len(grid) - len(train_runs) == 8 * 3 * 2 * len(args.alphas) * len(args.temperatures)
    assert len({r.folder for r in grid}) == len(grid)
    assert grid.index(max(train_runs, key=grid.index)) < len(train_runs)  # teachers before students


@pytest.mark.parametrize("run, folder", [
    (sweep.Run("cola", "ce", 0), "cola/ce/seed0"),
    (sweep.Run("mrpc", "min", 2, 0.1), "mrpc/min/lam0.1/seed2"),
    (sweep.Run("mnli", "max", 1, 1.0), "mnli/max/lam1/seed1"),
    (sweep.Run("rte", "student", 0, teacher="max", alpha=0.05, temperature=2.0),
     "rte/student/teacher-max/alpha0.05-T2/seed0"),
])
def test_folder_names_are_the_settings_and_read_back(run, folder):
    assert run.folder == folder
    assert sweep.parse_folder(folder) == run


@pytest.mark.parametrize("folder", ["cola/ce", "cola/min/seed0", "boolq/ce/seed0", "cola/min/lam0.10/seed0",
                                    "cola/ce/seed0/best", "plots"])
def test_other_folders_are_not_runs(folder):
    assert sweep.parse_folder(folder) is None


def test_dry_run_lists_exactly_the_grid_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "sweep"
    lines = dry_run(capsys, "--out", str(out), "--tasks", "mrpc,cola", "--modes", "ce,min", "--lams", "0.1,1",
                    "--seeds", "0,1", "--stage", "train", "--data-dir", str(GLUE), "--lr", "1e-3")
    expected = {f"{task}/ce/seed{seed}" for task in ("cola", "mrpc") for seed in (0, 1)} | \
               {f"{task}/min/lam{lam}/seed{seed}" for task in ("cola", "mrpc") for lam in ("0.1", "1") for seed in (0, 1)}
    assert [folder for folder, _ in lines] == sorted(expected, key=lambda f: sweep.parse_folder(f).sort_key())
    for folder, command in lines:
        run = sweep.parse_folder(folder)
        assert f"train.py --task {run.task} --mode {run.mode} " in command
        assert f" --seed {run.seed} --epochs 5 --out {out.resolve() / folder} " in command
        assert (" --lam " in command) == (run.mode == "min")
        assert run.lam is None or f" --lam {sweep.num(run.lam)} " in command
        assert command.endswith(f"--data-dir {GLUE} --lr 1e-3") and "--resume" not in command
    assert not out.exists()


def test_students_get_the_shared_options_and_wait_for_their_teachers(capsys, tmp_path):
    lines = dry_run(capsys, "--out", str(tmp_path), "--tasks", "cola", "--modes", "ce,max", "--lams", "0.5",
                    "--seeds", "0", "--alphas", "0.5", "--temperatures", "2,4", "--stage", "distill",
                    "--student-layers", "0,2", "--lr", "1e-3", "--cmi-feature", "cls")
    assert [folder for folder, _ in lines] == [f"cola/student/teacher-{kind}/alpha0.5-T{t}/seed0"
                                                 for kind in ("ce", "max") for t in (2, 4)]
    for folder, command in lines:
        assert "distill.py --task cola --teacher '<the" in command and "--student-layers 0,2" in command
        assert "--epochs 10" in command and "--lr 1e-3" in command
        assert "--cmi-feature" not in command  # train.py's own option: not distill.py's


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 60])
def test_shards_split_the_grid_with_no_overlap(capsys, tmp_path, n):
    grid_args = ["--out", str(tmp_path), "--tasks", "cola,rte", "--lams", "0.1,0.5", "--seeds", "0,1",
                 "--alphas", "0.5", "--temperatures", "2"]
    full = [folder for folder, _ in dry_run(capsys, *grid_args)]
    assert len(full) == 2 * 2 * 5 + 2 * 2 * 2
    shards = [[folder for folder, _ in dry_run(capsys, *grid_args, "--shard", f"{i}/{n}")] for i in range(n)]
    assert sorted(itertools.chain(*shards)) == sorted(full)  # every run in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("argv, message", [
    (["--seed", "1"], "--seed is set by the sweep"),
    (["--lams", "0.1,x"], "--lams"),
    (["--tasks", "cola,boolq"], "cola,boolq"),
    (["--shard", "3/3"], "0 <= i < n"),
    (["--lrr", "1e-3"], "unrecognized arguments: --lrr"),
    (["--lr", "-1"], "--lr must be > 0"),
])
def test_bad_options_are_one_line_before_any_run(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--out", str(tmp_path / "s"), *argv],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "s").exists()
