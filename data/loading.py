"""Load examples: a GLUE split from a local folder in the GLUE download layout or from the hub, a GLUE test
split (no labels) for the submission files, or the user's own CSV, TSV or JSON Lines file."""

import csv
import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import BPE

from common.files import first_line
from data.tasks import DataError, Task

# file of each split in the GLUE download layout (test files carry no labels and are not read)
SPLIT_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}
SUBSET_SEED = 0  # --max-*-samples draws the same subset in every run
# Unicode categories that show nothing: controls, format characters (U+200B, U+FEFF, a soft hyphen, U+2060),
# combining and enclosing marks, and separators
INVISIBLE = ("Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp")


def empty_text(text: str, tokenizer: Tokenizer | None = None) -> bool:
    """Whether a text gives a model nothing to read, and is refused as "" is (a label for nothing would look like an
    answer): no character outside whitespace and INVISIBLE, or, with a WordPiece `tokenizer`, no token but [CLS] and
    [SEP] (WordPiece drops U+FFFD and private-use characters too). Byte-level BPE makes byte tokens of invisible
    characters, so for it, and for a file read before any tokenizer is loaded (train.py's), the characters decide."""
    if all(c.isspace() or unicodedata.category(c) in INVISIBLE for c in text):
        return True
    if tokenizer is None or isinstance(tokenizer.model, BPE) or any(c.isalnum() for c in text):
        return False  # a letter or a digit always gives WordPiece a token: only the rest is tokenised
    return not tokenizer.encode(text, add_special_tokens=False).ids


@dataclass
class Examples:
    """The raw examples of one split: the texts of each field and the labels."""

    texts: tuple[list[str], ...]  # one list per text field of the task: (sentences,) or (firsts, seconds)
    labels: np.ndarray            # int64 [N], indices into task.label_names (zeros where unknown)
    labelled: bool = True         # False: a test split, or a file to label; the labels are unknown

    def __len__(self) -> int:
        return len(self.labels)


def load_split(task: Task, split: str, data_dir: str | Path | None = None, max_samples: int | None = None,
               hub_path: str = "nyu-mll/glue") -> Examples:
    """Examples of one split ("train" or one of task.eval_splits): from `data_dir` in the GLUE download
    layout when given, else from the `datasets` hub (`hub_path`, config = task name). `max_samples` keeps a
    fixed random subset, in file order."""
    if split not in task.splits:
        raise DataError(f"task {task.name} has no split {split!r}; expected one of {', '.join(task.splits)}")
    if data_dir is not None:
        examples = _read_tsv(task, Path(data_dir) / task.glue_dir / SPLIT_FILES[split])
    else:
        examples = _read_hub(task, split, hub_path)
    return subset(examples, max_samples)


def subset(examples: Examples, max_samples: int | None) -> Examples:
    """A fixed random subset of `max_samples` examples, in file order: the first max_samples of one fixed
    permutation, so that a smaller subset is part of every larger one."""
    if max_samples is None or max_samples >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(examples))[:max_samples])
    return Examples(tuple([texts[i] for i in keep] for texts in examples.texts), examples.labels[keep],
                    examples.labelled)


def _read_rows(path: Path, quoting: int = csv.QUOTE_NONE, delimiter: str = "\t") -> list[list[str]]:
    """The rows of a delimited text file, or DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    # No field-size limit: a long text is truncated by the tokenizer, not refused by csv's 128 KiB default.
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig drops a byte-order mark (MRPC's)
            return list(csv.reader(f, delimiter=delimiter, quoting=quoting))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except (OSError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None


def _columns(path: Path, header: list[str], columns: list[str]) -> list[int]:
    """The positions of `columns` in the file's header, or DataError naming the missing ones."""
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks column(s) {missing}")
    return [header.index(c) for c in columns]


def _check_rows(path: Path, header: list[str], numbered) -> None:
    """The header names each column once (columns are read by name: a second one of the same name would be
    ignored), and every (line, row) of `numbered` has the header's number of fields and is not the header again
    (files joined with their header rows: the header would be read as an example, its label a new class)."""
    twice = [name for i, name in enumerate(header) if name in header[:i]]
    if twice:
        raise DataError(f"{path}:1: two columns named {twice[0]!r} in the header {header}; "
                        "expected each column name once")
    for line, row in numbered:
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: malformed row, {len(row)} fields where the header has {len(header)}")
        if row == header:
            raise DataError(f"{path}:{line}: the header row again (files joined with their headers?); "
                            "expected an example")


