"""Loading a classifier for a run or a prediction: the class from one registry keyed by config.json's model_type,
a fine-tuned head checked against the task's labels and put in their order, and the label names and text fields
a trained model records in its config.json."""
from pathlib import Path

import torch

from cmi.objectives import CausalLM, MaskedLM
from data.tasks import DataError, Task
from models.bert import BertForSequenceClassification
from models.checkpoint import CheckpointError, read_json, resolve
from models.distilbert import DistilBertForSequenceClassification
from models.gpt2 import GPT2ForSequenceClassification
from models.llama import LlamaForSequenceClassification

DECODERS = ("llama", "mistral", "qwen2", "qwen3", "gpt2")  # causal: h_s is the last real token's final state

# config.json's model_type -> our classifier of that family: a new family is one entry
CLASSIFIERS = {"bert": BertForSequenceClassification, "distilbert": DistilBertForSequenceClassification,
               **{kind: LlamaForSequenceClassification for kind in ("llama", "mistral", "qwen2", "qwen3")},
               "gpt2": GPT2ForSequenceClassification}
TRAINABLE = ("bert", *DECODERS)  # what train.py fine-tunes (distill.py's students are DistilBERT)


def check_head(checkpoint_dir: Path, task: Task, other_labels: bool = False,
               training: bool = True) -> tuple[list[str], list[int] | None]:
    """A checkpoint fine-tuned for classification must classify into the task's labels: reusing a 3-way
    head for a 2-way task would silently drop it, so that is an error, not a fresh head; a head with the right
    count but other label names (a CoLA model for MRPC) is one too, unless `other_labels` (on purpose).
    Returns the checkpoint's `architectures` (what it was saved as) and, for a fine-tuned head, `rows`
    (match_labels: its row of each of the task's labels, for align_head). `training`: the head is to be fine-tuned,
    so a checkpoint without one is the way out (predict.py's model has none)."""
    config = read_json(checkpoint_dir / "config.json") if (checkpoint_dir / "config.json").is_file() else {}
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return architectures, None
    id2label = config.get("id2label") or {}
    n = config.get("num_labels", len(id2label) or 2)
    if n != task.num_labels:
        advice = "; start from a checkpoint without a task head" if training else ""
        raise CheckpointError(f"{checkpoint_dir}: its classifier has {n} labels, task {task.name} has "
                              f"{task.num_labels}{advice}")
    names = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]
    return architectures, match_labels(names, task, str(checkpoint_dir), other_labels)


def match_labels(names: list[str], task: Task, where: str, other_labels: bool = False) -> list[int]:
    """rows[i]: the row of a classifier (its label names `names`, in row order) that is the task's label i,
    matched by name, never by position alone: a head that lists the task's names in another order is read in
    its own order. Names the task lacks are refused unless `other_labels`, which pairs them with the task's
    remaining labels in order, and says so. Only transformers' default names (LABEL_0, LABEL_1, ...), which
    name nothing, are taken in order."""
    twice = [name for i, name in enumerate(names) if name in names[:i]]
    if twice:
        raise CheckpointError(f"{where}: its classifier names two labels {twice[0]!r} (id2label); expected "
                              "one name per label")
    if names == [f"LABEL_{i}" for i in range(len(names))]:
        return list(range(len(names)))
    others = [i for i, name in enumerate(names) if name not in task.label_names]
    if others and not other_labels:
        raise CheckpointError(f"{where}: its classifier's labels are {names}, task {task.name}'s are "
                              f"{list(task.label_names)}; pass --other-labels to fine-tune that head anyway")
    spare = iter(others)
    rows = [names.index(label) if label in names else next(spare) for label in task.label_names]
    if others:
        pairs = ", ".join(f"{names[row]!r} as {label!r}" for row, label in zip(rows, task.label_names)
                          if names[row] != label)
        print(f"note: --other-labels: {where}'s labels are read as task {task.name}'s: {pairs}")
    return rows


