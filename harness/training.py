"""What train.py and distill.py build their recipes from: set-up (seeds, device, precision, processes), the data of
a run, every input checked against every other before the run folder changes, loading a classifier, and the
pieces cmi.loop.fit takes (the model prepared to run, each epoch's batches, the evaluation passes, the run's log)."""
import argparse
import inspect
import json
import os
import random
import shutil
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch._functorch.config
import torch.distributed as dist
from tokenizers import Tokenizer
from torch.nn.parallel import DistributedDataParallel as DDP

from cmi.core import CMIStats
from cmi.distributed import rank, world_size
from cmi.loop import Evaluation, autocast_context
from cmi.objectives import FeatureMap
from data.batching import batch_width, collate, eval_batches, train_batches
from data.loading import Examples, load_file, load_split, subset
from data.metrics import compute_metrics
from data.tasks import DataError, Task, file_task, get_task, metric_suffix
from data.tokenization import Encoded, encode, load_tokenizer
from harness.runfiles import RunFiles
from models.bert import BertForSequenceClassification
from models.checkpoint import CheckpointError, read_json, resolve
from models.distilbert import DistilBertForSequenceClassification
from models.unpadded import real_tokens

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the batch fields a model may take


# -----------------------------------------------------------------------------
# set-up


@dataclass
class Runtime:
    """Where and how a run computes, decided once by `setup`."""

    device: torch.device
    amp: bool                 # autocast, in amp_dtype
    amp_dtype: torch.dtype | None
    compile: bool             # torch.compile the model
    pad_multiple: int | None  # batches padded to a multiple of this many tokens
    unpad: bool               # our models compute the real tokens only (models/unpadded.py)
    ctx: AbstractContextManager  # the autocast context (or none), built once, entered every step and pass


def setup(args: argparse.Namespace) -> Runtime:
    """Seed everything; pick the device, whether to autocast and compile, and the padding. Started by torchrun
    (WORLD_SIZE set), join the process group: NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), Gloo on CPU."""
    # CPU tensors of 2 MB or more on transparent huge pages (c10's allocator reads this at its first allocation):
    # the word embeddings' dense gradient is allocated afresh every step, and on 4 kB pages its first touch is a
    # page fault every 4 kB (docs/results.md, "Performance")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same on every process: DDP also broadcasts rank 0's weights
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if cuda:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = {"on": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16,
             "auto": torch.bfloat16 if cuda else None}.get(args.amp)
    if dtype == torch.bfloat16 and not cuda and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(f"warning: --amp {args.amp}: this CPU has no native bf16 (avx512_bf16 or AMX), so bf16 autocast is "
              "emulated and slower than float32; --amp off is faster here", file=sys.stderr)
    return Runtime(device=device, amp=dtype is not None, amp_dtype=dtype,
                   # compiling pays back within a run on CUDA, not on CPU (docs/results.md, "Performance")
                   compile=args.compile == "on" or (args.compile == "auto" and cuda),
                   # 8 on CUDA: tensor-core friendly widths, fewer shapes to compile; none on CPU
                   pad_multiple=args.pad_multiple or (8 if cuda else None), unpad=not args.padded,
                   ctx=autocast_context(device, dtype))


# -----------------------------------------------------------------------------
# data


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


def eval_pass(args, encoded: Encoded, runtime: Runtime) -> Batches:
    """A split in evaluation batches, this process's share: the dev sets, the train CMI, a teacher's logits."""
    index = eval_batches(encoded.lengths, args.eval_batch_size, rank=rank(), world_size=world_size())
    return Batches(encoded, index, runtime.device, runtime.pad_multiple)


def task_of(args) -> Task:
    """The run's task: the GLUE --task, or one made from the --train-file (its label names and text fields)."""
    if args.train_file is None:
        return get_task(args.task)
    _, label_names, fields = load_file(args.train_file, args.text_fields, args.label_field)
    return file_task(args.task, label_names, fields)


