"""Task registry, loading (real GLUE files, a mini GLUE folder, an offline hub dataset), batching, metrics."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from conftest import GLUE, MINILM as MODEL, cola_rows
from data.batching import (batch_width, collate, eval_batches, num_train_batches, padding_fraction,
                           train_batches)
from data.loading import Examples, empty_text, load_split
from data.metrics import accuracy, compute_metrics, confusion_matrix, f1, matthews_corrcoef
from data.tasks import TASKS, DataError, get_task
from data.tokenization import Encoded, encode, load_tokenizer


# ----------------------------------------------------------------------------- registry

def test_registry():
    assert list(TASKS) == ["cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"]
    assert get_task("wnli").label_names == ("not_entailment", "entailment")
    assert get_task("rte").label_names == ("entailment", "not_entailment")
    assert get_task("mnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    assert {name: t.primary_metric for name, t in TASKS.items()} == {
        "cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "qqp": "f1",
        "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy"}
    assert get_task("mrpc").metrics == ("f1", "accuracy") and get_task("qqp").metrics == ("f1", "accuracy")
    assert all(t.primary_metric in t.metrics for t in TASKS.values())
    assert [len(t.text_fields) for t in TASKS.values()] == [1, 1, 2, 2, 2, 2, 2, 2]
    with pytest.raises(DataError, match="unknown task 'glue'.*cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli"):
        get_task("glue")


# ----------------------------------------------------------------------------- the real GLUE files

# (count, label counts, first example, last example), an example being (texts, label)
REAL = {
    ("cola", "train"): (8551, [2528, 6023],
                        (("Our friends won't buy this analysis, let alone the next one we propose.",), 1),
                        (("What all did you get for Christmas?",), 1)),
    ("cola", "validation"): (1043, [322, 721],
                             (("The sailors rode the breeze clear of the rocks.",), 1),
                             (("John talked to Bill about himself.",), 1)),
    ("sst2", "train"): (67349, [29780, 37569],
                        (("hide new secretions from the parental units ",), 0),
                        (("this new jangle of noise , mayhem and stupidity must be a serious contender for the "
                          "title . ",), 0)),
    ("sst2", "validation"): (872, [428, 444],
                             (("it 's a charming and often affecting journey . ",), 1),
                             (("looking aristocratic , luminous yet careworn in jane hamilton 's exemplary "
                               "costumes , rampling gives a performance that could not be improved upon . ' ",), 1)),
    ("mrpc", "train"): (3668, [1194, 2474],
                        (('Amrozi accused his brother , whom he called " the witness " , of deliberately '
                          'distorting his evidence .',
                          'Referring to him as only " the witness " , Amrozi accused his brother of deliberately '
                          'distorting his evidence .'), 1),
                        (("The 30-year bond US30YT = RR rose 22 / 32 for a yield of 4.31 percent , versus 4.35 "
                          "percent at Wednesday 's close .",
                          "The 30-year bond US30YT = RR grew 1-3 / 32 for a yield of 4.30 percent , down from "
                          "4.35 percent late Wednesday ."), 0)),
    ("mrpc", "validation"): (408, [129, 279],
                             (("He said the foodservice pie business doesn 't fit the company 's long-term growth "
                               "strategy .",
                               '" The foodservice pie business does not fit our long-term growth strategy .'), 1),
                             (("Ex-KGB agent Putin added that the Beatles were considered ' propaganda of an alien "
                               "ideology ' .",
                               "In Soviet times the Beatles ' music \" was considered propaganda of an alien "
                               "ideology ."), 1)),
}


def example(examples: Examples, i: int) -> tuple[tuple[str, ...], int]:
    return tuple(texts[i] for texts in examples.texts), int(examples.labels[i])


@pytest.mark.parametrize("task_name, split", list(REAL))
def test_real_glue_files(task_name, split):
    count, label_counts, first, last = REAL[task_name, split]
    examples = load_split(get_task(task_name), split, GLUE)
    assert len(examples) == count and all(len(texts) == count for texts in examples.texts)
    assert examples.labels.dtype == np.int64
    assert np.bincount(examples.labels).tolist() == label_counts
    assert example(examples, 0) == first
    assert example(examples, -1) == last


def test_subset_is_deterministic_nested_and_in_file_order():
    cola = get_task("cola")
    full = load_split(cola, "train", GLUE)
    pairs = list(zip(full.texts[0], full.labels))
    a = load_split(cola, "train", GLUE, max_samples=100)
    b = load_split(cola, "train", GLUE, max_samples=100)
    small = load_split(cola, "train", GLUE, max_samples=40)
    assert len(a) == 100 and len(small) == 40
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert set(zip(*small.texts, small.labels)) <= set(zip(*a.texts, a.labels))
    positions = [pairs.index(p) for p in zip(*a.texts, a.labels)]  # each text still carries its own label
    assert positions == sorted(positions)
    assert len(load_split(cola, "validation", GLUE, max_samples=10**6)) == 1043


# ----------------------------------------------------------------------------- a mini GLUE folder, every task

MNLI_COLUMNS = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                "sentence1_parse\tsentence2_parse\tsentence1\tsentence2")
MINI_FILES = {  # the real files' headers, with '"' inside texts
    "CoLA/train.tsv": 'gj04\t1\t\tThe "sailors" rode.\nw_80\t0\t*\tRode the sailors.\n',
    "SST-2/train.tsv": 'sentence\tlabel\nit \'s " good \t1\nbad \t0\n',
    "MRPC/train.tsv": '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                      '1\t11\t12\tHe said " yes " .\tHe agreed .\n0\t13\t14\tA .\tB .\n',
    "QQP/train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "0\t1\t2\tWhy?\tHow?\t0\n1\t3\t4\tWho?\tWho is?\t1\n",
    "MNLI/train.tsv": f"{MNLI_COLUMNS}\tlabel1\tgold_label\n"
                      "0\t1\t1n\tgov\t( P0 )\t( H0 )\t(ROOT P0)\t(ROOT H0)\tP0\tH0\tneutral\tneutral\n"
                      "1\t2\t2c\tgov\t( P1 )\t( H1 )\t(ROOT P1)\t(ROOT H1)\tP1\tH1\tcontradiction\tcontradiction\n",
    "MNLI/dev_matched.tsv": f"{MNLI_COLUMNS}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                            "0\t3\t3e\tgov\t( P )\t( H )\t(ROOT P)\t(ROOT H)\tPm\tHm\tentailment\tentailment\t"
                            "neutral\tentailment\tentailment\tentailment\n",
    "MNLI/dev_mismatched.tsv": f"{MNLI_COLUMNS}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                               "0\t4\t4c\tfiction\t( P )\t( H )\t(ROOT P)\t(ROOT H)\tPx\tHx\tneutral\tneutral\t"
                               "neutral\tcontradiction\tneutral\tneutral\n",
    "QNLI/train.tsv": "index\tquestion\tsentence\tlabel\n0\tWhat?\tThis.\tnot_entailment\n1\tWho?\tHim.\tentailment\n",
    "RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tnot_entailment\n",
    "WNLI/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n1\tC.\tD.\t0\n",
}
MINI_EXAMPLES = {  # (task, split): (texts per field, labels)
    ("cola", "train"): ((['The "sailors" rode.', "Rode the sailors."],), [1, 0]),
    ("sst2", "train"): ((['it \'s " good ', "bad "],), [1, 0]),
    ("mrpc", "train"): ((['He said " yes " .', "A ."], ["He agreed .", "B ."]), [1, 0]),
    ("qqp", "train"): ((["Why?", "Who?"], ["How?", "Who is?"]), [0, 1]),
    ("mnli", "train"): ((["P0", "P1"], ["H0", "H1"]), [1, 2]),
    ("mnli", "validation_matched"): ((["Pm"], ["Hm"]), [0]),
    ("mnli", "validation_mismatched"): ((["Px"], ["Hx"]), [1]),
    ("qnli", "train"): ((["What?", "Who?"], ["This.", "Him."]), [1, 0]),
    ("rte", "train"): ((["A.", "C."], ["B.", "D."]), [0, 1]),
    ("wnli", "train"): ((["A.", "C."], ["B.", "D."]), [1, 0]),
}
HUB_COLUMNS = {"cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
               "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
               "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2")}


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def assert_examples(examples: Examples, texts: tuple[list[str], ...], labels: list[int]):
    assert examples.texts == texts
    assert examples.labels.dtype == np.int64 and examples.labels.tolist() == labels


@pytest.mark.parametrize("task_name, split", list(MINI_EXAMPLES))
def test_mini_glue_folder(tmp_path, task_name, split):
    examples = load_split(get_task(task_name), split, write_files(tmp_path, MINI_FILES))
    assert_examples(examples, *MINI_EXAMPLES[task_name, split])


def write_hub_dataset(root: Path, rows: dict[tuple[str, str], tuple[tuple[list[str], ...], list[int]]]) -> Path:
    """A dataset folder in the hub's layout (parquet per config and split, configs in README.md)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    configs = {}
    for (task_name, split), (texts, labels) in rows.items():
        table = dict(zip(HUB_COLUMNS[task_name], texts)) | {"label": labels, "idx": list(range(len(labels)))}
        (root / task_name).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(table), root / task_name / f"{split}-00000-of-00001.parquet")
        configs.setdefault(task_name, []).append(f"  - split: {split}\n    path: {task_name}/{split}-*\n")
    yaml = "".join(f"- config_name: {name}\n  data_files:\n" + "".join(parts) for name, parts in configs.items())
    (root / "README.md").write_text(f"---\nconfigs:\n{yaml}---\n")
    return root


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # keep ~/.cache clean