def _read_tsv(task: Task, path: Path) -> Examples:
    if not path.is_file():
        raise DataError(f"{path}: file not found (task {task.name}, GLUE download layout)")
    # quoting must be off: '"' appears inside sentences, and CSV quoting would silently merge rows (MRPC dev
    # would drop from 408 to 389)
    rows = _read_rows(path)
    if task.tsv_header is not None:  # CoLA: no header row, data from line 1
        header, start = list(task.tsv_header), 1
    else:
        header, start, rows = (rows[0] if rows else []), 2, rows[1:]
    where = _columns(path, header, [*task.tsv_text_columns, task.tsv_label_column])
    _check_rows(path, header, enumerate(rows, start=start))
    label_index = {value: i for i, value in enumerate(task.tsv_label_values)}
    texts = tuple([] for _ in task.tsv_text_columns)
    labels = []
    for line, row in enumerate(rows, start=start):
        *text, label = (row[i] for i in where)
        if label not in label_index:
            raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of {list(task.tsv_label_values)}")
        for column, values, value in zip(task.tsv_text_columns, texts, text):
            if empty_text(value):  # as in the user's own files: a run never trains or evaluates on nothing
                raise DataError(f"{path}:{line}: field {column!r} is empty; expected a text")
            values.append(value)
        labels.append(label_index[label])
    if not labels:
        raise DataError(f"{path}: no examples")
    return Examples(texts, np.array(labels, dtype=np.int64))


def _read_hub(task: Task, split: str, hub_path: str) -> Examples:
    import datasets  # imported only here: it takes seconds, and local TSV runs do not need it

    source = f"{hub_path} ({task.name}, {split})"
    try:
        dataset = datasets.load_dataset(hub_path, task.name, split=split)
    except Exception as e:  # offline, unknown dataset or config: the library's reason, on one line
        raise DataError(f"{source}: cannot load from the datasets hub ({first_line(e)}); "
                        "offline, pass --data-dir with a folder in the GLUE download layout") from None
    missing = [c for c in (*task.text_fields, "label") if c not in dataset.column_names]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; columns are {dataset.column_names}")
    labels = np.array(dataset["label"], dtype=np.int64)
    bad = labels[(labels < 0) | (labels >= task.num_labels)]
    if len(bad):
        raise DataError(f"{source}: unknown label {bad[0]}; expected 0..{task.num_labels - 1} {list(task.label_names)}")
    if not len(labels):
        raise DataError(f"{source}: no examples")
    return Examples(tuple(list(dataset[c]) for c in task.text_fields), labels)


# -----------------------------------------------------------------------------
# GLUE test splits: no labels, written back as the files the GLUE server takes


# submission name -> test file in the GLUE download layout, per task (MNLI also answers the diagnostic set AX)
TEST_FILES = {"mnli": {"MNLI-m": "MNLI/test_matched.tsv", "MNLI-mm": "MNLI/test_mismatched.tsv",
                       "AX": "diagnostic/diagnostic.tsv"}}
HUB_TEST_SPLITS = {"MNLI-m": ("mnli", "test_matched"), "MNLI-mm": ("mnli", "test_mismatched"), "AX": ("ax", "test")}


def test_files(task: Task) -> dict[str, str]:
    """The task's test files: submission name (CoLA, SST-2, MNLI-m, ...) -> path in the GLUE download layout."""
    return TEST_FILES.get(task.name, {task.glue_dir: f"{task.glue_dir}/test.tsv"})


def load_test(task: Task, name: str, data_dir: str | Path | None,
              hub_path: str = "nyu-mll/glue") -> tuple[list[str], Examples]:
    """The test examples of submission `name` (test_files) in file order, with their `index` column (QQP's `id`);
    labels are unknown (zeros)."""
    if data_dir is None:
        import datasets

        config, split = HUB_TEST_SPLITS.get(name, (task.name, "test"))
        try:
            dataset = datasets.load_dataset(hub_path, config, split=split)
        except Exception as e:
            raise DataError(f"{hub_path} ({config}, {split}): cannot load from the datasets hub ({first_line(e)}); "
                            "offline, pass --data-dir with a folder in the GLUE download layout") from None
        texts = tuple(list(dataset[c]) for c in task.text_fields)
        return [str(i) for i in dataset["idx"]], Examples(texts, np.zeros(len(dataset), dtype=np.int64), False)
    path = Path(data_dir) / test_files(task)[name]
    rows = _read_rows(path)  # every test file has a header row, CoLA's too
    header, rows = (rows[0] if rows else []), rows[1:]
    where = _columns(path, header, ["id" if "id" in header else "index", *task.tsv_text_columns])
    _check_rows(path, header, enumerate(rows, start=2))
    if not rows:
        raise DataError(f"{path}: no examples")
    index, *texts = ([row[i] for row in rows] for i in where)
    return index, Examples(tuple(texts), np.zeros(len(rows), dtype=np.int64), False)


