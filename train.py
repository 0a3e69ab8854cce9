"""Fine-tune BERT on a GLUE task with the conditional-mutual-information term of arXiv 2502.11258.

    python train.py --task cola --mode min --lam 0.1 --model bert-base-uncased --out runs/cola-min

--mode ce is plain fine-tuning, min adds +lambda * CMI (a better standalone model), max adds -lambda * CMI
(a better teacher for distill.py). See README.md for the flags and the files a run writes.
"""
import argparse
import json
import os
import math
import random
import signal
import sys
import traceback

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from cmi.core import WEIGHTINGS
from cmi.loop import (RunFiles, TrainingError, autocast_context, fit, linear_schedule, make_optimizer, predict, rank,
                      world_size)
from cmi.objectives import FEATURES, MODES, POLICIES, SCALES, CMIObjective, Centroids, FeatureMap, MaskedLM
from data.batching import GROUP_BATCHES, batch_width, collate, eval_batches, num_train_batches, train_batches
from data.loading import load_split
from data.metrics import compute_metrics
from data.tasks import TASKS, DataError, get_task, metric_suffix
from data.tokenization import encode, load_tokenizer
from models.bert import BertForSequenceClassification
from models.checkpoint import CheckpointError, read_json, resolve


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (not the whole usage) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The options train.py and distill.py share: task and data, optimisation (with the CMI measured every
    epoch), run files, hardware."""
    g = parser.add_argument_group("task and data")
    g.add_argument("--task", required=True, choices=list(TASKS), help="GLUE task")
    g.add_argument("--data-dir", help="folder in the GLUE download layout (CoLA/train.tsv, ...); "
                                      "default: the datasets hub (nyu-mll/glue)")
    g.add_argument("--max-len", type=int, default=128, help="truncation length in tokens, [CLS]/[SEP] included")
    g.add_argument("--max-train-samples", type=int, help="train on a fixed random subset of this size")
    g.add_argument("--max-eval-samples", type=int, help="evaluate on a fixed random subset of this size")
    g.add_argument("--group-batches", type=int, default=1,
                   help=f"length grouping: sort each group of this many batches by length (1: plain shuffling; "
                        f"{GROUP_BATCHES} pads far less, but cost CoLA dev MCC in our runs: see README)")
    g.add_argument("--pad-multiple", type=int, default=None,
                   help="pad batches to a multiple of this many tokens (default: 8 on CUDA, none on CPU)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=5, help="training epochs (the paper: 5; distillation 10)")
    g.add_argument("--batch-size", type=int, default=32, help="training examples per step")
    g.add_argument("--eval-batch-size", type=int, default=128, help="examples per evaluation batch")
    g.add_argument("--lr", type=float, default=2e-5, help="peak learning rate of AdamW")
    g.add_argument("--warmup-ratio", type=float, default=0.0, help="fraction of the steps spent warming up")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases, LayerNorm)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping threshold (0: off)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, dropout and batch order")
    g.add_argument("--cmi-weighting", choices=WEIGHTINGS[:2], default="true",
                   help="how the CMI (logged as train_cmi, eval_cmi; train.py's term) weighs the classes: "
                        "true: I(X;Z|Y), by P(y); balanced: every class 1/C")
    g = parser.add_argument_group("run files and hardware")
    g.add_argument("--out", default=None, help="output folder (default: runs/TASK-MODE-...)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast (auto: on for CUDA)")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the model (auto: on for CUDA)")


def check_ranges(args: argparse.Namespace, parser: Parser) -> None:
    """Every numeric flag within its range, or parser.error (one line, exit code 2)."""
    positive = ["max_len", "epochs", "batch_size", "eval_batch_size", "lr", "max_train_samples",
                "max_eval_samples", "pad_multiple", "group_batches", "tau", "temperature"]
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name in ["lam", "gamma", "weight_decay", "clip"]:
        value = getattr(args, name, None)
        if value is not None and not value >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name, value in vars(args).items():  # inf passes every range check above: refuse it by name
        if isinstance(value, float) and not math.isfinite(value):
            parser.error(f"--{name.replace('_', '-')} must be finite, got {value}")
    for name in ["warmup_ratio", "alpha"]:
        value = getattr(args, name, None)
        if value is not None and not 0 <= value <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
    if args.max_len < 3 or args.max_len > 512:
        parser.error(f"--max-len must be in [3, 512], got {args.max_len}")
    if not 0 <= args.seed < 2**32:  # numpy's seed range
        parser.error(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.device != "auto":
        try:
            device = torch.device(args.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            parser.error(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available on this machine")


# -----------------------------------------------------------------------------
# pieces distill.py uses too


def setup(args: argparse.Namespace) -> tuple[torch.device, bool, bool]:
    """Seed everything; pick the device and whether to autocast and compile. Started by torchrun (WORLD_SIZE
    set), join the process group: NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), Gloo on CPU."""
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
    amp = args.amp == "on" or (args.amp == "auto" and cuda)
    compile_ = args.compile == "on" or (args.compile == "auto" and cuda)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, amp, compile_


class Batches:
    """The batches of one pass over an encoded split, collated lazily and moved to `device`."""

    def __init__(self, encoded, index_batches, device, pad_multiple):
        self.encoded, self.index_batches, self.device, self.pad_multiple = encoded, index_batches, device, pad_multiple

    def __len__(self) -> int:
        return len(self.index_batches)

    def __iter__(self):
        for index in self.index_batches:
            batch = collate(self.encoded, index, self.pad_multiple)
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def load_data(args, task, checkpoint_dir, vocab_size):
    """Tokenise the training split and every dev split once; returns (train, {split: encoded}, tokenizer).
    The tokenizer may know fewer tokens than the model's embedding table has rows (tables are often padded),
    never more: those ids would index past the table."""
    tokenizer = load_tokenizer(checkpoint_dir)
    if tokenizer.get_vocab_size() > vocab_size:
        raise CheckpointError(f"{checkpoint_dir}: the tokenizer has {tokenizer.get_vocab_size()} tokens, the model's "
                              f"embedding table {vocab_size} rows (config vocab_size); they must belong together")
    train = encode(tokenizer, load_split(task, "train", args.data_dir, args.max_train_samples), args.max_len)
    evals = {split: encode(tokenizer, load_split(task, split, args.data_dir, args.max_eval_samples), args.max_len)
             for split in task.eval_splits}
    for name, enc in {"train": train, **evals}.items():
        if len(enc) < world_size():  # each process needs examples of its own
            raise DataError(f"task {args.task}: the {name} split has {len(enc)} examples; each of the "
                            f"{world_size()} processes needs at least one")
    return train, evals, tokenizer


def check_fits(args, configs: dict, splits: list, device) -> None:
    """Every model (configs: its name for messages -> its config) can read every batch of `splits`: the widest
    batch (the longest example, padded to --pad-multiple) fits its position table, every token type its
    token-type table. Checked before the run folder changes, so a bad pairing cannot cost an earlier run."""
    pad = pad_multiple_of(args, device)
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


def make_evaluate(args, task, forward, model, evals, features, device, ctx, pad_multiple):
    """evaluate() -> the dev metrics of every dev split (MNLI mismatched with the _mm suffix) and the dev CMI
    (f_x of the dev set against the dev set's own class means)."""
    def evaluate() -> dict:
        metrics = {}
        for split, enc in evals.items():
            batches = Batches(enc, eval_batches(enc.lengths, args.eval_batch_size, rank(), world_size()), device,
                              pad_multiple)
            logits, stats = predict(forward, model, batches, features, task.num_labels, len(enc), ctx=ctx,
                                    desc=f"eval {split}")
            metrics.update(compute_metrics(task, logits.argmax(-1).cpu().numpy(), enc.labels, split))
            metrics["eval_cmi" + metric_suffix(split)] = stats.cmi(args.cmi_weighting)
        return metrics
    return evaluate


BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def forward_of(model, inputs):
    """forward(batch) -> model's output, fed the batch fields `inputs` in the order of its forward."""
    return lambda batch: model(*(batch[k] for k in inputs))


def pad_multiple_of(args, device) -> int | None:
    """--pad-multiple, or its default: 8 on CUDA (tensor-core friendly widths, fewer shapes), none on CPU."""
    return args.pad_multiple or (8 if device.type == "cuda" else None)


def train_eval_batches(args, train, device) -> Batches:
    """The training split in evaluation batches: for the train CMI, and for distill.py's teacher logits."""
    return Batches(train, eval_batches(train.lengths, args.eval_batch_size, rank(), world_size()), device,
                   pad_multiple_of(args, device))


def train_model(args, task, model, inputs, objective, train, evals, features, device, amp, compile_, record, run):
    """Optimiser, schedule, compile and the loop: what train.py and distill.py do once everything is built.
    `inputs`: the batch fields the model takes, in the order of its forward (DistilBERT: no token types)."""
    pad_multiple = pad_multiple_of(args, device)
    model.to(device)
    compiled = torch.compile(model, dynamic=True) if compile_ else model
    if world_size() > 1:  # gradients averaged over the processes during backward
        compiled = DDP(compiled, device_ids=[device.index] if device.type == "cuda" else None)
    forward = forward_of(compiled, inputs)
    ctx = autocast_context(device, amp)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    total_steps = args.epochs * num_train_batches(len(train), args.batch_size, world_size())
    warmup = int(args.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_schedule(step, total_steps, warmup))
    train_eval = train_eval_batches(args, train, device)

    def measure_train():
        return predict(forward, model, train_eval, features, task.num_labels, len(train), ctx=ctx, desc="train CMI")[1]

    return fit(
        forward=forward, model=model, objective=objective, optimizer=optimizer, scheduler=scheduler,
        train_batches=lambda epoch: Batches(
            train, train_batches(train.lengths, args.batch_size, args.seed, epoch, args.group_batches, rank(),
                                 world_size()), device, pad_multiple),
        measure_train=measure_train,
        evaluate=make_evaluate(args, task, forward, model, evals, features, device, ctx, pad_multiple),
        epochs=args.epochs, primary=task.primary_metric, run=run, record=record, ctx=ctx, clip=args.clip,
        weighting=args.cmi_weighting,
    )


def check_head(checkpoint_dir, task) -> None:
    """A checkpoint fine-tuned for classification must classify into the task's labels: reusing a 3-way
    head for a 2-way task would silently drop it, so that is an error, not a fresh head."""
    config = read_json(checkpoint_dir / "config.json") if (checkpoint_dir / "config.json").is_file() else {}
    if any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        n = config.get("num_labels", len(config.get("id2label") or {}) or 2)
        if n != task.num_labels:
            raise CheckpointError(f"{checkpoint_dir}: its classifier has {n} labels, task {task.name} has "
                                  f"{task.num_labels}; start from a checkpoint without a task head")


def name_labels(model, task) -> None:
    """Write the task's label names into the model's config, so the saved best/ model says what it predicts."""
    model.config.id2label = dict(enumerate(task.label_names))
    model.config.label2id = {name: i for i, name in enumerate(task.label_names)}


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a cluster scheduler's notice) during a run."""


def _interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def run_main(main) -> None:
    """Run `main()`, turning every failure into one line on stderr: the project's input errors and any file the
    system refuses (exit code 2), an interruption by SIGINT or SIGTERM with how to continue (128 + signal), and
    anything else (exit code 1; CMI_TRACEBACK=1 prints the traceback too). An out-of-memory kill (SIGKILL)
    cannot be caught: the run then resumes from its last checkpoint."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except (DataError, CheckpointError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        name = str(e) or "SIGINT"
        print(f"error: interrupted by {name}; the last complete epoch is kept: run the same command with "
              "--resume to continue", file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
    except Exception as e:
        if os.environ.get("CMI_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]} (an unexpected failure; "
              "CMI_TRACEBACK=1 prints the traceback)", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if dist.is_initialized():
            dist.destroy_process_group()


# -----------------------------------------------------------------------------
# train.py


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("model and objective")
    g.add_argument("--model", default="bert-base-uncased", help="hub name or a local Hugging Face checkpoint folder")
    g.add_argument("--mode", choices=MODES, default="ce", help="ce: plain; min: +lambda*CMI; max: -lambda*CMI")
    g.add_argument("--lam", type=float, default=0.1, help="lambda, weight of the CMI term (the paper: 0.05-1)")
    g.add_argument("--gamma", type=float, default=0.0, help="weight of the masked-LM term L1 of eq. (7)")
    g.add_argument("--centroids", choices=POLICIES, default=None,
                   help="centroid policy of eq. (14) (default: epoch for min, batch for max)")
    g.add_argument("--cmi-feature", choices=FEATURES, default="pooled",
                   help="h_s: pooled, the output tanh(W h_[CLS]) that BERT's classifier reads; cls, the raw "
                        "last-layer [CLS] row, the h_s of the paper's eq. (5) text. The paper is ambiguous: "
                        "neither is 'the paper' without that caveat")
    g.add_argument("--cmi-scale", choices=SCALES, default="true",
                   help="true: lambda * I(X;Z|Y); paper: lambda / C, the per-sample weight of eqs. (12)-(14)")
    g.add_argument("--tau", type=float, default=1.0, help="feature temperature: f_x = softmax(h_s / tau) "
                                                          "(1 = the paper; an extension)")
    add_training_args(parser)
    args = parser.parse_args(argv)
    check_ranges(args, parser)
    args.centroids = args.centroids or ("batch" if args.mode == "max" else "epoch")
    args.out = args.out or f"runs/{args.task}-{args.mode}-lam{args.lam}-seed{args.seed}"
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # setup: refuse an output folder holding another run before any expensive work
    with RunFiles(args.out, vars(args), resume=args.resume, overwrite=args.overwrite) as run:
        device, amp, compile_ = setup(args)
        task = get_task(args.task)

        # model
        checkpoint_dir = resolve(args.model)
        check_head(checkpoint_dir, task)
        model = BertForSequenceClassification.from_pretrained(checkpoint_dir, num_labels=task.num_labels)
        name_labels(model, task)

        # data
        train, evals, tokenizer = load_data(args, task, checkpoint_dir, model.config.vocab_size)
        check_fits(args, {str(checkpoint_dir): model.config}, [train, *evals.values()], device)

        # objective
        features = FeatureMap(args.cmi_feature, args.tau)
        mlm = None
        if args.gamma > 0:
            if model.mlm is None:
                raise CheckpointError(f"--gamma {args.gamma}: the checkpoint {args.model} has no masked-LM head "
                                      "(cls.predictions.*); use --gamma 0 or a checkpoint with one")
            mlm = MaskedLM(args.gamma, model.mlm_logits, tokenizer.token_to_id("[MASK]"), model.config.vocab_size,
                           tuple(tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]")))
        else:  # an MLM head the loss does not use would get no gradient (DDP refuses that) and is not the task's
            model.mlm = None
        dim = model.config.hidden_size
        objective = CMIObjective(args.mode, args.lam, task.num_labels,
                                 Centroids(args.centroids, task.num_labels, dim, device), features, args.cmi_scale,
                                 args.cmi_weighting, mlm)

        record = {"task": args.task, "mode": args.mode, "lam": args.lam, "seed": args.seed,
                  "train_examples": len(train), "eval_examples": len(next(iter(evals.values())))}
        results = train_model(args, task, model, BERT_INPUTS, objective, train, evals, features, device, amp, compile_, record, run)
        if rank() == 0:
            print(json.dumps({"best_epoch": results["best_epoch"], task.primary_metric: results[task.primary_metric]}))


if __name__ == "__main__":
    run_main(main)