def load_examples(args, task: Task, split: str, max_samples: int | None) -> Examples:
    """One split of the run's data: of the GLUE task, or of --train-file / --validation-file."""
    if args.train_file is None:
        return load_split(task, split, args.data_dir, max_samples)
    path = args.train_file if split == "train" else args.validation_file
    return subset(load_file(path, task.text_fields, args.label_field, task.label_names)[0], max_samples)


def check_data(args) -> None:
    """Read every split of a run's data as the run will (data.loading's checks), without a model: sweep.py checks
    the data of its grid this way before any run folder exists. GLUE from the hub is left to the runs."""
    if args.train_file is None and args.data_dir is None:
        return
    task = task_of(args)
    for split in task.splits:
        load_examples(args, task, split, None)


def load_data(args, task: Task, checkpoint_dir: Path, vocab_size: int) -> Data:
    """Tokenise the training split and every dev split once. The tokenizer may know fewer tokens than the
    model's embedding table has rows (tables are often padded), never more: those ids would index past it."""
    tokenizer = load_tokenizer(checkpoint_dir)
    if tokenizer.get_vocab_size() > vocab_size:
        raise CheckpointError(f"{checkpoint_dir}: the tokenizer has {tokenizer.get_vocab_size()} tokens, the model's "
                              f"embedding table {vocab_size} rows (config vocab_size); they must belong together")
    train = encode(tokenizer, load_examples(args, task, "train", args.max_train_samples), args.max_len)
    evals = {split: encode(tokenizer, load_examples(args, task, split, args.max_eval_samples), args.max_len)
             for split in task.eval_splits}
    for name, enc in {"train": train, **evals}.items():
        if len(enc) < world_size():  # each process needs examples of its own
            raise DataError(f"task {args.task}: the {name} split has {len(enc)} examples; each of the "
                            f"{world_size()} processes needs at least one")
    return Data(train, evals, tokenizer)


CLASSIFIERS = {"bert": BertForSequenceClassification, "distilbert": DistilBertForSequenceClassification}


# -----------------------------------------------------------------------------
# checks of every input against every other, before the run folder changes


def check_fits(args, configs: dict, splits: list[Encoded], runtime: Runtime) -> None:
    """Every model (configs: its name for messages -> its config) can read every batch of `splits`: the widest
    batch (the longest example, padded to --pad-multiple) fits its position table, every token type its
    token-type table. Checked before the run folder changes, so a bad pairing cannot cost an earlier run."""
    pad = runtime.pad_multiple
    width = max(batch_width(enc.lengths, pad) for enc in splits)
    types = 1 + max(int(t.max()) for enc in splits for t in enc.token_type_ids)
    for name, config in configs.items():
        if width > config.max_position_embeddings:
            padded = f", padded to a multiple of {pad} by --pad-multiple" if pad else ""
            raise CheckpointError(f"{name}: the longest input is {width} tokens (--max-len {args.max_len}{padded}) but "
                                  f"its position table has {config.max_position_embeddings} "
                                  "(max_position_embeddings); lower --max-len or --pad-multiple")
        if types > getattr(config, "type_vocab_size", types):  # DistilBERT has no token types
            raise CheckpointError(f"{name}: task {args.task} has sentence pairs (token types 0 and 1) but its "
                                  f"token-type table has {config.type_vocab_size} row(s) (type_vocab_size)")


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