# -----------------------------------------------------------------------------
# the user's own data: CSV, TSV or JSON Lines


ID_FIELDS = ("id", "idx", "index")  # never taken as text by default
# An unnamed column, or pandas' name for one, is the index pandas writes with to_csv(): never taken as text by
# default either (as the first text of a pair it would change every prediction).
UNNAMED = re.compile(r"\s*|Unnamed: \d+")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a label that is a number: read as its value


class _DuplicateKey(Exception):
    """A JSON object with the same key twice (json.loads would keep the last value without a word)."""


def _unique_keys(pairs: list[tuple]) -> dict:
    keys = [key for key, _ in pairs]
    twice = [key for i, key in enumerate(keys) if key in keys[:i]]
    if twice:
        raise _DuplicateKey(twice[0])
    return dict(pairs)


def text_lines(text: str) -> list[str]:
    """The lines of a text, split at "\n" only (a "\r" before it dropped): str.splitlines also splits at U+2028,
    U+0085 and form feeds, which JSON writers leave raw inside strings and which a sentence may hold."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _records(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The field names and the (line, record) pairs of a .csv, .tsv or .jsonl/.json (JSON Lines) file. CSV uses
    standard quoting; TSV none, as the GLUE files (a '"' is part of the text)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        records, fields = [], {}
        try:
            lines = text_lines(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        for line, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text, object_pairs_hook=_unique_keys)
            except _DuplicateKey as e:
                raise DataError(f"{path}:{line}: field {e.args[0]!r} twice in one object; expected each field "
                                "once") from None
            except ValueError as e:
                raise DataError(f"{path}:{line}: not a JSON object ({e}); "
                                "expected JSON Lines, one object per line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line}: not a JSON object; expected JSON Lines, one object per line")
            fields.update(dict.fromkeys(record))
            records.append((line, record))
        return list(fields), records
    if suffix not in (".csv", ".tsv"):
        raise DataError(f"{path}: unknown format {suffix or '(no suffix)'}; expected .csv, .tsv or .jsonl")
    rows = _read_rows(path, csv.QUOTE_MINIMAL, ",") if suffix == ".csv" else _read_rows(path)
    header = rows[0] if rows else []
    numbered = [(line, row) for line, row in enumerate(rows[1:], start=2) if row]  # blank lines skipped
    _check_rows(path, header, numbered)
    return header, [(line, dict(zip(header, row))) for line, row in numbered]


def default_text_fields(path: Path, fields: list[str], label_field: str) -> tuple[str, ...]:
    """The text fields of a file when --text-fields is not given: its fields other than the label and ids,
    if one or two remain."""
    text = [f for f in fields if f != label_field and f.lower() not in ID_FIELDS and not UNNAMED.fullmatch(f)]
    if len(text) not in (1, 2):
        raise DataError(f"{path}: cannot tell the text fields among {fields}; name one or two with --text-fields")
    return tuple(text)


def _label_name(path: Path, line: int, field: str, value) -> str:
    """A label as its name ("" when empty or missing): text without surrounding spaces, and a number as the integer
    it equals (JSON 1.0, a CSV's "1.0" as pandas writes an integer column with gaps, "01", "1e0": "1"), so that one
    class is never read as two. A number that is not an integer (STS-B's 0.2) is a regression target, which a
    classifier cannot learn: read as names, 0.2, 0.20 and 0.200 would be three classes of hundreds."""
    if isinstance(value, (dict, list)):
        raise DataError(f"{path}:{line}: field {field!r} is not a label ({value!r})")
    text = "" if value is None else str(value).strip()
    if isinstance(value, bool) or not NUMBER.fullmatch(text):  # JSON true/false are names, as written
        return text
    number = Decimal(text)
    if number.adjusted() >= 18:  # int() of 1e10000000 would not end
        raise DataError(f"{path}:{line}: field {field!r} holds {text}, a number too large for a class label; "
                        "classification needs integer or named labels")
    if number != number.to_integral_value():
        raise DataError(f"{path}:{line}: field {field!r} holds {text}, a number that is not an integer: a "
                        "regression target, not a class label; classification needs integer or named labels")
    return str(int(number))


def _label_order(values: set[str]) -> list[str]:
    """Label names in a fixed order: numerically if all are integers (2 before 10), else alphabetically."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def check_model_fields(path: Path, fields: list[str], text_fields: tuple[str, ...], label_field: str) -> None:
    """A file read with the fields a model was trained on (its best/config.json's text_fields, label_field) has
    those text fields, and no field that is neither one of them, the label, an id nor unnamed: such a field may be
    the answers under another name, or a text the model would not read."""
    missing = [f for f in text_fields if f not in fields]
    if missing:
        raise DataError(f"{path}: no field {missing[0]!r} (fields: {fields}); the model reads {list(text_fields)}, "
                        "the field(s) it was trained on: name the file's with --text-fields")
    for field in fields:
        if field not in (*text_fields, label_field) and field.lower() not in ID_FIELDS and not UNNAMED.fullmatch(field):
            raise DataError(f"{path}: field {field!r} is neither a text the model reads {list(text_fields)} nor the "
                            f"label field {label_field!r}; if it is the label, pass --label-field {field}; to leave "
                            f"it unread, pass --text-fields {','.join(text_fields)}")


def load_file(path: str | Path, text_fields: tuple[str, ...] | None = None, label_field: str = "label",
              label_names: tuple[str, ...] | None = None, labelled: bool = True,
              model_fields: bool = False,
              tokenizer: Tokenizer | None = None) -> tuple[Examples, tuple[str, ...], tuple[str, ...]]:
    """The examples of the user's own file, with its label names and its text fields. `label_names` None (the
    training file): the names are the file's distinct labels (_label_order); given (a dev file, a model's
    labels): every label must be one of them (labels read as _label_name says). labelled=False: a file without
    the label field, or with the field empty in every example, is accepted (labels unknown: zeros). An empty
    text or label is an error, never an empty input or a class '' (a text is empty as empty_text says, with the
    `tokenizer` of the model that reads it where it is known). model_fields: `text_fields` and `label_field` are
    those a model was trained on (check_model_fields). Errors name the file, line and field."""
    path = Path(path)
    fields, records = _records(path)
    if not records:
        raise DataError(f"{path}: no examples")
    if model_fields:
        check_model_fields(path, fields, text_fields, label_field)
    text_fields = tuple(text_fields) if text_fields else default_text_fields(path, fields, label_field)
    has_labels = label_field in fields
    if labelled and not has_labels:
        raise DataError(f"{path}: no field {label_field!r} (fields: {fields}); name the label field with --label-field")
    texts = tuple([] for _ in text_fields)
    raw = []
    for line, record in records:
        for field, values in zip(text_fields, texts):
            value = record.get(field)
            if not isinstance(value, str):
                got = "missing" if field not in record else f"{type(value).__name__} {value!r}"
                raise DataError(f"{path}:{line}: field {field!r} is not text ({got})")
            if empty_text(value, tokenizer):  # an empty cell: the model would be given (or label) nothing
                raise DataError(f"{path}:{line}: field {field!r} is empty; expected a text")
            values.append(value)
        if has_labels:
            raw.append(_label_name(path, line, label_field, record.get(label_field)))
    if has_labels and not labelled and not any(raw):  # a file to label whose label column is left empty
        has_labels, raw = False, []
    for (line, _), label in zip(records, raw):
        if not label:  # never a class named ''
            raise DataError(f"{path}:{line}: field {label_field!r} is empty; expected a label")
    if label_names is None:
        label_names = tuple(_label_order(set(raw)))
        spellings = {}
        for name in label_names:  # 'pos' and 'POS' are one class written two ways, far likelier than two classes
            other = spellings.setdefault(name.casefold(), name)
            if other != name:
                raise DataError(f"{path}: labels {other!r} and {name!r} differ only in case; expected one spelling "
                                "per class")
        if len(label_names) < 2:
            raise DataError(f"{path}: {len(label_names)} distinct label(s) {list(label_names)}; "
                            "classification needs at least two")
    index = {name: i for i, name in enumerate(label_names)}
    for (line, _), label in zip(records, raw):
        if label not in index:
            raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of {list(label_names)}")
    labels = np.array([index[label] for label in raw] if has_labels else [0] * len(records), dtype=np.int64)
    return Examples(texts, labels, has_labels), tuple(label_names), text_fields
