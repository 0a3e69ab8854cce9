"""The command line of train.py and distill.py: their options (sweep.py checks a grid against the same
parsers before it launches anything), each numeric flag with its range (`ranged`), and `run_main`, which turns every
failure of a run into one line on stderr."""
import argparse
import functools
import hashlib
import math
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from cmi.core import WEIGHTINGS
from cmi.objectives import FEATURES, MODES, POLICIES, SCALES
from common.errors import TrainingError
from common.files import first_line
from data.batching import GROUP_BATCHES
from data.tasks import TASKS, DataError, own_task_name
from harness.rundata import DataSource
from models.checkpoint import CheckpointError, is_model_file
from models.student import check_layers


@dataclass(frozen=True)
class TrainDefaults:
    """The defaults of the training options (add_training_args; `lam`: train.py's), written once: the flags take
    them, and bench.py's contenders train as a run of train.py with them."""

    max_len: int = 128
    group_batches: int = 1
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 2e-5
    warmup_ratio: float = 0.0
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    lam: float = 0.1


TRAIN_DEFAULTS = TrainDefaults()


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (not the whole usage) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The options train.py and distill.py share: task and data, optimisation (with the CMI measured every
    epoch), run files, hardware."""
    g = parser.add_argument_group("task and data")
    g.add_argument("--task", choices=list(TASKS), help="GLUE task (or your own data: --train-file)")
    g.add_argument("--data-dir", help="folder in the GLUE download layout (CoLA/train.tsv, ...); "
                                      "default: the datasets hub (nyu-mll/glue)")
    g.add_argument("--train-file", help="your own training data instead of --task: a .csv, .tsv or .jsonl file; "
                                        "its distinct labels are the label names")
    g.add_argument("--validation-file", help="your own dev data, the --train-file's fields and labels")
    add_file_args(g, "--train-file and --validation-file")
    ranged(g, "--max-len", "in [3, 512]", type=int, default=TRAIN_DEFAULTS.max_len,
           help="truncation length in tokens, [CLS]/[SEP] included")
    g.add_argument("--other-labels", action="store_true",
                   help="accept a checkpoint whose classifier was trained for other label names (same count); "
                        "names both have are always matched by name, the others in order")
    ranged(g, "--max-train-samples", "> 0", type=int, help="train on a fixed random subset of this size")
    ranged(g, "--max-eval-samples", "> 0", type=int, help="evaluate on a fixed random subset of this size")
    ranged(g, "--group-batches", "> 0", type=int, default=TRAIN_DEFAULTS.group_batches,
                   help=f"length grouping: sort each group of this many batches by length (1: plain shuffling; "
                        f"{GROUP_BATCHES} pads far less, but cost CoLA dev MCC in our runs: see README)")
    ranged(g, "--pad-multiple", "> 0", type=int, default=None,
                   help="pad batches to a multiple of this many tokens (default: 8 on CUDA, none on CPU)")
    g = parser.add_argument_group("optimisation")
    ranged(g, "--epochs", "> 0", type=int, default=5, help="training epochs (the paper: 5; distillation 10)")
    ranged(g, "--batch-size", "> 0", type=int, default=TRAIN_DEFAULTS.batch_size,
                   help="training examples per forward pass (per step: this times --grad-accum)")
    ranged(g, "--grad-accum", "> 0", type=int, default=1,
                   help="accumulate the gradients of this many batches per optimisation step: the updates of one "
                        "batch this many times larger, in the memory of one batch")
    ranged(g, "--eval-batch-size", "> 0", type=int, default=TRAIN_DEFAULTS.eval_batch_size, help="examples per evaluation batch")
    ranged(g, "--lr", "> 0", type=float, default=TRAIN_DEFAULTS.lr, help="peak learning rate of AdamW")
    ranged(g, "--warmup-ratio", "in [0, 1]", type=float, default=TRAIN_DEFAULTS.warmup_ratio,
           help="fraction of the steps spent warming up")
    ranged(g, "--weight-decay", ">= 0", type=float, default=TRAIN_DEFAULTS.weight_decay,
           help="AdamW weight decay (not on biases, LayerNorm)")
    ranged(g, "--clip", ">= 0", type=float, default=TRAIN_DEFAULTS.clip, help="gradient-norm clipping threshold (0: off)")
    ranged(g, "--seed", "in [0, 2**32)", type=int, default=TRAIN_DEFAULTS.seed,
           help="seed of initialisation, dropout and batch order")
    g.add_argument("--cmi-weighting", choices=WEIGHTINGS[:2], default="true",
                   help="how the CMI (logged as train_cmi, eval_cmi; train.py's term) weighs the classes: "
                        "true: I(X;Z|Y), by P(y); balanced: every class 1/C")
    g = parser.add_argument_group("run files and hardware")
    g.add_argument("--out", default=None, help="output folder (default: runs/TASK-MODE-...)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--keep-last", action="store_true",
                   help="keep last.pt when the run finishes (by default it is deleted: it holds the model and AdamW's "
                        "two moments, 3x the model on disk, and a finished run needs none of it)")
    ranged(g, "--log-every", "> 0", type=int, default=10,
                   help="steps between the lines of steps.jsonl (loss, CE, batch CMI, lr, gradient norm)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write the steps.jsonl and metrics.jsonl values as TensorBoard events into OUT/tensorboard "
                        "(needs the tensorboard package: pip install -e '.[tensorboard]')")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--amp", choices=["auto", "on", "off", "bf16", "fp16"], default="auto",
                   help="autocast: on (= bf16), or fp16 with loss scaling for GPUs without bf16 (V100, T4); "
                        "auto: bf16 on CUDA, off on CPU (float32: a run repeats bit for bit; bf16 is faster only on a "
                        "CPU with native bf16, and says so where it is not)")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the model (auto: on for CUDA; off on CPU, where compiling costs more than "
                        "it saves in a GLUE run)")
    g.add_argument("--fsdp", action="store_true",
                   help="under torchrun, shard the parameters, gradients and AdamW's moments over the processes "
                        "(FSDP2) instead of copying the model to each (DDP): for models that do not fit one device")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each layer's activations in the backward instead of keeping them: less memory, "
                        "about one more forward per step, the same results (models.bert.Layers)")
    add_padded_arg(g)


def add_padded_arg(group) -> None:
    """--padded, the one switch of the unpadded path (train.py, distill.py, predict.py)."""
    group.add_argument("--padded", action="store_true",
                       help="compute every padded slot, as transformers does (default: the real tokens only, "
                            "models/unpadded.py: the same results, faster)")


def text_fields(text: str) -> tuple[str, ...]:
    """"premise,hypothesis" -> ("premise", "hypothesis"): one or two field names."""
    fields = tuple(text.split(","))
    if len(fields) not in (1, 2) or not all(fields) or len(set(fields)) < len(fields):
        raise argparse.ArgumentTypeError(f"expected one or two different comma-separated field names, got {text!r}")
    return fields


def check_field_args(args: argparse.Namespace, parser: Parser, own_files: bool) -> None:
    """--text-fields and --label-field read the user's own files: for a GLUE task, whose fields are fixed, they would
    be ignored (and the label field still recorded in the model); a text field that is the label field would have
    the model read its own answers. Either is parser.error."""
    if not own_files:
        given = [flag for flag, on in (("--text-fields", args.text_fields is not None),
                                       ("--label-field", args.label_field not in (None, "label"))) if on]
        if given:
            parser.error(f"{given[0]} is for your own files; a GLUE task's fields are fixed")
    if args.text_fields and args.label_field in args.text_fields:
        parser.error(f"--text-fields {','.join(args.text_fields)}: names the label field {args.label_field!r}; the "
                     "model would read its own answers")


def add_file_args(group, files: str, label_default: str | None = "label") -> None:
    """--text-fields and --label-field: how the user's own files (`files`, for the help) are read."""
    group.add_argument("--text-fields", type=text_fields, metavar="A[,B]",
                       help=f"the text field(s) of {files}: one, or two for sentence pairs (default: the fields "
                            "other than the label and id/idx/index, if one or two remain)")
    default = label_default or "the one the model was trained with, else label"
    group.add_argument("--label-field", default=label_default, help=f"the label field of {files} (default: {default})")


