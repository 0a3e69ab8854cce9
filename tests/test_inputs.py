"""Inputs that once gave wrong output with exit code 0 (issues 29 and 38): a model's labels met by a task's in another
order, label sets corrupted by the user's own files, texts that are no input, a file's columns read otherwise than
the model was trained on, real-valued labels made into classes, predictions beside another call's metrics, and a
config that disagrees with its weights. Valid inputs are checked row by row; a bad one is one `error:` line, exit
code 2, and leaves what is already written as it was."""
import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import distill
import predict
import train
from conftest import GLUE, ROOT, cola_rows, metric_lines, write_own
from data.loading import Examples, load_split, load_test
from data.tasks import DataError, get_task
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
    from harness.classifiers import match_labels

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
    ("invisible text", csv_text(ROWS[:8] + [(8, "\u200b\u00ad \u2060", "good")] + ROWS[9:]),
     "t.csv:10: field 'text' is empty; expected a text"),
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


@pytest.mark.parametrize("text", ["", "\u200b\u2060", "\u00ad \u0301", "\ufffd\ufffd"])
def test_a_file_to_label_with_a_text_of_nothing_to_read_is_refused_as_an_empty_cell_is(tmp_path, text):
    """Invisible characters, or what the model's WordPiece gives no token (U+FFFD), were labelled as a sentence."""
    model = task_model(tmp_path / "model", get_task("cola"))
    path = tmp_path / "new.csv"
    path.write_text(csv_text([(s, "") for s in SENTENCES[:3]] + [(text, "")] + [(s, "") for s in SENTENCES[3:6]],
                             ("text", "label")))
    with pytest.raises(DataError) as error:
        predict.main(["--model", str(model), "--file", str(path), "--out", str(tmp_path / "out")])
    assert str(error.value) == f"{path}:5: field 'text' is empty; expected a text"
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 3. texts that are no input