def test_hub_path_offline(tmp_path, hub_cache):
    hub = str(write_hub_dataset(tmp_path / "glue", MINI_EXAMPLES))
    for (task_name, split), expected in MINI_EXAMPLES.items():
        assert_examples(load_split(get_task(task_name), split, hub_path=hub), *expected)
    tsv = load_split(get_task("mrpc"), "train", write_files(tmp_path / "tsv", MINI_FILES), max_samples=1)
    from_hub = load_split(get_task("mrpc"), "train", hub_path=hub, max_samples=1)
    assert from_hub.texts == tsv.texts and np.array_equal(from_hub.labels, tsv.labels)


def test_hub_bad_label(tmp_path, hub_cache):
    hub = str(write_hub_dataset(tmp_path, {("cola", "train"): ((["a", "b"],), [1, -1])}))
    with pytest.raises(DataError, match=r"unknown label -1; expected 0..1"):
        load_split(get_task("cola"), "train", hub_path=hub)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name, text, task_name, message", [
    ("SST-2/train.tsv", "sentence\tlabel\ngood\t1\nno label here\n", "sst2",
     r"SST-2/train.tsv:3: malformed row, 1 fields where the header has 2"),
    ("CoLA/train.tsv", "gj04\t1\t\tFine.\ngj04\t1\tToo\tmany\tfields.\n", "cola",
     r"CoLA/train.tsv:2: malformed row, 5 fields where the header has 4"),
    ("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n", "rte",
     r"RTE/train.tsv:2: unknown label 'maybe'; expected one of \['entailment', 'not_entailment'\]"),
    ("CoLA/train.tsv", "gj04\t1\t\tFine.\ngj04\t2\t\tHuh.\n", "cola",
     r"CoLA/train.tsv:2: unknown label '2'; expected one of \['0', '1'\]"),
    ("MRPC/train.tsv", "\ufeff#1 ID\t#2 ID\t#1 String\t#2 String\n1\t2\tA\tB\n", "mrpc",
     r"MRPC/train.tsv:1: header .* lacks column\(s\) \['Quality'\]"),
    ("SST-2/train.tsv", "sentence\tlabel\n", "sst2", r"SST-2/train.tsv: no examples"),
    ("CoLA/train.tsv", "", "cola", r"CoLA/train.tsv: no examples"),
    ("CoLA/train.tsv", "gj04\t1\t\tFine.\ngj04\t1\t\t\n", "cola",
     r"CoLA/train.tsv:2: field 'sentence' is empty; expected a text"),
    ("SST-2/train.tsv", "sentence\tlabel\ngood\t1\n\u200b\u00ad \t0\n", "sst2",
     r"SST-2/train.tsv:3: field 'sentence' is empty; expected a text"),
    ("MRPC/train.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA .\t\u2060\u0301\n", "mrpc",
     r"MRPC/train.tsv:2: field '#2 String' is empty; expected a text"),
])
def test_bad_tsv(tmp_path, name, text, task_name, message):
    write_files(tmp_path, {name: text})
    with pytest.raises(DataError, match=message):
        load_split(get_task(task_name), "train", tmp_path)


