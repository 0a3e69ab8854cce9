"""Inputs that once gave wrong output with exit code 0 (issue 29): a model's labels met by a task's in another
order, label sets corrupted by the user's own files, and texts that are no input. Valid inputs are checked row by
row; a bad one is one `error:` line, exit code 2, and leaves what is already written as it was."""
import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import distill
import predict
import train
from conftest import GLUE, ROOT, cola_rows, metric_lines, write_own
from data.loading import Examples, load_split, load_test
from data.tasks import get_task
from models.checkpoint import CheckpointError
from models.bert import BertForSequenceClassification
from test_predict import predict_cli, task_model, transformers_predictions
from test_reliability import bad_run, finished  # noqa: F401 (finished: the fixture bad_run protects)


def same_model_other_order(model_dir, folder, order):
    """The classifier in `model_dir`, saved with its labels listed in `order`: the head's rows and id2label
    permuted together, so that it is the same function of its inputs, naming its labels in another order."""
    model = BertForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order])
        model.classifier.bias.copy_(model.classifier.bias[order])
    names = [model.config.id2label[i] for i in order]
    model.config.id2label, model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    model.save_pretrained(folder, tokenizer_dir=model_dir)
    return folder


def mnli_folder(root):
    """A GLUE folder with MNLI dev and test files of real sentences (the columns predict.py reads)."""
    sentences = [s for s, _ in cola_rows(120)]
    labels = get_task("mnli").label_names
    (root / "MNLI").mkdir(parents=True)
    for i, name in enumerate(["dev_matched", "dev_mismatched", "test_matched", "test_mismatched"]):
        rows = [[str(k), sentences[k + 30 * i], sentences[k + 30 * i + 1], labels[k % 3]] for k in range(29)]
        header = ["index", "sentence1", "sentence2"] + ["gold_label"] * name.startswith("dev")
        text = "".join("\t".join(row[:len(header)]) + "\n" for row in [header, *rows])
        (root / "MNLI" / f"{name}.tsv").write_text(text)
    return root


# ----------------------------------------------------------------------------- 1. labels matched by name


@pytest.mark.parametrize("flags", [[], ["--other-labels"]])
@pytest.mark.parametrize("task_name, order", [("cola", (1, 0))] + [
    ("mnli", order) for order in itertools.permutations(range(3))])
def test_predict_names_every_row_by_the_models_own_labels_in_any_order(tmp_path, task_name, order, flags):
    """A property: for any order of a model's label names (its head unchanged), predict.py's named prediction of
    each row is the name its own id2label gives the argmax of its logits, on dev and in the test files."""
    task = get_task(task_name)
    names = tuple(task.label_names[i] for i in order)
    model = task_model(tmp_path / "model", dataclasses.replace(task, label_names=names))
    glue = GLUE if task_name == "cola" else mnli_folder(tmp_path / "glue")
    for split in ("dev", "test"):
        predict.main(["--model", str(model), "--task", task_name, "--data-dir", str(glue), "--split", split,
                      "--out", str(tmp_path / split), *flags])
    id2label = json.loads((model / "config.json").read_text())["id2label"]
    written = {split: (tmp_path / "dev" / f"predictions-{split}.tsv") for split in task.eval_splits}
    if task_name == "mnli":  # the submission files spell MNLI's labels by name too
        written |= {"test_matched": tmp_path / "test" / "MNLI-m.tsv", "test_mismatched": tmp_path / "test" / "MNLI-mm.tsv"}
    for split, path in written.items():
        if split.startswith("test"):
            examples = load_test(task, {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}[split], glue)[1]
        else:
            examples = load_split(task, split, glue)
        expected, clear = transformers_predictions(str(model), examples)
        ours = [row.split("\t")[1] for row in path.read_text().splitlines()[1:]]
        assert clear.mean() > 0.95 and len(set(ours)) > 1  # nearly every row compared, and more than one label
        assert [ours[i] for i in np.flatnonzero(clear)] == [id2label[str(k)] for k in expected[clear]]


