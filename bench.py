"""Speed, measured side by side: our models (unpadded, train.py's default, and padded) against transformers', the
attention candidates of the unpadded path, where a step's time goes, the CMI term's cost, cached against live
teacher logits.

    python bench.py --presets tiny,minilm --out bench.json

Each comparison runs its contenders in one process, alternating (A B, B A, A B, ...), and takes medians of the
timed repeats after warm-up, so that the load of a shared machine falls on every contender alike; the figures to
read are the ratios. Sections (--sections):

  step      a training step (forward, loss, backward, clipping, AdamW) of our classifier, unpadded and padded,
            and of transformers' with the same config, weights, batch and precision, eager and compiled:
            samples/s, tokens/s, peak memory, and the attention kernel SDPA chose
  mfu       model FLOPs utilisation of those steps: FLOPs per step (6 N tokens + 12 L T d tokens) over the rate of
            a large matrix product timed in the same rotation, on the same device and dtype (needs step)
  overhead  the step at batch 1 x 8: nearly all of it is fixed per-step cost (AdamW's pass over every parameter,
            the embedding tables included; Python; kernel launches), against the B x T step
  cmi       the CMI term's cost: a step with --mode min (epoch centroids from a pass) against --mode ce, and
            the two objectives alone on one forward's outputs (the term's own cost, robust to a noisy machine)
  attention the unpadded path's attention candidates on a real CoLA batch (forward and backward of attention
            alone, from the (N, d) rows of the real tokens): re-padding around SDPA, a jagged nested tensor with
            SDPA, a loop over the sequences; each one's largest difference from padded SDPA
  profile   one training step of our unpadded model on a real CoLA batch, by the profiler: the share of the
            matrix products of the linear layers, attention, the unpadding's gathers, AdamW and clipping
  epoch     training epochs on real data (--epoch-tasks: CoLA, MRPC's sentence pairs, a fixed subset of SST-2),
            the same shuffled batches (train.py's default) for each: ours unpadded, ours padded, transformers'
  distill   distillation into a DistilBERT student with cached teacher logits against a live teacher

Presets: bert-base, distilbert-base, minilm (the checkpoint in --checkpoint, real weights), tiny (2 layers,
d = 128). The step, overhead and cmi sections use a synthetic batch of --batch-size sequences padded to
--seq-len (real lengths drawn from [T/2, T]); epoch and distill time --epoch-batches batches of an epoch
(0: all) and give the epoch time from the examples per second.
"""
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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cmi.loop import Step, make_optimizer, predict, train_epoch, train_step
from cmi.objectives import CMIObjective, DistillationObjective, EpochCentroids, FeatureMap
from data.batching import eval_batches, num_train_batches, padding_fraction, train_batches
from data.loading import load_split
from data.tasks import TASKS, DataError, get_task
from data.tokenization import encode, load_tokenizer
from common.files import write_file
from harness.cli import Parser, check_ranges, parse_train_args, run_main
from study.markdown import table as table_lines
from harness.timing import (alternate, compiled_graphs, epoch_figures, matmul, paired_ratio, peak_memory_mib, rates,
                            step_flops, synchronize, synthetic_batch, time_epochs)
from harness.training import Batches, Runtime, forward_of, model_inputs, setup
from models.bert import BertConfig, BertForSequenceClassification, key_padding_mask
from models.checkpoint import read_config, resolve
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.student import student_config
from models.unpadded import Tokens, real_tokens

try:  # optional: the step and overhead sections compare against it when it is installed
    import transformers
except ImportError:
    transformers = None

SHARED = Path(__file__).resolve().parent.parent / "shared"
PRESETS = ("tiny", "minilm", "distilbert-base", "bert-base")
SECTIONS = ("step", "mfu", "overhead", "attention", "profile", "cmi", "epoch", "distill")
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
OVERHEAD_SHAPE = (1, 8)  # batch x tokens of the overhead section: almost no arithmetic left
STUDENT_EPOCHS = 10  # the paper's distillation epochs, over which the teacher pass is amortised
INTERRUPTED = "nothing was written: run the same command again"  # the results are written after all the measuring
KD = {"alpha": 0.5, "temperature": 2.0}  # distill.py's defaults (see its --help; the time does not depend on them)


