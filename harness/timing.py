"""How bench.py and scripts/bench_diagnostics.py time things: contenders alternated in one process (A B, B A, ...)
so that the load of a shared machine falls on each alike, paired ratios with their quartiles, FLOP counts and the
device's matrix-product rate, peak memory, the shapes torch.compile made; and what both scripts share around
that: the presets, a model ready to train as train.py trains it, the options, and the results file."""
import argparse
import copy
import datetime
import functools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import MemoryProfileTimeline  # no public API gives the CPU timeline

from cmi.loop import Step, autocast_context, linear_scheduler, make_optimizer, predict, train_epoch, train_step
from cmi.objectives import CMIObjective, EpochCentroids, FeatureMap
from common.files import write_file
from data.batching import eval_batches, train_batches
from data.loading import load_split
from data.tasks import DataError, get_task
from data.tokenization import Encoded, encode, load_tokenizer
from harness.cli import Parser, check_ranges, parse_train_args, ranged
from harness.training import Batches, Runtime, forward_of, model_inputs
from models.bert import BertConfig, BertForSequenceClassification, SelfAttention
from models.checkpoint import read_config, resolve
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification

try:  # optional: the sections compare against it when it is installed
    import transformers
except ImportError:
    transformers = None

MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}  # n of the n x n x n product that gives the device's FLOP rate


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Call every contender `warmup` times untimed, then `repeats` timed rounds of one call each, the order
    reversed every other round (A B, B A, ...) so that a drift in the machine's load falls on all alike.
    Returns each contender's seconds per call."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    seconds = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            seconds[name].append(timed(contenders[name], device)[1])
    return seconds


def timed(call, device: torch.device):
    """call()'s result and the wall seconds it took, the device's queue drained before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    result = call()
    synchronize(device)
    return result, time.perf_counter() - t0


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of one contender's time over the other's in the same round, and its quartiles (the
    spread the machine's noise leaves): calls adjacent in time share the machine's load, so this ratio is
    steadier than a ratio of medians on a shared machine."""
    ratios = [n / d for n, d in zip(numerator, denominator)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return median, [q1, q3]


def compiled_graphs() -> int:
    """Graphs torch.compile has built so far in this process (recompiles included)."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def peak_memory_mib(call, device: torch.device) -> float:
    """The memory one call allocates at its peak above what was allocated before it (activations, gradients,
    temporaries), in MiB. On CUDA from the allocator's counters (under CUDA graphs the graphs' memory pool, held
    since their recording, is not counted); on CPU, where no allocator keeps the figure, from the timeline of
    the allocations the profiler records during the call."""
    if device.type != "cuda":
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            call()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(device)
        return max(map(sum, sizes), default=0) / 2**20
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def synthetic_batch(vocab_size: int, num_labels: int, batch_size: int, seq_len: int, seed: int, device) -> dict:
    """A batch in collate's format: real lengths drawn from [T/2, T] (one of them T), the rest padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(1, seq_len // 2), seq_len + 1, (batch_size,), generator=g)
    lengths[0] = seq_len
    mask = (torch.arange(seq_len) < lengths[:, None]).long()
    batch = {
        "input_ids": torch.randint(1000, vocab_size, (batch_size, seq_len), generator=g) * mask,  # 0 = [PAD]
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, num_labels, (batch_size,), generator=g),
        "index": torch.arange(batch_size),
    }
    return {k: v.to(device) for k, v in batch.items()}


def step_flops(model, attention_mask: torch.Tensor) -> tuple[float, float]:
    """FLOPs of one training step (forward and backward), 6 N tokens + 12 L T d tokens, with N the parameters
    outside the embedding tables, L layers, d the hidden size and T the attended length: counted over the real
    tokens (each sequence its own T) and over all padded slots (T the padded width)."""
    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    L, d = len(attention), attention[0].query.in_features
    N = sum(p.numel() for p in model.parameters()) - sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    lengths = attention_mask.sum(1).double()
    B, T = attention_mask.shape
    real = 6 * N * lengths.sum() + 12 * L * d * (lengths**2).sum()
    return float(real), float(6 * N * B * T + 12 * L * d * B * T**2)