def check_data_args(args: argparse.Namespace, parser: Parser) -> None:
    """A GLUE task (--task, --data-dir) or the user's own files (--train-file and --validation-file), not both;
    a run on files is named after the training file (args.task, the run folder). Sets args.data, the data's
    identity (data_identity), which args.json records."""
    if (args.task is None) == (args.train_file is None):
        parser.error("give --task (a GLUE task) or --train-file and --validation-file (your own data), one of them")
    if args.train_file is not None:
        if args.validation_file is None:
            parser.error("--train-file needs --validation-file: the dev data that picks the best epoch")
        if args.data_dir is not None:
            parser.error("--data-dir is for GLUE tasks; with --train-file the files say where the data is")
        args.task = own_task_name(args.train_file)
    check_field_args(args, parser, own_files=args.train_file is not None)
    args.data = data_identity(args)


def data_identity(args: argparse.Namespace) -> dict:
    """What data a run reads, beyond how its flags spell it: the GLUE task and the resolved --data-dir (None: the
    hub), or each own file's resolved path and the SHA-256 of its contents. Part of a run's arguments (args.json):
    a run is never taken for one on other data (--resume, sweep.py), though a folder name cannot tell them apart
    (a GLUE CoLA run and one on a cola.csv are both cola/...)."""
    if args.train_file is None:
        return {"task": args.task, "data_dir": None if args.data_dir is None else str(Path(args.data_dir).resolve())}
    return {name: {"path": str(Path(path).resolve()), "sha256": file_hash(Path(path).resolve())}
            for name, path in (("train_file", args.train_file), ("validation_file", args.validation_file))}


