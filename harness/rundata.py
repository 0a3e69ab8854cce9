"""The data of a run: where its examples come from (`DataSource`), its task, its splits tokenised once, the
batches of every epoch and of the evaluation passes, and the check that every model can read every batch."""
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from cmi.core import CMIStats
from cmi.distributed import rank, world_size
from cmi.loop import EvalPasses
from cmi.objectives import Features
from data.batching import batch_width, collate, eval_batches, train_batches
from data.loading import Examples, load_file, load_split, subset
from data.metrics import compute_metrics
from data.tasks import DataError, Task, file_task, get_task, metric_suffix
from data.tokenization import Encoded, encode, load_tokenizer
from harness.runtime import Runtime
from models.checkpoint import CheckpointError


@dataclass(frozen=True)
class DataSource:
    """Where a run's examples come from: the GLUE `task` (from `data_dir` in the GLUE download layout, or the
    datasets hub), or the user's own `train_file` and `validation_file` (`task` then names the run), read by
    their `text_fields` and `label_field`."""

    task: str
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    text_fields: tuple[str, ...] | None = None
    label_field: str | None = "label"


@dataclass
class Data:
    """A run's splits, tokenised once: the training split and every dev split (MNLI: matched and mismatched)."""

    train: Encoded
    evals: dict[str, Encoded]
    tokenizer: Tokenizer

    @property
    def splits(self) -> list[Encoded]:
        return [self.train, *self.evals.values()]


class Batches:
    """The batches of one pass over an encoded split, collated lazily (padded to a multiple of `pad_multiple`)
    and moved to `device`."""

    def __init__(self, encoded: Encoded, index_batches: list, device: torch.device, pad_multiple: int | None):
        self.encoded, self.index_batches, self.device, self.pad_multiple = encoded, index_batches, device, pad_multiple

    def __len__(self) -> int:
        return len(self.index_batches)

    def __iter__(self):
        for index in self.index_batches:
            batch = collate(self.encoded, index, self.pad_multiple)
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def task_of(source: DataSource) -> Task:
    """The run's task: the GLUE task, or one made from the training file (its label names and text fields)."""
    if source.train_file is None:
        return get_task(source.task)
    _, label_names, fields = load_file(source.train_file, source.text_fields, source.label_field)
    return file_task(source.task, label_names, fields)


def load_examples(source: DataSource, task: Task, split: str, max_samples: int | None) -> Examples:
    """One split of the run's data: of the GLUE task, or of the training / validation file."""
    if source.train_file is None:
        return load_split(task, split, source.data_dir, max_samples)
    path = source.train_file if split == "train" else source.validation_file
    return subset(load_file(path, task.text_fields, source.label_field, task.label_names)[0], max_samples)


def check_data(source: DataSource) -> None:
    """Read every split of a run's data as the run will (data.loading's checks), without a model: sweep.py checks
    the data of its grid this way before any run folder exists. GLUE from the hub is left to the runs."""
    if source.train_file is None and source.data_dir is None:
        return
    task = task_of(source)
    for split in task.splits:
        load_examples(source, task, split, None)


def load_data(source: DataSource, task: Task, checkpoint_dir: Path, vocab_size: int, max_len: int,
              max_train: int | None = None, max_eval: int | None = None) -> Data:
    """Tokenise the training split (at most `max_train` examples) and every dev split (`max_eval`) once, truncated
    to `max_len` tokens. The tokenizer may know fewer tokens than the model's embedding table has rows (tables are
    often padded), never more: those ids would index past it."""
    tokenizer = load_tokenizer(checkpoint_dir)
    if tokenizer.get_vocab_size() > vocab_size:
        raise CheckpointError(f"{checkpoint_dir}: the tokenizer has {tokenizer.get_vocab_size()} tokens, the model's "
                              f"embedding table {vocab_size} rows (config vocab_size); they must belong together")
    train = encode(tokenizer, load_examples(source, task, "train", max_train), max_len)
    evals = {split: encode(tokenizer, load_examples(source, task, split, max_eval), max_len)
             for split in task.eval_splits}
    for name, enc in {"train": train, **evals}.items():
        if len(enc) < world_size():  # each process needs examples of its own
            raise DataError(f"task {source.task}: the {name} split has {len(enc)} examples; each of the "
                            f"{world_size()} processes needs at least one")
    return Data(train, evals, tokenizer)


def check_fits(configs: dict, splits: list[Encoded], pad_multiple: int | None, max_len: int, task: str | None) -> None:
    """Every model (configs: its name for messages -> its config) can read every batch of `splits`: the widest
    batch (the longest example, padded to --pad-multiple) fits its position table, every token type its
    token-type table. Checked before the run folder changes, so a bad pairing cannot cost an earlier run."""
    width = max(batch_width(enc.lengths, pad_multiple) for enc in splits)
    types = 1 + max(int(t.max()) for enc in splits for t in enc.token_type_ids)
    for name, config in configs.items():
        if width > config.max_position_embeddings:
            padded = f", padded to a multiple of {pad_multiple} by --pad-multiple" if pad_multiple else ""
            raise CheckpointError(f"{name}: the longest input is {width} tokens (--max-len {max_len}{padded}) but "
                                  f"its position table has {config.max_position_embeddings} "
                                  "(max_position_embeddings); lower --max-len or --pad-multiple")
        if types > getattr(config, "type_vocab_size", types):  # DistilBERT has no token types
            raise CheckpointError(f"{name}: task {task} has sentence pairs (token types 0 and 1) but its "
                                  f"token-type table has {config.type_vocab_size} row(s) (type_vocab_size)")


def eval_pass(encoded: Encoded, batch_size: int, runtime: Runtime) -> Batches:
    """A split in evaluation batches, this process's share: the dev sets, the train CMI, a teacher's logits."""
    index = eval_batches(encoded.lengths, batch_size, rank=rank(), world_size=world_size())
    return Batches(encoded, index, runtime.device, runtime.pad_multiple)


def epoch_batches(train: Encoded, runtime: Runtime, epochs: int, batch_size: int, seed: int,
                  group_batches: int) -> list[Batches]:
    """Each epoch's training batches of `batch_size` examples (shuffled, fixed by the seed and the epoch; length
    grouping by `group_batches`), this process's share."""
    return [Batches(train, train_batches(train.lengths, batch_size, seed=seed, epoch=epoch, group_batches=group_batches,
                                         rank=rank(), world_size=world_size()),
                    runtime.device, runtime.pad_multiple)
            for epoch in range(1, epochs + 1)]


def eval_passes(task: Task, data: Data, runtime: Runtime, features: Features, batch_size: int,
                weighting: str) -> EvalPasses:
    """The eval-mode passes of cmi.loop.fit: the training set, and every dev split scored by the task's metrics
    (MNLI mismatched with the _mm suffix) and its CMI (f_x against the split's own class means, the classes
    weighed by `weighting`)."""
    def score(split: str, logits: torch.Tensor, stats: CMIStats) -> dict:
        return {**compute_metrics(task, logits.argmax(-1).cpu().numpy(), data.evals[split].labels, split),
                "eval_cmi" + metric_suffix(split): stats.cmi(weighting)}

    return EvalPasses(train=(eval_pass(data.train, batch_size, runtime), len(data.train)),
                      dev={split: (eval_pass(enc, batch_size, runtime), len(enc)) for split, enc in data.evals.items()},
                      features=features, num_classes=task.num_labels, score=score, weighting=weighting)
