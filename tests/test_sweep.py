"""sweep.py: the grid, --dry-run, sharding, bad options, and a real sweep that is killed, resumed, distilled and
reported (the report of a real sweep; report.py alone: test_report.py)."""
import fcntl
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

import report
import sweep
from cmi.selection import select_teacher
from conftest import GLUE, MINILM, ROOT, cola_rows, write_own
from study import sweeps


def dry_run(capsys, *argv) -> list[tuple[str, str]]:
    """(folder, command) of each line `sweep.py --dry-run` prints."""
    assert sweep.main([*argv, "--dry-run"]) == 0
    return [tuple(line.split("  ", 1)) for line in capsys.readouterr().out.splitlines()]


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "s").write_text("mine")
    proc = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--out", str(tmp_path / "s")], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --out " in proc.stderr and "exists and is not a folder" in proc.stderr
    assert (tmp_path / "s").read_text() == "mine"


def test_a_damaged_teacher_results_json_does_not_end_the_sweep(capsys, tmp_path):
    folder = tmp_path / "rte" / "ce" / "seed0"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text('{"accuracy": 0.')
    code = sweep.main(["--out", str(tmp_path), "--tasks", "rte", "--modes", "ce", "--seeds", "0",
                       "--alphas", "0.5", "--temperatures", "2", "--stage", "distill"])
    out, err = capsys.readouterr()
    assert code == 0 and "1 waiting for their teachers" in err  # the damaged run is not finished: it is resumed
    assert "waiting for 1 of 1 ce teacher runs (e.g. rte/ce/seed0)" in out


def test_a_dry_run_names_why_a_student_has_no_teacher(capsys, tmp_path):
    """The plan of --stage distill --dry-run over a damaged teacher said '1 runs ... nothing run (dry run)', the
    teacher a placeholder: it now says why each student has no teacher yet, or why none can be chosen."""
    grid = ["--out", str(tmp_path), "--tasks", "rte", "--modes", "ce", "--seeds", "0", "--alphas", "0.5",
            "--temperatures", "2", "--stage", "distill"]
    student = "rte/student-ce/alpha0.5-T2-seed0"
    waiting = "--teacher '<the ce teacher of rte, chosen once its runs are finished: waiting for 1 of 1 ce teacher " \
              "runs (e.g. rte/ce/seed0): "
    ((planned, command),) = dry_run(capsys, *grid)
    assert planned == student and f"{waiting}not started>'" in command
    folder = tmp_path / "rte" / "ce" / "seed0"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text('{"accuracy": 0.')
    command = dry_run(capsys, *grid)[0][1]
    assert f"{waiting}{folder}/results.json: cannot read it (Expecting" in command
    (folder / "results.json").write_text('{"args": {}}')  # reads back, but cannot be a teacher
    assert sweep.main([*grid, "--dry-run"]) == 1
    assert capsys.readouterr().out == f"{student}  no teacher can be chosen: {tmp_path}/rte/ce: no usable ce run of " \
                                      "task rte (seed0: skipped, results.json lacks 'accuracy' or 'eval_cmi')\n"


# -----------------------------------------------------------------------------
# the grid


def test_default_grid_is_the_papers_protocol():
    args, _, _ = sweep.parse_args(["--out", "unused"])
    assert args.tasks == ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert args.modes == ["ce", "min", "max"] and args.seeds == [0, 1, 2] and args.epochs == 5
    assert all(0.05 <= lam <= 1 for lam in args.lams) and min(args.lams) == 0.05 and max(args.lams) == 1
    assert all(0.05 <= a <= 0.9 for a in args.alphas) and all(1 <= t <= 5 for t in args.temperatures)
    assert args.student_epochs == 10
    grid = sweeps.expand(args.tasks, args.modes, args.lams, args.seeds, args.alphas, args.temperatures)
    train_runs = [r for r in grid if not r.is_student]
    # per task and seed: one ce run (lambda plays no part), one min and one max run per lambda
    assert len(train_runs) == 8 * 3 * (1 + 2 * len(args.lams))
    assert len(grid) - len(train_runs) == 8 * 3 * 2 * len(args.alphas) * len(args.temperatures)
    assert len({r.folder for r in grid}) == len(grid)
    assert grid.index(max(train_runs, key=grid.index)) < len(train_runs)  # teachers before students