def checkpoint_identity(path: str) -> dict[str, str] | None:
    """What a local checkpoint folder holds, beyond its path: the SHA-256 of each of its model files (config, weights,
    tokenizer), as data_identity's of a data file; None for a hub name (args.json records the name). A run's last.pt
    records it (harness.runfiles.RunFiles), so that --resume refuses a base model replaced by another checkpoint, or a
    teacher retrained in place, since."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    return {p.name: file_hash(p) for p in sorted(folder.iterdir()) if is_model_file(p.name)}


def file_hash(path: Path) -> str:
    """The SHA-256 of a file's contents, or DataError naming it. Remembered while the file's size and modification
    time stay the same: sweep.py checks each run of its grid."""
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"{path}: {'file not found' if isinstance(e, FileNotFoundError) else e.strerror}") from None
    return _hash(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _hash(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    return digest.hexdigest()


# what a ranged flag's value must be -> the test (NaN fails every one)
RANGE_TESTS = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in [3, 512]": lambda v: 3 <= v <= 512,
    "in [0, 2**32)": lambda v: 0 <= v < 2**32,  # numpy's seed range
}


def ranged(group, flag: str, expected: str, **kwargs) -> None:
    """group.add_argument(flag, **kwargs) for a numeric flag whose value must be `expected` (a key of RANGE_TESTS):
    the range is declared with the flag, and check_ranges checks it once the options are parsed."""
    group.add_argument(flag, **kwargs).expected = expected


def check_ranges(args: argparse.Namespace, parser: Parser) -> None:
    """Every ranged flag (ranged) within its range, every float flag finite (inf passes `> 0`), and --device
    usable, or parser.error (one line, exit code 2)."""
    for action in parser._actions:  # argparse keeps no other list of the options it parsed
        value = getattr(args, action.dest, None)
        if hasattr(action, "expected") and value is not None and not RANGE_TESTS[action.expected](value):
            parser.error(f"--{action.dest.replace('_', '-')} must be {action.expected}, got {value}")
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            parser.error(f"--{name.replace('_', '-')} must be finite, got {value}")
    if args.device != "auto":
        try:
            device = torch.device(args.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            parser.error(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available on this machine")


def data_source(args: argparse.Namespace) -> DataSource:
    """Where the run's examples come from, as the data flags say (checked by check_data_args)."""
    return DataSource(task=args.task, data_dir=args.data_dir, train_file=args.train_file,
                      validation_file=args.validation_file, text_fields=args.text_fields, label_field=args.label_field)


def runtime_options(args: argparse.Namespace) -> dict:
    """harness.runtime.setup's arguments, as the hardware flags say."""
    return {"seed": args.seed, "device": args.device, "amp": args.amp, "compile": args.compile,
            "pad_multiple": args.pad_multiple, "padded": args.padded}


