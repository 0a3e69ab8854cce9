"""Load a GLUE split as raw examples, from a local folder in the GLUE download layout or from the hub."""

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


@dataclass
class Examples:
    """The raw examples of one split: the texts of each field and the labels."""

    texts: tuple[list[str], ...]  # one list per text field of the task: (sentences,) or (firsts, seconds)
    labels: np.ndarray            # int64 [N], indices into task.label_names

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
    if max_samples is not None and max_samples < len(examples):
        # the first max_samples of one fixed permutation: a smaller subset is part of every larger one
        keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(examples))[:max_samples])
        examples = Examples(tuple([texts[i] for i in keep] for texts in examples.texts), examples.labels[keep])
    return examples


def _read_tsv(task: Task, path: Path) -> Examples:
    if not path.is_file():
        raise DataError(f"{path}: file not found (task {task.name}, GLUE download layout)")
    # utf-8-sig drops MRPC's byte-order mark; quoting must be off: '"' appears inside sentences, and
    # CSV quoting would silently merge rows (MRPC dev would drop from 408 to 389).
    # No field-size limit: a long text is truncated by the tokenizer, not refused by csv's 128 KiB default.
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except (OSError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None
    if task.tsv_header is not None:  # CoLA: no header row, data from line 1
        header, first_line = list(task.tsv_header), 1
    else:
        header, first_line, rows = (rows[0] if rows else []), 2, rows[1:]
    columns = [*task.tsv_text_columns, task.tsv_label_column]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}:1: header {header} lacks column(s) {missing}")
    where = [header.index(c) for c in columns]
    label_index = {value: i for i, value in enumerate(task.tsv_label_values)}
    texts = tuple([] for _ in task.tsv_text_columns)
    labels = []
    for line, row in enumerate(rows, start=first_line):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: malformed row, {len(row)} fields where the header has {len(header)}")
        *text, label = (row[i] for i in where)
        if label not in label_index:
            raise DataError(f"{path}:{line}: unknown label {label!r}; expected one of {list(task.tsv_label_values)}")
        for field, value in zip(texts, text):
            field.append(value)
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