@pytest.mark.parametrize("run, folder", [
    (sweeps.Run("cola", "ce", 0), "cola/ce/seed0"),
    (sweeps.Run("mrpc", "min", 2, 0.1), "mrpc/min/lam0.1-seed2"),
    (sweeps.Run("mnli", "max", 1, 1.0), "mnli/max/lam1-seed1"),
    (sweeps.Run("rte", "student", 0, teacher="max", alpha=0.05, temperature=2.0),
     "rte/student-max/alpha0.05-T2-seed0"),
])
def test_folder_names_are_the_settings_and_read_back(run, folder):
    assert run.folder == folder
    assert sweeps.parse_folder(folder) == run


@pytest.mark.parametrize("folder", ["cola/ce", "cola/min/seed0", "boolq/ce/seed0", "cola/min/lam0.10-seed0",
                                    "cola/min/lamx-seed0", "cola/ce/seed0/best", "plots"])
def test_other_folders_are_not_runs(folder):
    assert sweeps.parse_folder(folder) is None


def test_dry_run_lists_exactly_the_grid_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "sweep"
    lines = dry_run(capsys, "--out", str(out), "--tasks", "mrpc,cola", "--modes", "ce,min", "--lams", "0.1,1",
                    "--seeds", "0,1", "--stage", "train", "--data-dir", str(GLUE), "--lr", "1e-3")
    tasks, seeds = ("cola", "mrpc"), (0, 1)
    expected = {f"{task}/ce/seed{seed}" for task in tasks for seed in seeds} | \
               {f"{task}/min/lam{lam}-seed{seed}" for task in tasks for lam in ("0.1", "1") for seed in seeds}
    assert [folder for folder, _ in lines] == sorted(expected, key=lambda f: sweeps.parse_folder(f).sort_key())
    for folder, command in lines:
        run = sweeps.parse_folder(folder)
        assert f"train.py --task {run.task} --mode {run.mode} " in command
        assert f" --seed {run.seed} --epochs 5 --out {out.resolve() / folder} " in command
        assert (" --lam " in command) == (run.mode == "min")
        assert run.lam is None or f" --lam {sweeps.num(run.lam)} " in command
        assert command.endswith(f"--data-dir {GLUE} --lr 1e-3") and "--resume" not in command
    assert not out.exists()


def test_students_get_the_shared_options_and_wait_for_their_teachers(capsys, tmp_path):
    lines = dry_run(capsys, "--out", str(tmp_path), "--tasks", "cola", "--modes", "ce,max", "--lams", "0.5",
                    "--seeds", "0", "--alphas", "0.5", "--temperatures", "2,4", "--stage", "distill",
                    "--student-layers", "0,2", "--lr", "1e-3", "--cmi-feature", "cls")
    assert [folder for folder, _ in lines] == [f"cola/student-{kind}/alpha0.5-T{t}-seed0"
                                                 for kind in ("ce", "max") for t in (2, 4)]
    for folder, command in lines:
        assert "distill.py --task cola --teacher '<the" in command and "--student-layers 0,2" in command
        assert "--epochs 10" in command and "--lr 1e-3" in command
        assert "--cmi-feature" not in command  # train.py's own option: not distill.py's


