"""Every message that advises a command, followed (issue 38: a stopped sweep advised --resume, which the sweep
refuses). Each test below brings a message about, runs what it advises, and checks that this works;
test_every_advice_is_followed_by_a_test finds the advice in the code's messages, so that a new one cannot go
untried."""
import ast
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

import bench
import predict
from conftest import GLUE, ROOT, cola_rows, write_own
from data.tasks import get_task
from harness.cli import RESUME, run_main
from test_predict import task_model
from test_report import fake_run, report_without

# What advice reads like in a message: a flag to pass, a command to run, a package to install.
ADVICE = re.compile(r"pass --|pass the best|pass a local|use --|lower --|name [^;]* with --|choose (another|a new)|"
                    r"run the same|run the sweep again|starts afresh|give it once|give one kind|add step|"
                    r"without a task head|--plots DIR|move that run away|wait for it|pip install|CMI_TRACEBACK=1")

# a part of each advising message -> the test that follows it (in this file unless named FILE::TEST)
FOLLOWED = {
    "run the same command with --resume": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "pass --resume to continue it or --overwrite": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "cannot resume from it": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "cannot read it ({e}); --overwrite starts afresh": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "damaged, cannot continue it": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "holds a finished run": "test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh",
    "run the same command again to replace it": "test_an_overwrite_stopped_before_its_first_epoch_is_run_again",
    "put it back to continue, or --overwrite starts afresh":
        "test_a_resume_from_a_changed_checkpoint_goes_on_once_it_is_put_back",
    "wait for it or choose another --out": "test_a_busy_run_folder_waits_or_moves",
    "run the same command to continue": "test_a_stopped_sweep_continues_with_the_same_command",
    "run the sweep again once they are": "test_a_stopped_sweep_continues_with_the_same_command",
    "choose another --out, or move that run away": "test_a_sweep_folder_holding_another_run_moves_aside",
    "lower --max-len or --pad-multiple": "test_training_advice",
    "use --gamma 0": "test_training_advice",
    "use --cmi-feature pooled, the last real token's state":
        "test_decoder_runs.py::test_what_a_decoder_cannot_take_is_one_line_and_the_advice_works",
    "start from a checkpoint without a task head": "test_training_advice",
    "name the label field with --label-field": "test_training_advice",
    "pass --other-labels": "test_predict_advice",
    "pass the best/ folder of a train.py or distill.py run": "test_predict_advice",
    "pass the best/ folder of a train.py run": "test_predict_advice",
    "name one or two with --text-fields": "test_predict_advice",
    "if it is a text, --text-fields": "test_predict_advice",
    "give it once": "test_predict_advice",
    "give one kind": "test_predict_advice",
    "pass --overwrite to replace them, or choose another --out": "test_predict_advice",
    "choose a new or empty --out": "test_predict_advice",
    "nothing was written: run the same command again": "test_predict_and_bench_interrupted_run_again",
    "offline, pass --data-dir": "test_offline_advice",
    "offline, pass a local checkpoint folder": "test_offline_advice",
    "name the file's with --text-fields":
        "test_inputs.py::test_a_file_without_the_models_fields_or_with_another_number_of_texts_is_one_line",
    "to leave it unread, pass --text-fields": "test_inputs.py::test_a_file_is_read_with_exactly_the_fields_the_model_was_trained_on",
    "add step": "test_bench_advice",
    "--plots DIR or --no-plots": "test_report_advice",
    "or pass --no-plots": "test_report_advice",
    "pip install": "test_the_packages_advised_are_the_extras_setup_py_names",
    "CMI_TRACEBACK=1": "test_an_unexpected_failure_prints_its_traceback_as_advised",
}


def messages() -> list[str]:
    """The string literals of the code (an f-string's parts joined with {} for its values): docstrings and help=
    texts left out, which advise nothing that fails."""
    texts = []
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("*/*.py")):
        if path.relative_to(ROOT).parts[0] in ("tests", "results", "build") or path.name == "setup.py":
            continue
        tree = ast.parse(path.read_text())
        skip = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "help"}
        skip |= {id(node.body[0].value) for node in ast.walk(tree)
                 if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                 and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        skip |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.JoinedStr):
                texts.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return texts


