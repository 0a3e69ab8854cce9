"""Logs a user can follow on a cluster: steps.jsonl (every --log-every steps, redone exactly after a kill), the
heartbeat on a stderr that is not a terminal, and TensorBoard as an optional extra."""
import json
import os
import subprocess
import sys

import pytest

import harness.runlog
import train
from conftest import ROOT, args_for, run_cli
from test_reliability import KILLER, RUN


def step_lines(out):
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("steps") / "run"
    train.main(args_for(tiny_bert, out, *RUN, "--log-every", "5"))
    return out


def test_steps_jsonl_every_n_steps_with_the_schedules_learning_rate(reference):
    lines = step_lines(reference)
    # 192 examples in batches of 16: 12 steps per epoch, a line at steps 5, 10 and the epoch's last, 2 epochs
    assert [(line["epoch"], line["step"]) for line in lines] == [(1, 5), (1, 10), (1, 12), (2, 17), (2, 22), (2, 24)]
    for line in lines:
        assert set(line) == {"epoch", "step", "loss", "ce", "batch_cmi", "lr", "grad_norm"}
        assert line["lr"] == pytest.approx(1e-3 * (24 - line["step"]) / 24)  # linear decay, no warm-up
        assert line["loss"] == pytest.approx(line["ce"] + 0.5 * line["batch_cmi"], rel=1e-5)  # min, lambda 0.5
        assert line["grad_norm"] > 0


def test_after_a_kill_steps_jsonl_ends_as_that_of_an_uninterrupted_run(tiny_bert, reference, tmp_path):
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, *RUN, "--log-every", "5")
    # killed while writing epoch 2's checkpoint: epoch 2's step lines are written, and redone on resume
    killed = subprocess.run([sys.executable, "-c", KILLER, "/.last.pt.tmp", "2", *argv], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, killed.stderr
    assert len(step_lines(out)) == 6
    resumed = run_cli([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert step_lines(out) == step_lines(reference)


def test_a_heartbeat_when_stderr_is_not_a_terminal(tiny_bert, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(harness.runlog, "HEARTBEAT_SECONDS", 0)  # every logged step
    train.main(args_for(tiny_bert, tmp_path / "run", "--log-every", "6"))
    err = capsys.readouterr().err
    assert "epoch 1/2, step 6/12: loss " in err and "epoch 2/2, step 12/12: loss " in err
    assert "samples/s" in err and "s of training left" in err


def test_tensorboard_without_the_package_is_one_line_and_writes_nothing(tiny_bert, tmp_path):
    # the package made unimportable in the run's own process, as on a machine without it
    code = ("import runpy, sys; sys.modules['torch.utils.tensorboard'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "train.py"),
                             *args_for(tiny_bert, tmp_path / "run", "--tensorboard")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "pip install tensorboard" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_tensorboard_events_hold_the_values_of_steps_jsonl_and_metrics_jsonl(tiny_bert, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = run_cli(args_for(tiny_bert, out, "--tensorboard", "--log-every", "5"))
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    steps = step_lines(out)
    for key in ("loss", "lr", "grad_norm"):
        scalars = events.Scalars(f"step/{key}")
        assert [e.step for e in scalars] == [line["step"] for line in steps]
        assert [e.value for e in scalars] == pytest.approx([line[key] for line in steps], rel=1e-6)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("epoch/mcc")] == pytest.approx([line["mcc"] for line in epochs], abs=1e-6)


# Before train.py runs: every TensorBoard event is flushed to disk as it is added, so that a kill finds all of
# them in the files (the worst case for a resume; the writer otherwise flushes every 2 minutes).
FLUSH_EVERY_EVENT = """
from torch.utils.tensorboard import SummaryWriter
add_scalar = SummaryWriter.add_scalar
def add_and_flush(self, *args, **kwargs):
    add_scalar(self, *args, **kwargs)
    self.flush()
SummaryWriter.add_scalar = add_and_flush
"""


def raw_events(folder) -> dict[str, list[int]]:
    """tag -> the steps of its events, in the order the event files hold them (no reader's purging)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = {}
    for path in sorted(folder.iterdir()):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_after_a_kill_and_resume_the_tensorboard_events_are_those_of_an_uninterrupted_run(tiny_bert, reference,
                                                                                          tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, *RUN, "--log-every", "5", "--tensorboard")
    # killed while writing epoch 2's checkpoint: epoch 2's steps are in the events, and redone on resume
    killed = subprocess.run([sys.executable, "-c", FLUSH_EVERY_EVENT + KILLER, "/.last.pt.tmp", "2", *argv],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, killed.stderr
    assert raw_events(out / "tensorboard")["step/loss"] == [5, 10, 12, 17, 22, 24]
    resumed = run_cli([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    steps = step_lines(reference)
    raw = raw_events(out / "tensorboard")
    assert {tag: raw[tag] for tag in ("step/loss", "step/lr", "epoch/mcc")} == {
        "step/loss": [5, 10, 12, 17, 22, 24], "step/lr": [5, 10, 12, 17, 22, 24], "epoch/mcc": [1, 2]}
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for key in ("loss", "lr", "grad_norm", "batch_cmi"):
        scalars = events.Scalars(f"step/{key}")
        assert [e.step for e in scalars] == [line["step"] for line in steps]
        assert [e.value for e in scalars] == pytest.approx([line[key] for line in steps], rel=1e-6)


def test_overwrite_moves_the_old_runs_tensorboard_events_aside_with_its_other_files(tiny_bert, tmp_path):
    out = tmp_path / "run"
    assert run_cli(args_for(tiny_bert, out, "--epochs", "1", "--tensorboard", "--log-every", "4")).returncode == 0
    result = run_cli(args_for(tiny_bert, out, "--epochs", "1", "--tensorboard", "--log-every", "6", "--overwrite"))
    assert result.returncode == 0, result.stderr
    assert raw_events(out / "tensorboard")["step/loss"] == [6, 12]  # none of the old run's steps 4, 8