# -----------------------------------------------------------------------------
# train.py and distill.py


def parse_train_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """train.py's options, checked, with their derived defaults (centroids by mode, the run folder)."""
    parser = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("model and objective")
    g.add_argument("--model", default="bert-base-uncased", help="hub name or a local Hugging Face checkpoint folder")
    g.add_argument("--mode", choices=MODES, default="ce", help="ce: plain; min: +lambda*CMI; max: -lambda*CMI")
    ranged(g, "--lam", ">= 0", type=float, default=TRAIN_DEFAULTS.lam,
           help="lambda, weight of the CMI term (the paper: 0.05-1)")
    ranged(g, "--gamma", ">= 0", type=float, default=0.0, help="weight of the masked-LM term L1 of eq. (7)")
    g.add_argument("--centroids", choices=POLICIES, default=None,
                   help="centroid policy of eq. (14) (default: epoch for min, batch for max)")
    g.add_argument("--cmi-feature", choices=FEATURES, default="pooled",
                   help="h_s: pooled, the output tanh(W h_[CLS]) that BERT's classifier reads; cls, the raw "
                        "last-layer [CLS] row, the h_s of the paper's eq. (5) text. The paper is ambiguous: "
                        "neither is 'the paper' without that caveat")
    g.add_argument("--cmi-scale", choices=SCALES, default="true",
                   help="true: lambda * I(X;Z|Y); paper: lambda / C, the per-sample weight of eqs. (12)-(14)")
    ranged(g, "--tau", "> 0", type=float, default=1.0, help="feature temperature: f_x = softmax(h_s / tau) "
                                                          "(1 = the paper; an extension)")
    g = parser.add_argument_group("LoRA (models/lora.py)")
    ranged(g, "--lora-r", ">= 0", type=int, default=0,
           help="rank of LoRA adapters added to the --lora-targets layers: the base model frozen, the adapters and "
                "the task head trained; best/ holds the merged model, adapter/ the adapters in peft's layout "
                "(0: full fine-tuning)")
    ranged(g, "--lora-alpha", "> 0", type=float, default=None,
           help="the update is scaled by alpha / r (default 8, as peft's)")
    ranged(g, "--lora-dropout", "in [0, 1]", type=float, default=0.0, help="dropout on the adapters' input")
    g.add_argument("--lora-targets", type=lambda text: text.split(","), default=None, metavar="NAMES",
                   help="comma-separated linear modules, by transformers' names or their last parts, or all-linear "
                        "(default: the attention's query and value: query,value for BERT, q_proj,v_proj for the "
                        "Llama family, c_attn for GPT-2)")
    g.add_argument("--lora-rslora", action="store_true", help="scale by alpha / sqrt(r) (rsLoRA)")
    add_training_args(parser)
    args = parser.parse_args(argv)
    check_ranges(args, parser)
    check_data_args(args, parser)
    if args.lora_r == 0 and any(getattr(args, f) != parser.get_default(f) for f in
                                ("lora_alpha", "lora_dropout", "lora_targets", "lora_rslora")):
        parser.error("--lora-alpha, --lora-dropout, --lora-targets and --lora-rslora need --lora-r > 0")
    if args.lora_r and args.lora_alpha is None:
        args.lora_alpha = 8.0
    args.centroids = args.centroids or ("batch" if args.mode == "max" else "epoch")
    args.out = args.out or f"runs/{args.task}-{args.mode}-lam{args.lam}-seed{args.seed}"
    return args


def layer_list(text: str) -> list[int]:
    """"0,2,4" -> [0, 2, 4], checked by models.student.check_layers as far as it can be before the teacher is
    read (its number of layers bounds the indices)."""
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices such as 0,2,4, got {text!r}") from None
    try:
        check_layers(layers)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return layers  # a list, not a tuple: args.json must compare equal on --resume


