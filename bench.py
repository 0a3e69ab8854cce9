"""Speed, measured side by side: our models against transformers', our data pipeline against padding to 128, the
CMI term's cost, cached against live teacher logits.

    python bench.py --presets tiny,minilm --out bench.json

Each comparison runs its contenders in one process, alternating (A B, B A, A B, ...), and takes medians of the
timed repeats after warm-up, so that the load of a shared machine falls on every contender alike; the figures to
read are the ratios. Sections (--sections):

  step      a training step (forward, loss, backward, clipping, AdamW) of our classifier and of transformers'
            with the same config, weights, batch and precision, eager and compiled: samples/s, tokens/s, peak
            memory, and the attention kernel SDPA chose
  mfu       model FLOPs utilisation of those steps: FLOPs per step (6 N tokens + 12 L T d tokens) over the rate of
            a large matrix product timed in the same rotation, on the same device and dtype (needs step)
  overhead  the step at batch 1 x 8: nearly all of it is fixed per-step cost (AdamW's pass over every parameter,
            the embedding tables included; Python; kernel launches), against the B x T step
  cmi       the CMI term's cost: a step with --mode min (epoch centroids from a pass) against --mode ce, and
            the two objectives alone on one forward's outputs (the term's own cost, robust to a noisy machine)
  epoch     training on real CoLA with our pipeline (dynamic padding; length-grouped batches, and shuffled ones,
            train.py's default) against the same model fed batches padded to --max-len, as transformers'
            run_glue.py does by default
  distill   distillation into a DistilBERT student with cached teacher logits against a live teacher

Presets: bert-base, distilbert-base, minilm (the checkpoint in --checkpoint, real weights), tiny (2 layers,
d = 128). The step, overhead and cmi sections use a synthetic batch of --batch-size sequences padded to
--seq-len (real lengths drawn from [T/2, T]); epoch and distill time --epoch-batches batches of an epoch
(0: all) and give the epoch time from the examples per second.
"""
import argparse
import copy
import datetime
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
from cmi.objectives import CMIObjective, Centroids, DistillationObjective, FeatureMap
from data.batching import eval_batches, num_train_batches, padding_fraction, train_batches
from data.loading import load_split
from data.tasks import get_task
from data.tokenization import encode, load_tokenizer
from harness.cli import Parser, parse_train_args
from harness.markdown import table as table_lines
from harness.timing import (alternate, compiled_graphs, epoch_figures, matmul, paired_ratio, peak_memory_mib, rates,
                            step_flops, synchronize, synthetic_batch, time_epochs)
from harness.training import Batches, Runtime, model_inputs, setup
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.student import student_config

try:  # optional: the step and overhead sections compare against it when it is installed
    import transformers
except ImportError:
    transformers = None

SHARED = Path(__file__).resolve().parent.parent / "shared"
PRESETS = ("tiny", "minilm", "distilbert-base", "bert-base")
SECTIONS = ("step", "mfu", "overhead", "cmi", "epoch", "distill")
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
OVERHEAD_SHAPE = (1, 8)  # batch x tokens of the overhead section: almost no arithmetic left
STUDENT_EPOCHS = 10  # the paper's distillation epochs, over which the teacher pass is amortised
TRAIN = parse_train_args(["--task", "cola"])  # train.py's defaults: lr, weight decay, clipping, lam, ...
KD = {"alpha": 0.5, "temperature": 2.0}  # distill.py's defaults (see its --help; the time does not depend on them)


