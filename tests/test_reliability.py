"""A run survives being killed at any instant, a full disk keeps the previous checkpoint, and every bad input
is one line on stderr, a non-zero exit, and leaves the output folder exactly as it was."""
import builtins
import errno
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from data.loading import load_split
from data.tasks import get_task
from models.checkpoint import CheckpointError
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from conftest import GLUE, MINILM, ROOT, args_for, metric_lines

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


class AllButFull(io.FileIO):
    """A file on a disk with `room` bytes left: a write that does not fit fails with ENOSPC, a smaller one after it
    fits, as on a real disk's last free block."""

    def __init__(self, file, mode: str, room: int):
        super().__init__(file, mode)
        self.room = room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return super().write(data)


def full_disk_on_write(target: str, n: int, room: int = 0):
    """An open() that puts the n-th file opened for writing at a path ending with `target` on a disk with `room`
    bytes left, below Python's buffering as a real disk is: its writes fail, not its fsync (full_disk_at)."""
    real_open, seen = builtins.open, []

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if "r" not in mode and str(file).endswith(target):
            seen.append(file)
            if len(seen) == n:
                buffered = io.BufferedWriter(AllButFull(file, mode.replace("b", ""), room))
                return buffered if "b" in mode else io.TextIOWrapper(buffered)
        return real_open(file, mode, *args, **kwargs)
    return open_on_a_full_disk


@pytest.mark.parametrize("target, n, room, message, epochs", [
    # a block left: torch.save's small records after the failed one fit, as they do on a real disk
    ("/.last.pt.tmp", 2, 4096, "last.pt: writing failed (No space left on device); the previous version is kept",
     [1, 2]),
    ("/.metrics.jsonl.tmp", 2, 0,
     "metrics.jsonl: writing failed (No space left on device); the previous version is kept", [1]),
    ("/.best.tmp/model.safetensors", 1, 0,
     "best: saving the model failed (No space left on device); the previous save there is kept", []),
    ("/steps.jsonl", 1, 0, "steps.jsonl: writing failed (No space left on device); the lines before are kept", []),
])
def test_a_full_disk_that_fails_the_write_itself_is_one_line_naming_the_file(
        tiny_bert, reference, tmp_path, monkeypatch, capsys, target, n, room, message, epochs):
    """torch.save's zip writer turned a failed write into a RuntimeError ('unexpected pos'): the bug line, exit code 1;
    steps.jsonl's append was a line without the file."""
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, *RUN)
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", full_disk_on_write(target, n, room))
        with pytest.raises(SystemExit) as exit_info:
            train.run_main(lambda: train.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {out}/{message}\n"
    assert [line["epoch"] for line in (metric_lines(out) if (out / "metrics.jsonl").exists() else [])] == epochs
    assert_whole(out)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    train.main(argv + ["--resume"])
    assert metric_lines(out) == reference


@pytest.fixture
def small_disk(tmp_path):
    """A real file system that fills up: a tmpfs of 8 MiB, room for a tiny run's best/ (4.7 MB), not for its last.pt
    (12 MB). Mounting one needs root."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk is a small tmpfs here, and mounting one needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_real_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(tiny_bert, reference, small_disk, capsys):
    out = small_disk / "run"
    argv = args_for(tiny_bert, out, *RUN)
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: train.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == \
        f"error: {out}/last.pt: writing failed (No space left on device); the previous version is kept\n"
    assert [line["epoch"] for line in metric_lines(out)] == [1] and not (out / "last.pt").exists()
    assert_whole(out)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # room again
    train.main(argv + ["--resume"])
    assert metric_lines(out) == reference


def predict_args(finished: Path, out: Path) -> list[str]:
    """predict.py on the finished run's model: CoLA dev, into `out`."""
    return ["--model", str(finished / "best"), "--task", "cola", "--data-dir", str(GLUE), "--out", str(out)]


def predict_on_a_full_disk(argv: list[str], out: Path, capsys) -> None:
    """predict.py `argv` into `out`, which holds an earlier call's files, on a disk that is full by now: one line
    naming --out and what is kept, exit code 2, and the earlier files as they were."""
    import predict
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: predict.main(argv + ["--overwrite"]), predict.INTERRUPTED)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: --out {out}: writing failed (No space left on device); nothing in it " \
                                      "changed (the files of an earlier call, if any, are kept)\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_predict_on_a_full_disk_names_out_and_keeps_the_earlier_files(finished, tmp_path, monkeypatch, capsys):
    import predict
    out = tmp_path / "out"
    predict.main(predict_args(finished, out))
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", full_disk_on_write("/.out.tmp/metrics.json", 1))
        predict_on_a_full_disk(predict_args(finished, out), out, capsys)