# texts that show nothing: zero-width and format characters, a soft hyphen, a lone combining mark, with spaces
INVISIBLE_TEXTS = ["\u200b", "\u200b\u200c\ufeff", "\u00ad", "\u2060", "\u0301", " \u200b\t\u00a0\u2060 ", "\u200d"]


def test_a_text_that_gives_a_model_nothing_to_read_is_empty_for_either_tokenizer():
    """The real checkpoint's WordPiece gives an invisible text no token but [CLS] and [SEP]; byte-level BPE makes
    byte tokens of it, which is why its characters decide (data.loading.empty_text)."""
    wordpiece = load_tokenizer(MODEL)
    specials = [wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    sentences = [s for s, _ in cola_rows(500)]
    bpe.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=300,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    for text in INVISIBLE_TEXTS:
        assert wordpiece.encode(text).ids == specials and bpe.encode(text).ids, text
        assert empty_text(text) and empty_text(text, wordpiece) and empty_text(text, bpe), text
    for text in ("\ufffd", "\ue000"):  # WordPiece drops them; byte-level BPE reads them, and they show (�, a glyph)
        assert wordpiece.encode(text).ids == specials and empty_text(text, wordpiece), text
        assert not empty_text(text, bpe) and not empty_text(text), text
    for tokenizer in (None, wordpiece, bpe):
        assert not any(empty_text(text, tokenizer) for text in [*sentences, "...", "?", "é", "\u0301e"])


def test_missing_file_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'QQP' / 'dev.tsv'}: file not found"):
        load_split(get_task("qqp"), "validation", tmp_path)
    with pytest.raises(DataError, match="task sst2 has no split 'validation_matched'; expected one of train, validation"):
        load_split(get_task("sst2"), "validation_matched", tmp_path)