def matmul(device: torch.device, dtype: torch.dtype):
    """A call doing one n x n x n matrix product, and its FLOPs: the device's attainable rate at this dtype."""
    n = MATMUL_SIZE[device.type]
    a, b, c = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(3))
    # into a kept output: a fresh n x n result after a big model's step can page-fault its way in (on CPU it
    # halved the measured rate), which is allocation, not the matrix-product rate
    return (lambda: torch.matmul(a, b, out=c)), 2.0 * n**3


def rates(seconds: list[float], examples: int, tokens: int, slots: int) -> dict:
    s = statistics.median(seconds)
    return {"seconds": s, "samples_per_s": examples / s, "tokens_per_s": tokens / s, "slots_per_s": slots / s,
            "repeats": len(seconds), "all_seconds": seconds}


def epoch_order(args, encoded: Encoded, count: int | None = None) -> list[np.ndarray]:
    """The first `count` (None: all) batches of example indices of train.py's first epoch, drawn as it draws them
    (--batch-size, --seed, its default --group-batches)."""
    return train_batches(encoded.lengths, args.batch_size, args.seed, epoch=1,
                         group_batches=train_defaults().group_batches)[:count]


def epoch_figures(turns: list[float], batches: list[np.ndarray], num_train: int) -> dict:
    """Totals of the timed turns, and the epoch time at their rate."""
    examples, seconds = sum(len(b) for b in batches), sum(turns)
    return {"seconds": seconds, "batches": len(batches), "examples": examples, "samples_per_s": examples / seconds,
            "epoch_seconds": num_train / examples * seconds, "all_seconds": turns}


# -----------------------------------------------------------------------------
# presets and contenders

PRESETS = ("tiny", "minilm", "distilbert-base", "bert-base")
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)


@functools.cache
def train_defaults() -> argparse.Namespace:
    """train.py's defaults: lr, weight decay, clipping, lam, ... (parsed when first needed, not at import)."""
    return parse_train_args(["--task", "cola"])


def build_model(preset: str, checkpoint: str, num_labels: int):
    """Our classifier of a preset: random weights (seeded), or the minilm checkpoint's real ones."""
    if preset == "minilm":
        return BertForSequenceClassification.from_pretrained(checkpoint, num_labels=num_labels)
    if preset == "distilbert-base":
        return DistilBertForSequenceClassification(DistilBertConfig(num_labels=num_labels))
    return BertForSequenceClassification(BertConfig(num_labels=num_labels, **(TINY if preset == "tiny" else {})))


def transformers_twin(model):
    """transformers' class of the same name with the same config and weights (saved and loaded back, SDPA
    attention, same dtype), in training mode; None when transformers is not installed."""
    if transformers is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        twin = getattr(transformers, type(model).__name__).from_pretrained(
            folder, attn_implementation="sdpa", dtype=next(model.parameters()).dtype)
    return twin.to(next(model.parameters()).device).train()  # from_pretrained returns it in eval mode


def cross_entropy(forward, batch):
    """The plain CE objective, which both libraries' models can be trained with."""
    return (F.cross_entropy(forward(batch).logits.float(), batch["labels"]),), {}


def batch_forward(model, mode: str | None = None, dynamic: bool | None = None, unpad: bool = False):
    """forward(batch) of `model`, compiled with torch.compile `mode` (None: eager), unpadded or not (ours only)."""
    compiled = model if mode is None else torch.compile(model, mode=mode, dynamic=dynamic)
    forward = forward_of(compiled, model_inputs(model), unpad)
    if mode not in ("reduce-overhead", "max-autotune"):
        return forward

    def cudagraph_forward(batch):  # CUDA graphs keep their outputs in place: each call is marked as a new step
        torch.compiler.cudagraph_mark_step_begin()
        return forward(batch)
    return cudagraph_forward


