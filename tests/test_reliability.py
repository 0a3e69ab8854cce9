"""A run survives being killed at any instant, a full disk keeps the previous checkpoint, and every bad input
is one line on stderr, a non-zero exit, and leaves the output folder exactly as it was."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from test_train import GLUE, MINILM, ROOT, args_for, metric_lines, tiny_bert  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="finds the file behind a descriptor in /proc")

RUN = ("--mode", "min", "--lam", "0.5")  # centroids, optimiser, schedule and RNG all in the checkpoint


def path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


# Runs train.py, but when the n-th fsync of a file whose path ends with `target` is reached (the file is
# written, not yet renamed into place), the process kills itself with SIGKILL.
KILLER = """
import os, signal, sys
import train
target, n = sys.argv[1], int(sys.argv[2])
fsync, seen = os.fsync, []
def fsync_or_die(fd):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(target):
        seen.append(fd)
        if len(seen) == n:
            os.kill(os.getpid(), signal.SIGKILL)
    fsync(fd)
os.fsync = fsync_or_die
train.run_main(lambda: train.main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def reference(tiny_bert, tmp_path_factory):
    """metrics.jsonl of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    train.main(args_for(tiny_bert, out, *RUN, "--overwrite"))
    return metric_lines(out)


def assert_whole(out: Path) -> None:
    """Every file of the run reads back: metrics.jsonl holds epochs 1..k once each, last.pt and best/ load."""
    lines = metric_lines(out) if (out / "metrics.jsonl").exists() else []
    assert [line["epoch"] for line in lines] == list(range(1, len(lines) + 1))
    if (out / "last.pt").exists():
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] in (len(lines), len(lines) - 1)
    if (out / "best").exists():
        BertForSequenceClassification.from_pretrained(out / "best", num_labels=2)


@pytest.mark.parametrize("target, n", [
    ("/.best.tmp/model.safetensors", 1),  # writing best/ after epoch 1
    ("/.best.tmp", 1),                    # best/ complete, about to be swapped into place
    ("/.metrics.jsonl.tmp", 1),           # the first line, before any checkpoint
    ("/.last.pt.tmp", 1),                 # the first checkpoint, its metrics line already in place
    ("/.metrics.jsonl.tmp", 2),           # epoch 2's line, epoch 1's checkpoint in place
    ("/.last.pt.tmp", 2),                 # epoch 2's checkpoint, its line already in place
])
def test_a_kill_while_writing_leaves_whole_files_and_resume_ends_as_an_uninterrupted_run(
        tiny_bert, reference, tmp_path, target, n):
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, *RUN)
    killed = subprocess.run([sys.executable, "-c", KILLER, target, str(n), *argv], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, f"never reached the {n}th fsync of *{target}: {killed.stderr}"
    assert_whole(out)
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv, "--resume"], cwd=ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert metric_lines(out) == reference
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the killed write's leftovers


def full_disk_at(target: str, n: int):
    """An os.fsync that fails with ENOSPC (as a full disk does) at the n-th fsync of a file ending with `target`."""
    fsync, seen = os.fsync, []

    def fsync_or_full(fd):
        if path_of(fd).endswith(target):
            seen.append(fd)
            if len(seen) == n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)
    return fsync_or_full


@pytest.mark.parametrize("target, n, epochs", [
    ("/.last.pt.tmp", 2, [1, 2]),          # epoch 2's checkpoint: epoch 1's stays, its line is redone on resume
    ("/.metrics.jsonl.tmp", 2, [1]),       # epoch 2's line: epoch 1's file stays
    ("/.best.tmp/model.safetensors", 1, []),  # the first best/ of the run
])
def test_a_full_disk_stops_the_run_clearly_and_keeps_the_previous_files(
        tiny_bert, reference, tmp_path, monkeypatch, capsys, target, n, epochs):
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, *RUN)
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk_at(target, n))
        with pytest.raises(SystemExit) as exit_info:
            train.run_main(lambda: train.main(argv))
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and "No space left on device" in errors[0], errors
    if epochs:
        assert [line["epoch"] for line in metric_lines(out)] == epochs
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    else:
        assert not (out / "metrics.jsonl").exists() and not (out / "last.pt").exists()
    assert_whole(out)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    train.main(argv + ["--resume"])
    assert metric_lines(out) == reference


def test_a_full_disk_while_saving_a_model_keeps_the_previous_save(tiny_bert, tmp_path, monkeypatch):
    first = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    first.save_pretrained(tmp_path / "best")
    before = {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()}
    second = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    with torch.no_grad():
        second.classifier.weight.add_(1)
    monkeypatch.setattr(os, "fsync", full_disk_at("/.best.tmp/model.safetensors", 1))
    with pytest.raises(train.CheckpointError, match=r"best: saving the model failed \(No space left on device\)"):
        second.save_pretrained(tmp_path / "best")
    assert {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_damaged_checkpoint_is_refused_on_resume(tiny_bert, tmp_path, capsys):
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, "--epochs", "1")
    train.main(argv)
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        train.run_main(lambda: train.main(argv + ["--resume"]))
    assert "last.pt: cannot resume from it" in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def finished(tiny_bert, tmp_path_factory):
    """The folder of a finished one-epoch run, which every bad invocation below tries to --overwrite."""
    out = tmp_path_factory.mktemp("finished")
    train.main(args_for(tiny_bert, out, "--epochs", "1", "--overwrite"))
    return out


def cola_folder(root: Path, train_text: str | None = None, dev_text: str | None = None) -> Path:
    """A GLUE folder with the first real CoLA rows; `train_text`/`dev_text` replace a split's file ("" = empty
    file, None = the real rows); a split named "missing" is left out."""
    (root / "CoLA").mkdir(parents=True)
    for split, text in (("train", train_text), ("dev", dev_text)):
        if text != "missing":
            real = "".join((GLUE / "CoLA" / f"{split}.tsv").read_text().splitlines(keepends=True)[:40])
            (root / "CoLA" / f"{split}.tsv").write_text(real if text is None else text)
    return root


def checkpoint(root: Path, damage: str) -> Path:
    """A small BERT checkpoint folder with the real vocabulary, damaged as named."""
    torch.manual_seed(0)
    vocab = 1000 if damage == "small vocab" else 30522
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    BertForSequenceClassification(config).save_pretrained(root, tokenizer_dir=MINILM)
    weights = root / "model.safetensors"
    if damage == "no config":
        (root / "config.json").unlink()
    elif damage == "distilbert config":
        distil = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
        DistilBertForSequenceClassification(distil).save_pretrained(root / "d")
        shutil.copyfile(root / "d" / "config.json", root / "config.json")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "integer weights":
        from safetensors.torch import load_file, save_file
        state = load_file(weights)
        state["bert.embeddings.word_embeddings.weight"] = state["bert.embeddings.word_embeddings.weight"].long()
        save_file(state, weights)
    return root


FLAGS = [  # (the bad flags, the message), one per flag range check
    (["--task", "boolq"], "argument --task: invalid choice: 'boolq'"),
    (["--mode", "minimise"], "argument --mode: invalid choice: 'minimise'"),
    (["--centroids", "kmeans"], "argument --centroids: invalid choice: 'kmeans'"),
    (["--lam", "-0.1"], "--lam must be >= 0, got -0.1"),
    (["--gamma", "-1"], "--gamma must be >= 0, got -1.0"),
    (["--tau", "0"], "--tau must be > 0, got 0.0"),
    (["--epochs", "0"], "--epochs must be > 0, got 0"),
    (["--batch-size", "0"], "--batch-size must be > 0, got 0"),
    (["--eval-batch-size", "-8"], "--eval-batch-size must be > 0, got -8"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--warmup-ratio", "1.5"], "--warmup-ratio must be in [0, 1], got 1.5"),
    (["--weight-decay", "-0.01"], "--weight-decay must be >= 0, got -0.01"),
    (["--clip", "-1"], "--clip must be >= 0, got -1.0"),
    (["--max-len", "2"], "--max-len must be in [3, 512], got 2"),
    (["--max-len", "1024"], "--max-len must be in [3, 512], got 1024"),
    (["--max-train-samples", "0"], "--max-train-samples must be > 0, got 0"),
    (["--max-eval-samples", "0"], "--max-eval-samples must be > 0, got 0"),
    (["--group-batches", "0"], "--group-batches must be > 0, got 0"),
    (["--pad-multiple", "0"], "--pad-multiple must be > 0, got 0"),
    (["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--gamma", "0.5"], "has no masked-LM head (cls.predictions.*)"),
]
DATA = [  # (train.tsv, dev.tsv, the message)
    (None, "missing", "CoLA/dev.tsv: file not found"),
    ("gj04\t1\t\tFine.\ngj04\t1\tToo\tmany\tfields.\n", None,
     "CoLA/train.tsv:2: malformed row, 5 fields where the header has 4"),
    ("gj04\t1\t\tFine.\ngj04\t2\t\tHuh.\n", None, "CoLA/train.tsv:2: unknown label '2'; expected one of ['0', '1']"),
    ("", None, "CoLA/train.tsv: no examples"),
]
CHECKPOINTS = [  # (the damage, the message)
    ("no config", "no config.json, so not a Hugging Face checkpoint folder"),
    ("distilbert config", "config.json: model_type is 'distilbert', expected 'bert'"),
    ("truncated", "model.safetensors: cannot read weights"),
    ("integer weights", "bert.embeddings.word_embeddings.weight has dtype torch.int64, expected torch.float32"),
    ("small vocab", "the tokenizer has 30522 tokens, the model's embedding table 1000 rows"),
    ("no folder", "checkpoint folder does not exist"),
]


def bad_run(argv, finished, capsys) -> str:
    """Run train.py on `argv` (its --out: the finished run) with --overwrite; the one error line, after checking
    the exit code and that the finished run's folder is byte for byte as it was."""
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: train.main(argv + ["--overwrite"]))
    assert exit_info.value.code == 2
    assert before == {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("extra, message", FLAGS)
def test_a_bad_flag(tiny_bert, finished, capsys, extra, message):
    model = MINILM if "--gamma" in extra else tiny_bert
    assert message in bad_run(args_for(model, finished, *extra), finished, capsys)


@pytest.mark.parametrize("train_text, dev_text, message", DATA)
def test_a_bad_data_folder(tiny_bert, finished, tmp_path, capsys, train_text, dev_text, message):
    argv = args_for(tiny_bert, finished)
    argv[argv.index("--data-dir") + 1] = str(cola_folder(tmp_path / "glue", train_text, dev_text))
    assert message in bad_run(argv, finished, capsys)


@pytest.mark.parametrize("damage, message", CHECKPOINTS)
def test_a_bad_checkpoint(finished, tmp_path, capsys, damage, message):
    model = tmp_path / "missing" if damage == "no folder" else checkpoint(tmp_path / "model", damage)
    assert message in bad_run(args_for(model, finished), finished, capsys)