def load_classifier(model_class, path: str, task: Task | None, *, other_labels: bool = False, mlm: bool = True,
                    fine_tuned: bool = False, training: bool = True) -> tuple:
    """A classifier from a checkpoint (a folder or a hub name), and its folder. `model_class`: ours for BERT or
    DistilBERT, or None for the one config.json's model_type names. With a `task`, a fine-tuned head is checked
    against the task's labels (check_head) and its rows put in the task's order (align_head); without one
    (predict.py on texts or a file) the head keeps its own labels. fine_tuned: the checkpoint must already be such
    a classifier (a teacher, a model to predict with), not a model with a fresh head. training: the head is to be
    fine-tuned (check_head's advice)."""
    folder = resolve(path)
    config = read_json(folder / "config.json", CheckpointError) if model_class is None else {}  # names the class
    if task is None:
        architectures, rows = config.get("architectures") or [], None
    else:
        architectures, rows = check_head(folder, task, other_labels, training)
    if fine_tuned and model_class is None and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise CheckpointError(f"{folder}: not a fine-tuned classifier (architectures {architectures}); pass the best/ "
                              "folder of a train.py or distill.py run")
    named = model_class is not None
    model_class = model_class or CLASSIFIERS.get(config.get("model_type"), BertForSequenceClassification)
    model = model_class.from_pretrained(folder, num_labels=task.num_labels if task else None, mlm=mlm)
    align_head(model, rows)
    if fine_tuned and named and model_class.__name__ not in architectures:
        raise CheckpointError(f"{folder}: not a fine-tuned {model.config.model_type.upper()} classifier (architectures "
                              f"{architectures}); pass the best/ folder of a train.py run")
    return model, folder


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


def align_head(model, rows: list[int] | None) -> None:
    """Reorder the classifier's rows (check_head's `rows`) so that its output i is the task's label i."""
    if rows is None or rows == sorted(rows):
        return
    with torch.no_grad():  # advanced indexing copies, so the rows are not overwritten while read
        model.classifier.weight.copy_(model.classifier.weight[rows])
        model.classifier.bias.copy_(model.classifier.bias[rows])


def name_labels(model, task: Task, label_field: str) -> None:
    """Write the task's label names into the model's config, so the saved best/ model says what it predicts, and
    the fields it reads (config.json's extra keys text_fields, label_field; transformers keeps them as attributes),
    so that predict.py reads a file's text fields exactly, never a column of answers as the second text of a pair."""
    model.config.id2label = dict(enumerate(task.label_names))
    model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    model.config.extra |= {"text_fields": list(task.text_fields), "label_field": label_field}


# -----------------------------------------------------------------------------
# the loop's wiring


def model_inputs(model: torch.nn.Module) -> tuple[str, ...]:
    """The batch fields the model's forward takes, in its order (BERT: input_ids, attention_mask, token_type_ids;
    DistilBERT has no token types); either library's models."""
    return tuple(k for k in inspect.signature(model.forward).parameters if k in MODEL_INPUTS)


def forward_of(model: torch.nn.Module, inputs: tuple[str, ...] | None = None, unpad: bool = False):
    """forward(batch) -> the model's output, fed the batch fields its forward takes. `inputs` (model_inputs of
    the unwrapped model) for a wrapped one (compiled, DDP) whose own signature does not say. With `unpad`, our
    model computes the real tokens only: their index is found here, once per batch, outside the compiled model
    (`nonzero` would break its graph)."""
    inputs = inputs or model_inputs(model)
    if not unpad:
        return lambda batch: model(*(batch[k] for k in inputs))
    return lambda batch: model(*(batch[k] for k in inputs), token_index=real_tokens(batch["attention_mask"]))


def prepare(model: torch.nn.Module, runtime: Runtime):
    """The model on the run's device, and forward(batch) that runs it as the steps do: compiled (CUDA), and under
    torchrun wrapped in DDP, so that backward averages the gradients over the processes."""
    inputs = model_inputs(model)
    model.to(runtime.device)
    if runtime.compile and runtime.amp:
        # under autocast the CMI term may be backpropagated on its own through the same graph (cmi.loop.backward),
        # which needs retain_graph; a compiled backward that donates its saved buffers refuses that
        torch._functorch.config.donated_buffer = False
    compiled = torch.compile(model, dynamic=True) if runtime.compile else model
    if world_size() > 1:
        device = runtime.device
        compiled = DDP(compiled, device_ids=[device.index] if device.type == "cuda" else None)
    return forward_of(compiled, inputs, runtime.unpad)


