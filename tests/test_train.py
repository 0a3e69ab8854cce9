"""train.py end to end on real CoLA examples: the run files, determinism, --resume after a kill, bad input."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from conftest import MINILM, ROOT, args_for, metric_lines, run_cli
from models.bert import BertConfig, BertForSequenceClassification

def test_run_writes_its_files_and_repeats_exactly(tiny_bert, tmp_path):
    train.main(args_for(tiny_bert, tmp_path / "a", "--mode", "min", "--lam", "0.5"))
    train.main(args_for(tiny_bert, tmp_path / "b", "--mode", "min", "--lam", "0.5"))
    lines = metric_lines(tmp_path / "a")
    assert [line["epoch"] for line in lines] == [1, 2]
    for key in ("task", "mode", "lam", "seed", "train_examples", "eval_examples", "train_loss", "train_cmi",
                "eval_cmi", "mcc"):
        assert key in lines[0], key
    assert lines[0]["train_examples"] == 192 and lines[0]["eval_examples"] == 96
    assert 0 < lines[0]["train_cmi"] and -1 <= lines[0]["mcc"] <= 1
    assert lines == metric_lines(tmp_path / "b")  # a CPU run repeats exactly
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    best = max(lines, key=lambda line: line["mcc"])
    assert results["best_epoch"] == best["epoch"] and results["mcc"] == best["mcc"]
    assert results["args"]["mode"] == "min"
    # how it computed and on what, beyond the "auto" of its arguments; the same data, the same fingerprints
    settings = {k: results["provenance"][k] for k in ("path", "threads", "amp", "compile", "world_size")}
    assert settings == {"path": "unpadded", "threads": torch.get_num_threads(), "amp": "off", "compile": False,
                        "world_size": 1}
    data = results["provenance"]["data"]
    assert set(data) == {"train", "validation"} and data["train"] != data["validation"]
    assert data == json.loads((tmp_path / "b" / "results.json").read_text())["provenance"]["data"]
    model = BertForSequenceClassification.from_pretrained(tmp_path / "a" / "best", num_labels=2)
    assert model.config.id2label == {0: "unacceptable", 1: "acceptable"}
    assert (tmp_path / "a" / "best" / "tokenizer.json").exists()


def test_resume_after_kill_mid_epoch_gives_the_same_metrics(tiny_bert, tmp_path):
    argv = args_for(tiny_bert, tmp_path / "full", "--mode", "min", "--max-train-samples", "800", "--epochs", "3")
    assert run_cli(argv).returncode == 0
    killed = argv[:]
    killed[killed.index(str(tmp_path / "full"))] = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *killed], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(metric_lines(tmp_path / "killed")) < 3, "the run finished before it could be killed"
    resumed = run_cli(killed + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert metric_lines(tmp_path / "killed") == metric_lines(tmp_path / "full")


@pytest.mark.parametrize("extra, message", [
    (["--task", "boolq"], "invalid choice: 'boolq'"),
    (["--mode", "minimise"], "invalid choice: 'minimise'"),
    (["--lam", "-0.1"], "--lam must be >= 0"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--gamma", "0.5"], "has no masked-LM head"),
])
def test_bad_input_is_one_clear_line(extra, message, tmp_path):
    proc = run_cli(args_for(MINILM, tmp_path / "out", *extra))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_output_folder_with_another_run_is_refused_and_left_alone(tiny_bert, tmp_path):
    out = tmp_path / "out"
    train.main(args_for(tiny_bert, out, "--epochs", "1"))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = run_cli(args_for(tiny_bert, out, "--epochs", "1", "--mode", "max"))
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "--overwrite" in proc.stderr
    proc = run_cli(args_for(tiny_bert, out, "--epochs", "1", "--mode", "max", "--resume"))
    assert proc.returncode == 2 and "other arguments (centroids, mode)" in proc.stderr, proc.stderr
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = run_cli(args_for(tiny_bert, out, "--epochs", "1", "--mode", "max", "--overwrite"))
    assert proc.returncode == 0, proc.stderr
    assert metric_lines(out)[0]["mode"] == "max"


def test_label_count_that_disagrees_with_the_checkpoint_head_is_refused(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        num_labels=3)
    path = tmp_path / "three-way"
    BertForSequenceClassification(config).save_pretrained(path, tokenizer_dir=MINILM)
    proc = run_cli(args_for(path, tmp_path / "out"))
    assert proc.returncode == 2 and "3 labels" in proc.stderr and "cola" in proc.stderr, proc.stderr


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_bert, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    calls = {"n": 0}
    original = train.CMIObjective.__call__

    def poisoned(self, forward, batch):  # epoch 2 (12 steps per epoch) produces a NaN loss
        calls["n"] += 1
        terms, logs = original(self, forward, batch)
        return (tuple(t * float("nan") for t in terms) if calls["n"] > 12 else terms), logs

    monkeypatch.setattr(train.CMIObjective, "__call__", poisoned)
    with pytest.raises(SystemExit) as exit_info:
        train.run_main(lambda: train.main(args_for(tiny_bert, out)))
    assert exit_info.value.code == 2
    assert "loss became nan" in capsys.readouterr().err
    assert [line["epoch"] for line in metric_lines(out)] == [1]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    BertForSequenceClassification.from_pretrained(out / "best", num_labels=2)


def test_gamma_trains_with_the_checkpoints_own_mlm_head(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    path = tmp_path / "with-mlm"
    BertForSequenceClassification(config, mlm=True).save_pretrained(path, tokenizer_dir=MINILM)
    train.main(args_for(path, tmp_path / "out", "--epochs", "1", "--gamma", "0.5", "--max-train-samples", "64"))
    assert metric_lines(tmp_path / "out")[0]["train_loss"] > 0
    assert BertForSequenceClassification.from_pretrained(tmp_path / "out" / "best").mlm is not None


def test_grad_accum_makes_the_updates_of_one_larger_batch(tmp_path):
    """--batch-size 8 --grad-accum 2 takes the steps of --batch-size 16, up to float rounding (no dropout: the
    masks would be drawn in another order; epoch centroids: fixed within the epoch)."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "init", tokenizer_dir=MINILM)
    for name, batch, accum in (("one", "16", "1"), ("two", "8", "2")):
        argv = args_for(tmp_path / "init", tmp_path / name, "--mode", "min", "--lam", "0.5", "--epochs", "1")
        argv[argv.index("--batch-size") + 1] = batch
        train.main(argv + ["--grad-accum", accum])
    one, two = (BertForSequenceClassification.from_pretrained(tmp_path / n / "best").state_dict() for n in ("one", "two"))
    initial = BertForSequenceClassification.from_pretrained(tmp_path / "init", num_labels=2).state_dict()
    diff = max((one[k] - two[k]).abs().max().item() for k in one)
    moved = max((one[k] - initial[k]).abs().max().item() for k in one if k in initial)
    print(f"--grad-accum 2 x 8 vs one batch of 16: max |weight diff| {diff:.1e} (the weights moved by {moved:.1e})")
    assert diff < 1e-5 and moved > 1e-3
    a, b = metric_lines(tmp_path / "one")[0], metric_lines(tmp_path / "two")[0]
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["mcc"] == b["mcc"]


def test_a_run_says_what_it_does_and_where_its_model_is(tiny_bert, tmp_path):
    done = run_cli(args_for(tiny_bert, tmp_path / "run", "--epochs", "1"))  # no terminal: no progress bars
    assert done.returncode == 0, done.stderr
    start = [line for line in done.stdout.splitlines() if line.startswith("start: ")]
    assert len(start) == 1 and "192 train / 96 dev examples; 1 epochs x 12 steps of 16 examples" in start[0]
    assert f"out {tmp_path / 'run'}" in start[0] and "cpu, float32" in start[0]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("done: best epoch 1 of 1: mcc ") and last.endswith(f"the model: {tmp_path / 'run' / 'best'}")