def sdpa_kernels(model, batch, ctx) -> str:
    """The kernel(s) F.scaled_dot_product_attention dispatched to in one eager forward of `model` in its current
    (training) mode: attention_math, flash_attention, efficient_attention, cudnn_attention, ... (profiler op names)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof, ctx:
        batch_forward(model)(batch)
    prefix = "aten::_scaled_dot_product_"
    return ", ".join(sorted({e.name.removeprefix(prefix) for e in prof.events() if e.name.startswith(prefix)})) or "none"


class Contender:
    """A model ready to train as train.py trains it: maybe compiled (`mode`, None for eager), train.py's optimiser
    and schedule from the same builders, clipping, the autocast context. `steps`: the steps it is timed for, the
    schedule's length (the learning rate's values do not change a step's time)."""

    def __init__(self, model, runtime: Runtime, steps: int, mode: str | None = None, dynamic: bool | None = None,
                 unpad: bool = False):
        d = train_defaults()
        self.model, self.ctx, self.forward = model, runtime.ctx, batch_forward(model, mode, dynamic, unpad)
        self.optimizer = make_optimizer(model, d.lr, d.weight_decay)
        self.scheduler = linear_scheduler(self.optimizer, steps, int(d.warmup_ratio * steps))
        self.steps = {}  # objective -> its Step, kept over calls as over a run's epoch (cmi.loop.TermBackward)

    def parts(self, objective) -> Step:
        if objective not in self.steps:
            self.steps[objective] = Step(forward=self.forward, model=self.model, objective=objective,
                                         optimizer=self.optimizer, scheduler=self.scheduler, ctx=self.ctx,
                                         clip=train_defaults().clip)
        return self.steps[objective]

    def step(self, batch, objective=cross_entropy) -> None:
        train_step(self.parts(objective), batch)

    def epoch(self, batches, objective=cross_entropy) -> None:
        train_epoch(self.parts(objective), batches, desc="bench")


def race(runs: dict, encoded: Encoded, batches: list[np.ndarray], runtime: Runtime, chunk: int) -> tuple[dict, dict]:
    """runs: name -> (Contender, objective), each trained on the same index `batches` of `encoded`, taken in turns
    of `chunk` alternating as in `alternate`, after one untimed batch (torch.compile compiles there). Returns each
    run's seconds per turn, and the peak memory of one step on the widest batch."""
    def loader(index_batches):
        return Batches(encoded, index_batches, runtime.device, runtime.pad_multiple)

    widest = next(iter(loader([max(batches, key=lambda b: encoded.lengths[b].max())])))
    peaks = {}
    for name, (c, objective) in runs.items():
        c.epoch(loader(batches[:1]), objective)
        peaks[name] = peak_memory_mib(lambda: c.step(widest, objective), runtime.device)
    turns = [batches[i:i + chunk] for i in range(0, len(batches), chunk)]
    calls = {name: (lambda c=c, o=o, t=iter(turns): c.epoch(loader(next(t)), o)) for name, (c, o) in runs.items()}
    return alternate(calls, len(turns), 0, runtime.device), peaks


def examples_pass(forward, model, encoded: Encoded, batches: list[np.ndarray], runtime: Runtime, desc: str):
    """An eval-mode pass of `model` over the examples of the index `batches`, longest first as train.py's passes
    run: predict's (logits, CMI stats)."""
    index = np.concatenate(batches)
    passes = [index[b] for b in eval_batches(encoded.lengths[index], train_defaults().eval_batch_size)]
    return predict(forward, model, Batches(encoded, passes, runtime.device, runtime.pad_multiple), FeatureMap(),
                   model.config.num_labels, len(encoded), ctx=runtime.ctx, desc=desc)


def min_objective(c: Contender, train: Encoded, batches: list[np.ndarray], runtime: Runtime,
                  lam: float) -> CMIObjective:
    """train.py's min-CMI objective at `lam`, its epoch centroids (eq. 14) from a pass over the examples of `batches`
    under the contender's current weights."""
    C, d = c.model.config.num_labels, c.model.classifier.in_features
    centroids = EpochCentroids(C, d, runtime.device)
    centroids.refresh(examples_pass(c.forward, c.model, train, batches, runtime, "centroids")[1])
    return CMIObjective(mode="min", lam=lam, num_classes=C, centroids=centroids, features=FeatureMap())