def epoch_batches(args, train: Encoded, runtime: Runtime) -> list[Batches]:
    """Each epoch's training batches of --batch-size x --grad-accum examples (shuffled, fixed by the seed and the
    epoch), this process's share."""
    return [Batches(train, train_batches(train.lengths, args.batch_size * args.grad_accum, seed=args.seed, epoch=epoch,
                                         group_batches=args.group_batches, rank=rank(), world_size=world_size()),
                    runtime.device, runtime.pad_multiple)
            for epoch in range(1, args.epochs + 1)]


def evaluation(args, task: Task, data: Data, runtime: Runtime, features: FeatureMap) -> Evaluation:
    """The eval-mode passes of cmi.loop.fit: the training set, and every dev split scored by the task's metrics
    (MNLI mismatched with the _mm suffix) and its CMI (f_x against the split's own class means)."""
    def score(split: str, logits: torch.Tensor, stats: CMIStats) -> dict:
        return {**compute_metrics(task, logits.argmax(-1).cpu().numpy(), data.evals[split].labels, split),
                "eval_cmi" + metric_suffix(split): stats.cmi(args.cmi_weighting)}

    return Evaluation(train=(eval_pass(args, data.train, runtime), len(data.train)),
                      dev={split: (eval_pass(args, enc, runtime), len(enc)) for split, enc in data.evals.items()},
                      features=features, num_classes=task.num_labels, score=score, weighting=args.cmi_weighting)


def grad_scaler(runtime: Runtime) -> torch.amp.GradScaler | None:
    """fp16's 5-bit exponent underflows small gradients: the loss is scaled up before backward (and the step
    skipped when the scaled gradients overflow); bf16 has float32's range and needs none of it."""
    return torch.amp.GradScaler(runtime.device.type) if runtime.amp_dtype == torch.float16 else None


HEARTBEAT_SECONDS = 30


class Board:
    """--tensorboard: the values of steps.jsonl and metrics.jsonl as TensorBoard events in OUT/tensorboard.

    Event files can only be appended to, and a resumed run redoes the epoch a kill interrupted: events appended
    after a resume would hold that epoch's steps twice (1..7, 5..8), and readers show both. So the events are
    rebuilt from steps.jsonl, which RunFiles.start has cut back to the checkpoint, when the run logs its first
    step (or at its end): after any resume they are those of an uninterrupted run, each step once. A kill
    while rebuilding loses nothing that steps.jsonl does not hold."""

    STEP_KEYS = ("loss", "ce", "kd", "batch_cmi", "lr", "grad_norm")

    def __init__(self, writer_class, run: RunFiles):
        self.writer_class, self.run, self.writer = writer_class, run, None

    def _open(self) -> None:
        folder = self.run.out / "tensorboard"
        shutil.rmtree(folder, ignore_errors=True)  # the events of an earlier process in the folder
        self.writer = self.writer_class(str(folder))
        for line in map(json.loads, self.run.step_lines()):
            self._add_step(line)

    def _add_step(self, line: dict) -> None:
        for k in self.STEP_KEYS:
            if k in line:
                self.writer.add_scalar(f"step/{k}", line[k], line["step"])

    def step(self, line: dict) -> None:
        """A line just appended to steps.jsonl (the first one is written by the rebuild)."""
        if self.writer is None:
            self._open()
        else:
            self._add_step(line)

    def close(self) -> None:
        """The end of the run: every epoch's values of metrics.jsonl, then the files are closed."""
        if self.writer is None:
            self._open()
        for line in map(json.loads, self.run.metrics.read_text().splitlines()):
            for k, v in line.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"epoch/{k}", v, line["epoch"])
        self.writer.close()