def parse_distill_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """distill.py's options, checked, with their derived defaults (the student's layers, the run folder)."""
    parser = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("teacher and student")
    teacher = g.add_mutually_exclusive_group(required=True)
    teacher.add_argument("--teacher", metavar="DIR", help="the teacher: a fine-tuned BERT or decoder classifier (the "
                                                          "best/ folder of a train.py run)")
    teacher.add_argument("--teacher-sweep", metavar="DIR", help="a folder of train.py runs, one per sub-folder: the teacher is the best/ "
                                                 "of the task's max-CMI run with the highest dev metric / dev CMI "
                                                 "(the paper's rule; in practice the lowest dev CMI, usually the "
                                                 "smallest lambda)")
    student = g.add_mutually_exclusive_group()
    student.add_argument("--student-layers", type=layer_list, default=None, metavar="LIST",
                         help="teacher layers copied into the student, in order (default: every other layer, the "
                              "bottom one included: 0,2,4,6,8,10 of a 12-layer teacher)")
    student.add_argument("--student", metavar="DIR", help="a pretrained DistilBERT (folder or hub name; for a decoder "
                                           "teacher, a decoder) instead of the layer copy; its vocabulary must be the "
                                           "teacher's")
    g.add_argument("--fold-token-type", action=argparse.BooleanOptionalAction, default=None,
                   help="add the teacher's token-type-0 embedding to the student's position embeddings: exact for "
                        "single-sentence inputs, approximate for pairs (default: on; layer copy only)")
    g = parser.add_argument_group("distillation loss, eq. (8)")
    ranged(g, "--alpha", "in [0, 1]", type=float, default=0.5,
           help="weight of the soft (KL) term; 1 - alpha weighs the CE (the paper: 0.05-0.9)")
    ranged(g, "--temperature", "> 0", type=float, default=2.0,
           help="T of the softened distributions (the paper: 1-5); the KL is multiplied by T^2 as in Hinton et al., "
                "which eq. (8) of the paper does not write")
    g.add_argument("--live-teacher", action="store_true",
                   help="run the teacher on every batch instead of caching its logits once (same result, slower)")
    add_training_args(parser)
    parser.set_defaults(epochs=10)  # the paper trains students for 10 epochs
    args = parser.parse_args(argv)
    check_ranges(args, parser)
    check_data_args(args, parser)
    if args.student is not None:
        if args.fold_token_type is not None:
            parser.error("--fold-token-type / --no-fold-token-type apply to the layer copy, not to --student")
    else:
        args.fold_token_type = args.fold_token_type is not False
    args.out = args.out or f"runs/{args.task}-distill-alpha{args.alpha}-T{args.temperature}-seed{args.seed}"
    return args


# -----------------------------------------------------------------------------
# running a script


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a cluster scheduler's notice) during a run; `advice`, what is kept and how to go
    on, where the run knows better than its script (harness.runfiles: an --overwrite stopped before it replaced the
    old run)."""

    def __init__(self, name: str, advice: str | None = None):
        super().__init__(name)
        self.advice = advice


def _interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


RESUME = "the last complete epoch is kept: run the same command with --resume to continue"
# Set by sweep.py for its runs. A terminal's Ctrl-C (and a scheduler's SIGTERM) reaches the whole process group, the
# sweep and its run alike: the sweep says it, once, with its own advice (the same sweep command); the run's own,
# --resume, is one the sweep refuses.
SWEEP_RUN = "CMI_SWEEP_RUN"


def run_main(main, interrupted: str = RESUME) -> None:
    """Run `main()`, turning every failure into one line on stderr: the project's input errors and any file the
    system refuses (exit code 2), an interruption by SIGINT or SIGTERM with what is kept and how to continue,
    `interrupted` (exit code 128 + signal; train.py and distill.py: RESUME, each other script its own, since
    advice that the script refuses is worse than none; an Interrupted's own advice first; no line in a sweep's run,
    SWEEP_RUN), and anything else (exit code 1; CMI_TRACEBACK=1 prints the
    traceback too). An out-of-memory kill (SIGKILL) cannot be caught: the run then resumes from its last checkpoint."""
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
        if not os.environ.get(SWEEP_RUN):
            print(f"error: interrupted by {name}; {getattr(e, 'advice', None) or interrupted}", file=sys.stderr)
        sys.exit(128 + signal.Signals[name].value)
    except Exception as e:
        if os.environ.get("CMI_TRACEBACK"):
            traceback.print_exc()
        print(f"error: {type(e).__name__}: {first_line(e)} (an unexpected failure; "
              "CMI_TRACEBACK=1 prints the traceback)", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if dist.is_initialized():
            dist.destroy_process_group()