def test_every_advice_is_followed_by_a_test():
    advice = [text for text in messages() if ADVICE.search(text)]
    untried = [text for text in advice if not any(key.replace("{e}", "{}") in text for key in FOLLOWED)]
    assert not untried, untried
    stale = [key for key in FOLLOWED if not any(key.replace("{e}", "{}") in text for text in advice)]
    assert not stale, stale
    for test in set(FOLLOWED.values()):
        file, _, name = test.rpartition("::")
        assert f"def {name}(" in (ROOT / "tests" / (file or "test_advice.py")).read_text(), test


# -----------------------------------------------------------------------------
# helpers


def script(name, *argv, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / name), *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, **kwargs)


def advice(result, code=2) -> str:
    """The one error line of a refused command, after checking its exit code."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == code and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def works(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def small(model, out, *extra):
    """train.py on 64 real CoLA examples, 4 short epochs."""
    return ["--task", "cola", "--model", model, "--data-dir", GLUE, "--out", out, "--max-train-samples", "64",
            "--max-eval-samples", "32", "--batch-size", "16", "--lr", "1e-3", "--epochs", "4", *extra]


def wait_for_a_checkpoint(proc, last: Path) -> None:
    """Until the run has saved its first epoch's last.pt, while it still runs."""
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """The folder of a finished train.py run."""
    out = tmp_path_factory.mktemp("trained") / "run"
    works(script("train.py", *small(tiny_bert, out, "--epochs", "1")))
    return out


def bare(tiny_bert, folder: Path) -> Path:
    """tiny_bert without its task head (pooler, classifier): the BertModel of a pretrained checkpoint."""
    shutil.copytree(tiny_bert, folder)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith(("classifier.", "bert.pooler."))},
              folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"architectures": ["BertModel"]}))
    return folder


# -----------------------------------------------------------------------------
# train.py: kills, damaged run files, a busy folder


