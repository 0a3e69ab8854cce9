"""After training and beyond GLUE: the user's own data files (CSV, TSV, JSON Lines), macro-F1, and predict.py
(dev evaluation that reproduces the run's own numbers, the GLUE submission files, files and sentences)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import GLUE, ROOT, args_for, cola_rows, run_cli, write_own
from data.loading import load_file, load_split, load_test
from data.loading import test_files as submission_files  # not named test_*: pytest would collect it
from data.metrics import f1_macro
from data.tasks import TASKS, DataError, get_task
from data.tokenization import load_tokenizer


def predict_cli(*argv, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "predict.py"), *argv], capture_output=True, text=True,
                          **{"cwd": ROOT, **kwargs})


# -----------------------------------------------------------------------------
# own files and macro-F1


def test_macro_f1_closed_form():
    # class 0: tp 1 -> F1 1; class 1: tp 1, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 2/3
    assert f1_macro(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # a class absent from labels and predictions does not count (scikit-learn's rule)
    assert f1_macro(np.array([0, 2]), np.array([0, 2])) == 1.0


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_own_files_read_alike_in_every_format(tmp_path, suffix):
    rows = cola_rows(50) + [('He said "no, never" twice.', "1")]  # quotes and a comma inside a text
    examples, names, fields = load_file(write_own(tmp_path / f"mine{suffix}", rows))
    assert fields == ("text",)  # id is never a text field
    assert names == ("bad", "good")
    assert examples.texts[0] == [s for s, _ in rows]
    assert examples.labels.tolist() == [int(y) for _, y in rows]


def test_label_names_sort_numerically_and_dev_labels_must_be_known(tmp_path):
    train = tmp_path / "t.jsonl"
    train.write_text("".join(json.dumps({"a": "x", "b": "y", "label": v}) + "\n" for v in (10, 2, 2, 10, 3)))
    examples, names, fields = load_file(train)
    assert fields == ("a", "b") and names == ("2", "3", "10")
    assert examples.labels.tolist() == [2, 0, 0, 2, 1]
    dev = tmp_path / "d.jsonl"
    dev.write_text(json.dumps({"a": "x", "b": "y", "label": 2}) + "\n" + json.dumps({"a": "x", "b": "y", "label": 7}) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:2: unknown label '7'; expected one of \['2', '3', '10'\]"):
        load_file(dev, label_names=names)


@pytest.mark.parametrize("content, kwargs, message", [
    ("id,text,label\n", {}, "no examples"),
    ("text,label\nfine,1\n", {"text_fields": ("sentence",)}, r"t.csv:2: field 'sentence' is not text \(missing\)"),
    ("text\nfine\n", {}, "no field 'label'"),
    ("a,b,c,label\n1,2,3,0\n", {}, "cannot tell the text fields"),
    ("text,label\nfine,1\nbad\n", {}, "t.csv:3: malformed row"),
    ("text,label\nfine,1\nalso fine,1\n", {}, "1 distinct label"),
])
def test_bad_own_files_are_one_line_naming_file_and_line(tmp_path, content, kwargs, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_file(path, **kwargs)


def test_a_json_lines_text_that_is_not_text_names_its_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n\n{"text": null, "label": 0}\n')
    with pytest.raises(DataError, match=r"t.jsonl:3: field 'text' is not text \(NoneType None\)"):
        load_file(path)


# -----------------------------------------------------------------------------
# train.py on own files, and predict.py


@pytest.fixture(scope="module")
def own_run(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    train, dev = write_own(folder / "mine.csv", cola_rows(96)), write_own(folder / "mine_dev.jsonl", cola_rows(48, 200))
    # run in `folder`: the default run folder, named after the training file, is runs/ under the current one
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--train-file", str(train), "--validation-file",
                             str(dev), "--model", str(tiny_bert), "--epochs", "2", "--batch-size", "16", "--lr", "1e-3",
                             "--mode", "min", "--lam", "1"], capture_output=True, text=True, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "runs" / "mine-min-lam1.0-seed0", dev


def test_training_on_own_files_names_the_labels_and_reports_macro_f1(own_run):
    out, _ = own_run
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["id2label"] == {"0": "bad", "1": "good"} and config["label2id"] == {"bad": 0, "good": 1}
    results = json.loads((out / "results.json").read_text())
    assert results["args"]["task"] == "mine" and results["args"]["train_file"].endswith("mine.csv")
    for key in ("accuracy", "f1_macro", "mcc", "eval_cmi"):
        assert 0 <= abs(results[key]) <= 1 or key == "eval_cmi"


def test_own_sentence_pairs_with_string_labels_train_and_load_in_transformers_with_their_names(tiny_bert, tmp_path):
    from transformers import pipeline

    pairs = load_split(get_task("mrpc"), "train", GLUE, max_samples=80)
    names = ("different", "same")
    records = [{"first": a, "second": b, "label": names[y]} for a, b, y in zip(*pairs.texts, pairs.labels)]
    train = tmp_path / "pairs.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in records[:64]))
    dev = tmp_path / "pairs_dev.tsv"  # the same fields in the other format
    dev.write_text("first\tsecond\tlabel\n" + "".join(f"{r['first']}\t{r['second']}\t{r['label']}\n" for r in records[64:]))
    out = tmp_path / "run"
    result = run_cli(["--train-file", str(train), "--validation-file", str(dev), "--model", str(tiny_bert),
                      "--epochs", "1", "--batch-size", "16", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "results.json").read_text())["args"]["text_fields"] is None  # both found by themselves
    result = predict_cli("--model", str(out / "best"), "--file", str(dev), "--out", str(tmp_path / "pred"))
    assert result.returncode == 0, result.stderr
    ours = [row.split("\t") for row in (tmp_path / "pred" / "predictions.tsv").read_text().splitlines()[1:]]
    classify = pipeline("text-classification", model=str(out / "best"))
    theirs = [classify({"text": r["first"], "text_pair": r["second"]}) for r in records[64:]]
    theirs = [t[0] if isinstance(t, list) else t for t in theirs]
    assert [t["label"] for t in theirs] == [label for _, label, _ in ours]  # transformers names the labels as we do
    np.testing.assert_allclose([t["score"] for t in theirs], [float(p) for _, _, p in ours], atol=1e-4)


def test_own_file_options_are_checked(tiny_bert, tmp_path):
    train = write_own(tmp_path / "x.csv", cola_rows(20))
    for argv, message in [(["--train-file", str(train)], "needs --validation-file"),
                          (["--task", "cola", "--train-file", str(train)], "one of them"),
                          (["--train-file", str(train), "--validation-file", str(train), "--data-dir", "g"], "--data-dir")]:
        result = run_cli([*argv, "--model", str(tiny_bert), "--out", str(tmp_path / "r")])
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_predict_on_an_own_file_reproduces_the_runs_dev_metrics(own_run, tmp_path):
    out, dev = own_run
    result = predict_cli("--model", str(out / "best"), "--file", str(dev), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    best = json.loads((out / "results.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "mcc", "eval_cmi"):
        assert metrics[key] == pytest.approx(best[key], abs=1e-6)
    rows = (tmp_path / "predictions.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction\tprobability" and len(rows) == 49
    assert {row.split("\t")[1] for row in rows[1:]} <= {"bad", "good"}


@pytest.fixture(scope="module")
def cola_run(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("cola") / "run"
    result = run_cli(args_for(tiny_bert, out))
    assert result.returncode == 0, result.stderr
    return out


def test_predict_dev_reproduces_the_runs_best_epoch(cola_run, tmp_path):
    result = predict_cli("--model", str(cola_run / "best"), "--task", "cola", "--data-dir", str(GLUE),
                         "--split", "dev", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    # the run evaluated a 96-example subset; predict.py the whole dev set: compare on the rows the run saw
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"mcc", "eval_cmi"}
    rows = (tmp_path / "predictions-validation.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction\tlabel" and len(rows) == 1 + 1043
    from data.metrics import matthews_corrcoef
    names = {"unacceptable": 0, "acceptable": 1}
    preds = np.array([names[r.split("\t")[1]] for r in rows[1:]])
    labels = load_split(get_task("cola"), "validation", GLUE).labels
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(preds, labels))
    keep = np.sort(np.random.default_rng(0).permutation(1043)[:96])  # --max-eval-samples 96 (SUBSET_SEED 0)
    best = json.loads((cola_run / "results.json").read_text())
    assert matthews_corrcoef(preds[keep], labels[keep]) == pytest.approx(best["mcc"], abs=1e-9)


def test_predict_test_writes_the_glue_submission_file(cola_run, tmp_path):
    result = predict_cli("--model", str(cola_run / "best"), "--task", "cola", "--data-dir", str(GLUE),
                         "--split", "test", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "CoLA.tsv").read_text().splitlines()
    test = (GLUE / "CoLA" / "test.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == len(test)
    assert [r.split("\t")[0] for r in rows[1:]] == [t.split("\t")[0] for t in test[1:]]  # file order
    assert {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}  # GLUE spells CoLA's labels 0/1


def test_glue_test_files_of_mnli_and_qqp(tmp_path):
    (tmp_path / "MNLI").mkdir()
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\n"
    (tmp_path / "MNLI" / "test_matched.tsv").write_text(header + "0\t1\t1e\tfiction\tA man.\tA person.\n")
    (tmp_path / "MNLI" / "test_mismatched.tsv").write_text(header + "0\t2\t2e\tletters\tA b.\tC d.\n1\t3\t3e\tx\tE.\tF.\n")
    mnli = get_task("mnli")
    index, examples = load_test(mnli, "MNLI-mm", tmp_path)
    assert index == ["0", "1"] and examples.texts == (["A b.", "E."], ["C d.", "F."]) and not examples.labelled
    (tmp_path / "QQP").mkdir()
    (tmp_path / "QQP" / "test.tsv").write_text("id\tquestion1\tquestion2\n7\tWhy?\tHow?\n")
    assert load_test(get_task("qqp"), "QQP", tmp_path)[0] == ["7"]
    with pytest.raises(DataError, match="diagnostic.tsv: file not found"):
        load_test(mnli, "AX", tmp_path)


def test_predict_sentences_from_the_command_line_and_stdin(cola_run):
    result = predict_cli("--model", str(cola_run / "best"), "--text", "-", "--text", "John is tall.",
                         input="The cat sat on the mat.\n\nMat the on sat cat the.\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[-3:]
    assert [line.split("\t")[2] for line in lines] == ["The cat sat on the mat.", "Mat the on sat cat the.", "John is tall."]
    assert all(line.split("\t")[0] in ("unacceptable", "acceptable") and 0.5 <= float(line.split("\t")[1]) <= 1
               for line in lines)


def test_predict_refuses_a_model_of_other_labels_in_one_line(own_run, tmp_path):
    out, _ = own_run  # labels bad/good, not CoLA's
    result = predict_cli("--model", str(out / "best"), "--task", "cola", "--data-dir", str(GLUE), "--out", str(tmp_path))
    assert result.returncode == 2 and "--other-labels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "metrics.json").exists()


def test_predict_works_on_a_distilbert_student(cola_run, tmp_path):
    student = tmp_path / "student"
    result = subprocess.run([sys.executable, str(ROOT / "distill.py"), "--task", "cola", "--teacher", str(cola_run / "best"),
                             "--student-layers", "0", "--data-dir", str(GLUE), "--max-train-samples", "64",
                             "--max-eval-samples", "32", "--epochs", "1", "--out", str(student)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    result = predict_cli("--model", str(student / "best"), "--text", "John is tall.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split("\t")[0] in ("unacceptable", "acceptable")


def task_model(folder, task):
    """A tiny random BERT whose head carries the task's label names, saved with the real tokenizer."""
    import torch
    from conftest import MINILM
    from models.bert import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, num_labels=task.num_labels,
                        id2label=dict(enumerate(task.label_names)))
    model = BertForSequenceClassification(config).eval()
    # A fresh head predicts one class for every input; a large head centred on real sentences predicts them all,
    # so that a prediction written for the wrong row shows.
    tokenizer = load_tokenizer(MINILM)
    tokenizer.enable_padding()
    ids = torch.tensor([e.ids for e in tokenizer.encode_batch([s for s, _ in cola_rows(256)])])
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1000)
        model.classifier.bias.copy_(-model(ids, attention_mask=ids > 0).logits.mean(0))
    model.save_pretrained(folder, tokenizer_dir=MINILM)
    return folder


