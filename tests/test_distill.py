"""distill.py end to end on real CoLA examples: the run files, the student in transformers, cached against live
teacher logits, a teacher chosen from a sweep folder, a pretrained student, bad input. The student's construction
is tested in test_student.py, the teacher rule in test_selection.py."""
import json
import shutil
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import transformers

import distill
import train
from cmi.loop import predict
from cmi.objectives import Features
from data.batching import collate, train_batches
from data.tasks import get_task
from harness.cli import parse_distill_args
from cmi.loop import model_inputs
from harness.cli import data_source, runtime_options
from harness.rundata import Batches, eval_pass, load_data
from harness.runtime import setup
from conftest import GLUE, MINILM, metric_lines
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification

# -----------------------------------------------------------------------------
# distill.py on real CoLA examples

DATA = ["--task", "cola", "--data-dir", str(GLUE), "--max-train-samples", "192", "--max-eval-samples", "96",
        "--batch-size", "16", "--lr", "1e-3"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A train.py max-CMI run (1 epoch) of a tiny random 4-layer BERT with the real uncased vocabulary."""
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    root = tmp_path_factory.mktemp("teacher")
    BertForSequenceClassification(config).save_pretrained(root / "init", tokenizer_dir=MINILM)
    train.main([*DATA, "--model", str(root / "init"), "--mode", "max", "--epochs", "1", "--out", str(root / "run")])
    return root / "run"


def distill_args(out, *extra):
    return [*DATA, "--epochs", "2", "--out", str(out), *extra]


def test_distillation_runs_end_to_end_and_the_student_loads_in_transformers(teacher_run, tmp_path):
    out = tmp_path / "student"
    distill.main(distill_args(out, "--teacher", str(teacher_run / "best"), "--student-layers", "0,2",
                              "--alpha", "0.3", "--temperature", "4"))
    lines = metric_lines(out)
    assert [line["epoch"] for line in lines] == [1, 2]
    for line in lines:
        assert {k: line[k] for k in ("task", "mode", "alpha", "temperature", "seed", "train_examples", "eval_examples")} \
            == {"task": "cola", "mode": "distill", "alpha": 0.3, "temperature": 4.0, "seed": 0, "train_examples": 192,
                "eval_examples": 96}
        assert {"train_cmi", "eval_cmi", "mcc"} <= line.keys()
        # eq. (8) is linear in CE and KL, so the epoch means obey it too
        assert line["train_loss"] == pytest.approx(0.7 * line["train_ce"] + 0.3 * 16 * line["train_kd"], rel=1e-5)
    results = json.loads((out / "results.json").read_text())
    assert results["best_epoch"] == max(lines, key=lambda line: line["mcc"])["epoch"]
    assert results["args"]["teacher"] == str(teacher_run / "best") and results["args"]["student_layers"] == [0, 2]
    assert results["args"]["fold_token_type"] is True and results["args"]["epochs"] == 2
    assert (out / "best" / "tokenizer.json").is_file()

    ours = DistilBertForSequenceClassification.from_pretrained(out / "best").eval()
    assert ours.config.n_layers == 2 and ours.config.id2label == {0: "unacceptable", 1: "acceptable"}
    theirs = transformers.DistilBertForSequenceClassification.from_pretrained(out / "best",
                                                                              attn_implementation="eager").eval()
    args = parse_distill_args(distill_args(out, "--teacher", str(teacher_run / "best")))
    evals = load_data(data_source(args), get_task("cola"), teacher_run / "best", ours.config.vocab_size, args.max_len,
                      args.max_train_samples, args.max_eval_samples).evals
    batch = collate(evals["validation"], np.arange(32))
    with torch.no_grad():
        expected = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    diff = (ours(batch["input_ids"], batch["attention_mask"]).logits - expected).abs().max().item()
    print(f"student in transformers vs ours, 32 CoLA dev sentences: max |diff| {diff:.2e}")
    assert diff < 1e-5


def test_cached_teacher_logits_equal_live_ones_and_train_the_same_student(teacher_run, tmp_path):
    args = parse_distill_args(distill_args(tmp_path, "--teacher", str(teacher_run / "best")))
    teacher = BertForSequenceClassification.from_pretrained(teacher_run / "best").eval()
    runtime = setup(**runtime_options(args))
    data = load_data(data_source(args), get_task("cola"), teacher_run / "best", teacher.config.vocab_size,
                     args.max_len, args.max_train_samples, args.max_eval_samples).train
    cached = predict(teacher, eval_pass(data, args.eval_batch_size, runtime), Features(), 2, len(data),
                     autocast=nullcontext())[0]
    live = Batches(data, train_batches(data.lengths, 16, seed=0, epoch=1), CPU, None)
    with torch.no_grad():
        diff = max((teacher(**model_inputs(b, unpad=False)).logits - cached[b["index"]]).abs().max().item()
                   for b in live)
    print(f"teacher logits, cached (eval batches) vs live (training batches): max |diff| {diff:.2e}")
    assert diff < 1e-5

    for mode in ("cached", "live"):
        distill.main(distill_args(tmp_path / mode, "--teacher", str(teacher_run / "best"), "--student-layers", "1,3",
                                  *(["--live-teacher"] if mode == "live" else [])))
        seconds = [json.loads(line)["epoch_seconds"] for line in (tmp_path / mode / "metrics.jsonl").open()]
        print(f"{mode} teacher: epoch seconds {', '.join(f'{s:.2f}' for s in seconds)}")
    # the same student up to float rounding: a batch padded to another width rounds the teacher's logits apart
    cached_lines, live_lines = metric_lines(tmp_path / "cached"), metric_lines(tmp_path / "live")
    assert cached_lines[0].keys() == live_lines[0].keys()
    for a, b in zip(cached_lines, live_lines):
        numbers = [k for k, v in a.items() if isinstance(v, (int, float))]
        assert {k: a[k] for k in a if k not in numbers} == {k: b[k] for k in b if k not in numbers}
        assert [a[k] for k in numbers] == pytest.approx([b[k] for k in numbers], rel=1e-4, abs=1e-9)
    a, b = (DistilBertForSequenceClassification.from_pretrained(tmp_path / m / "best").state_dict()
            for m in ("cached", "live"))
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"students trained with cached vs live teacher logits: max |weight diff| {diff:.2e}")
    assert diff < 1e-6


def test_teacher_sweep_picks_the_highest_ratio_and_records_it(teacher_run, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for name, cmi in [("lam0.1", 0.02), ("lam0.5", 0.01), ("unfinished", None)]:
        shutil.copytree(teacher_run, sweep / name)
        results = json.loads((sweep / name / "results.json").read_text())
        if cmi is None:
            (sweep / name / "results.json").unlink()
        else:
            (sweep / name / "results.json").write_text(json.dumps({**results, "mcc": 0.3, "eval_cmi": cmi}))
    out = tmp_path / "student"
    distill.main(distill_args(out, "--teacher-sweep", str(sweep), "--student-layers", "0,2", "--epochs", "1"))
    stdout = capsys.readouterr().out
    assert f"teacher {sweep / 'lam0.5' / 'best'}: 0.3 / eval_cmi 0.01 = ratio 30" in stdout
    assert "note: unfinished: skipped, no results.json" in stdout
    args = json.loads((out / "results.json").read_text())["args"]
    assert args["teacher"] == str(sweep / "lam0.5" / "best")
    assert args["teacher_selection"]["ratio"] == pytest.approx(30) and args["teacher_selection"]["runs"] == 2


def test_pretrained_distilbert_student(teacher_run, tmp_path):
    torch.manual_seed(0)
    config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=128)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "distil", tokenizer_dir=MINILM)
    out = tmp_path / "student"
    distill.main(distill_args(out, "--teacher", str(teacher_run / "best"), "--student", str(tmp_path / "distil"),
                              "--epochs", "1"))
    assert DistilBertForSequenceClassification.from_pretrained(out / "best").config.n_layers == 1
    assert json.loads((out / "results.json").read_text())["args"]["student_layers"] is None


@pytest.mark.parametrize("extra, message", [
    (["--teacher", "{run}/best", "--student-layers", "0,2,2"], "argument --student-layers: layer indices must be distinct"),
    (["--teacher", "{run}/best", "--student-layers", "0,x"], "argument --student-layers: expected comma-separated"),
    (["--teacher", "{run}/best", "--student-layers", "0,4"],
     "--student-layers 0,4: layer 4 does not exist: the teacher has 4 layers (0-3)"),
    (["--teacher", "{run}/best", "--alpha", "1.5"], "--alpha must be in [0, 1]"),
    (["--teacher", "{run}/best", "--temperature", "0"], "--temperature must be > 0"),
    (["--teacher", "{run}/best", "--student", str(MINILM), "--no-fold-token-type"], "apply to the layer copy"),
    (["--teacher", "{run}/best", "--teacher-sweep", "{run}"], "not allowed with argument --teacher"),
    (["--student-layers", "0,2"], "one of the arguments --teacher --teacher-sweep is required"),
    (["--teacher", str(MINILM)], "--teacher: " + str(MINILM) + ": not a fine-tuned BERT classifier"),
    (["--teacher", "{run}/missing"], "--teacher: {run}/missing: checkpoint folder does not exist"),
    (["--teacher", "{distil}"], "--teacher: {distil}/config.json: model_type is 'distilbert', expected 'bert'"),
    (["--teacher", "{run}/best", "--student", "{run}/best"], "model_type is 'bert', expected 'distilbert'"),
    (["--teacher", "{run}/best", "--student", "{distil}"], "--student {distil}: its vocabulary differs from the teacher's"),
    (["--teacher-sweep", "{run}"], "--teacher-sweep {run}: no usable max-CMI run of task cola"),
    (["--teacher", "{pair}"], "--teacher {pair}: 1 text(s) per input, but the model reads a pair of texts (premise, "
                              "hypothesis, its config.json text_fields)"),
])
def test_bad_input_is_one_clear_line(teacher_run, tmp_path, capsys, extra, message):
    distil = tmp_path / "distil"  # a DistilBERT with its own 8-word vocabulary
    DistilBertForSequenceClassification(DistilBertConfig(vocab_size=8, dim=8, n_layers=1, n_heads=2, hidden_dim=16)) \
        .save_pretrained(distil)
    (distil / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]) + "\n")
    pair = tmp_path / "pair"  # the teacher as if trained on sentence pairs
    shutil.copytree(teacher_run / "best", pair)
    config = json.loads((pair / "config.json").read_text())
    (pair / "config.json").write_text(json.dumps(config | {"text_fields": ["premise", "hypothesis"]}))
    fill = {"run": str(teacher_run), "distil": str(distil), "pair": str(pair)}
    with pytest.raises(SystemExit) as exit_info:
        distill.run_main(lambda: distill.main(distill_args(tmp_path / "out", *(a.format(**fill) for a in extra))))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(**fill) in errors[0], errors
    assert not (tmp_path / "out").exists()


def test_a_student_whose_position_table_is_too_short_costs_no_earlier_run(teacher_run, tmp_path, capsys):
    short = tmp_path / "short"  # a DistilBERT with the teacher's vocabulary and 16 positions
    DistilBertForSequenceClassification(DistilBertConfig(dim=8, n_layers=1, n_heads=2, hidden_dim=16,
                                                         max_position_embeddings=16)).save_pretrained(
        short, tokenizer_dir=MINILM)
    finished = tmp_path / "finished"
    shutil.copytree(teacher_run, finished)  # a finished run in the folder the student would --overwrite
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:
        distill.run_main(lambda: distill.main(distill_args(finished, "--teacher", str(teacher_run / "best"),
                                                           "--student", str(short), "--overwrite")))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the student: the longest input is" in errors[0], errors
    assert "but its position table has 16 (max_position_embeddings)" in errors[0]
    assert before == {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