def test_a_run_stopped_by_sigterm_resumes_and_a_damaged_one_starts_afresh(tiny_bert, tmp_path):
    out = tmp_path / "run"
    argv = small(tiny_bert, out)
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, argv)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_a_checkpoint(proc, out / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == f"error: interrupted by SIGTERM; {RESUME}", err
    for damage in ("none", "last.pt", "args.json", "metrics.jsonl"):
        shutil.copytree(out, tmp_path / damage)
    (tmp_path / "last.pt" / "last.pt").write_bytes(b"torn")
    (tmp_path / "args.json" / "args.json").write_text("{")
    (tmp_path / "metrics.jsonl" / "metrics.jsonl").write_text("{\n")

    again = advice(script("train.py", *argv))  # the same command, neither flag
    assert again.endswith("pass --resume to continue it or --overwrite to replace it")
    works(script("train.py", *argv, "--resume"))  # as the SIGTERM line says
    works(script("train.py", *small(tiny_bert, tmp_path / "none", "--overwrite")))
    for damage, message in (("last.pt", "cannot resume from it"), ("args.json", "cannot read it"),
                            ("metrics.jsonl", "damaged, cannot continue it")):
        folder = tmp_path / damage
        error = advice(script("train.py", *small(tiny_bert, folder, "--resume")))
        assert message in error and error.endswith("--overwrite starts afresh"), error
        works(script("train.py", *small(tiny_bert, folder, "--overwrite")))
        assert (folder / "results.json").exists()
    error = advice(script("train.py", *argv, "--resume"))  # finished now, last.pt deleted
    assert "holds a finished run" in error and error.endswith("--overwrite starts afresh"), error
    works(script("train.py", *argv, "--overwrite"))


def test_a_busy_run_folder_waits_or_moves(tiny_bert, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert advice(script("train.py", *small(tiny_bert, out, "--epochs", "1"))).endswith(
            "wait for it or choose another --out")
        works(script("train.py", *small(tiny_bert, tmp_path / "another", "--epochs", "1")))
    works(script("train.py", *small(tiny_bert, out, "--epochs", "1")))  # waited for it


def as_from_a_terminal():
    """SIGINT at the disposition a terminal's command has (see test_reliability's signal test)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_overwrite_stopped_before_its_first_epoch_is_run_again(trained, tiny_bert, tmp_path):
    """Ctrl-C on an --overwrite run before its first epoch puts the old run back; the advice to add --resume then
    took up that old run (refused here: it has other arguments)."""
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = small(tiny_bert, out, "--overwrite", "--seed", "1", "--max-train-samples", "1024")  # a longer first epoch
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, argv)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_from_a_terminal)
    deadline = time.time() + 300
    while not (out / ".replaced").exists() and time.time() < deadline:  # the old run moved aside: training begins
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
        f"error: interrupted by SIGINT; {out} still holds its earlier run (this one had no complete epoch): run the "
        "same command again to replace it"), err
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "holds a run with other arguments" in advice(script("train.py", *argv, "--resume"))  # the old advice
    works(script("train.py", *argv))  # the same command again
    assert json.loads((out / "results.json").read_text())["args"]["seed"] == 1


def test_a_resume_from_a_changed_checkpoint_goes_on_once_it_is_put_back(tiny_bert, tmp_path):
    base, out = tmp_path / "base", tmp_path / "run"
    shutil.copytree(tiny_bert, base)
    argv = small(base, out, "--epochs", "2", "--keep-last")
    works(script("train.py", *argv))
    (out / "results.json").unlink()  # a run to resume, from its last.pt
    shutil.move(base, tmp_path / "kept")
    bare(tiny_bert, base)  # another checkpoint in its place
    error = advice(script("train.py", *argv, "--resume"))
    assert error.endswith(f"--model {base} does not hold the checkpoint the run in {out} began with (config.json, "
                          "model.safetensors changed since); put it back to continue, or --overwrite starts afresh")
    shutil.copytree(out, tmp_path / "afresh")
    works(script("train.py", *small(base, tmp_path / "afresh", "--epochs", "2", "--keep-last", "--overwrite")))
    shutil.rmtree(base)
    shutil.move(tmp_path / "kept", base)  # put back
    works(script("train.py", *argv, "--resume"))
    assert (out / "results.json").exists()


def test_training_advice(tiny_bert, tmp_path):
    error = advice(script("train.py", *small(tiny_bert, tmp_path / "a", "--epochs", "1", "--pad-multiple", "256")))
    assert error.endswith("lower --max-len or --pad-multiple")
    works(script("train.py", *small(tiny_bert, tmp_path / "a", "--epochs", "1", "--pad-multiple", "8")))

    error = advice(script("train.py", *small(tiny_bert, tmp_path / "b", "--epochs", "1", "--gamma", "0.5")))
    assert "use --gamma 0 or a checkpoint with one" in error
    works(script("train.py", *small(tiny_bert, tmp_path / "b", "--epochs", "1", "--gamma", "0")))

    mnli = task_model(tmp_path / "mnli", get_task("mnli"))
    error = advice(script("train.py", *small(mnli, tmp_path / "c", "--epochs", "1")))
    assert error.endswith("start from a checkpoint without a task head")
    works(script("train.py", *small(bare(tiny_bert, tmp_path / "bare"), tmp_path / "c", "--epochs", "1")))

    rows = [{"text": s, "target": y} for s, y in cola_rows(40)]
    for name, part in (("t.jsonl", rows[:32]), ("d.jsonl", rows[32:])):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    own = ["--train-file", tmp_path / "t.jsonl", "--validation-file", tmp_path / "d.jsonl", "--model", tiny_bert,
           "--epochs", "1", "--out", tmp_path / "own"]
    assert "name the label field with --label-field" in advice(script("train.py", *own))
    works(script("train.py", *own, "--label-field", "target"))


# -----------------------------------------------------------------------------
# sweep.py


def sweep_grid(out, model):
    # 30 short epochs: on an idle machine 4 finished before a SIGTERM sent after the first could stop the run
    return ["--out", out, "--tasks", "cola", "--modes", "ce", "--seeds", "0", "--epochs", "30", "--alphas", "0.5",
            "--temperatures", "2", "--student-epochs", "1", "--student-layers", "0", "--model", model,
            "--data-dir", GLUE, "--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16",
            "--lr", "1e-3"]


def test_a_stopped_sweep_continues_with_the_same_command(tiny_bert, tmp_path):
    grid = sweep_grid(tmp_path, tiny_bert)
    early = works(script("sweep.py", *grid, "--stage", "distill"))  # before its teacher
    assert "run the sweep again once they are finished" in early.stdout
    argv = [sys.executable, str(ROOT / "sweep.py"), *map(str, grid), "--stage", "train"]
    proc = subprocess.Popen(argv, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_a_checkpoint(proc, tmp_path / "cola" / "ce" / "seed0" / "last.pt")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: interrupted by SIGTERM; finished runs are kept, the interrupted " \
                                           "one from its last complete epoch: run the same command to continue"
    again = works(script("sweep.py", *grid, "--stage", "train"))  # the same command
    assert "cola/ce/seed0: resuming" in again.stdout and (tmp_path / "cola/ce/seed0/results.json").exists()
    works(script("sweep.py", *grid, "--stage", "distill"))  # again, now that the teacher is finished
    assert (tmp_path / "cola/student-ce/alpha0.5-T2-seed0/results.json").exists()


def test_ctrl_c_on_a_sweep_is_one_line_and_the_same_command_continues(tiny_bert, tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the sweep and its run each printed a line, the run's
    advising --resume, which the sweep refuses."""
    grid = [*sweep_grid(tmp_path, tiny_bert), "--stage", "train"]

    def own_group():  # to be signalled as a terminal signals its foreground job
        os.setpgrp()
        as_from_a_terminal()

    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep.py"), *map(str, grid)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=own_group)
    wait_for_a_checkpoint(proc, tmp_path / "cola" / "ce" / "seed0" / "last.pt")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 130 and errors == [
        "error: interrupted by SIGINT; finished runs are kept, the interrupted one from its last complete epoch: run "
        "the same command to continue"], err
    again = works(script("sweep.py", *grid))  # the same command
    assert "cola/ce/seed0: resuming" in again.stdout and (tmp_path / "cola/ce/seed0/results.json").exists()


def test_a_sweep_folder_holding_another_run_moves_aside(trained, tiny_bert, tmp_path):
    grid = [*sweep_grid(tmp_path / "s", tiny_bert), "--stage", "train", "--dry-run"]
    shutil.copytree(trained, tmp_path / "s" / "cola" / "ce" / "seed0")  # a run of other arguments
    assert advice(script("sweep.py", *grid)).endswith("choose another --out, or move that run away")
    works(script("sweep.py", *sweep_grid(tmp_path / "another", tiny_bert), "--stage", "train", "--dry-run"))
    shutil.move(tmp_path / "s" / "cola" / "ce" / "seed0", tmp_path / "moved")
    works(script("sweep.py", *grid))


# -----------------------------------------------------------------------------
# predict.py and distill.py


def csv_file(path, header, rows):
    path.write_text("".join(",".join(row) + "\n" for row in [header, *rows]))
    return path


def test_predict_advice(trained, tiny_bert, tmp_path):
    sentences = [s.replace(",", "").replace('"', "") for s, _ in cola_rows(20)]
    other = task_model(tmp_path / "other", dataclasses.replace(get_task("cola"), label_names=("no", "yes")))
    task = ["--task", "cola", "--data-dir", GLUE]
    assert "pass --other-labels" in advice(script("predict.py", "--model", other, *task, "--out", tmp_path / "o"))
    works(script("predict.py", "--model", other, *task, "--out", tmp_path / "o", "--other-labels"))

    model = bare(tiny_bert, tmp_path / "bare")
    error = advice(script("predict.py", "--model", model, "--text", "Fine."))
    assert error.endswith("pass the best/ folder of a train.py or distill.py run")
    works(script("predict.py", "--model", trained / "best", "--text", "Fine."))
    distil = ["--task", "cola", "--data-dir", GLUE, "--student-layers", "0", "--max-train-samples", "32",
              "--max-eval-samples", "16", "--epochs", "1", "--out", tmp_path / "student"]
    assert advice(script("distill.py", "--teacher", model, *distil)).endswith("pass the best/ folder of a train.py run")
    works(script("distill.py", "--teacher", trained / "best", *distil))

    model = task_model(tmp_path / "model", get_task("cola"))  # records no fields: found by themselves
    three = csv_file(tmp_path / "three.csv", ["a", "b", "c"], [[s, s, s] for s in sentences])
    assert advice(script("predict.py", "--model", model, "--file", three, "--out", tmp_path / "t")).endswith(
        "name one or two with --text-fields")
    works(script("predict.py", "--model", model, "--file", three, "--out", tmp_path / "t", "--text-fields", "a"))
    answers = csv_file(tmp_path / "answers.csv", ["text", "target"],
                       [[s, ("unacceptable", "acceptable")[i % 2]] for i, s in enumerate(sentences)])
    assert advice(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path / "a")).endswith(
        "if it is the label, pass --label-field target; if it is a text, --text-fields")
    works(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path / "a", "--label-field", "target"))
    works(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path / "b", "--text-fields",
                 "text,target"))

    out = tmp_path / "a"  # holds the files of the call above
    error = advice(script("predict.py", "--model", model, "--file", answers, "--out", out, "--text-fields", "text"))
    assert error.endswith("pass --overwrite to replace them, or choose another --out")
    works(script("predict.py", "--model", model, "--file", answers, "--out", out, "--text-fields", "text",
                 "--overwrite"))
    works(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path / "c", "--text-fields", "text"))
    error = advice(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path, "--text-fields", "text"))
    assert error.endswith("choose a new or empty --out")
    (tmp_path / "empty").mkdir()
    works(script("predict.py", "--model", model, "--file", answers, "--out", tmp_path / "empty", "--text-fields", "text"))

    assert advice(script("predict.py", "--model", model, "--text", "-", "--text", "-", input="Fine.\n")).endswith(
        "give it once")
    works(script("predict.py", "--model", model, "--text", "-", input="Fine.\n"))
    assert advice(script("predict.py", "--model", model, "--text", "Fine.", "--text", "A\tpair.")).endswith(
        "give one kind")
    works(script("predict.py", "--model", model, "--text", "Fine.", "--text", "Also fine."))