def parse_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("what to measure")
    g.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)}")
    g.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated, from {', '.join(PRESETS)}")
    g.add_argument("--out", default="bench.json", help="JSON file the results are written to")
    g = parser.add_argument_group("sizes")
    g.add_argument("--batch-size", type=int, default=TRAIN.batch_size, help="examples per step")
    g.add_argument("--seq-len", type=int, default=TRAIN.max_len, help="padded length of the synthetic batch (step, "
                                                                      "overhead, cmi)")
    g.add_argument("--max-len", type=int, default=TRAIN.max_len, help="truncation length of CoLA, and the fixed "
                                                                      "length of the padded pipeline (epoch)")
    g.add_argument("--warmup", type=int, default=2, help="untimed calls of each contender first (compiles here)")
    g.add_argument("--repeats", type=int, default=5, help="timed calls of each contender (medians are reported)")
    g.add_argument("--epoch-batches", type=int, default=0,
                   help="epoch, distill: time this many batches of the epoch's order (0: the whole epoch)")
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
    args = parser.parse_args(argv)
    args.sections, args.presets = args.sections.split(","), args.presets.split(",")
    for name, given, known in (("--sections", args.sections, SECTIONS), ("--presets", args.presets, PRESETS)):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    if "mfu" in args.sections and "step" not in args.sections:
        parser.error("--sections: mfu is measured within step; add step")
    for name in ("batch_size", "seq_len", "max_len", "repeats", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.epoch_batches < 0:
        parser.error("--warmup and --epoch-batches must be >= 0")
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


def batch_forward(model, mode: str | None = None, dynamic: bool | None = None):
    """forward(batch) of `model`, compiled with torch.compile `mode` (None: eager)."""
    compiled = model if mode is None else torch.compile(model, mode=mode, dynamic=dynamic)
    inputs = model_inputs(model)
    # CUDA graphs keep their outputs in place between replays: each call is marked as a new step
    cudagraphs = mode in ("reduce-overhead", "max-autotune")

    def forward(batch):
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(**{k: batch[k] for k in inputs})
    return forward


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

    def __init__(self, model, device, ctx, mode: str | None = None, dynamic: bool | None = None):
        self.model, self.ctx, self.forward = model, ctx, batch_forward(model, mode, dynamic)
        self.optimizer = make_optimizer(model, TRAIN.lr, TRAIN.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)  # only time matters

    def parts(self, objective) -> Step:
        return Step(self.forward, self.model, objective, self.optimizer, self.scheduler, self.ctx, TRAIN.clip)

    def step(self, batch, objective=cross_entropy) -> None:
        train_step(self.parts(objective), batch)

    def epoch(self, batches, objective=cross_entropy) -> None:
        train_epoch(self.parts(objective), batches, desc="bench")


# -----------------------------------------------------------------------------
# sections


def bench_step(args, preset, ours, theirs, variants, batch, runtime: Runtime) -> list[dict]:
    """Our training step against transformers', per variant (eager, each compile mode)."""
    device, ctx, amp = runtime.device, runtime.ctx, runtime.amp
    B, T = batch["input_ids"].shape
    tokens, slots = int(batch["attention_mask"].sum()), B * T
    flops_real, flops_padded = step_flops(ours, batch["attention_mask"])
    models = {"ours": ours, "transformers": theirs} if theirs is not None else {"ours": ours}
    kernels = {name: sdpa_kernels(model, batch, ctx) for name, model in models.items()}
    rows = []
    for mode in variants:
        torch._dynamo.reset()  # each variant compiles afresh, far from the recompile limit
        contenders = {name: Contender(model, device, ctx, mode) for name, model in models.items()}
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
        calls = {name: (lambda c=Contender(model, device, ctx, mode): c.step(batch)) for name, model in models.items()}
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
    objectives = {mode: CMIObjective(mode, TRAIN.lam, C, Centroids("epoch", C, d, device), features)
                  for mode in ("ce", "min")}
    rows = []
    for mode in variants:
        torch._dynamo.reset()
        c = Contender(ours, device, ctx, mode)
        stats = predict(c.forward, ours, [batch], features, C, len(batch["labels"]), ctx=ctx)[1]
        objectives["min"].refresh(stats)  # the `epoch` policy's G: class means of f_x under the current model
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


def bench_epoch(args, preset, ours, cola, runtime: Runtime) -> dict:
    """Training on CoLA: our pipeline (length-grouped or shuffled batches, dynamic padding) against padding every
    batch to --max-len, same model and objective."""
    device, ctx, compile_, pad_multiple = runtime.device, runtime.ctx, runtime.compile, runtime.pad_multiple
    lengths = cola.lengths
    grouped = train_batches(lengths, args.batch_size, args.seed, epoch=0)
    shuffled = train_batches(lengths, args.batch_size, args.seed, epoch=0, group_batches=1)  # a RandomSampler
    n = args.epoch_batches or len(grouped)
    pipelines = {"grouped": (grouped[:n], pad_multiple), "shuffled": (shuffled[:n], pad_multiple),
                 "padded": (shuffled[:n], args.max_len)}
    mode = "default" if compile_ else None
    torch._dynamo.reset()
    c = Contender(ours, device, ctx, mode, dynamic=True)  # as train.py compiles: default mode, dynamic shapes
    graphs = compiled_graphs()
    for batches, pad in pipelines.values():  # warm-up (and compilation) on one batch of each
        c.epoch(Batches(cola, batches[:1], device, pad))
    runs = {name: (lambda b, pad=pad: c.epoch(Batches(cola, b, device, pad)), batches)
            for name, (batches, pad) in pipelines.items()}
    seconds = time_epochs(runs, args.chunk, device)
    row = {"preset": preset, "compile": mode or "eager", "batch_size": args.batch_size, "max_len": args.max_len,
           "train_examples": len(cola), "graphs_compiled": compiled_graphs() - graphs}
    for name, (batches, pad) in pipelines.items():
        row[name] = epoch_figures(seconds[name], batches, len(cola))
        row[name]["padding"] = padding_fraction(lengths, batches, pad)
    row["speedup"] = row["grouped"]["samples_per_s"] / row["padded"]["samples_per_s"]
    row["speedup_shuffled"] = row["shuffled"]["samples_per_s"] / row["padded"]["samples_per_s"]
    print(f"  epoch {preset}: speedup {row['speedup']:.2f} grouped, {row['speedup_shuffled']:.2f} shuffled", flush=True)
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
    live_forward = batch_forward(teacher, mode, dynamic=True)
    batches = train_batches(cola.lengths, args.batch_size, args.seed, epoch=0)[:args.epoch_batches or None]
    # the cache: one eval-mode pass over the examples trained on, longest first as predict is run
    index = np.concatenate(batches)
    passes = [index[b] for b in eval_batches(cola.lengths[index], TRAIN.eval_batch_size)]
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
    c = Contender(student, device, ctx, mode, dynamic=True)
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
    """harness.markdown's table as one string."""
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
                         f"{o['samples_per_s']:.3g}", fmt(t.get("samples_per_s")),
                         spread(r.get("speedup"), r.get("speedup_quartiles")),
                         f"{o['tokens_per_s']:.3g}", fmt(o.get("mfu_real"), ".1%") + " / " + fmt(o.get("mfu_padded"), ".1%"),
                         fmt(t.get("mfu_real"), ".1%") + " / " + fmt(t.get("mfu_padded"), ".1%"),
                         fmt(o["peak_mib"], ".0f") + " / " + fmt(t.get("peak_mib"), ".0f"),
                         f"{o['sdpa']} / {t.get('sdpa', 'n/a')}"])
        out.append("Training step (forward, backward, clipping, AdamW), medians; speedup = transformers' step time / "
                   "ours, median over rounds; MFU over real tokens / padded slots; peak memory above weights and optimizer state\n\n" +
                   table(["preset", "B x T", "compile", "ours samples/s", "transformers samples/s", "speedup",
                          "ours real tokens/s", "ours MFU", "transformers MFU", "peak MiB ours / transformers",
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
    if results.get("epoch"):
        kinds = ("grouped", "shuffled", "padded")
        rows = [[r["preset"], r["compile"], f"{r['grouped']['batches']} of {num_train_batches(r['train_examples'], r['batch_size'])}",
                 " / ".join(f"{r[k]['padding']:.0%}" for k in kinds),
                 " / ".join(f"{r[k]['samples_per_s']:.4g}" for k in kinds),
                 " / ".join(f"{r[k]['epoch_seconds']:.4g}" for k in kinds),
                 f"**{r['speedup']:.2f}** / **{r['speedup_shuffled']:.2f}**"] for r in results["epoch"]]
        out.append(f"CoLA training epoch, dynamic padding with length-grouped / shuffled batches / padded to max-len; "
                   f"epoch seconds = {results['epoch'][0]['train_examples']} examples at the timed rate; speedup over "
                   f"padded\n\n" +
                   table(["preset", "compile", "batches timed", "padding", "samples/s", "epoch s",
                          "speedup grouped / shuffled"], rows))
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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main(argv=None) -> dict:
    args = parse_args(argv)
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

    cola = None
    if {"epoch", "distill"} & set(args.sections):
        tokenizer = load_tokenizer(args.checkpoint)
        cola = encode(tokenizer, load_split(get_task("cola"), "train", args.glue_dir), args.max_len)

    for preset in args.presets:
        print(f"{preset}:", flush=True)
        torch.manual_seed(args.seed)
        ours = build_model(preset, args.checkpoint, num_labels=2).to(device).train()
        if {"step", "overhead", "cmi"} & set(args.sections):
            if args.seq_len > ours.config.max_position_embeddings:
                raise SystemExit(f"error: --seq-len {args.seq_len} > the {preset} preset's "
                                 f"{ours.config.max_position_embeddings} positions")
            batch = synthetic_batch(ours.config.vocab_size, 2, args.batch_size, args.seq_len, args.seed, device)
        theirs = transformers_twin(ours) if {"step", "overhead"} & set(args.sections) else None
        if "step" in args.sections:
            results["step"] += bench_step(args, preset, ours, theirs, variants, batch, runtime)
        if "overhead" in args.sections:
            results["overhead"] += bench_overhead(args, preset, ours, theirs, variants, runtime, results["step"])
        del theirs
        if "cmi" in args.sections:
            results["cmi"] += bench_cmi(args, preset, ours, variants, batch, runtime)
        if "epoch" in args.sections:
            results["epoch"].append(bench_epoch(args, preset, ours, cola, runtime))
        if "distill" in args.sections and isinstance(ours, BertForSequenceClassification):
            results["distill"].append(bench_distill(args, preset, ours, cola, runtime))

    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + report(results) + f"\n\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