def load_classifier(path: str, task: Task | None, *, model_types: tuple[str, ...] | None = None,
                    other_labels: bool = False, mlm: bool = True, fine_tuned: bool = False, training: bool = True) -> tuple:
    """A classifier from a checkpoint (a folder or a hub name), and its folder. `model_types`: the families the
    caller takes (keys of CLASSIFIERS; a checkpoint of another is refused, as the first family's class refuses it),
    or None for whichever config.json's model_type names. With a `task`, a fine-tuned head is checked
    against the task's labels (check_head) and its rows put in the task's order (align_head); without one
    (predict.py on texts or a file) the head keeps its own labels. fine_tuned: the checkpoint must already be such
    a classifier (a teacher, a model to predict with), not a model with a fresh head. training: the head is to be
    fine-tuned (check_head's advice)."""
    folder = resolve(path)
    named = model_types is not None
    has_config = not named or (folder / "config.json").is_file()  # a missing one: from_pretrained's own message
    config = read_json(folder / "config.json", CheckpointError) if has_config else {}  # names the class
    if task is None:
        architectures, rows = config.get("architectures") or [], None
    else:
        architectures, rows = check_head(folder, task, other_labels, training)
    if fine_tuned and not named and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise CheckpointError(f"{folder}: not a fine-tuned classifier (architectures {architectures}); pass the best/ "
                              "folder of a train.py or distill.py run")
    kind = config.get("model_type")
    if named:
        model_class = CLASSIFIERS[kind if kind in model_types else model_types[0]]
    else:
        model_class = CLASSIFIERS.get(kind, BertForSequenceClassification)
    model = model_class.from_pretrained(folder, num_labels=task.num_labels if task else None, mlm=mlm)
    align_head(model, rows)
    if fine_tuned and named and model.architecture() not in architectures:
        raise CheckpointError(f"{folder}: not a fine-tuned {model.config.model_type.upper()} classifier (architectures "
                              f"{architectures}); pass the best/ folder of a train.py run")
    return model, folder


def align_head(model, rows: list[int] | None) -> None:
    """Reorder the classifier's rows (check_head's `rows`) so that its output i is the task's label i."""
    if rows is None or rows == sorted(rows):
        return
    with torch.no_grad():  # advanced indexing copies, so the rows are not overwritten while read
        model.classifier.weight.copy_(model.classifier.weight[rows])
        model.classifier.bias.copy_(model.classifier.bias[rows])


def model_fields(folder: Path, config) -> tuple[tuple[str, ...], str | None]:
    """The text fields and the label field the model was trained on (config.json's text_fields, label_field, which
    train.py and distill.py record); ((), None) for a model saved without them."""
    text_fields, label_field = config.extra.get("text_fields", []), config.extra.get("label_field")
    if (not isinstance(text_fields, list) or len(text_fields) > 2 or not all(isinstance(f, str) and f for f in text_fields)
            or not isinstance(label_field, (str, type(None)))):
        raise CheckpointError(f"{folder / 'config.json'}: text_fields must list one or two field names and "
                              f"label_field name one, got {text_fields!r}, {label_field!r}")
    return tuple(text_fields), label_field


def check_text_count(where: str, count: int, text_fields: tuple[str, ...]) -> None:
    """A DataError unless inputs of `count` texts are what a model reading `text_fields` (model_fields; empty:
    unknown) reads: one text, or a pair."""
    if text_fields and count != len(text_fields):
        reads = "one text" if len(text_fields) == 1 else "a pair of texts"
        raise DataError(f"{where}: {count} text(s) per input, but the model reads {reads} "
                        f"({', '.join(text_fields)}, its config.json text_fields)")


def name_labels(model, task: Task, label_field: str) -> None:
    """Write the task's label names into the model's config, so the saved best/ model says what it predicts, and
    the fields it reads (config.json's extra keys text_fields, label_field; transformers keeps them as attributes),
    so that predict.py reads a file's text fields exactly, never a column of answers as the second text of a pair."""
    model.config.id2label = dict(enumerate(task.label_names))
    model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    model.config.extra |= {"text_fields": list(task.text_fields), "label_field": label_field}


def is_decoder(model) -> bool:
    return model.config.model_type in DECODERS


def check_decoder(model, cmi_feature: str) -> None:
    """`--cmi-feature cls` on a decoder, refused in one line: under causal attention the first token's state sees the
    first token alone: with a fixed BOS f_x is the same for every input and the CMI zero; a decoder's h_s is its
    last real token's, `pooled`."""
    if is_decoder(model) and cmi_feature == "cls":
        raise CheckpointError(f"--cmi-feature cls: a {model.config.model_type} decoder's first token sees only itself "
                              "(with a fixed BOS its state, and so f_x, is the same for every input); use --cmi-feature "
                              "pooled, the last real token's state that the classifier reads")


def pretraining_term(model, gamma: float, checkpoint: str, token_to_id) -> MaskedLM | CausalLM:
    """gamma * L1 of eq. (7) with the checkpoint's own head: BERT's masked-LM loss, a decoder's causal-LM loss.
    `token_to_id`: the tokenizer's, for BERT's [MASK] and the special tokens never masked."""
    if not model.has_lm_head():
        head = ("LM head (lm_head.weight, of a *ForCausalLM folder, or tied word embeddings)" if is_decoder(model)
                else "masked-LM head (cls.predictions.*)")
        raise CheckpointError(f"--gamma {gamma}: the checkpoint {checkpoint} has no {head}; use --gamma 0 or a "
                              "checkpoint with one")
    if is_decoder(model):
        return CausalLM(gamma=gamma, lm_logits=model.lm_logits)
    return MaskedLM(gamma=gamma, mlm_logits=model.mlm_logits, mask_id=token_to_id("[MASK]"),
                    vocab_size=model.config.vocab_size,
                    special_ids=tuple(token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")))