def test_predict_on_a_real_full_disk_names_out_and_keeps_the_earlier_files(finished, small_disk, capsys):
    import predict
    out = small_disk / "out"
    predict.main(predict_args(finished, out))
    with open(small_disk / "filler", "wb", buffering=0) as filler, pytest.raises(OSError, match="No space left"):
        while True:
            filler.write(bytes(1 << 16))
    predict_on_a_full_disk(predict_args(finished, out), out, capsys)
    (small_disk / "filler").unlink()  # room again
    predict.main(predict_args(finished, out) + ["--overwrite"])


def test_a_full_disk_while_saving_a_model_keeps_the_previous_save(tiny_bert, tmp_path, monkeypatch):
    first = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    first.save_pretrained(tmp_path / "best")
    before = {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()}
    second = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    with torch.no_grad():
        second.classifier.weight.add_(1)
    monkeypatch.setattr(os, "fsync", full_disk_at("/.best.tmp/model.safetensors", 1))
    with pytest.raises(CheckpointError, match=r"best: saving the model failed \(No space left on device\)"):
        second.save_pretrained(tmp_path / "best")
    assert {p.name: p.read_bytes() for p in (tmp_path / "best").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_a_save_never_removes_what_else_its_folder_holds(tiny_bert, tmp_path, monkeypatch):
    """A save swaps its folder in whole: into one holding other files (transformers' save_pretrained would leave them
    there) it is refused; into the working folder, which the swap would rename away, too."""
    model = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    mine = tmp_path / "mine"
    model.save_pretrained(mine)
    (mine / "notes.txt").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(CheckpointError, match=r"mine: holds 'notes.txt', not a file of a saved model; a save replaces "
                                              r"the folder as a whole, so it goes into a folder of its own"):
        model.save_pretrained(mine)
    (mine / "notes.txt").unlink()
    monkeypatch.chdir(mine)
    with pytest.raises(CheckpointError, match=r"saving the model failed \(the working folder, or one above it, is not "
                                              r"replaced as a whole\); the previous save there is kept"):
        model.save_pretrained(".")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == {k: v for k, v in before.items() if k != "notes.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_damaged_checkpoint_is_refused_on_resume(tiny_bert, tmp_path, capsys):
    out = tmp_path / "run"
    argv = args_for(tiny_bert, out, "--epochs", "1", "--keep-last")
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
    train.main(args_for(tiny_bert, out, "--epochs", "1", "--overwrite", "--keep-last"))
    return out


def cola_folder(root: Path, train_text: str | bytes | None = None, dev_text: str | None = None) -> Path:
    """A GLUE folder with the first real CoLA rows; `train_text`/`dev_text` replace a split's file ("" = empty
    file, None = the real rows); a split named "missing" is left out."""
    (root / "CoLA").mkdir(parents=True)
    for split, text in (("train", train_text), ("dev", dev_text)):
        if text != "missing":
            real = "".join((GLUE / "CoLA" / f"{split}.tsv").read_text().splitlines(keepends=True)[:40])
            text = real if text is None else text
            path = root / "CoLA" / f"{split}.tsv"
            path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
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
    (["--text-fields", "foo"], "--text-fields is for your own files; a GLUE task's fields are fixed"),
    (["--label-field", "bar"], "--label-field is for your own files; a GLUE task's fields are fixed"),
    (["--text-fields", "a,a"], "argument --text-fields: expected one or two different comma-separated field names"),
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


# ----------------------------------------------------------------------------- round 2: inputs that disagree


def pair_args(model, out):
    """args_for on MRPC, a sentence-pair task (token types 0 and 1)."""
    argv = args_for(model, out)
    argv[argv.index("--task") + 1] = "mrpc"
    return argv


def tokenizer_json_without(root: Path, token: str) -> None:
    """Rewrite root/tokenizer.json without `token`, in its vocabulary and in its added tokens."""
    spec = json.loads((root / "tokenizer.json").read_text())
    del spec["model"]["vocab"][token]
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != token]
    spec["post_processor"] = None
    (root / "tokenizer.json").write_text(json.dumps(spec))


SMALL = {"short positions": {"max_position_embeddings": 16}, "one token type": {"type_vocab_size": 1}}  # whole models
EDITS = {"zero heads": {"num_attention_heads": 0}, "id2label words": {"id2label": {"yes": "a", "no": "b"}}}
CHECKPOINTS_2 = [  # (the damage, the message)
    ("short positions", "the longest input is 31 tokens (--max-len 128) but its position table has 16"),
    ("zero heads", "config.json: num_attention_heads must be a positive integer, got 0"),
    ("id2label words", "config.json: id2label must map label numbers to names"),
    ("config not JSON", "config.json: not valid JSON"),
    ("config a list", "config.json: expected a JSON object, got list"),
    ("truncated tokenizer.json", "tokenizer.json: cannot read the tokenizer"),
    ("no [PAD]", "tokenizer.json: the tokenizer lacks the special token(s) [PAD]"),
    ("empty vocab.txt", "vocab.txt: the tokenizer lacks the special token(s) [PAD], [UNK], [CLS], [SEP]"),
]


def damaged(root: Path, damage: str) -> Path:
    """A checkpoint as `checkpoint` makes it, made too small (SMALL) or damaged (the rest) as named."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        **SMALL.get(damage, {}))
    BertForSequenceClassification(config).save_pretrained(root, tokenizer_dir=MINILM)
    config_path = root / "config.json"
    if damage in EDITS:
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **EDITS[damage]}))
    elif damage == "config not JSON":
        config_path.write_text("{\"model_type\": \"bert\",")
    elif damage == "config a list":
        config_path.write_text("[1, 2]")
    elif damage == "truncated tokenizer.json":
        (root / "tokenizer.json").write_bytes((root / "tokenizer.json").read_bytes()[:5000])
    elif damage == "no [PAD]":
        tokenizer_json_without(root, "[PAD]")
    elif damage == "empty vocab.txt":
        (root / "tokenizer.json").unlink()
        (root / "vocab.txt").write_text("")
    return root


@pytest.mark.parametrize("damage, message", CHECKPOINTS_2)
def test_a_checkpoint_that_disagrees_or_is_damaged(finished, tmp_path, capsys, damage, message):
    assert message in bad_run(args_for(damaged(tmp_path / "model", damage), finished), finished, capsys)


def test_one_token_type_on_a_pair_task(finished, tmp_path, capsys):
    error = bad_run(pair_args(damaged(tmp_path / "model", "one token type"), finished), finished, capsys)
    assert "task mrpc has sentence pairs (token types 0 and 1) but its token-type table has 1 row(s)" in error


@pytest.mark.parametrize("extra, message", [
    (["--lam", "inf"], "--lam must be finite, got inf"),
    (["--tau", "inf"], "--tau must be finite, got inf"),
    (["--pad-multiple", "256"], "the longest input is 256 tokens (--max-len 128, padded to a multiple of 256 by "
                                "--pad-multiple) but its position table has 128"),
    (["--lr", "1e9"], "the loss became nan"),  # a broken model: never saved as the best; the old run comes back
])
def test_a_flag_that_breaks_the_run(tiny_bert, finished, capsys, extra, message):
    assert message in bad_run(args_for(tiny_bert, finished, *extra), finished, capsys)


@pytest.mark.parametrize("text, message", [
    (b"gj04\t1\t\tFine.\ngj04\t1\t\tCaf\xe9 latin-1.\n", "CoLA/train.tsv: not UTF-8 text (byte 25"),
])
def test_a_data_file_that_is_not_text(tiny_bert, finished, tmp_path, capsys, text, message):
    argv = args_for(tiny_bert, finished)
    argv[argv.index("--data-dir") + 1] = str(cola_folder(tmp_path / "glue", text))
    assert message in bad_run(argv, finished, capsys)


def test_a_field_longer_than_the_csv_limit_is_read(tmp_path):
    long = "word " * 40_000  # 200 KB: csv's default field limit is 128 KiB
    glue = cola_folder(tmp_path / "glue", f"gj04\t1\t\tShort.\ngj04\t0\t*\t{long}\n")
    examples = load_split(get_task("cola"), "train", glue)
    assert len(examples) == 2 and len(examples.texts[0][1]) == len(long)


def bad_out(argv, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: train.main(argv))
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_an_out_that_is_a_file_or_under_a_file(tiny_bert, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert "--out " in bad_out(args_for(tiny_bert, tmp_path / "file"), capsys)
    assert (tmp_path / "file").read_text() == "mine"
    error = bad_out(args_for(tiny_bert, tmp_path / "file" / "run"), capsys)
    assert "cannot create the run folder" in error and (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("name, text, message", [
    ("args.json", "{\"task\": ", "args.json: cannot read it"),
    ("metrics.jsonl", "{\"epoch\": 1}\n{\"epo", "metrics.jsonl: damaged, cannot continue it"),
])
def test_a_damaged_run_file_on_resume(tiny_bert, finished, tmp_path, capsys, name, text, message):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / name).write_text(text)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert message in bad_out(args_for(tiny_bert, run, "--epochs", "1", "--resume"), capsys)
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- --overwrite, locks, signals


def test_overwrite_killed_before_its_first_checkpoint_gives_the_old_run_back(tiny_bert, finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    argv = args_for(tiny_bert, run, "--overwrite", "--seed", "1")
    killed = subprocess.run([sys.executable, "-c", KILLER, "/.metrics.jsonl.tmp", "1", *argv], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9, killed.stderr
    assert (run / ".replaced" / "results.json").exists()  # the old run, moved aside, not deleted
    # the next start in the folder puts it back before anything else, then refuses as for any finished run
    assert "already holds a run" in bad_out(args_for(tiny_bert, run), capsys)
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_overwriting_the_run_whose_best_is_the_model_keeps_the_tokenizer(tiny_bert, tmp_path):
    run = tmp_path / "run"
    train.main(args_for(tiny_bert, run, "--epochs", "1"))
    train.main(args_for(run / "best", run, "--epochs", "1", "--overwrite"))
    assert (run / "best" / "tokenizer.json").read_bytes() == (tiny_bert / "tokenizer.json").read_bytes()
    assert not (run / ".replaced").exists()


@pytest.mark.parametrize("script", ["train", "distill"])
def test_a_second_process_on_the_same_folder_is_refused(tiny_bert, finished, tmp_path, capsys, script):
    import distill
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    argv = args_for(tiny_bert, finished, "--resume")
    if script == "distill":
        argv = [a for a in argv if a not in ("--model", str(tiny_bert))] + ["--teacher", str(finished / "best")]
    with open(finished / "run.lock", "a") as lock:  # another process in the folder holds this lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        main = train.main if script == "train" else distill.main
        with pytest.raises(SystemExit) as exit_info:
            train.run_main(lambda: main(argv))
    assert exit_info.value.code == 2
    assert "another process is running in this folder" in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_one_line_and_the_run_resumes(tiny_bert, reference, tmp_path, sig):
    out = tmp_path / "run"
    argv = [sys.executable, str(ROOT / "train.py"), *args_for(tiny_bert, out, *RUN)]
    # A run started from a terminal gets SIGINT at its default disposition; a pytest started in the background
    # by a non-interactive shell (`pytest &`) has it ignored, which its children inherit (POSIX), so the child
    # is given the terminal's disposition whatever started the tests.
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "args.json").exists() and time.time() < deadline:  # training has started
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err and f"interrupted by {sig.name}" in errors[0], err
    assert "--resume" in errors[0]
    train.main(args_for(tiny_bert, out, *RUN, "--resume"))
    assert metric_lines(out) == reference


def test_a_signal_while_last_pt_is_written_ends_the_run_once_it_is_in_place(tmp_path, monkeypatch, capsys):
    """A SIGTERM inside torch.save ended a run as a bug: its C++ writer turned the handler's exception into a
    RuntimeError ('unexpected pos'), exit code 1, no advice. The signal now waits until the checkpoint is in place."""
    from harness.runfiles import RunFiles

    save = torch.save

    def save_under_a_signal(obj, f):
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's notice, while the file is being written
        save(obj, f)

    monkeypatch.setattr(torch, "save", save_under_a_signal)

    def main():
        with RunFiles(tmp_path / "run", {"seed": 0}) as run:
            run.start()
            run.save_checkpoint({"epoch": 1, "weights": torch.ones(1000)})

    with pytest.raises(SystemExit) as exit_info:
        train.run_main(main)
    assert exit_info.value.code == 143
    assert capsys.readouterr().err == "error: interrupted by SIGTERM; the last complete epoch is kept: run the same " \
                                      "command with --resume to continue\n"
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1


def test_resume_of_the_same_folder_spelled_another_way(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train.main(args_for(tiny_bert, "run", "--epochs", "1", "--keep-last"))
    (tmp_path / "run" / "results.json").unlink()
    train.main(args_for(tiny_bert, tmp_path / "run", "--epochs", "1", "--keep-last", "--resume"))
    assert (tmp_path / "run" / "results.json").exists()


def test_non_finite_outputs_are_never_saved_nor_written_as_json(tmp_path):
    from cmi.loop import predict
    from harness.runfiles import TrainingError, to_json, write_json
    from cmi.objectives import Features
    from tiny import TinyClassifier, synthetic_batches
    with pytest.raises(TrainingError, match=r"non-finite values \(eval_cmi, mcc\)"):
        write_json(tmp_path / "results.json", {"mcc": float("nan"), "eval_cmi": float("inf"), "epoch": 1})
    assert not (tmp_path / "results.json").exists() and to_json({"mcc": 0.5}) == '{"mcc": 0.5}'
    model = TinyClassifier(dropout=0.0)
    with torch.no_grad():
        model.cls.weight[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="eval: the model's outputs are not finite"):
        predict(model, synthetic_batches(), Features(), 2, 40, autocast=torch.no_grad())


def test_a_head_for_other_label_names_is_refused_unless_asked(finished, tmp_path, capsys):
    # the finished run's best/ classifies CoLA (unacceptable, acceptable); MRPC has two labels of other names
    error = bad_run(pair_args(finished / "best", finished), finished, capsys)
    assert "its classifier's labels are ['unacceptable', 'acceptable'], task mrpc's are" in error
    assert "pass --other-labels" in error
    train.main(pair_args(finished / "best", tmp_path / "run") + ["--epochs", "1", "--other-labels"])
    assert (tmp_path / "run" / "results.json").exists()


def test_a_finished_run_deletes_last_pt_unless_kept_and_is_not_resumed(tiny_bert, tmp_path, capsys):
    train.main(args_for(tiny_bert, tmp_path / "a", "--epochs", "1"))
    train.main(args_for(tiny_bert, tmp_path / "b", "--epochs", "1", "--keep-last"))
    assert not (tmp_path / "a" / "last.pt").exists() and (tmp_path / "b" / "last.pt").exists()
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
    before = {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert "holds a finished run" in bad_out(args_for(tiny_bert, tmp_path / "a", "--epochs", "1", "--resume"), capsys)
    assert before == {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- paths that are not plain folders


def test_a_link_to_a_folder_is_written_through_and_a_file_is_never_moved_away(tiny_bert, finished, tmp_path):
    """predict.py --out LINK replaced the link by a folder (the linked one got nothing), left a temporary link and
    exited 2; save_pretrained onto a file moved it to a hidden name and said the previous save was kept."""
    import predict
    from common.files import write_folder
    for name in ("predictions", "model", "run"):
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}-link").symlink_to(tmp_path / name)
    argv = predict_args(finished, tmp_path / "predictions-link")
    predict.main(argv)
    predict.main(argv + ["--overwrite"])  # the folder it points to is replaced whole, the link stays
    written = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert written == ["metrics.json", "predictions-validation.tsv"]
    model = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    model.save_pretrained(tmp_path / "model-link")
    model.save_pretrained(tmp_path / "model-link")
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == (tiny_bert / "model.safetensors").read_bytes()
    train.main(args_for(tiny_bert, tmp_path / "run-link", "--epochs", "1"))  # best/ through the link too
    assert (tmp_path / "run" / "results.json").exists() and (tmp_path / "run" / "best" / "config.json").exists()

    (tmp_path / "file").write_text("mine\n")
    with pytest.raises(CheckpointError, match=r"file: exists and is not a folder; a model is saved as a folder of its "
                                              r"own$"):
        model.save_pretrained(tmp_path / "file")
    with pytest.raises(NotADirectoryError):  # for every caller of write_folder, before anything is moved
        write_folder(tmp_path / "file", {"config.json": b"{}"})
    assert (tmp_path / "file").read_text() == "mine\n"
    links = [f"{name}-link" for name in ("model", "predictions", "run")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["file", "model", "predictions", "run", *links])
    assert all((tmp_path / link).is_symlink() for link in links)


# ----------------------------------------------------------------------------- resumes that check what they resume


def resume_error(main, argv, capsys) -> str:
    """The one error line of `main(argv + --resume)`, after checking its exit code and that the run's folder (--out)
    is byte for byte as it was."""
    out = Path(argv[argv.index("--out") + 1])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: main(argv + ["--resume"]))
    assert exit_info.value.code == 2
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip()


def test_resume_refuses_a_model_or_teacher_that_holds_another_checkpoint_since(tiny_bert, tmp_path, capsys):
    """A --model folder replaced by another checkpoint ended the resume as a bug (a state_dict error, exit code 1); a
    teacher retrained in place went on silently with another model's soft targets."""
    import distill
    base, run = tmp_path / "base", tmp_path / "run"
    shutil.copytree(tiny_bert, base)
    argv = args_for(base, run, "--keep-last")
    train.main(argv)
    (run / "results.json").unlink()  # a run to resume, from its last.pt
    shutil.rmtree(base)
    checkpoint(base, "another checkpoint")  # one layer, not two
    assert resume_error(train.main, argv, capsys) == (
        f"error: --resume: --model {base} does not hold the checkpoint the run in {run} began with (config.json, "
        "model.safetensors changed since); put it back to continue, or --overwrite starts afresh")

    teacher, student = tmp_path / "teacher", tmp_path / "student"
    train.main(args_for(tiny_bert, teacher, "--epochs", "1"))
    argv = args_for(tiny_bert, student, "--keep-last", "--student-layers", "0")
    argv = [a for a in argv if a not in ("--model", str(tiny_bert))] + ["--teacher", str(teacher / "best")]
    distill.main(argv)
    (student / "results.json").unlink()
    train.main(args_for(tiny_bert, teacher, "--epochs", "1", "--seed", "1", "--overwrite"))  # retrained in place
    assert resume_error(distill.main, argv, capsys) == (
        f"error: --resume: --teacher {teacher / 'best'} does not hold the checkpoint the run in {student} began with "
        "(model.safetensors changed since); put it back to continue, or --overwrite starts afresh")


def test_resume_of_a_folder_without_a_run_says_that_a_new_run_begins(tiny_bert, tmp_path, capsys):
    out = tmp_path / "none"
    train.main(args_for(tiny_bert, out, "--epochs", "1", "--resume"))
    assert capsys.readouterr().err == f"warning: --resume: {out} holds no run to resume; a new run begins there\n"
    assert (out / "results.json").exists()