def test_a_teacher_is_chosen_among_the_grids_runs_only(capsys, tmp_path):
    """A max run the folder holds from another sweep (lam1, another --model, say), with the better ratio, was chosen;
    only the grid's runs, whose arguments are this sweep's, are candidates."""
    for setting, accuracy, cmi in (("lam0.5-seed0", 0.6, 0.1), ("lam1-seed0", 0.9, 0.01)):
        folder = tmp_path / "rte" / "max" / setting
        (folder / "best").mkdir(parents=True)
        results = {"args": {"task": "rte", "mode": "max"}, "accuracy": accuracy, "eval_cmi": cmi}
        (folder / "results.json").write_text(json.dumps(results))
    ((_, command),) = dry_run(capsys, "--out", str(tmp_path), "--tasks", "rte", "--modes", "max", "--lams", "0.5",
                              "--seeds", "0", "--alphas", "0.5", "--temperatures", "2", "--stage", "distill")
    assert f"--teacher {tmp_path / 'rte/max/lam0.5-seed0/best'} " in command


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 60])
def test_shards_split_the_grid_with_no_overlap(capsys, tmp_path, n):
    grid_args = ["--out", str(tmp_path), "--tasks", "cola,rte", "--lams", "0.1,0.5", "--seeds", "0,1",
                 "--alphas", "0.5", "--temperatures", "2"]
    full = [folder for folder, _ in dry_run(capsys, *grid_args)]
    assert len(full) == 2 * 2 * 5 + 2 * 2 * 2
    shards = [[folder for folder, _ in dry_run(capsys, *grid_args, "--shard", f"{i}/{n}")] for i in range(n)]
    assert sorted(itertools.chain(*shards)) == sorted(full)  # every run in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_students_whose_teachers_are_unfinished_are_skipped(capsys, tmp_path):
    code = sweep.main(["--out", str(tmp_path), "--tasks", "rte", "--modes", "ce,max", "--lams", "0.5", "--seeds", "0",
                       "--alphas", "0.5", "--temperatures", "2", "--stage", "distill"])
    out, err = capsys.readouterr()
    assert code == 0 and "0 run now, 0 failed, 2 waiting for their teachers" in err
    assert ("rte/student-max/alpha0.5-T2-seed0: skipped, waiting for 1 of 1 max teacher runs "
            "(e.g. rte/max/lam0.5-seed0)") in out
    assert list(tmp_path.iterdir()) == []


def test_a_failing_run_does_not_stop_the_sweep(capsys, tmp_path):
    code = sweep.main(["--out", str(tmp_path), "--tasks", "rte", "--modes", "ce", "--seeds", "0,1", "--stage", "train",
                       "--model", str(tmp_path / "no-such-model")])
    err = capsys.readouterr().err
    assert code == 1 and "2 runs, 0 already finished, 0 run now, 2 failed" in err
    assert "failed: rte/ce/seed0 (exit code 2)" in err and "failed: rte/ce/seed1 (exit code 2)" in err


def test_a_run_locked_by_another_process_is_left_alone(capsys, tmp_path):
    folder = tmp_path / "rte" / "ce" / "seed0"
    folder.mkdir(parents=True)
    with open(folder / "sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code = sweep.main(["--out", str(tmp_path), "--tasks", "rte", "--modes", "ce", "--seeds", "0",
                           "--stage", "train"])
    out, err = capsys.readouterr()
    assert code == 0 and "rte/ce/seed0: skipped, another process is running it" in out
    assert "0 run now, 0 failed, 0 waiting for their teachers, 1 running in another process" in err
    assert [p.name for p in folder.iterdir()] == ["sweep.lock"]