def transformers_predictions(model, examples):
    """transformers' argmax on the saved folder, and whether each row is a clear decision (no float near-tie)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer, hf = AutoTokenizer.from_pretrained(model), AutoModelForSequenceClassification.from_pretrained(model)
    with torch.no_grad():
        logits = torch.cat([hf(**tokenizer(*(texts[i:i + 256] for texts in examples.texts), padding=True,
                                           truncation=True, max_length=128, return_tensors="pt")).logits
                            for i in range(0, len(examples), 256)])
    top2 = logits.topk(2, dim=-1).values
    return logits.argmax(-1).numpy(), (top2[:, 0] - top2[:, 1] > 1e-4).numpy()


# The header of each GLUE test file (QQP's index is `id`; MNLI's real files have the parse columns too).
TEST_HEADERS = {"cola": ["index", "sentence"], "sst2": ["index", "sentence"],
                "mrpc": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"], "qqp": ["id", "question1", "question2"],
                "mnli": ["index", "promptID", "pairID", "genre", "sentence1", "sentence2"],
                "qnli": ["index", "question", "sentence"], "rte": ["index", "sentence1", "sentence2"],
                "wnli": ["index", "sentence1", "sentence2"]}
# The submission files GLUE's server takes, and how it spells the labels: numbers, or names for the NLI tasks.
SUBMISSIONS = {"cola": ["CoLA"], "sst2": ["SST-2"], "mrpc": ["MRPC"], "qqp": ["QQP"], "mnli": ["MNLI-m", "MNLI-mm", "AX"],
               "qnli": ["QNLI"], "rte": ["RTE"], "wnli": ["WNLI"]}
SPELLING = {"cola": {"0", "1"}, "sst2": {"0", "1"}, "mrpc": {"0", "1"}, "qqp": {"0", "1"}, "wnli": {"0", "1"},
            "mnli": {"entailment", "neutral", "contradiction"}, "qnli": {"entailment", "not_entailment"},
            "rte": {"entailment", "not_entailment"}}


@pytest.mark.parametrize("task_name", list(TASKS))
def test_predict_test_writes_every_tasks_submission_files_in_file_order(task_name, tmp_path):
    task = get_task(task_name)
    model = task_model(tmp_path / "model", task)
    glue = tmp_path / "glue"
    sentences = [s for s, _ in cola_rows(40)]
    rows = {}  # submission name -> the index column of its test file, out of order as a file may have it
    for n, (name, path) in enumerate(submission_files(task).items()):
        path, header = (("diagnostic/diagnostic.tsv", ["index", "sentence1", "sentence2"]) if name == "AX"
                        else (path, TEST_HEADERS[task_name]))
        index = [str(1000 - 7 * i) for i in range(5 + n)]
        other = [f"x{k}" for k in range(len(header) - 1 - len(task.text_fields))]  # ids, genre: not read
        lines = [header] + [[i, *other, *sentences[j:j + len(task.text_fields)]] for j, i in enumerate(index)]
        (glue / path).parent.mkdir(parents=True, exist_ok=True)
        (glue / path).write_text("".join("\t".join(line) + "\n" for line in lines))
        rows[name] = index
    result = predict_cli("--model", str(model), "--task", task_name, "--data-dir", str(glue), "--split", "test",
                         "--out", str(tmp_path / "sub"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.stem for p in (tmp_path / "sub").iterdir()) == sorted(SUBMISSIONS[task_name])
    for name, index in rows.items():
        written = (tmp_path / "sub" / f"{name}.tsv").read_text().splitlines()
        assert written[0] == "index\tprediction"
        assert [r.split("\t")[0] for r in written[1:]] == index
        assert {r.split("\t")[1] for r in written[1:]} <= SPELLING[task_name]


@pytest.mark.parametrize("task_name", ["cola", "sst2", "mrpc"])
def test_predict_on_the_real_test_files_keeps_every_row_in_order_and_agrees_with_transformers(task_name, tmp_path):
    task = get_task(task_name)
    model = task_model(tmp_path / "model", task)
    result = predict_cli("--model", str(model), "--task", task_name, "--data-dir", str(GLUE), "--split", "test",
                         "--out", str(tmp_path / "sub"))
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "sub" / f"{task.glue_dir}.tsv").read_text().splitlines()
    real = [line.split("\t") for line in (GLUE / task.glue_dir / "test.tsv").read_text("utf-8-sig").splitlines()]
    assert len(written) == len(real) and {"cola": 1064, "sst2": 1822, "mrpc": 1726}[task_name] == len(real)
    assert [r.split("\t")[0] for r in written[1:]] == [r[0] for r in real[1:]]
    _, examples = load_test(task, task.glue_dir, GLUE)
    expected, clear = transformers_predictions(model, examples)
    ours = np.array([task.tsv_label_values.index(r.split("\t")[1]) for r in written[1:]])
    assert clear.mean() > 0.99 and len(set(ours)) == 2  # nearly every row is compared, and both labels occur
    np.testing.assert_array_equal(ours[clear], expected[clear])


def test_predict_dev_agrees_with_transformers_on_the_saved_folder(tmp_path):
    task = get_task("cola")
    model = task_model(tmp_path / "model", task)
    # --out a folder of its own: the one holding the model is refused (replacing the set would remove the model)
    result = predict_cli("--model", str(model), "--task", "cola", "--data-dir", str(GLUE), "--split", "dev",
                         "--out", str(tmp_path / "pred"))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "pred" / "predictions-validation.tsv").read_text().splitlines()[1:]
    ours = np.array([task.label_names.index(r.split("\t")[1]) for r in rows])
    expected, clear = transformers_predictions(model, load_split(task, "validation", GLUE))
    assert clear.mean() > 0.99 and len(set(ours)) == 2
    np.testing.assert_array_equal(ours[clear], expected[clear])


def test_distilling_on_own_files_keeps_the_label_names(own_run, tmp_path):
    out, dev = own_run
    train = dev.parent / "mine.csv"
    result = subprocess.run([sys.executable, str(ROOT / "distill.py"), "--train-file", str(train), "--validation-file",
                             str(dev), "--teacher", str(out / "best"), "--student-layers", "0", "--epochs", "1",
                             "--out", str(tmp_path / "student")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "student" / "best" / "config.json").read_text())
    assert config["id2label"] == {"0": "bad", "1": "good"}
    assert {"accuracy", "f1_macro", "mcc"} <= set(json.loads((tmp_path / "student" / "results.json").read_text()))