class Preset:
    """What a section measures on one preset: our model (seeded), transformers' twin and the synthetic batch (both
    built when a section first asks), the options, the runtime, the compile variants and the script's real data."""

    def __init__(self, name: str, args, runtime: Runtime, variants: list, data):
        self.name, self.args, self.runtime, self.variants, self.data = name, args, runtime, variants, data
        torch.manual_seed(args.seed)
        self.ours = build_model(name, args.checkpoint, num_labels=2).to(runtime.device).train()

    @functools.cached_property
    def theirs(self):
        return transformers_twin(self.ours)

    def contenders(self) -> dict:
        """name -> (model, unpadded): ours unpadded (train.py's default), a copy of ours padded, transformers'."""
        models = {"ours": (self.ours, True), "padded": (copy.deepcopy(self.ours), False)}
        return models | ({"transformers": (self.theirs, False)} if self.theirs is not None else {})

    @property
    def train_mode(self) -> str | None:
        """torch.compile's mode for training on real examples, as train.py compiles (dynamic shapes); None: eager."""
        return "default" if self.runtime.compile else None

    def precisions(self) -> dict[str, Runtime]:
        """name suffix -> runtime: the run's own, or with --amp both float32 ("") and bf16 autocast ("_bf16")."""
        if self.args.amp != "both":
            return {"": self.runtime}
        bf16 = torch.bfloat16
        return {"": replace(self.runtime, amp=False, amp_dtype=None, ctx=autocast_context(self.runtime.device, None)),
                "_bf16": replace(self.runtime, amp=True, amp_dtype=bf16, ctx=autocast_context(self.runtime.device, bf16))}

    @functools.cached_property
    def batch(self) -> dict:
        """--batch-size sequences padded to --seq-len."""
        return synthetic_batch(self.ours.config.vocab_size, 2, self.args.batch_size, self.args.seq_len, self.args.seed,
                               self.runtime.device)


@dataclass
class Section:
    """One section of a script: its rows measured on a preset, and their Markdown (a caption and a table)."""

    measure: Callable[[Preset], list[dict]]
    table: Callable[[list[dict]], str]


# -----------------------------------------------------------------------------
# options, inputs, the results file

INTERRUPTED = "nothing was written: run the same command again"  # the results are written after all the measuring
SHARED = Path(__file__).resolve().parents[2] / "shared"


def bench_parser(description: str, sections, out: str) -> Parser:
    """The options of bench.py and scripts/bench_diagnostics.py; each adds its own."""
    parser = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("what to measure")
    g.add_argument("--sections", default=",".join(sections), help=f"comma-separated, from {', '.join(sections)}")
    g.add_argument("--presets", default=",".join(PRESETS),
                   help=f"comma-separated, from {', '.join(PRESETS)} (minilm: --checkpoint's real weights; tiny: 2 "
                        "layers, d = 128; the others: random weights)")
    g.add_argument("--out", default=out, help="JSON file the results are written to")
    g = parser.add_argument_group("sizes")
    ranged(g, "--batch-size", "> 0", type=int, default=train_defaults().batch_size, help="examples per step")
    ranged(g, "--seq-len", "> 0", type=int, default=train_defaults().max_len,
           help="padded length of the synthetic batch (its real lengths drawn from [T/2, T])")
    ranged(g, "--max-len", "> 0", type=int, default=train_defaults().max_len, help="truncation length of real examples")
    ranged(g, "--warmup", ">= 0", type=int, default=2, help="untimed calls of each contender first (compiles here)")
    ranged(g, "--repeats", "> 0", type=int, default=5, help="timed calls of each contender (medians are reported)")
    ranged(g, "--pad-multiple", "> 0", type=int, default=None,
           help="pad batches of real examples to a multiple of this (default, as train.py: 8 on CUDA)")
    g = parser.add_argument_group("data and hardware")
    g.add_argument("--glue-dir", default=str(SHARED / "glue"), help="folder in the GLUE download layout")
    g.add_argument("--checkpoint", default=str(SHARED / "models" / "all-MiniLM-L6-v2"),
                   help="the minilm preset's checkpoint, whose tokenizer also encodes the real examples")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--amp", choices=["auto", "on", "off", "both"], default="auto",
                   help="bf16 autocast (auto: on for CUDA); both: the epoch section times every contender in float32 "
                        "and in bf16 autocast, side by side, the other sections run in float32")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="also measure torch.compile (auto: on for CUDA)")
    g.add_argument("--compile-modes", default=None,
                   help="torch.compile modes measured on the synthetic batch (default: default, plus reduce-overhead "
                        "(CUDA graphs) on CUDA); training on real examples compiles as train.py does")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, the synthetic batch and the batch order")
    parser.set_defaults(padded=False)  # what harness.training.setup reads: each section says which path it times
    return parser


