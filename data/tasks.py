"""The GLUE classification tasks: text fields, labels, dev splits, metrics, and where each lives on disk."""

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Bad or missing data. The message is one line naming the file/line, field or value, and what was
    expected, so a script can print it and exit non-zero."""


@dataclass(frozen=True)
class Task:
    """One GLUE task: its text fields and labels, dev splits, metrics, and its columns in the TSV files."""

    name: str                      # also the config name on the hub (nyu-mll/glue)
    label_names: tuple[str, ...]   # GLUE's order: label i is label_names[i]
    text_fields: tuple[str, ...]   # hub column names: one (single sentence) or two (sentence pair)
    metrics: tuple[str, ...]       # metric keys reported on every dev split ("accuracy", "f1", "mcc")
    primary_metric: str            # the key that picks the best epoch (on the first dev split)
    glue_dir: str                  # folder in the GLUE download layout, e.g. "SST-2"
    tsv_text_columns: tuple[str, ...]  # the TSV's columns holding text_fields, in the same order
    tsv_label_column: str
    tsv_label_values: tuple[str, ...] = ("0", "1")  # how the TSV spells label i
    tsv_header: tuple[str, ...] | None = None  # column names for a file without a header row (CoLA)
    eval_splits: tuple[str, ...] = ("validation",)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train",) + self.eval_splits


_ENTAIL = ("entailment", "not_entailment")
_MNLI = ("entailment", "neutral", "contradiction")
_PAIR = ("sentence1", "sentence2")

TASKS: dict[str, Task] = {t.name: t for t in [
    Task("cola", ("unacceptable", "acceptable"), ("sentence",), ("mcc",), "mcc",
         "CoLA", ("sentence",), "label", tsv_header=("source", "label", "original_mark", "sentence")),
    Task("sst2", ("negative", "positive"), ("sentence",), ("accuracy",), "accuracy",
         "SST-2", ("sentence",), "label"),
    Task("mrpc", ("not_equivalent", "equivalent"), _PAIR, ("f1", "accuracy"), "f1",
         "MRPC", ("#1 String", "#2 String"), "Quality"),
    Task("qqp", ("not_duplicate", "duplicate"), ("question1", "question2"), ("f1", "accuracy"), "f1",
         "QQP", ("question1", "question2"), "is_duplicate"),
    Task("mnli", _MNLI, ("premise", "hypothesis"), ("accuracy",), "accuracy",
         "MNLI", _PAIR, "gold_label", tsv_label_values=_MNLI,
         eval_splits=("validation_matched", "validation_mismatched")),
    Task("qnli", _ENTAIL, ("question", "sentence"), ("accuracy",), "accuracy",
         "QNLI", ("question", "sentence"), "label", tsv_label_values=_ENTAIL),
    Task("rte", _ENTAIL, _PAIR, ("accuracy",), "accuracy", "RTE", _PAIR, "label", tsv_label_values=_ENTAIL),
    # WNLI counts the other way round from RTE: 0 = not_entailment, 1 = entailment.
    Task("wnli", ("not_entailment", "entailment"), _PAIR, ("accuracy",), "accuracy", "WNLI", _PAIR, "label"),
]}


def get_task(name: str) -> Task:
    """The task called `name` (cola, sst2, mrpc, qqp, mnli, qnli, rte, wnli)."""
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    return TASKS[name]


FILE_METRIC = "accuracy"  # what picks the best epoch on the user's own files, as run_glue does


def own_task_name(train_file: str) -> str:
    """The task name of a run on the user's own files: the training file's stem (data/reviews.csv -> reviews).
    train.py names the run folder after it, sweep.py its grid, report.py its rows."""
    return Path(train_file).stem


def file_task(name: str, label_names: tuple[str, ...], text_fields: tuple[str, ...]) -> Task:
    """A task of the user's own files (data.loading.load_file): its label names from the training file,
    accuracy (which picks the best epoch, as run_glue does for its own files) and macro-F1, MCC too for two
    classes. The GLUE file columns do not apply: the files are read by field name."""
    metrics = ("accuracy", "f1_macro") + (("mcc",) if len(label_names) == 2 else ())
    return Task(name, tuple(label_names), tuple(text_fields), metrics, FILE_METRIC,
                glue_dir="", tsv_text_columns=(), tsv_label_column="")


def primary_metric(name: str, own_files: bool = False) -> str:
    """The dev metric that picks the best epoch of task `name`: the GLUE task's, or FILE_METRIC for a task of
    the user's own files (named after its training file, which may be any name, a GLUE one too)."""
    return FILE_METRIC if own_files or name not in TASKS else TASKS[name].primary_metric


def metric_suffix(split: str) -> str:
    """Suffix of the metric keys of a dev split: MNLI's mismatched set reports `accuracy_mm`."""
    return "_mm" if split == "validation_mismatched" else ""