# ----------------------------------------------------------------------------- batching

def test_train_batches_deterministic_and_complete():
    lengths = np.random.default_rng(0).integers(3, 60, size=1001)
    batches = train_batches(lengths, 16, seed=1, epoch=2, group_batches=4)
    again = train_batches(lengths, 16, seed=1, epoch=2, group_batches=4)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)) and len(batches) == len(again)
    for other in (train_batches(lengths, 16, seed=1, epoch=3, group_batches=4),
                  train_batches(lengths, 16, seed=2, epoch=2, group_batches=4)):
        assert not np.array_equal(np.concatenate(other), np.concatenate(batches))
    assert len(batches) == num_train_batches(1001, 16) == 63
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1001))  # every example exactly once
    assert sorted(len(b) for b in batches) == [1001 % 16] + [16] * 62
    # length grouping: within a group of 4 batches lengths are sorted, so batches pad little
    assert padding_fraction(lengths, batches) < padding_fraction(lengths, train_batches(lengths, 16, 1, 2, 1)) / 2


def test_train_batches_sharded():
    lengths = np.random.default_rng(0).integers(3, 60, size=1001)
    shards = [train_batches(lengths, 16, seed=0, epoch=0, rank=r, world_size=4) for r in range(4)]
    assert [len(s) for s in shards] == [num_train_batches(1001, 16, world_size=4)] * 4 == [15] * 4
    everything = np.concatenate([np.concatenate(s) for s in shards])
    assert len(np.unique(everything)) == len(everything)  # no example on two ranks
    whole = train_batches(lengths, 16, seed=0, epoch=0)
    assert all(np.array_equal(b, whole[4 * i + 1]) for i, b in enumerate(shards[1]))


def test_eval_batches_sorted_by_length():
    lengths = np.random.default_rng(0).integers(3, 60, size=100)
    order = np.concatenate(eval_batches(lengths, 32))
    assert [len(b) for b in eval_batches(lengths, 32)] == [32, 32, 32, 4]
    assert np.array_equal(np.sort(order), np.arange(100)) and np.all(np.diff(lengths[order]) <= 0)