@pytest.mark.parametrize("argv, stdin, message", [
    (["--text", ""], None, "--text #1: an empty text; expected a sentence"),
    (["--text", "Fine.", "--text", "   "], None, "--text #2: an empty text; expected a sentence"),
    (["--text", "A first.\t"], None, "--text #1: an empty text; expected a sentence on each side of the tab"),
    # invisible characters only: the model's tokenizer gives them no token but [CLS] and [SEP]
    (["--text", "\u200b"], None, "--text #1: an empty text; expected a sentence"),
    (["--text", "Fine.", "--text", "\u200b\u200c\ufeff \u00ad"], None, "--text #2: an empty text; expected a sentence"),
    (["--text", "A first.\t\u2060\u0301"], None,
     "--text #1: an empty text; expected a sentence on each side of the tab"),
    (["--text", "\ufffd"], None, "--text #1: an empty text; expected a sentence"),  # WordPiece drops U+FFFD too
    (["--text", "-"], "\u200b\n \u00ad\t\n".encode(), "--text -: standard input held no text"),  # as blank lines
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


# ----------------------------------------------------------------------------- 4. the fields a model reads


def recorded_model(folder, text_fields=("sentence",), label_field="label"):
    """task_model for CoLA with the fields it reads in config.json, as train.py and distill.py record them."""
    model = task_model(folder, get_task("cola"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "text_fields": list(text_fields),
                                                   "label_field": label_field}))
    return model


def predictions(out) -> list[list[str]]:
    return [row.split("\t") for row in (out / "predictions.tsv").read_text().splitlines()[1:]]


def one_error(result) -> str:
    """The one line a refused call prints, after checking its exit code and that it printed nothing else."""
    assert result.returncode == 2 and result.stdout == "", (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_run_records_the_fields_it_read_and_transformers_still_loads_its_best(finished):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = json.loads((finished / "best" / "config.json").read_text())
    assert config["text_fields"] == ["sentence"] and config["label_field"] == "label"
    assert AutoConfig.from_pretrained(finished / "best").text_fields == ["sentence"]
    AutoModelForSequenceClassification.from_pretrained(finished / "best")


def test_a_file_is_read_with_exactly_the_fields_the_model_was_trained_on(tmp_path):
    """A CoLA model, a file whose answers are in a column `target`: read as the second text of a pair, 18 of 40
    predictions changed. Now the answers are refused until named (or left unread); then every row is predicted
    on its sentence alone, as transformers predicts it."""
    model = recorded_model(tmp_path / "model")
    names = ("unacceptable", "acceptable")
    answers = tmp_path / "f.csv"
    answers.write_text(csv_text([(s, names[i % 2]) for i, s in enumerate(SENTENCES)], ("sentence", "target")))
    plain = tmp_path / "plain.csv"
    plain.write_text(csv_text([(s,) for s in SENTENCES], ("sentence",)))
    assert predict_cli("--model", str(model), "--file", str(plain), "--out", str(tmp_path / "plain")).returncode == 0
    expected, clear = transformers_predictions(str(model), Examples((SENTENCES,), np.zeros(len(SENTENCES), dtype=np.int64)))
    rows = predictions(tmp_path / "plain")
    assert [row[1] for row, c in zip(rows, clear) if c] == [names[k] for k in expected[clear]] and clear.mean() > 0.9

    out = tmp_path / "out"
    assert one_error(predict_cli("--model", str(model), "--file", str(answers), "--out", str(out))) == (
        f"error: {answers}: field 'target' is neither a text the model reads ['sentence'] nor the label field "
        "'label'; if it is the label, pass --label-field target; to leave it unread, pass --text-fields sentence")
    assert not out.exists()
    result = predict_cli("--model", str(model), "--file", str(answers), "--out", str(out), "--label-field", "target")
    assert result.returncode == 0 and predictions(out) == rows and (out / "metrics.json").exists(), result.stderr
    result = predict_cli("--model", str(model), "--file", str(answers), "--out", str(tmp_path / "unread"),
                         "--text-fields", "sentence")
    assert result.returncode == 0 and predictions(tmp_path / "unread") == rows, result.stderr
    assert not (tmp_path / "unread" / "metrics.json").exists()


def test_a_file_without_the_models_fields_or_with_another_number_of_texts_is_one_line(tmp_path):
    model = recorded_model(tmp_path / "model")
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s, "acceptable") for s in SENTENCES], ("text", "label")))
    out = tmp_path / "out"
    assert one_error(predict_cli("--model", str(model), "--file", str(path), "--out", str(out))) == (
        f"error: {path}: no field 'sentence' (fields: ['text', 'label']); the model reads ['sentence'], the "
        "field(s) it was trained on: name the file's with --text-fields")
    assert one_error(predict_cli("--model", str(model), "--file", str(path), "--out", str(out), "--text-fields",
                                 "text,label")) == (
        "error: --text-fields text,label: 2 text(s) per input, but the model reads one text (sentence, its "
        "config.json text_fields)")
    assert one_error(predict_cli("--model", str(model), "--text", "A first.\tA second.")) == (
        "error: --text: 2 text(s) per input, but the model reads one text (sentence, its config.json text_fields)")
    assert not out.exists()
    result = predict_cli("--model", str(model), "--file", str(path), "--out", str(out), "--text-fields", "text")
    assert result.returncode == 0 and len(predictions(out)) == len(SENTENCES), result.stderr


@pytest.mark.parametrize("labels, message", [
    (["0.200", "0.20", "0.2", "1.5"] * 10, "t.csv:2: field 'score' holds 0.200, a number that is not an integer"),
    (["1", "2", "3.75", "4"] * 10, "t.csv:4: field 'score' holds 3.75, a number that is not an integer"),
])
def test_a_real_valued_label_is_a_regression_target_not_classes(tiny_bert, finished, tmp_path, capsys, labels,
                                                                 message):
    """STS-B's score as --label-field: 193 classes, 0.2, 0.20 and 0.200 three of them. Now one line."""
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s, y) for s, y in zip(SENTENCES, labels)], ("text", "score")))
    dev = tmp_path / "dev.csv"
    dev.write_text(csv_text([(s, "1") for s in SENTENCES[:10]], ("text", "score")))
    error = bad_run(own_args(path, dev, tiny_bert, finished) + ["--label-field", "score"], finished, capsys)
    assert error == f"error: {tmp_path}/{message}: a regression target, not a class label; classification needs " \
                    "integer or named labels"


def test_equal_numbers_are_one_class_however_written(tmp_path):
    from data.loading import load_file

    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s, y) for s, y in zip(SENTENCES, ["1", "01", "1.0", "1e0", "+1", "0", "0.00", "-0"] * 5)],
                             ("text", "label")))
    examples, names, _ = load_file(path)
    assert names == ("0", "1") and examples.labels.tolist() == [1, 1, 1, 1, 1, 0, 0, 0] * 5