@pytest.mark.parametrize("argv, message", [
    (["--seed", "1"], "--seed is set by the sweep"),
    (["--train-file", "t.csv"], "--train-file needs --validation-file"),
    (["--train-file", "t.csv", "--validation-file", "d.csv", "--tasks", "cola"], "--tasks is for GLUE tasks"),
    (["--lams", "0.1,x"], "--lams"),
    (["--tasks", "cola,boolq"], "cola,boolq"),
    (["--shard", "3/3"], "0 <= i < n"),
    (["--lrr", "1e-3"], "unrecognized arguments: --lrr"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--student-layers", "0,x"], "--student-layers"),
    (["--lams", "0.1,-1"], "--lam must be >= 0, got -1.0"),
    (["--lams", "inf"], "--lam must be finite, got inf"),
    (["--alphas", "2"], "--alpha must be in [0, 1], got 2.0"),
    (["--temperatures", "0"], "--temperature must be > 0, got 0.0"),
    (["--model", str(MINILM), "--student-layers", "0,2,4,6,8,10"],
     f"--student-layers 0,2,4,6,8,10: layer 6 does not exist: the teacher has 6 layers (0-5) (--model {MINILM})"),
])
def test_bad_options_are_one_line_before_any_run(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "--out", str(tmp_path / "s"), *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # a missed error starts the grid
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "s").exists()


def test_student_layers_are_checked_only_when_the_grid_has_students(capsys, tmp_path):
    lines = dry_run(capsys, "--out", str(tmp_path), "--tasks", "rte", "--modes", "min", "--lams", "0.1,1", "--seeds",
                    "0", "--model", str(MINILM))  # no ce or max teacher: no student, whatever its layers
    assert [folder for folder, _ in lines] == ["rte/min/lam0.1-seed0", "rte/min/lam1-seed0"]


# -----------------------------------------------------------------------------
# a real sweep: tiny BERT, a few real SST-2 examples, 2 lambdas x 2 seeds x 1 epoch


def grid_args(out, model):
    return ["--out", str(out), "--tasks", "sst2", "--modes", "ce,min,max", "--lams", "0.1,0.5", "--seeds", "0,1",
            "--epochs", "1", "--alphas", "0.5", "--temperatures", "2", "--student-epochs", "1",
            "--student-layers", "0,1", "--model", str(model), "--data-dir", str(GLUE), "--max-train-samples", "192",
            "--max-eval-samples", "128", "--batch-size", "16", "--lr", "1e-3"]


def run_sweep(*argv, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "sweep.py"), *argv], capture_output=True, text=True, cwd=ROOT,
                          **kwargs)


def finished_runs(out: Path) -> dict[str, int]:
    """{run folder: modification time of its results.json}"""
    return {p.parent.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("*/*/*/results.json")}