@functools.cache
def train_defaults() -> argparse.Namespace:
    """train.py's defaults: lr, weight decay, clipping, lam, ... (parsed when first needed, not at import)."""
    return parse_train_args(["--task", "cola"])


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("what to measure")
    g.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)}")
    g.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated, from {', '.join(PRESETS)}")
    g.add_argument("--out", default="bench.json", help="JSON file the results are written to")
    g = parser.add_argument_group("sizes")
    g.add_argument("--batch-size", type=int, default=train_defaults().batch_size, help="examples per step")
    g.add_argument("--seq-len", type=int, default=train_defaults().max_len, help="padded length of the synthetic batch (step, "
                                                                      "overhead, cmi)")
    g.add_argument("--max-len", type=int, default=train_defaults().max_len, help="truncation length of CoLA, and the fixed "
                                                                      "length of the padded pipeline (epoch)")
    g.add_argument("--warmup", type=int, default=2, help="untimed calls of each contender first (compiles here)")
    g.add_argument("--repeats", type=int, default=5, help="timed calls of each contender (medians are reported)")
    g.add_argument("--epoch-batches", type=int, default=0,
                   help="epoch, distill: time this many batches of the epoch's order (0: the whole epoch)")
    g.add_argument("--epoch-tasks", default="cola,mrpc,sst2", help="epoch: the GLUE tasks whose training split is timed")
    g.add_argument("--epoch-examples", type=int, default=8551,
                   help="epoch: at most this many training examples of each task, a fixed subset (default: CoLA's "
                        "size: all of CoLA and MRPC, 8,551 of SST-2's 67,349)")
    g.add_argument("--chunk", type=int, default=5, help="epoch, distill: batches per turn when alternating")
    g.add_argument("--pad-multiple", type=int, default=None,
                   help="epoch, distill: pad batches to a multiple of this (default, as train.py: 8 on CUDA)")
    g = parser.add_argument_group("data and hardware")
    g.add_argument("--glue-dir", default=str(SHARED / "glue"), help="folder in the GLUE download layout")
    g.add_argument("--checkpoint", default=str(SHARED / "models" / "all-MiniLM-L6-v2"),
                   help="the minilm preset's checkpoint, whose tokenizer also encodes CoLA")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast (auto: on for CUDA)")
    g.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="also measure torch.compile (auto: on for CUDA)")
    g.add_argument("--compile-modes", default=None,
                   help="torch.compile modes measured in step, overhead and cmi (default: default, plus "
                        "reduce-overhead (CUDA graphs) on CUDA); epoch and distill compile as train.py does")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, the synthetic batch and the epoch order")
    parser.set_defaults(padded=False)  # what harness.training.setup reads: each section says which path it times
    args = parser.parse_args(argv)
    args.sections, args.presets, args.epoch_tasks = (x.split(",") for x in (args.sections, args.presets, args.epoch_tasks))
    for name, given, known in (("--sections", args.sections, SECTIONS), ("--presets", args.presets, PRESETS),
                               ("--epoch-tasks", args.epoch_tasks, TASKS)):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    if "mfu" in args.sections and "step" not in args.sections:
        parser.error("--sections: mfu is measured within step; add step")
    for name in ("batch_size", "seq_len", "max_len", "repeats", "chunk", "epoch_examples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.epoch_batches < 0:
        parser.error("--warmup and --epoch-batches must be >= 0")
    check_ranges(args, parser, {"pad_multiple": (lambda v: v > 0, "> 0")})  # and --device: CUDA there?
    # the results are written after all the measuring: a place they cannot go must be refused now
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out {out}: is a folder; expected the JSON file to write")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        parser.error(f"--out {out}: cannot write into {out.parent} (no such folder, or not writable)")
    return args


# -----------------------------------------------------------------------------
# models, contenders, timing


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
    """A model ready to train as train.py trains it: maybe compiled, AdamW with train.py's settings (fused),
    clipping, the autocast context. `mode` is a torch.compile mode, None for eager."""

    def __init__(self, model, device, ctx, mode: str | None = None, dynamic: bool | None = None, unpad: bool = False):
        self.model, self.ctx, self.forward = model, ctx, batch_forward(model, mode, dynamic, unpad)
        self.optimizer = make_optimizer(model, train_defaults().lr, train_defaults().weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)  # only time matters

    def parts(self, objective) -> Step:
        return Step(self.forward, self.model, objective, self.optimizer, self.scheduler, self.ctx, train_defaults().clip)

    def step(self, batch, objective=cross_entropy) -> None:
        train_step(self.parts(objective), batch)

    def epoch(self, batches, objective=cross_entropy) -> None:
        train_epoch(self.parts(objective), batches, desc="bench")


# -----------------------------------------------------------------------------
# sections


def contenders_of(ours, theirs) -> dict:
    """name -> (model, unpadded): ours unpadded (train.py's default), a copy of ours padded, transformers'."""
    models = {"ours": (ours, True), "padded": (copy.deepcopy(ours), False)}
    return models | ({"transformers": (theirs, False)} if theirs is not None else {})


def bench_step(args, preset, ours, theirs, variants, batch, runtime: Runtime) -> list[dict]:
    """Our training step, unpadded and padded, against transformers', per variant (eager, each compile mode)."""
    device, ctx, amp = runtime.device, runtime.ctx, runtime.amp
    B, T = batch["input_ids"].shape
    tokens, slots = int(batch["attention_mask"].sum()), B * T
    flops_real, flops_padded = step_flops(ours, batch["attention_mask"])
    models = contenders_of(ours, theirs)
    kernels = {name: sdpa_kernels(model, batch, ctx) for name, (model, _) in models.items()}
    rows = []
    for mode in variants:
        torch._dynamo.reset()  # each variant compiles afresh, far from the recompile limit
        contenders = {name: Contender(model, device, ctx, mode, unpad=unpad) for name, (model, unpad) in models.items()}
        calls = {name: (lambda c=c: c.step(batch)) for name, c in contenders.items()}
        if "mfu" in args.sections:
            calls["matmul"], matmul_flops = matmul(device, torch.bfloat16 if amp else torch.float32)
        graphs = compiled_graphs()
        seconds = alternate(calls, args.repeats, args.warmup, device)
        row = {"preset": preset, "compile": mode or "eager", "batch_size": B, "seq_len": T, "real_tokens": tokens,
               "padded_slots": slots, "flops_real": flops_real, "flops_padded": flops_padded,
               "graphs_compiled": compiled_graphs() - graphs}
        for name in contenders:
            row[name] = rates(seconds[name], B, tokens, slots)
            row[name]["peak_mib"] = peak_memory_mib(calls[name], device)
            row[name]["sdpa"] = kernels[name]
        if theirs is not None:
            row["speedup"], row["speedup_quartiles"] = paired_ratio(seconds["transformers"], seconds["ours"])
        row["speedup_padded"], row["speedup_padded_quartiles"] = paired_ratio(seconds["padded"], seconds["ours"])
        if "mfu" in args.sections:
            rate = matmul_flops / statistics.median(seconds["matmul"])
            row["matmul_flops_per_s"] = rate
            for name in contenders:
                row[name]["mfu_real"] = flops_real / row[name]["seconds"] / rate
                row[name]["mfu_padded"] = flops_padded / row[name]["seconds"] / rate
        rows.append(row)
        print(f"  step {preset} {row['compile']}: speedup {fmt(row.get('speedup'))}", flush=True)
    return rows


def bench_overhead(args, preset, ours, theirs, variants, runtime: Runtime, step_rows) -> list[dict]:
    """The step at batch 1 x 8, ours against transformers': what a step costs beyond its arithmetic."""
    device, ctx = runtime.device, runtime.ctx
    B, T = OVERHEAD_SHAPE
    batch = synthetic_batch(ours.config.vocab_size, ours.config.num_labels, B, T, args.seed, device)
    models = {"ours": ours, "transformers": theirs} if theirs is not None else {"ours": ours}
    rows = []
    for mode in variants:
        torch._dynamo.reset()
        calls = {name: (lambda c=Contender(model, device, ctx, mode, unpad=name == "ours"): c.step(batch))
                 for name, model in models.items()}
        seconds = alternate(calls, args.repeats, args.warmup, device)
        full = next((r for r in step_rows if r["preset"] == preset and r["compile"] == (mode or "eager")), None)
        row = {"preset": preset, "compile": mode or "eager", "batch_size": B, "seq_len": T}
        for name in calls:
            s = statistics.median(seconds[name])
            # the step's fixed cost as a share of the B x T step measured in the step section
            row[name] = {"seconds": s, "share_of_step": s / full[name]["seconds"] if full else None,
                         "all_seconds": seconds[name]}
        rows.append(row)
        print(f"  overhead {preset} {row['compile']}: {row['ours']['seconds'] * 1e3:.1f} ms", flush=True)
    return rows


def bench_cmi(args, preset, ours, variants, batch, runtime: Runtime) -> list[dict]:
    """A step with the min-CMI objective (eq. 14, G from an eval pass) against plain ce, on one model; and the two
    objectives alone on one forward's outputs (detached leaves), whose difference is the term's own cost: a few
    microseconds that a noisy machine hides in the step times."""
    device, ctx = runtime.device, runtime.ctx
    C, d = ours.config.num_labels, ours.classifier.in_features
    features = FeatureMap()
    objectives = {mode: CMIObjective(mode, train_defaults().lam, C, EpochCentroids(C, d, device), features)
                  for mode in ("ce", "min")}
    rows = []
    for mode in variants:
        torch._dynamo.reset()
        c = Contender(ours, device, ctx, mode, unpad=runtime.unpad)
        stats = predict(c.forward, ours, [batch], features, C, len(batch["labels"]), ctx=ctx)[1]
        objectives["min"].centroids.refresh(stats)  # the `epoch` policy's G: class means of f_x under the current model
        with ctx:
            out = c.forward(batch)
        leaves = type(out)(*(t.detach().clone().requires_grad_() for t in out))  # a copy: CUDA graphs reuse theirs

        def objective_alone(objective):
            with ctx:
                terms, _ = objective(lambda _: leaves, batch)
            sum(terms).backward()

        calls = {name: (lambda o=o: c.step(batch, o)) for name, o in objectives.items()}
        calls.update({f"{name}_alone": (lambda o=o: objective_alone(o)) for name, o in objectives.items()})
        seconds = alternate(calls, args.repeats, args.warmup, device)
        ratio, quartiles = paired_ratio(seconds["min"], seconds["ce"])
        # A call of microseconds is either undisturbed or loses whole time slices to other processes (on a loaded
        # machine, a worker thread waking up); its rounds are spread over the section, and the fastest is its
        # cost, as timeit reports.
        term = min(seconds["min_alone"]) - min(seconds["ce_alone"])
        rows.append({"preset": preset, "compile": mode or "eager", "batch_size": len(batch["labels"]),
                     "seq_len": batch["input_ids"].shape[1], "ce_seconds": statistics.median(seconds["ce"]),
                     "min_seconds": statistics.median(seconds["min"]), "all_seconds": seconds,
                     "overhead": ratio - 1, "overhead_quartiles": [q - 1 for q in quartiles],
                     "term_seconds": term, "term_overhead": term / statistics.median(seconds["ce"])})
        print(f"  cmi {preset} {mode or 'eager'}: overhead {rows[-1]['overhead']:+.1%}, "
              f"term alone {rows[-1]['term_overhead']:+.2%}", flush=True)
    return rows


def bench_epoch(args, preset, ours, theirs, task: str, train, runtime: Runtime) -> dict:
    """Training on one task's real examples (`train`, encoded): the same shuffled batches (train.py's default) for
    ours unpadded, ours padded and transformers', each from the same weights, compiled as train.py compiles."""
    device, ctx, pad_multiple = runtime.device, runtime.ctx, runtime.pad_multiple
    batches = train_batches(train.lengths, args.batch_size, args.seed, epoch=0, group_batches=1)
    batches = batches[:args.epoch_batches or None]
    mode = "default" if runtime.compile else None  # as train.py compiles: default mode, dynamic shapes
    torch._dynamo.reset()
    graphs = compiled_graphs()
    contenders = {name: Contender(copy.deepcopy(model), device, ctx, mode, dynamic=True, unpad=unpad)
                  for name, (model, unpad) in contenders_of(ours, theirs).items()}
    longest = next(iter(Batches(train, [max(batches, key=lambda b: train.lengths[b].max())], device, pad_multiple)))
    peaks = {}
    for name, c in contenders.items():  # warm-up (and compilation) on one batch, then the peak of the widest batch
        c.epoch(Batches(train, batches[:1], device, pad_multiple))
        peaks[name] = peak_memory_mib(lambda c=c: c.step(longest), device)
    runs = {name: (lambda b, c=c: c.epoch(Batches(train, b, device, pad_multiple)), batches)
            for name, c in contenders.items()}
    seconds = time_epochs(runs, args.chunk, device)
    row = {"preset": preset, "task": task, "compile": mode or "eager", "batch_size": args.batch_size,
           "max_len": args.max_len, "train_examples": len(train), "graphs_compiled": compiled_graphs() - graphs,
           "padding": padding_fraction(train.lengths, batches, pad_multiple)}
    for name in contenders:
        row[name] = epoch_figures(seconds[name], batches, len(train)) | {"peak_mib": peaks[name]}
    for name in ("padded", "transformers"):
        if name in contenders:  # the same batches in the same turns: a paired ratio
            row[f"speedup_{name}"], row[f"speedup_{name}_quartiles"] = paired_ratio(seconds[name], seconds["ours"])
    print(f"  epoch {preset} {task}: speedup {fmt(row.get('speedup_transformers'), '.2f')} over transformers, "
          f"{row['speedup_padded']:.2f} over padded", flush=True)
    return row


def bench_attention(args, preset, ours, batch, runtime: Runtime) -> dict:
    """The unpadded path's attention candidates, forward and backward from the (N, d) rows of the real tokens,
    against padded SDPA on the same values: re-padding around SDPA (models/unpadded.py), a jagged nested tensor
    with SDPA, a loop over the sequences."""
    device, mask = runtime.device, batch["attention_mask"]
    B, T = mask.shape
    H = ours.config.num_attention_heads
    d = ours.config.hidden_size
    index = real_tokens(mask)
    tokens = Tokens(index, B, T)
    lengths = mask.sum(1).tolist()
    g = torch.Generator(device=device).manual_seed(args.seed)
    qkv = [torch.randn(len(index), d, device=device, generator=g, requires_grad=True) for _ in range(3)]

    def heads(t):  # (B, T, d) -> (B, H, T, D)
        return t.view(B, T, H, -1).transpose(1, 2)

    def repad(q, k, v):
        y = F.scaled_dot_product_attention(*(heads(tokens.pad(t)) for t in (q, k, v)),
                                           attn_mask=key_padding_mask(mask))
        return tokens.gather(y.transpose(1, 2).reshape(B, T, d))

    def nested(q, k, v):
        # (N, d) -> B jagged (L_b, H, D) -> (B, H, j, D)
        q, k, v = (torch.nested.nested_tensor_from_jagged(t.view(-1, H, d // H), offsets=offsets).transpose(1, 2)
                   for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).values().reshape(-1, d)

    def loop(q, k, v):
        parts = [F.scaled_dot_product_attention(*(t.view(1, n, H, -1).transpose(1, 2) for t in (qs, ks, vs)))
                 .transpose(1, 2).reshape(n, d) for n, qs, ks, vs in zip(lengths, *(t.split(lengths) for t in (q, k, v)))]
        return torch.cat(parts)

    offsets = torch.tensor([0, *np.cumsum(lengths)], device=device)
    candidates = {"repad": repad, "nested": nested, "loop": loop}
    with torch.no_grad():
        reference = repad(*qkv)  # padded SDPA on the same values, gathered: the padded model's attention
        errors = {name: (f(*qkv) - reference).abs().max().item() for name, f in candidates.items()}

    def forward_backward(f):
        f(*qkv).sum().backward()
    calls = {name: (lambda f=f: forward_backward(f)) for name, f in candidates.items()}
    seconds = alternate(calls, args.repeats, args.warmup, device)
    row = {"preset": preset, "batch_size": B, "seq_len": T, "real_tokens": len(index)}
    for name in candidates:
        row[name] = {"seconds": statistics.median(seconds[name]), "max_abs_diff": errors[name],
                     "all_seconds": seconds[name]}
    print(f"  attention {preset}: " + ", ".join(f"{n} {row[n]['seconds'] * 1e3:.2f} ms" for n in candidates), flush=True)
    return row


PROFILE_GROUPS = {  # op name -> what it is part of, in one training step of our unpadded model (first match)
    "optimiser and clipping": ("aten::_fused_adamw", "aten::_foreach", "aten::_amp_foreach"),
    "attention": ("aten::_scaled_dot_product", "aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax"),
    "linear layers": ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear"),
    "unpadding (gathers, scatters)": ("aten::index", "aten::index_copy", "aten::index_select", "aten::index_add",
                                      "aten::index_put", "aten::_index_put_impl_", "aten::nonzero"),
}


def bench_profile(args, preset, ours, batch, runtime: Runtime) -> dict:
    """Where one training step of our unpadded model goes: the profiler's self time of every op, summed by
    PROFILE_GROUPS (the rest is LayerNorm, GELU, dropout, embeddings, the loss and Python)."""
    c = Contender(copy.deepcopy(ours), runtime.device, runtime.ctx, unpad=True)
    for _ in range(max(1, args.warmup)):
        c.step(batch)
    cuda = runtime.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        c.step(batch)
    times = {}
    for e in prof.key_averages():
        group = next((g for g, prefixes in PROFILE_GROUPS.items() if e.key.startswith(prefixes)), "other")
        times[group] = times.get(group, 0.0) + (e.self_device_time_total if cuda else e.self_cpu_time_total)
    total = sum(times.values())
    row = {"preset": preset, "batch_size": batch["input_ids"].shape[0], "seq_len": batch["input_ids"].shape[1],
           "step_ms": total / 1e3, "shares": {g: times.get(g, 0.0) / total for g in [*PROFILE_GROUPS, "other"]}}
    print(f"  profile {preset}: " + ", ".join(f"{g} {v:.0%}" for g, v in row["shares"].items()), flush=True)
    return row


def bench_distill(args, preset, teacher, cola, runtime: Runtime) -> dict:
    """A DistilBERT student trained against cached teacher logits (one eval pass) and against a live teacher."""
    device, ctx, compile_, pad_multiple = runtime.device, runtime.ctx, runtime.compile, runtime.pad_multiple
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    # half the teacher's layers (bert-base -> distilbert-base's 6)
    student = DistilBertForSequenceClassification(student_config(teacher, max(1, teacher.config.num_hidden_layers // 2)))
    student.to(device)
    mode = "default" if compile_ else None  # as train.py compiles: default mode, dynamic shapes
    torch._dynamo.reset()
    live_forward = batch_forward(teacher, mode, dynamic=True, unpad=runtime.unpad)
    batches = train_batches(cola.lengths, args.batch_size, args.seed, epoch=0)[:args.epoch_batches or None]
    # the cache: one eval-mode pass over the examples trained on, longest first as predict is run
    index = np.concatenate(batches)
    passes = [index[b] for b in eval_batches(cola.lengths[index], train_defaults().eval_batch_size)]
    predict(live_forward, teacher, Batches(cola, passes[:1], device, pad_multiple), FeatureMap(),
            teacher.config.num_labels, len(cola), ctx=ctx)  # warm-up
    synchronize(device)
    t0 = time.perf_counter()
    logits = predict(live_forward, teacher, Batches(cola, passes, device, pad_multiple), FeatureMap(),
                     teacher.config.num_labels, len(cola), ctx=ctx, desc="teacher logits")[0]
    synchronize(device)
    cache_seconds = (time.perf_counter() - t0) * len(cola) / len(index)  # extrapolated to the whole split
    objectives = {"cached": DistillationObjective(KD["alpha"], KD["temperature"], teacher_logits=logits),
                  "live": DistillationObjective(KD["alpha"], KD["temperature"], teacher_forward=live_forward)}
    c = Contender(student, device, ctx, mode, dynamic=True, unpad=runtime.unpad)
    for objective in objectives.values():
        c.epoch(Batches(cola, batches[:1], device, pad_multiple), objective)  # warm-up
    runs = {name: (lambda b, o=o: c.epoch(Batches(cola, b, device, pad_multiple), o), batches)
            for name, o in objectives.items()}
    seconds = time_epochs(runs, args.chunk, device)
    row = {"teacher": preset, "student_layers": student.config.n_layers, "compile": mode or "eager",
           "batch_size": args.batch_size, "train_examples": len(cola), "teacher_pass_seconds": cache_seconds}
    for name in objectives:
        row[name] = epoch_figures(seconds[name], batches, len(cola))
    row["speedup"], row["speedup_quartiles"] = paired_ratio(seconds["live"], seconds["cached"])  # same batches
    # over the paper's 10 student epochs, the cache costs one teacher pass
    live, cached = row["live"]["epoch_seconds"], row["cached"]["epoch_seconds"]
    row["speedup_10_epochs"] = STUDENT_EPOCHS * live / (STUDENT_EPOCHS * cached + cache_seconds)
    print(f"  distill {preset}: speedup {row['speedup']:.2f}", flush=True)
    return row


# -----------------------------------------------------------------------------
# report


def fmt(x, spec=".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def spread(value, quartiles, spec=".2f") -> str:
    """A ratio in bold with its quartiles over rounds: **1.02** (0.97 to 1.06)."""
    if value is None:
        return "n/a"
    return f"**{value:{spec}}** ({quartiles[0]:{spec}} to {quartiles[1]:{spec}})"


def table(header: list[str], rows: list) -> str:
    """study.markdown's table as one string."""
    return "\n".join(table_lines(header, rows)).rstrip()


def report(results: dict) -> str:
    """The results as Markdown tables, one per section."""
    out = []
    meta = results["meta"]
    out.append(f"{meta['date']}, {meta['device']}, {meta['threads']} threads, {meta['precision']}, torch "
               f"{meta['torch']}, transformers {meta['transformers']}\n`{meta['command']}`")
    if results.get("step"):
        rows = []
        for r in results["step"]:
            o, t = r["ours"], r.get("transformers") or {}
            rows.append([r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["compile"],
                         f"{o['samples_per_s']:.3g}", f"{r['padded']['samples_per_s']:.3g}", fmt(t.get("samples_per_s")),
                         spread(r.get("speedup"), r.get("speedup_quartiles")),
                         spread(r["speedup_padded"], r["speedup_padded_quartiles"]),
                         f"{o['tokens_per_s']:.3g}", fmt(o.get("mfu_real"), ".1%") + " / " + fmt(o.get("mfu_padded"), ".1%"),
                         fmt(t.get("mfu_real"), ".1%") + " / " + fmt(t.get("mfu_padded"), ".1%"),
                         " / ".join(fmt(x, ".0f") for x in (o["peak_mib"], r["padded"]["peak_mib"], t.get("peak_mib"))),
                         f"{o['sdpa']} / {t.get('sdpa', 'n/a')}"])
        out.append("Training step (forward, backward, clipping, AdamW), medians; ours unpadded (train.py's default) "
                   "and padded; speedup = the other's step time / ours unpadded, median over rounds; MFU over real "
                   "tokens / padded slots; peak memory above weights and optimizer state\n\n" +
                   table(["preset", "B x T", "compile", "ours samples/s", "padded samples/s", "transformers samples/s",
                          "speedup over transformers", "speedup over padded", "ours real tokens/s", "ours MFU",
                          "transformers MFU", "peak MiB ours / padded / transformers",
                          "SDPA kernel ours / transformers"], rows))
        if any("matmul_flops_per_s" in r for r in results["step"]):
            out.append("Matrix-product rate measured in each rotation (MFU denominator): " + ", ".join(
                f"{r['preset']} {r['compile']} {r['matmul_flops_per_s'] / 1e12:.3g} TFLOP/s" for r in results["step"]))
    if results.get("overhead"):
        rows = [[r["preset"], r["compile"], f"{r['ours']['seconds'] * 1e3:.1f}",
                 f"{r['transformers']['seconds'] * 1e3:.1f}" if "transformers" in r else "n/a",
                 fmt(r["ours"]["share_of_step"], ".1%")] for r in results["overhead"]]
        out.append(f"Fixed per-step cost: the step at {OVERHEAD_SHAPE[0]} x {OVERHEAD_SHAPE[1]}\n\n" +
                   table(["preset", "compile", "ours ms", "transformers ms", "ours, share of the B x T step"], rows))
    if results.get("cmi"):
        rows = [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["compile"], f"{r['ce_seconds'] * 1e3:.1f}",
                 f"{r['min_seconds'] * 1e3:.1f}", spread(r["overhead"], r["overhead_quartiles"], "+.1%"),
                 f"{r['term_seconds'] * 1e6:.0f} us", f"**{r['term_overhead']:+.2%}**"] for r in results["cmi"]]
        out.append("The CMI term's cost (goal: <= 3%): step time with --mode min (epoch centroids) over --mode ce, "
                   "median over rounds, minus 1; and the term alone: min minus ce objective on one forward's outputs "
                   "(its forward and backward, fastest round), over the ce step\n\n" +
                   table(["preset", "B x T", "compile", "ce ms", "min ms", "step overhead", "term alone",
                          "term / step"], rows))
    if results.get("attention"):
        names = ("repad", "nested", "loop")
        rows = [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["real_tokens"],
                 " / ".join(f"{r[n]['seconds'] * 1e3:.3g}" for n in names),
                 " / ".join(f"{r[n]['seconds'] / r['repad']['seconds']:.2f}" for n in names),
                 " / ".join(f"{r[n]['max_abs_diff']:.1e}" for n in names)] for r in results["attention"]]
        out.append("Attention of the unpadded path, forward and backward on a real CoLA batch: re-padding around SDPA / "
                   "a jagged nested tensor with SDPA / a loop over the sequences (medians; time over re-padding's; "
                   "max |difference| from padded SDPA)\n\n" +
                   table(["preset", "B x T", "real tokens", "ms", "time / repad", "max |diff|"], rows))
    if results.get("profile"):
        groups = list(results["profile"][0]["shares"])
        rows = [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", f"{r['step_ms']:.1f}",
                 *(f"{r['shares'][g]:.0%}" for g in groups)] for r in results["profile"]]
        out.append("Where one training step of ours (unpadded) goes, on a real CoLA batch: the profiler's self time "
                   "by op\n\n" + table(["preset", "B x T", "step ms (profiled)", *groups], rows))
    if results.get("epoch"):
        names = [n for n in ("ours", "padded", "transformers") if n in results["epoch"][0]]
        rows = [[r["preset"], r["task"], r["compile"],
                 f"{r['ours']['batches']} of {num_train_batches(r['train_examples'], r['batch_size'])}",
                 f"{r['padding']:.0%}", " / ".join(f"{r[n]['samples_per_s']:.4g}" for n in names),
                 " / ".join(f"{r[n]['epoch_seconds']:.4g}" for n in names),
                 " / ".join(fmt(r[n]["peak_mib"], ".0f") for n in names),
                 spread(r.get("speedup_transformers"), r.get("speedup_transformers_quartiles")),
                 spread(r["speedup_padded"], r["speedup_padded_quartiles"])] for r in results["epoch"]]
        out.append(f"Training epochs on real data, the same shuffled batches of each task for {' / '.join(names)}; "
                   "epoch seconds = the task's examples at the timed rate; speedup = the other's time / ours over the "
                   "same turns, median (quartiles); peak memory of a step on the widest batch\n\n" +
                   table(["preset", "task", "compile", "batches timed", "padding", "samples/s", "epoch s", "peak MiB",
                          "speedup over transformers", "speedup over padded"], rows))
    if results.get("distill"):
        rows = [[r["teacher"], r["student_layers"], r["compile"], f"{r['cached']['batches']}",
                 f"{r['cached']['epoch_seconds']:.4g} / {r['live']['epoch_seconds']:.4g}",
                 f"{r['teacher_pass_seconds']:.3g}", spread(r["speedup"], r["speedup_quartiles"]), f"{r['speedup_10_epochs']:.2f}"]
                for r in results["distill"]]
        out.append("Distillation on CoLA, a DistilBERT student: cached teacher logits / live teacher (epoch s "
                   "extrapolated from the batches timed; speedup = live / cached time of the same batches, median "
                   "over turns; over 10 epochs the cache costs one teacher pass)\n\n" +
                   table(["teacher", "student layers", "compile", "batches timed", "epoch s cached / live",
                          "teacher pass s", "speedup", "over 10 epochs"], rows))
    return "\n\n".join(out)


# -----------------------------------------------------------------------------
# main


def check_presets(args) -> None:
    """What the presets need, before anything is measured: the --checkpoint (minilm's weights, and the tokenizer
    of the real batches) and position tables as long as --seq-len."""
    positions = {"tiny": BertConfig().max_position_embeddings, "bert-base": BertConfig().max_position_embeddings,
                 "distilbert-base": DistilBertConfig().max_position_embeddings}
    if "minilm" in args.presets or {"attention", "profile", "epoch", "distill"} & set(args.sections):
        folder = resolve(args.checkpoint)
        load_tokenizer(folder)
        if "minilm" in args.presets:
            positions["minilm"] = read_config(folder, BertConfig).max_position_embeddings
    if {"step", "overhead", "cmi"} & set(args.sections):
        for preset in args.presets:
            if args.seq_len > positions[preset]:
                raise DataError(f"--seq-len {args.seq_len} > the {preset} preset's {positions[preset]} positions")


def save(results: dict, out: Path) -> None:
    """Write the results; when that fails, print them as JSON first, so that no measurement is lost."""
    text = json.dumps(results, indent=2) + "\n"
    try:
        write_file(out, lambda f: f.write(text.encode()))
    except OSError as e:
        print(text)
        raise DataError(f"--out {out}: writing failed ({e.strerror or e}); the results are printed above as JSON") from None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main(argv=None) -> dict:
    args = parse_args(argv)
    check_presets(args)
    runtime = setup(args)
    device, amp, compile_ = runtime.device, runtime.amp, runtime.compile
    modes = (args.compile_modes or ("default,reduce-overhead" if device.type == "cuda" else "default")).split(",")
    variants = [None] + (modes if compile_ else [])  # None: eager
    logging.getLogger("models.checkpoint").setLevel(logging.ERROR)  # the fresh classifier of minilm, expected
    if transformers is not None:
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

    results = {"meta": {
        "date": datetime.date.today().isoformat(), "command": " ".join(["python bench.py", *sys.argv[1:]]),
        "device": device_name(device), "threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if amp else "float32", "torch": torch.__version__,
        "transformers": transformers.__version__ if transformers is not None else None,
        "compile_modes": [v or "eager" for v in variants], "args": vars(args)}}
    for section in SECTIONS:
        if section != "mfu":
            results[section] = []

    cola, real_batch, epoch_data = None, None, {}
    if {"attention", "profile", "epoch", "distill"} & set(args.sections):
        tokenizer = load_tokenizer(args.checkpoint)
        cola = encode(tokenizer, load_split(get_task("cola"), "train", args.glue_dir), args.max_len)
        # a real batch: the first of an epoch's shuffled batches, as train.py draws them
        real_batch = next(iter(Batches(cola, train_batches(cola.lengths, args.batch_size, args.seed, epoch=0,
                                                           group_batches=1)[:1], device, runtime.pad_multiple)))
        if "epoch" in args.sections:
            epoch_data = {task: encode(tokenizer, load_split(get_task(task), "train", args.glue_dir,
                                                             args.epoch_examples), args.max_len)
                          for task in args.epoch_tasks}

    for preset in args.presets:
        print(f"{preset}:", flush=True)
        torch.manual_seed(args.seed)
        ours = build_model(preset, args.checkpoint, num_labels=2).to(device).train()
        if {"step", "overhead", "cmi"} & set(args.sections):
            batch = synthetic_batch(ours.config.vocab_size, 2, args.batch_size, args.seq_len, args.seed, device)
        theirs = transformers_twin(ours) if {"step", "overhead", "epoch"} & set(args.sections) else None
        if "step" in args.sections:
            results["step"] += bench_step(args, preset, ours, theirs, variants, batch, runtime)
        if "overhead" in args.sections:
            results["overhead"] += bench_overhead(args, preset, ours, theirs, variants, runtime, results["step"])
        for task, train in epoch_data.items():
            results["epoch"].append(bench_epoch(args, preset, ours, theirs, task, train, runtime))
        del theirs
        if "attention" in args.sections:
            results["attention"].append(bench_attention(args, preset, ours, real_batch, runtime))
        if "profile" in args.sections:
            results["profile"].append(bench_profile(args, preset, ours, real_batch, runtime))
        if "cmi" in args.sections:
            results["cmi"] += bench_cmi(args, preset, ours, variants, batch, runtime)
        if "distill" in args.sections and isinstance(ours, BertForSequenceClassification):
            results["distill"].append(bench_distill(args, preset, ours, cola, runtime))

    save(results, Path(args.out))
    print("\n" + report(results) + f"\n\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    run_main(main, INTERRUPTED)