def check_bench_args(args, parser: Parser, choices: dict[str, tuple]) -> None:
    """The options bench_parser adds and the script's own: the comma-separated ones split into lists of their
    `choices` (--presets always), the ranged ones in range; or parser.error (one line, exit code 2)."""
    for name, known in ({"presets": PRESETS} | choices).items():
        given = getattr(args, name).split(",")
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"--{name.replace('_', '-')}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
        setattr(args, name, given)
    check_ranges(args, parser)  # and --device: CUDA there?
    # the results are written after all the measuring: a place they cannot go must be refused now
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out {out}: is a folder; expected the JSON file to write")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        parser.error(f"--out {out}: cannot write into {out.parent} (no such folder, or not writable)")


def check_presets(args, real: bool, synthetic: bool) -> None:
    """What the presets need, before anything is measured: the --checkpoint (minilm's weights, and the tokenizer
    of the `real` examples) and, for a `synthetic` batch, position tables as long as --seq-len."""
    positions = {"tiny": BertConfig().max_position_embeddings, "bert-base": BertConfig().max_position_embeddings,
                 "distilbert-base": DistilBertConfig().max_position_embeddings}
    if "minilm" in args.presets or real:
        folder = resolve(args.checkpoint)
        load_tokenizer(folder)
        if "minilm" in args.presets:
            positions["minilm"] = read_config(folder, BertConfig).max_position_embeddings
    if synthetic:
        for preset in args.presets:
            if args.seq_len > positions[preset]:
                raise DataError(f"--seq-len {args.seq_len} > the {preset} preset's {positions[preset]} positions")


def train_split(args, task: str, max_samples: int | None = None) -> Encoded:
    """A task's training examples, encoded with the --checkpoint's tokenizer at --max-len."""
    examples = load_split(get_task(task), "train", args.glue_dir, max_samples)
    return encode(load_tokenizer(args.checkpoint), examples, args.max_len)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def save(results: dict, out: Path) -> None:
    """Write the results; when that fails, print them as JSON first, so that no measurement is lost."""
    text = json.dumps(results, indent=2) + "\n"
    try:
        write_file(out, lambda f: f.write(text.encode()))
    except OSError as e:
        print(text)
        raise DataError(f"--out {out}: writing failed ({e.strerror or e}); the results are printed above as JSON") from None


def report(results: dict, sections: dict[str, Section]) -> str:
    """The results as Markdown: the setting, then each measured section's table."""
    meta = results["meta"]
    head = (f"{meta['date']}, {meta['device']}, {meta['threads']} threads, {meta['precision']}, torch "
            f"{meta['torch']}, transformers {meta['transformers']}\n`{meta['command']}`")
    return "\n\n".join([head] + [section.table(results[name]) for name, section in sections.items() if results[name]])


def measure(args, runtime: Runtime, sections: dict[str, Section], data, script: str) -> dict:
    """Every section of --sections on every preset, in that order; the results written to --out, then printed as
    Markdown. `data`: the script's real examples, loaded before anything is measured."""
    modes = (args.compile_modes or ("default,reduce-overhead" if runtime.device.type == "cuda" else "default")).split(",")
    variants = [None] + (modes if runtime.compile else [])  # None: eager
    logging.getLogger("models.checkpoint").setLevel(logging.ERROR)  # the fresh classifier of minilm, expected
    if transformers is not None:
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    results = {"meta": {
        "date": datetime.date.today().isoformat(), "command": " ".join([f"python {script}", *sys.argv[1:]]),
        "device": device_name(runtime.device), "threads": torch.get_num_threads(),
        "precision": "float32 and bf16 autocast" if args.amp == "both" else "bf16 autocast" if runtime.amp else "float32",
        "torch": torch.__version__,
        "transformers": transformers.__version__ if transformers is not None else None,
        "compile_modes": [v or "eager" for v in variants], "args": vars(args)}}
    results |= {name: [] for name in sections}
    for name in args.presets:
        print(f"{name}:", flush=True)
        preset = Preset(name, args, runtime, variants, data)
        for section in sections:
            if section in args.sections:
                results[section] += sections[section].measure(preset)
    save(results, Path(args.out))
    print("\n" + report(results, sections) + f"\n\nwritten to {args.out}")
    return results