@pytest.fixture(scope="module")
def interrupted(tiny_bert, tmp_path_factory):
    """The train stage of the grid, killed (with its running train.py) after 3 runs, then run again."""
    out = tmp_path_factory.mktemp("sweep")
    argv = [*grid_args(out, tiny_bert), "--stage", "train"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep.py"), *argv], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(finished_runs(out)) < 3 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished_runs(out)
    started = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/*/*/args.json"))
    again = run_sweep(*argv)
    return {"out": out, "argv": argv, "before": before, "started": started, "again": again}


def test_interrupted_sweep_resumes_without_redoing_finished_runs(interrupted):
    before, again = interrupted["before"], interrupted["again"]
    assert 3 <= len(before) < 10, "the sweep finished before it could be killed"
    assert again.returncode == 0, again.stderr
    after = finished_runs(interrupted["out"])
    assert len(after) == 10
    assert {run: after[run] for run in before} == before  # finished runs untouched: results.json not rewritten
    launched = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert len(launched) == 10 - len(before)  # the run counter: only the unfinished runs ran again
    assert f"10 runs, {len(before)} already finished, {10 - len(before)} run now, 0 failed" in again.stderr
    for folder in interrupted["started"]:  # a run killed half-way is resumed in its folder, not refused
        if folder not in before:
            assert any(line.endswith(f"{folder}: resuming") for line in launched), again.stdout


def test_finished_sweep_runs_nothing(interrupted, capsys):
    before = finished_runs(interrupted["out"])
    assert sweep.main(interrupted["argv"]) == 0
    assert "10 runs, 10 already finished, 0 run now" in capsys.readouterr().err
    assert finished_runs(interrupted["out"]) == before


def cells(markdown: str, first: str) -> list[list[str]]:
    """The cells of the Markdown table rows whose first cell is `first`."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    return [r for r in rows if r[0] == first]


def test_report_medians_are_the_medians_of_the_runs(interrupted):
    out = interrupted["out"]
    results = {p.parent.relative_to(out).as_posix(): json.loads(p.read_text())
               for p in out.glob("sst2/*/*/results.json")}
    by_setting = {}  # computed by hand from the folder names: "min/lam0.1-seed0" -> ("min", "0.1")
    for folder, r in results.items():
        _, mode, name = folder.split("/")
        if mode.startswith("student"):
            continue
        lam = name.split("-seed")[0].removeprefix("lam") if mode != "ce" else "–"
        by_setting.setdefault((mode, lam), []).append(r)
    assert sorted(len(v) for v in by_setting.values()) == [2] * 5

    def median(mode, lam, key):
        return statistics.median(r[key] for r in by_setting[mode, lam])

    markdown = report.report(out)
    for (mode, lam), runs in by_setting.items():
        [row] = [r for r in cells(markdown, mode) if r[1] == lam]
        assert row[2].removesuffix(" ← best") == f"{100 * median(mode, lam, 'accuracy'):.1f}"
        assert row[4] == f"{median(mode, lam, 'eval_cmi'):.3g}"
        for r in runs:
            assert f"{r['args']['seed']}: {100 * r['accuracy']:.1f}" in row[3]
    best = max(["0.1", "0.5"], key=lambda lam: median("min", lam, "accuracy"))
    [table_one] = cells(markdown, "sst2")[:1]
    ce, low = median("ce", "–", "accuracy"), median("min", best, "accuracy")
    assert table_one == ["sst2", "accuracy", f"{100 * ce:.1f}", f"{100 * low:.1f}", best, f"{100 * (low - ce):+.1f}"]


def test_report_draws_metric_and_cmi_against_lambda(interrupted, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    report.main([str(interrupted["out"]), "--plots", str(tmp_path)])
    assert "## Table I" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst2-paired.png", "sst2.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in tmp_path.iterdir())


@pytest.fixture(scope="module")
def distilled(interrupted):
    """The distillation stage of the same grid, once every teacher is trained."""
    return run_sweep(*interrupted["argv"][:-1], "distill")


def test_students_are_distilled_from_the_chosen_teachers(interrupted, distilled):
    out = interrupted["out"]
    assert distilled.returncode == 0, distilled.stderr
    assert "4 runs, 0 already finished, 4 run now, 0 failed, 0 waiting" in distilled.stderr
    ce_runs = sorted(out.glob("sst2/ce/seed*"))
    best_ce = max(ce_runs, key=lambda run: json.loads((run / "results.json").read_text())["accuracy"])
    selection = select_teacher(out / "sst2" / "max", "sst2", "accuracy")
    chosen = selection.chosen.run.relative_to(out)
    assert f"sst2: the max teacher is {chosen}: {selection.summary()}" in distilled.stderr
    for kind, teacher in (("ce", best_ce / "best"), ("max", selection.chosen.best)):
        for seed in (0, 1):
            results = json.loads((out / f"sst2/student-{kind}/alpha0.5-T2-seed{seed}/results.json").read_text())
            assert results["args"]["teacher"] == str(teacher) and results["args"]["seed"] == seed
            assert results["args"]["student_layers"] == [0, 1] and results["args"]["epochs"] == 1


def test_report_table_two_is_the_median_of_the_students(interrupted, distilled):
    out = interrupted["out"]
    markdown = report.report(out)
    value = {}
    for kind in ("ce", "max"):
        students = [json.loads(p.read_text()) for p in out.glob(f"sst2/student-{kind}/*/results.json")]
        assert len(students) == 2
        teacher = Path(students[0]["args"]["teacher"]).parent
        value[kind] = (json.loads((teacher / "results.json").read_text())["accuracy"],
                       statistics.median(r["accuracy"] for r in students))
    (ce_teacher, ce_student), (max_teacher, max_student) = value["ce"], value["max"]
    assert cells(markdown, "sst2")[1] == [
        "sst2", "accuracy", f"{100 * ce_teacher:.1f}", f"{100 * ce_student:.1f}", "0.5, 2",
        f"{100 * max_teacher:.1f}", f"{100 * max_student:.1f}", "0.5, 2", f"{100 * (max_student - ce_student):+.1f}"]
    assert "← selected" in markdown and "the highest ratio of 4 max runs" in markdown


def test_a_sweep_over_own_files_names_its_task_after_the_file_and_reports_it(tiny_bert, tmp_path):
    """The whole grid on own files: ce and max teachers, their students, the report by accuracy."""
    train, dev = write_own(tmp_path / "reviews.csv", cola_rows(64)), write_own(tmp_path / "reviews_dev.jsonl",
                                                                             cola_rows(32, 300))
    out = tmp_path / "sweep"
    result = run_sweep("--out", str(out), "--train-file", str(train), "--validation-file", str(dev), "--modes", "ce,max",
                       "--lams", "1", "--seeds", "0", "--epochs", "1", "--alphas", "0.5", "--temperatures", "2",
                       "--student-epochs", "1", "--student-layers", "0", "--model", str(tiny_bert),
                       "--batch-size", "16", "--lr", "1e-3")
    assert result.returncode == 0, result.stderr
    assert sorted(finished_runs(out)) == ["reviews/ce/seed0", "reviews/max/lam1-seed0",
                                          "reviews/student-ce/alpha0.5-T2-seed0", "reviews/student-max/alpha0.5-T2-seed0"]
    student = json.loads((out / "reviews/student-max/alpha0.5-T2-seed0/best/config.json").read_text())
    assert student["id2label"] == {"0": "bad", "1": "good"}  # the file's label names, through the teacher
    results = json.loads((out / "reviews/ce/seed0/results.json").read_text())
    markdown = report.report(out)
    [table_one] = cells(markdown, "reviews")[:1]  # own files: the best epoch and the tables go by accuracy
    assert table_one[:3] == ["reviews", "accuracy", f"{100 * results['accuracy']:.1f}"]


# -----------------------------------------------------------------------------
# a run is its whole configuration, the data included; the data of the grid is checked before any run


def small_grid(out, model, *data):
    """One ce run and its student, on 32 examples: the smallest grid with a teacher and a student."""
    return ["--out", str(out), *data, "--modes", "ce", "--seeds", "0", "--epochs", "1", "--alphas", "0.5",
            "--temperatures", "2", "--student-epochs", "1", "--student-layers", "0", "--model", str(model),
            "--max-train-samples", "32", "--max-eval-samples", "32", "--batch-size", "16", "--lr", "1e-3"]


def files_of(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def refused(argv, capsys) -> str:
    """The one error line of a sweep that must stop before any run (exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        sweep.run_main(lambda: sys.exit(sweep.main(argv)))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err and not out.startswith("["), err
    return errors[0]


def test_a_finished_run_on_other_data_is_never_taken_for_this_sweeps_run(tiny_bert, tmp_path, capsys):
    out = tmp_path / "sweep"
    glue = small_grid(out, tiny_bert, "--tasks", "cola", "--data-dir", str(GLUE))
    result = run_sweep(*glue)
    assert result.returncode == 0 and "2 runs, 0 already finished, 2 run now, 0 failed" in result.stderr, result.stderr
    assert sweep.main(glue) == 0  # the same sweep again: its own runs, the student's too, are finished
    assert "2 runs, 2 already finished, 0 run now" in capsys.readouterr().err
    # own files named cola: the same folders, cola/ce/seed0 and its student, but other data
    train, dev = write_own(tmp_path / "cola.csv", cola_rows(64)), write_own(tmp_path / "cola_dev.csv", cola_rows(32, 300))
    before = files_of(out)
    error = refused(small_grid(out, tiny_bert, "--train-file", str(train), "--validation-file", str(dev)), capsys)
    assert f"--out {out}: cola/ce/seed0 holds a run with other arguments (data), not this sweep's" in error
    assert files_of(out) == before


def test_a_run_on_a_file_edited_since_is_never_taken_for_this_sweeps_run(tiny_bert, tmp_path, capsys):
    out = tmp_path / "sweep"
    train, dev = write_own(tmp_path / "mine.csv", cola_rows(64)), write_own(tmp_path / "mine_dev.csv", cola_rows(32, 300))
    argv = [*small_grid(out, tiny_bert, "--train-file", str(train), "--validation-file", str(dev)), "--stage", "train"]
    assert sweep.main(argv) == 0 and "1 runs, 0 already finished, 1 run now" in capsys.readouterr().err
    original = train.read_bytes()
    write_own(train, cola_rows(64, 1000))  # the same name, other examples
    before = files_of(out)
    assert "mine/ce/seed0 holds a run with other arguments (data), not this sweep's" in refused(argv, capsys)
    assert files_of(out) == before
    train.write_bytes(original)  # the file as the run read it: the run is this sweep's again
    assert sweep.main(argv) == 0 and "1 runs, 1 already finished, 0 run now" in capsys.readouterr().err


def test_resume_continues_the_same_data_and_refuses_a_training_file_edited_since(tiny_bert, tmp_path, capsys):
    import train

    out = tmp_path / "run"
    data = write_own(tmp_path / "mine.csv", cola_rows(64)), write_own(tmp_path / "mine_dev.csv", cola_rows(32, 300))
    argv = ["--train-file", str(data[0]), "--validation-file", str(data[1]), "--text-fields", "text",
            "--model", str(tiny_bert), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--keep-last"]
    train.main(argv)
    train.main(argv + ["--resume"])  # the same data (and --text-fields, a tuple that args.json holds as a list)
    spelled = [os.path.relpath(a, Path.cwd()) if a in map(str, data) else a for a in argv]  # mine.csv as ../x/mine.csv
    assert spelled != argv
    train.main(spelled + ["--resume"])  # the same files, spelled another way
    write_own(data[0], cola_rows(64, 1000))
    before = files_of(out)
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: train.main(argv + ["--resume"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("error: ") == 1
    assert f"error: --resume: {out} holds a run with other arguments (data)" in err
    assert files_of(out) == before


@pytest.mark.parametrize("bad, message", [
    ("one class", "mine.csv: 1 distinct label(s) ['good']; classification needs at least two"),
    ("unknown dev label", "mine_dev.csv:3: unknown label 'maybe'; expected one of ['bad', 'good']"),
    ("glue", "CoLA/train.tsv:2: malformed row, 5 fields where the header has 4"),
])
def test_bad_data_anywhere_in_the_grid_stops_the_sweep_before_any_run_folder(tiny_bert, tmp_path, capsys, bad, message):
    from test_reliability import cola_folder

    out = tmp_path / "sweep"
    (out / "earlier").mkdir(parents=True)  # what the sweep folder already holds stays as it is
    (out / "earlier" / "notes.txt").write_text("mine")
    before = files_of(out)
    train, dev = write_own(tmp_path / "mine.csv", cola_rows(64)), write_own(tmp_path / "mine_dev.csv", cola_rows(32, 300))
    if bad == "one class":
        write_own(train, [(s, "1") for s, _ in cola_rows(64)])
    elif bad == "unknown dev label":
        lines = dev.read_text().splitlines()
        lines[2] = lines[2].rsplit(",", 1)[0] + ",maybe"  # line 3
        dev.write_text("\n".join(lines) + "\n")
    data = ["--train-file", str(train), "--validation-file", str(dev)]
    if bad == "glue":
        glue = cola_folder(tmp_path / "glue", "gj04\t1\t\tFine.\ngj04\t1\tToo\tmany\tfields.\n")
        data = ["--tasks", "cola", "--data-dir", str(glue)]
    assert message in refused(small_grid(out, tiny_bert, *data), capsys)
    assert files_of(out) == before and sorted(p.name for p in out.iterdir()) == ["earlier"]