def test_collate_and_padding_fraction():
    encoded = Encoded(
        input_ids=[np.array([101, 7, 102], np.int32), np.array([101, 5, 6, 102, 8, 102], np.int32)],
        token_type_ids=[np.zeros(3, np.int32), np.array([0, 0, 0, 0, 1, 1], np.int32)],
        labels=np.array([1, 0]), lengths=np.array([3, 6]), pad_id=0)
    batch = collate(encoded, np.array([1, 0]))
    assert {k: v.dtype for k, v in batch.items()} == dict.fromkeys(
        ["input_ids", "attention_mask", "token_type_ids", "labels", "index"], torch.int64)
    torch.testing.assert_close(batch["input_ids"], torch.tensor([[101, 5, 6, 102, 8, 102], [101, 7, 102, 0, 0, 0]]))
    torch.testing.assert_close(batch["attention_mask"], torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))
    torch.testing.assert_close(batch["token_type_ids"], torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(batch["labels"], torch.tensor([0, 1]))
    torch.testing.assert_close(batch["index"], torch.tensor([1, 0]))
    assert collate(encoded, np.array([0]))["input_ids"].shape == (1, 3)
    assert collate(encoded, np.array([0, 1]), pad_to_multiple_of=8)["input_ids"].shape == (2, 8)
    assert batch_width(np.array([8]), 8) == 8 and batch_width(np.array([9]), 8) == 16
    assert padding_fraction(encoded.lengths, [np.array([0, 1])]) == pytest.approx(1 - 9 / 12)
    assert padding_fraction(encoded.lengths, [np.array([0]), np.array([1])]) == 0
    assert padding_fraction(encoded.lengths, [np.array([0, 1])], 8) == pytest.approx(1 - 9 / 16)


def test_length_grouping_on_cola():
    lengths = encode(load_tokenizer(MODEL), load_split(get_task("cola"), "train", GLUE), 128).lengths
    grouped = padding_fraction(lengths, train_batches(lengths, 32, seed=0, epoch=0))
    shuffled = padding_fraction(lengths, train_batches(lengths, 32, seed=0, epoch=0, group_batches=1))
    assert grouped < 0.1 < 0.4 < shuffled


def test_padding_command():
    command = [sys.executable, "scripts/padding.py", "--data-dir", str(GLUE), "--task", "mrpc",
               "--tokenizer", str(MODEL)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert "mrpc train: 3668 examples" in result.stdout
    assert "plain shuffled" in result.stdout and "padded to max-len 128" in result.stdout
    bad = subprocess.run(command[:3] + ["/nonexistent"] + command[4:], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1])
    assert bad.returncode != 0 and bad.stderr.startswith("error: /nonexistent/MRPC/train.tsv: file not found")


# ----------------------------------------------------------------------------- metrics

def test_metrics_against_hand_confusion_matrix():
    # TN 4, FP 1, FN 2, TP 3
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    preds = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1])
    assert confusion_matrix(preds, labels).tolist() == [[4, 1], [2, 3]]
    assert accuracy(preds, labels) == pytest.approx(7 / 10)
    assert f1(preds, labels) == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert matthews_corrcoef(preds, labels) == pytest.approx((3 * 4 - 1 * 2) / np.sqrt(4 * 5 * 5 * 6))


def test_metrics_degenerate_cases():
    labels = np.array([0, 1, 1, 0, 1])
    ones, zeros = np.ones(5, np.int64), np.zeros(5, np.int64)
    assert matthews_corrcoef(ones, labels) == 0.0 and matthews_corrcoef(zeros, labels) == 0.0
    assert f1(ones, labels) == pytest.approx(2 * 3 / (2 * 3 + 2)) and f1(zeros, labels) == 0.0
    assert accuracy(ones, labels) == pytest.approx(3 / 5)
    assert matthews_corrcoef(labels, labels) == 1.0 and matthews_corrcoef(1 - labels, labels) == -1.0
    assert matthews_corrcoef(zeros, zeros) == 0.0 and f1(zeros, zeros) == 0.0 and accuracy(zeros, zeros) == 1.0
    with pytest.raises(ValueError):
        accuracy(np.array([], np.int64), np.array([], np.int64))


def test_multiclass_mcc():
    # confusion [[2, 1, 0], [0, 2, 1], [1, 0, 3]]: n 10, correct 7, true counts 3, 3, 4, predicted 3, 3, 4
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    preds = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2, 2])
    expected = (7 * 10 - (3 * 3 + 3 * 3 + 4 * 4)) / np.sqrt((100 - 34) * (100 - 34))
    assert matthews_corrcoef(preds, labels) == pytest.approx(expected)


def test_compute_metrics_keys():
    preds, labels = np.array([1, 0, 1]), np.array([1, 1, 1])
    assert compute_metrics(get_task("cola"), preds, labels) == {"mcc": 0.0}
    assert compute_metrics(get_task("mrpc"), preds, labels) == pytest.approx({"f1": 0.8, "accuracy": 2 / 3})
    mnli = get_task("mnli")
    assert compute_metrics(mnli, preds, labels, "validation_matched") == pytest.approx({"accuracy": 2 / 3})
    assert compute_metrics(mnli, preds, labels, "validation_mismatched") == pytest.approx({"accuracy_mm": 2 / 3})


def test_hub_unreachable_is_one_clear_line(tmp_path, hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"cannot load from the datasets hub .*pass --data-dir") as e:
        load_split(get_task("rte"), "train", hub_path="no-such-org/no-such-glue")
    assert "\n" not in str(e.value)