@pytest.mark.parametrize("labels, message", [
    (["neg", "pos", "NEG"] * 10, "t.csv: labels 'NEG' and 'neg' differ only in case; expected one spelling per class"),
    (["0", "1", "1e5000"] * 10, "t.csv:4: field 'label' holds 1e5000, a number too large for a class label; "
                                "classification needs integer or named labels"),
    (["0", "1", "-1e10000000"] * 10, "t.csv:4: field 'label' holds -1e10000000, a number too large for a class "
                                     "label; classification needs integer or named labels"),
])
def test_one_class_written_two_ways_or_a_huge_number_is_one_line(tmp_path, labels, message):
    """'NEG' beside 'neg' made four classes of two; 1e5000 was an unexpected failure, 1e10000000 never ended."""
    from data.loading import load_file

    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s, y) for s, y in zip(SENTENCES, labels)], ("text", "label")))
    with pytest.raises(DataError) as error:
        load_file(path)
    assert str(error.value) == f"{tmp_path}/{message}"


@pytest.mark.parametrize("fields", ["label", "text,label"])
def test_the_label_field_as_a_text_field_is_one_line(tiny_bert, finished, tmp_path, capsys, fields):
    """The model would read its own answers: trained on them, its dev metric would say nothing."""
    path = tmp_path / "t.csv"
    path.write_text(csv_text(ROWS))
    error = bad_run(own_args(path, path, tiny_bert, finished) + ["--text-fields", fields], finished, capsys)
    assert error.startswith(f"error: --text-fields {fields}: names the label field 'label'; the model would read its "
                            "own answers (see ")


def test_predict_refuses_what_it_would_ignore_or_read_wrongly(tmp_path):
    """A model of one text on a task of pairs (or --text-fields for a GLUE task) wrote metrics of the first texts
    alone; --label-field naming a field the file lacks left the file unevaluated without a word."""
    model = recorded_model(tmp_path / "model", text_fields=("text",))
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s, "acceptable") for s in SENTENCES], ("text", "label")))
    out = tmp_path / "out"
    single = task_model(tmp_path / "single", get_task("mrpc"))  # MRPC's labels, trained on single texts
    config = json.loads((single / "config.json").read_text())
    (single / "config.json").write_text(json.dumps(config | {"text_fields": ["text"], "label_field": "label"}))
    assert one_error(predict_cli("--model", str(single), "--task", "mrpc", "--data-dir", str(GLUE), "--out", str(out))) \
        == "error: --task mrpc: 2 text(s) per input, but the model reads one text (text, its config.json text_fields)"
    assert one_error(predict_cli("--model", str(model), "--task", "cola", "--data-dir", str(GLUE), "--text-fields",
                                 "text", "--out", str(out))) == (
        "error: --text-fields is for your own files; a GLUE task's fields are fixed (see predict.py --help)")
    assert one_error(predict_cli("--model", str(model), "--file", str(path), "--label-field", "target",
                                 "--text-fields", "text", "--out", str(out))) == (
        f"error: {path}: no field 'target' (fields: ['text', 'label']); name the label field with --label-field")
    assert not out.exists()


def test_json_lines_and_standard_input_split_at_newlines_only(tmp_path):
    """U+2028, U+0085 and form feeds, which json.dumps(ensure_ascii=False) leaves raw inside a string, are text: a
    record (or a --text - line) is never cut at them."""
    from data.loading import load_file

    texts = ["One\u2028line.", "Another\x85one.", "A\x0cthird.", "Fourth."]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": str(i % 2)}, ensure_ascii=False) + "\r\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    examples, names, _ = load_file(path)
    assert list(examples.texts[0]) == texts and examples.labels.tolist() == [0, 1, 0, 1]
    model = task_model(tmp_path / "model", get_task("cola"))
    result = predict_cli("--model", str(model), "--text", "-", input="\n".join(texts) + "\n")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t", 2)[2] for line in result.stdout.split("\n")[:-1]] == texts


# ----------------------------------------------------------------------------- 5. an --out holds one call's files


def tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_predictions_of_another_file_never_sit_beside_an_earlier_calls_metrics(tmp_path):
    model = task_model(tmp_path / "model", get_task("cola"))
    names = ("unacceptable", "acceptable")
    labelled, unlabelled = tmp_path / "labelled.csv", tmp_path / "unlabelled.csv"
    labelled.write_text(csv_text([(s, names[i % 2]) for i, s in enumerate(SENTENCES)], ("text", "label")))
    unlabelled.write_text(csv_text([(s,) for s in SENTENCES[:30]], ("text",)))
    out = tmp_path / "out"
    assert predict_cli("--model", str(model), "--file", str(labelled), "--out", str(out)).returncode == 0
    before = tree(out)
    assert sorted(map(str, before)) == ["metrics.json", "predictions.tsv"]
    assert one_error(predict_cli("--model", str(model), "--file", str(unlabelled), "--out", str(out))) == (
        f"error: --out {out}: holds the files of an earlier call (metrics.json, predictions.tsv); pass --overwrite "
        "to replace them, or choose another --out")
    assert tree(out) == before
    result = predict_cli("--model", str(model), "--file", str(unlabelled), "--out", str(out), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert sorted(map(str, tree(out))) == ["predictions.tsv"]  # the set replaced as a whole: no stale metrics.json
    earlier = [line.split("\t") for line in before[Path("predictions.tsv")].decode().splitlines()[1:]]
    assert predictions(out) == earlier[:30]  # the same sentences, predicted alike


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_out_holding_anything_else_or_a_file_is_refused_and_left_as_it_was(tmp_path, overwrite):
    model = task_model(tmp_path / "model", get_task("cola"))
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s,) for s in SENTENCES], ("text",)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "predictions.tsv").write_text("an earlier call's\n")
    (mine / "notes.txt").write_text("mine\n")
    assert one_error(predict_cli("--model", str(model), "--file", str(path), "--out", str(mine), *overwrite)) == (
        f"error: --out {mine}: holds 'notes.txt', not a file predict.py writes; its files go into a folder of their "
        "own: choose a new or empty --out")
    assert tree(mine) == {Path("predictions.tsv"): b"an earlier call's\n", Path("notes.txt"): b"mine\n"}
    assert one_error(predict_cli("--model", str(model), "--file", str(path), "--out", str(mine / "notes.txt"),
                                 *overwrite)) == f"error: --out {mine / 'notes.txt'}: exists and is not a folder"


def test_an_out_that_is_the_working_folder_or_above_it_is_refused_before_anything_is_computed(tmp_path):
    """The files' folder is replaced as a whole: never the folder the call runs in (its name would be swapped away
    under the caller) nor one above it."""
    model = task_model(tmp_path / "model", get_task("cola"))
    path = tmp_path / "t.csv"
    path.write_text(csv_text([(s,) for s in SENTENCES], ("text",)))
    here = tmp_path / "here"
    here.mkdir()
    for out in (".", "..", str(here), str(here / "sub" / ".." / "..")):
        result = predict_cli("--model", str(model), "--file", str(path), "--out", out, cwd=here)
        assert one_error(result) == (f"error: --out {out}: is the working folder or one above it; the files go into a "
                                     "folder of their own, which a later call replaces as a whole: choose a new or "
                                     "empty --out")
    assert list(here.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["here", "model", "t.csv"]


# ----------------------------------------------------------------------------- 6. a config that disagrees with its weights


@pytest.mark.parametrize("num_labels, message", [
    (None, "model.safetensors: classifier.weight has shape (2, 32), but config.json names 3 labels (id2label), "
           "shape (3, 32); expected one label name per classifier row"),
    (2, "config.json: id2label names 3 labels, num_labels is 2; expected one name per label"),
])
def test_a_config_naming_more_labels_than_its_classifier_has_rows_is_one_line(tmp_path, num_labels, message):
    """Three names over a classifier of two rows: the names were dropped and predictions read LABEL_0."""
    model = task_model(tmp_path / "model", get_task("cola"))
    config = {k: v for k, v in json.loads((model / "config.json").read_text()).items() if k != "num_labels"}
    names = ["unacceptable", "acceptable", "unsure"]
    config |= {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    (model / "config.json").write_text(json.dumps(config | ({} if num_labels is None else {"num_labels": num_labels})))
    assert one_error(predict_cli("--model", str(model), "--text", "John is tall.")) == f"error: {model}/{message}"