def tensorboard(args, run: RunFiles) -> Board | None:
    """With --tensorboard, a Board into OUT/tensorboard (rank 0), or a one-line error without the package."""
    if not args.tensorboard or rank() != 0:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DataError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or pip install -e '.[tensorboard]')") from None
    return Board(SummaryWriter, run)


def step_logger(epochs: int, step_batch: int, board: Board | None):
    """on_step(line) for the loop: the line's values into TensorBoard (when `board`), and, when stderr is not a
    terminal (nohup, a batch scheduler: no progress bar), a heartbeat line at most every HEARTBEAT_SECONDS."""
    heartbeat = not sys.stderr.isatty()
    last = [time.monotonic()]  # the first heartbeat after HEARTBEAT_SECONDS

    def on_step(line: dict) -> None:
        if board is not None:
            board.step(line)
        if heartbeat and time.monotonic() - last[0] >= HEARTBEAT_SECONDS:
            last[0] = time.monotonic()
            i = line["step"] - (line["epoch"] - 1) * line["epoch_steps"]
            per_step = line["seconds"] / i
            left = per_step * (line["epoch_steps"] - i)
            print(f"epoch {line['epoch']}/{epochs}, step {i}/{line['epoch_steps']}: loss {line['loss']:.4f}, "
                  f"lr {line['lr']:.3g}, {step_batch / per_step:.0f} samples/s, epoch done in {left:.0f} s "
                  f"(~{left + per_step * line['epoch_steps'] * (epochs - line['epoch']):.0f} s of training left)",
                  file=sys.stderr, flush=True)
    return on_step


def settings(runtime: Runtime, data: Data) -> dict:
    """How a run computes and on what, beyond its arguments (which say "auto"): recorded in results.json so that
    runs compared as a pair can be checked to differ in their arm only (report.py)."""
    return {"path": "unpadded" if runtime.unpad else "padded", "threads": torch.get_num_threads(),
            "amp": str(runtime.amp_dtype).removeprefix("torch.") if runtime.amp else "off",
            "compile": runtime.compile, "world_size": world_size(),
            "data": {name: enc.fingerprint() for name, enc in {"train": data.train, **data.evals}.items()}}


class RunLog:
    """What a run says as it goes: the start line (and its settings into results.json), TensorBoard and the
    heartbeat of each logged step (`on_step`, for cmi.loop.fit), and the done line."""

    def __init__(self, args, run: RunFiles, model: torch.nn.Module, task: Task, data: Data, runtime: Runtime,
                 steps: int):
        self.args, self.run, self.task = args, run, task
        run.settings = settings(runtime, data)
        self.board = tensorboard(args, run)
        step_batch = args.batch_size * args.grad_accum  # the examples of one optimisation step
        self.on_step = step_logger(args.epochs, step_batch, self.board)
        if rank() == 0:  # what a log under nohup or a scheduler should say first
            params = sum(p.numel() for p in model.parameters())
            precision = str(runtime.amp_dtype).removeprefix("torch.") + " autocast" if runtime.amp else "float32"
            print(f"start: {type(model).__name__} ({params / 1e6:.1f}M parameters), task {task.name}: "
                  f"{len(data.train)} train / {len(data.evals[task.eval_splits[0]])} dev examples; "
                  f"{args.epochs} epochs x {steps // args.epochs} steps of {step_batch} examples; {runtime.device}, "
                  f"{precision}, compile {'on' if runtime.compile else 'off'}, {world_size()} process(es); "
                  f"out {run.out}", flush=True)

    def done(self, results: dict) -> None:
        if self.board is not None:
            self.board.close()
        if rank() == 0:
            metrics = ", ".join(f"{k} {100 * results[k]:.1f}" for k in self.task.metrics if k in results)
            print(f"done: best epoch {results['best_epoch']} of {self.args.epochs}: {metrics} (%), dev CMI "
                  f"{results['eval_cmi']:.3g}; the model: {self.run.best}", flush=True)