def test_offline_advice(tmp_path):
    offline = {"env": {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}}
    model = task_model(tmp_path / "model", get_task("cola"))
    for split in ("dev", "test"):
        argv = ["--model", model, "--task", "cola", "--split", split, "--out", tmp_path / split]
        assert "offline, pass --data-dir" in advice(script("predict.py", *argv, **offline))
        works(script("predict.py", *argv, "--data-dir", GLUE, **offline))
    error = advice(script("predict.py", "--model", "nobody/no-such-model", "--text", "Fine.", **offline))
    assert error.endswith("offline, pass a local checkpoint folder")
    works(script("predict.py", "--model", model, "--text", "Fine.", **offline))


def test_predict_and_bench_interrupted_run_again(tmp_path, monkeypatch, capsys):
    """Ctrl-C while predicting or measuring: nothing is written, and the same command runs again."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    model = task_model(tmp_path / "model", get_task("cola"))
    path = write_own(tmp_path / "new.csv", cola_rows(20), ("unacceptable", "acceptable"))
    predict_argv = ["--model", str(model), "--file", str(path), "--out", str(tmp_path / "out")]
    bench_argv = ["--presets", "tiny", "--sections", "step", "--batch-size", "2", "--seq-len", "8", "--repeats", "1",
                  "--warmup", "0", "--device", "cpu", "--compile", "off", "--out", str(tmp_path / "bench.json")]
    for module, argv, owner, name in ((predict, predict_argv, predict.Predictor, "__call__"),
                                      (bench, bench_argv, bench.SECTIONS["step"], "measure")):
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, interrupt)
            with pytest.raises(SystemExit) as exit_info:
                run_main(lambda: module.main(argv), module.INTERRUPTED)
        assert exit_info.value.code == 130
        assert capsys.readouterr().err == "error: interrupted by SIGINT; nothing was written: run the same command " \
                                          "again\n"
        assert not (tmp_path / "out").exists() and not (tmp_path / "bench.json").exists()
    works(script("predict.py", *predict_argv))
    works(script("bench.py", *bench_argv))
    assert (tmp_path / "out" / "predictions.tsv").exists() and json.loads((tmp_path / "bench.json").read_text())["step"]


# -----------------------------------------------------------------------------
# bench.py, report.py, packages, tracebacks


def test_bench_advice(tmp_path):
    argv = ["--presets", "tiny", "--batch-size", "2", "--seq-len", "8", "--repeats", "1", "--warmup", "0",
            "--device", "cpu", "--compile", "off", "--out", tmp_path / "b.json"]
    assert advice(script("bench.py", *argv, "--sections", "mfu")).startswith(
        "error: --sections: mfu is measured within step; add step")
    works(script("bench.py", *argv, "--sections", "step,mfu"))
    assert "mfu_real" in json.loads((tmp_path / "b.json").read_text())["step"][0]["ours"]


def test_report_advice(tmp_path):
    for seed in range(2):
        fake_run(tmp_path / "s", f"cola/ce/seed{seed}", [0.2, 0.3])
        fake_run(tmp_path / "s", f"cola/min/lam1-seed{seed}", [0.25, 0.3])
    (tmp_path / "file").write_text("not a folder")
    error = advice(script("report.py", tmp_path / "s", "--plots", tmp_path / "file" / "plots"))
    assert error.endswith("pass --plots DIR or --no-plots")
    works(script("report.py", tmp_path / "s", "--plots", tmp_path / "plots"))
    works(script("report.py", tmp_path / "s", "--no-plots"))
    # without matplotlib: the report without its plots, as the line advises
    assert advice(report_without("matplotlib", tmp_path / "s")).endswith("or pass --no-plots")
    result = works(report_without("matplotlib", tmp_path / "s", "--no-plots"))
    assert "## Paired differences against CE" in result.stdout


def test_the_packages_advised_are_the_extras_setup_py_names():
    """pip install -e '.[plot]' (matplotlib), '.[tensorboard]', '.[stats]' (scipy): installing is not for a test,
    but each extra must exist in setup.py with the package the message needs, which is importable here."""
    extras = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                  if isinstance(node, ast.keyword) and node.arg == "extras_require")
    extras = ast.literal_eval(extras.value)
    for extra, package in (("plot", "matplotlib"), ("tensorboard", "tensorboard"), ("stats", "scipy")):
        assert extras[extra] == [package]
        assert f"pip install -e '.[{extra}]'" in " ".join(messages())
        __import__(package)


def test_an_unexpected_failure_prints_its_traceback_as_advised(monkeypatch, capsys):
    def broken():
        raise RuntimeError("a bug")

    with pytest.raises(SystemExit) as exit_info:
        run_main(broken)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.endswith("(an unexpected failure; CMI_TRACEBACK=1 prints the traceback)\n")
    monkeypatch.setenv("CMI_TRACEBACK", "1")
    with pytest.raises(SystemExit):
        run_main(broken)
    assert "Traceback (most recent call last)" in capsys.readouterr().err