def test_predict_without_other_labels_still_refuses_names_the_task_lacks(tmp_path, capsys):
    task = get_task("cola")
    model = task_model(tmp_path / "model", dataclasses.replace(task, label_names=("acceptable", "bad")))
    with pytest.raises(SystemExit) as exit_info:
        predict.run_main(lambda: predict.main(["--model", str(model), "--task", "cola", "--data-dir", str(GLUE),
                                               "--out", str(tmp_path / "out")]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("error: ") == 1
    assert "its classifier's labels are ['acceptable', 'bad'], task cola's are" in err
    assert not (tmp_path / "out").exists()


def test_other_labels_keeps_shared_names_and_pairs_the_rest_in_order(tmp_path, capsys):
    from harness.training import match_labels

    cola = get_task("cola")  # unacceptable, acceptable
    assert match_labels(["acceptable", "unacceptable"], cola, "m") == [1, 0]
    assert match_labels(["LABEL_0", "LABEL_1"], cola, "m") == [0, 1]  # names that name nothing: in order
    assert match_labels(["acceptable", "bad"], cola, "m", other_labels=True) == [1, 0]  # never acceptable as 'unacceptable'
    assert "'bad' as 'unacceptable'" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="names two labels 'acceptable'"):
        match_labels(["acceptable", "acceptable"], cola, "m", other_labels=True)


@pytest.fixture(scope="module")
def cola_head(tmp_path_factory):
    """A fine-tuned CoLA classifier, and the same classifier saved with its labels in the other order."""
    root = tmp_path_factory.mktemp("heads")
    model = task_model(root / "model", get_task("cola"))
    return model, same_model_other_order(model, root / "reversed", [1, 0])


def short_run(model, out, *extra):
    return ["--task", "cola", "--model", str(model), "--data-dir", str(GLUE), "--out", str(out),
            "--max-train-samples", "64", "--max-eval-samples", "48", "--batch-size", "16", "--lr", "1e-3",
            "--epochs", "1", *extra]


def test_fine_tuning_a_head_that_lists_the_labels_in_another_order_is_the_same_run(cola_head, tmp_path):
    model, reversed_ = cola_head
    train.main(short_run(model, tmp_path / "a"))
    train.main(short_run(reversed_, tmp_path / "b"))  # no --other-labels needed: the names are the task's
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")
    for run in ("a", "b"):
        config = json.loads((tmp_path / run / "best" / "config.json").read_text())
        assert config["id2label"] == {"0": "unacceptable", "1": "acceptable"}


def test_distilling_a_teacher_that_lists_the_labels_in_another_order_is_the_same_run(cola_head, tmp_path):
    model, reversed_ = cola_head
    for teacher, out in ((model, "a"), (reversed_, "b")):
        argv = [a for a in short_run(model, tmp_path / out) if a not in ("--model", str(model))]
        distill.main([*argv, "--teacher", str(teacher), "--student-layers", "0"])
    assert metric_lines(tmp_path / "a") == metric_lines(tmp_path / "b")


# ----------------------------------------------------------------------------- 2. label sets of own files


def own_args(train_file, dev_file, model, out):
    return ["--train-file", str(train_file), "--validation-file", str(dev_file), "--model", str(model),
            "--out", str(out), "--epochs", "1", "--batch-size", "16"]


def csv_text(rows, header=("id", "text", "label")):
    return "".join(",".join(map(str, row)) + "\n" for row in [header, *rows])


SENTENCES = [s.replace(",", "").replace('"', "") for s, _ in cola_rows(40)]  # no CSV quoting needed
ROWS = [(i, s, ("bad", "good")[i % 2]) for i, s in enumerate(SENTENCES)]


@pytest.mark.parametrize("name, text, message", [
    ("empty label", csv_text(ROWS[:5] + [(5, SENTENCES[5], "")] + ROWS[6:]), "t.csv:7: field 'label' is empty"),
    ("spaces only", csv_text(ROWS[:3] + [(3, SENTENCES[3], "  ")] + ROWS[4:]), "t.csv:5: field 'label' is empty"),
    ("header again", csv_text(ROWS[:20]) + csv_text(ROWS[20:]),
     "t.csv:22: the header row again (files joined with their headers?); expected an example"),
    ("two columns of one name", csv_text([(i, s, s, y) for i, s, y in ROWS], ("id", "text", "text", "label")),
     "t.csv:1: two columns named 'text' in the header"),
    ("empty text", csv_text(ROWS[:8] + [(8, " ", "good")] + ROWS[9:]), "t.csv:10: field 'text' is empty; expected a text"),
    ("a JSON key twice", "".join(json.dumps({"text": s, "label": y}).replace('{"text"', '{"label": "bad", "text"') + "\n"
                                 for _, s, y in ROWS), "t.jsonl:1: field 'label' twice in one object"),
])
def test_an_own_file_that_would_corrupt_the_label_set_or_the_input(tiny_bert, finished, tmp_path, capsys,
                                                                    name, text, message):
    path = tmp_path / ("t.jsonl" if "JSON" in name else "t.csv")
    path.write_text(text)
    dev = write_own(tmp_path / "dev.csv", cola_rows(20, 100))
    error = bad_run(own_args(path, dev, tiny_bert, finished), finished, capsys)
    assert message in error, error


def test_integral_numbers_are_one_label_however_written(tmp_path):
    from data.loading import load_file

    path = tmp_path / "t.jsonl"  # 1 and 1.0 (JSON), "1.0" (text, as pandas writes a column with gaps) and " 0 "
    path.write_text("".join(json.dumps({"text": s, "label": y}) + "\n"
                            for s, y in zip(SENTENCES, [1, 1.0, "1.0", " 0 ", 0, 0.0] * 6)))
    examples, names, _ = load_file(path)
    assert names == ("0", "1") and examples.labels.tolist() == [1, 1, 1, 0, 0, 0] * 6


def test_an_unnamed_index_column_is_not_read_as_text(tmp_path):
    """pandas' to_csv() writes its index as a first column with no name: with it, every row would have become a
    pair (index, text). Predictions on the file equal those on the same file without it, row by row."""
    task = get_task("cola")
    model = task_model(tmp_path / "model", task)
    plain = tmp_path / "plain.csv"
    plain.write_text(csv_text([(s, ("unacceptable", "acceptable")[i % 2]) for i, s in enumerate(SENTENCES)],
                              ("text", "label")))
    indexed = tmp_path / "indexed.csv"
    indexed.write_text(csv_text([(i, s, ("unacceptable", "acceptable")[i % 2]) for i, s in enumerate(SENTENCES)],
                                ("", "text", "label")))
    for path in (plain, indexed):
        predict.main(["--model", str(model), "--file", str(path), "--out", str(tmp_path / path.stem)])
    assert (tmp_path / "plain" / "predictions.tsv").read_text() == (tmp_path / "indexed" / "predictions.tsv").read_text()
    assert (tmp_path / "plain" / "metrics.json").read_text() == (tmp_path / "indexed" / "metrics.json").read_text()


@pytest.mark.parametrize("labels", [("unacceptable", "acceptable"), ("0", "1")])
def test_a_label_column_under_another_name_is_not_read_as_a_text(tmp_path, labels):
    # CoLA's label names, or the 0/1 a file of one's own might hold (the model then named its labels "0" and "1")
    task = get_task("cola")
    model = task_model(tmp_path / "model", dataclasses.replace(task, label_names=labels))
    path = tmp_path / "new.csv"
    path.write_text(csv_text([(s, labels[i % 2]) for i, s in enumerate(SENTENCES)], ("text", "target")))
    out = tmp_path / "out"
    result = predict_cli("--model", str(model), "--file", str(path), "--out", str(out))
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {path}: field 'target' holds only the model's label names {list(labels)}, not texts; if it is the "
        "label, pass --label-field target; if it is a text, --text-fields"], result.stderr
    assert not out.exists()
    result = predict_cli("--model", str(model), "--file", str(path), "--out", str(out), "--label-field", "target")
    assert result.returncode == 0 and (out / "metrics.json").exists(), result.stderr  # named: evaluated


def test_a_file_to_label_with_an_empty_label_column_is_labelled(tmp_path):
    model = task_model(tmp_path / "model", get_task("cola"))
    path = tmp_path / "new.csv"
    path.write_text(csv_text([(s, "") for s in SENTENCES], ("text", "label")))
    predict.main(["--model", str(model), "--file", str(path), "--out", str(tmp_path / "out")])
    assert len((tmp_path / "out" / "predictions.tsv").read_text().splitlines()) == 1 + len(SENTENCES)
    assert not (tmp_path / "out" / "metrics.json").exists()  # no labels, nothing to evaluate


# ----------------------------------------------------------------------------- 3. texts that are no input


@pytest.mark.parametrize("argv, stdin, message", [
    (["--text", ""], None, "--text #1: an empty text; expected a sentence"),
    (["--text", "Fine.", "--text", "   "], None, "--text #2: an empty text; expected a sentence"),
    (["--text", "A first.\t"], None, "--text #1: an empty text; expected a sentence on each side of the tab"),
    (["--text", "-"], b"Fine.\nA\tpair\twith a tab.\n", "--text -: line 2: 3 tab-separated texts; expected one text, "
                                                       "or two (a pair)"),
    (["--text", "-"], b"Fine.\nCaf\xe9 latin-1.\n", "--text -: standard input is not UTF-8 text (byte 9: "
                                                   "invalid continuation byte)"),
    (["--text", "-"], b"\n  \n", "--text -: standard input held no text"),
    (["--text", "-", "--text", "-"], b"Fine.\n", "--text -: given 2 times; standard input is read once, give it once"),
])
def test_a_text_that_is_no_input_is_one_line(tmp_path, argv, stdin, message):
    model = task_model(tmp_path / "model", get_task("cola"))
    result = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", str(model), *argv],
                            input=stdin, capture_output=True, cwd=ROOT)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.strip().splitlines() == [f"error: {message}"], err
    assert result.stdout == b""


def test_valid_texts_and_pairs_are_labelled_row_by_row(tmp_path):
    model = task_model(tmp_path / "model", get_task("cola"))
    sentences = SENTENCES[:6]
    result = predict_cli("--model", str(model), "--text", "-", "--text", sentences[5],
                         input="\n".join(sentences[:5]) + "\n")
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[2] for line in lines] == sentences
    expected, clear = transformers_predictions(str(model), Examples((sentences,), np.zeros(6, dtype=np.int64)))
    names = ("unacceptable", "acceptable")
    assert [line[0] for line, c in zip(lines, clear) if c] == [names[k] for k in expected[clear]]
