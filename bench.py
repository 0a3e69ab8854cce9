"""Speed, measured side by side: our models (unpadded, train.py's default, and padded) against transformers', the
CMI term's cost, cached against live teacher logits. Figures and how they were made: docs/results.md,
"Performance"; where a step's time goes: scripts/bench_diagnostics.py.

    python bench.py --presets tiny,minilm --out bench.json

Contenders alternate in one process (benchmark/timing.py), so the figures to read are the ratios. Sections:

  step      a training step of ours, unpadded (train.py's default) and padded, and of transformers' on the same
            batch, weights and precision, eager and compiled: samples/s, tokens/s, peak memory, SDPA's kernel
  mfu       model FLOPs utilisation of those steps, over a large matrix product's rate (needs step)
  cmi       the CMI term's cost: a step with --mode min against --mode ce, and the two objectives alone
  epoch     training epochs on real data (--epoch-tasks), the same shuffled batches for each contender; with --amp
            both in float32 and in bf16 autocast, with --epoch-lam also ours trained with min-CMI
  distill   a DistilBERT student trained against cached teacher logits and against a live teacher
  decoder   training epochs on real data of a decoder of a real width (Qwen2.5-0.5B's, --decoder-layers layers,
            random weights): ours unpadded against transformers' Qwen2ForSequenceClassification, and one training
            step of each on the first real batch; once, not per preset
  memory    the memory of a training step of that decoder: full fine-tuning in float32 and bf16 autocast, LoRA on
            bf16 weights, and LoRA with activation checkpointing; once

step and cmi time a synthetic batch, epoch, distill, decoder and memory real examples (their epoch time from the examples per
second).
"""
import argparse
import copy
import statistics
from dataclasses import replace

import torch

from benchmark.contenders import (Contender, Preset, Section, compiled, cross_entropy, epoch_order, examples_pass,
                                   min_objective, race, sdpa_kernels, transformers_twin, widest_batch)
from benchmark.options import INTERRUPTED, bench_parser, check_bench_args, check_presets, train_split
from benchmark.measuring import measure
from benchmark.timing import (alternate, compiled_graphs, epoch_figures, matmul, paired_ratio, peak_memory_mib, rates,
                              step_flops, timed)
from cmi.loop import model_inputs, predict
from cmi.objectives import CMIObjective, DistillationObjective, EpochCentroids, Features
from cmi.precision import precision
from data.batching import num_train_batches, padding_fraction
from harness.rundata import Batches
from data.tasks import TASKS
from harness.cli import TRAIN_DEFAULTS, ranged, run_main, runtime_options
from harness.runtime import setup
from models.bert import BertForSequenceClassification, checkpoint_layers
from models.distilbert import DistilBertForSequenceClassification
from models.llama import LlamaConfig, LlamaForSequenceClassification
from models.lora import add_lora
from models.student import student_config
from study.markdown import captioned, fmt, spread

DIAGNOSTICS = ("overhead", "attention", "profile")  # the sections scripts/bench_diagnostics.py measures
STUDENT_EPOCHS = 10  # the paper's distillation epochs, over which the teacher pass is amortised
KD = {"alpha": 0.5, "temperature": 2.0}  # distill.py's defaults (see its --help; the time does not depend on them)
# Qwen2.5-0.5B's width (its config.json; 24 layers there): the decoder section's model, random weights
QWEN25_05B = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_parameters={"rope_theta": 1e6})


def parse_args(argv=None) -> argparse.Namespace:
    parser = bench_parser(__doc__, [*SECTIONS, "mfu"], "bench.json")
    g = parser.add_argument_group("epochs of real data (epoch, distill, decoder)")
    ranged(g, "--epoch-batches", ">= 0", type=int, default=0,
           help="time this many batches of the epoch's order (0: the whole epoch)")
    g.add_argument("--epoch-tasks", default="cola,mrpc,sst2", help="epoch: the GLUE tasks whose training split is timed")
    ranged(g, "--epoch-examples", "> 0", type=int, default=8551,
           help="epoch: at most this many training examples of each task, a fixed subset (default: CoLA's size: all "
                "of CoLA and MRPC, 8,551 of SST-2's 67,349)")
    ranged(g, "--chunk", "> 0", type=int, default=5, help="batches per turn when alternating")
    ranged(g, "--decoder-layers", "> 0", type=int, default=2,
           help="decoder: the layers of the Qwen2.5-0.5B-wide decoder (24 in the real model)")
    ranged(g, "--epoch-lam", "> 0", type=float, default=None,
           help="epoch: also time ours trained with --mode min at this lambda (epoch centroids)")
    args = parser.parse_args(argv)
    moved = [x for x in args.sections.split(",") if x in DIAGNOSTICS]
    if moved:
        parser.error(f"--sections: {', '.join(moved)}: measured by scripts/bench_diagnostics.py now")
    check_bench_args(args, parser, {"sections": [*SECTIONS, "mfu"], "epoch_tasks": TASKS})
    if "mfu" in args.sections and "step" not in args.sections:
        parser.error("--sections: mfu is measured within step; add step")
    return args


# -----------------------------------------------------------------------------
# step (and mfu)


def bench_step(p: Preset) -> list[dict]:
    """Our training step, unpadded and padded, against transformers', per variant (eager, each compile mode)."""
    args, runtime, batch = p.args, p.runtime, p.batch
    B, T = batch["input_ids"].shape
    tokens, slots = int(batch["attention_mask"].sum()), B * T
    flops_real, flops_padded = step_flops(p.ours, batch["attention_mask"])
    models = p.contenders()
    kernels = {name: sdpa_kernels(model, batch, runtime.precision.autocast()) for name, (model, _) in models.items()}
    rows = []
    for mode in p.variants:
        torch._dynamo.reset()  # each variant compiles afresh, far from the recompile limit
        contenders = {name: Contender(model, runtime, args.warmup + args.repeats, unpad, runs=compiled(model, mode))
                      for name, (model, unpad) in models.items()}
        calls = {name: (lambda c=c: c.step(batch)) for name, c in contenders.items()}
        if "mfu" in args.sections:
            calls["matmul"], matmul_flops = matmul(runtime.device, runtime.precision.dtype or torch.float32)
        graphs = compiled_graphs()
        seconds = alternate(calls, args.repeats, args.warmup, runtime.device)
        row = {"preset": p.name, "compile": mode or "eager", "batch_size": B, "seq_len": T, "real_tokens": tokens,
               "padded_slots": slots, "flops_real": flops_real, "flops_padded": flops_padded,
               "graphs_compiled": compiled_graphs() - graphs}
        for name in contenders:
            row[name] = rates(seconds[name], B, tokens, slots)
            row[name]["peak_mib"] = peak_memory_mib(calls[name], runtime.device)
            row[name]["sdpa"] = kernels[name]
        if p.theirs is not None:
            row["speedup"], row["speedup_quartiles"] = paired_ratio(seconds["transformers"], seconds["ours"])
        row["speedup_padded"], row["speedup_padded_quartiles"] = paired_ratio(seconds["padded"], seconds["ours"])
        if "mfu" in args.sections:
            rate = matmul_flops / statistics.median(seconds["matmul"])
            row["matmul_flops_per_s"] = rate
            for name in contenders:
                row[name]["mfu_real"] = flops_real / row[name]["seconds"] / rate
                row[name]["mfu_padded"] = flops_padded / row[name]["seconds"] / rate
        rows.append(row)
        print(f"  step {p.name} {row['compile']}: speedup {fmt(row.get('speedup'))}", flush=True)
    return rows


def step_table(rows: list[dict]) -> str:
    cells = []
    for r in rows:
        o, t = r["ours"], r.get("transformers") or {}
        cells.append([r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["compile"],
                      f"{o['samples_per_s']:.3g}", f"{r['padded']['samples_per_s']:.3g}", fmt(t.get("samples_per_s")),
                      spread(r.get("speedup"), r.get("speedup_quartiles")),
                      spread(r["speedup_padded"], r["speedup_padded_quartiles"]),
                      f"{o['tokens_per_s']:.3g}", fmt(o.get("mfu_real"), ".1%") + " / " + fmt(o.get("mfu_padded"), ".1%"),
                      fmt(t.get("mfu_real"), ".1%") + " / " + fmt(t.get("mfu_padded"), ".1%"),
                      " / ".join(fmt(x, ".0f") for x in (o["peak_mib"], r["padded"]["peak_mib"], t.get("peak_mib"))),
                      f"{o['sdpa']} / {t.get('sdpa', 'n/a')}"])
    text = captioned(
        "Training step (forward, backward, clipping, AdamW), medians; ours unpadded (train.py's default) and padded; "
        "speedup = the other's step time / ours unpadded, median over rounds; MFU over real tokens / padded slots; "
        "peak memory above weights and optimizer state",
        ["preset", "B x T", "compile", "ours samples/s", "padded samples/s", "transformers samples/s",
         "speedup over transformers", "speedup over padded", "ours real tokens/s", "ours MFU", "transformers MFU",
         "peak MiB ours / padded / transformers", "SDPA kernel ours / transformers"], cells)
    if any("matmul_flops_per_s" in r for r in rows):
        text += "\n\nMatrix-product rate measured in each rotation (MFU denominator): " + ", ".join(
            f"{r['preset']} {r['compile']} {r['matmul_flops_per_s'] / 1e12:.3g} TFLOP/s" for r in rows)
    return text


# -----------------------------------------------------------------------------
# cmi


def bench_cmi(p: Preset) -> list[dict]:
    """A step with the min-CMI objective (eq. 14, G from an eval pass) against plain ce, on one model; and the two
    objectives alone on one forward's outputs (detached leaves), whose difference is the term's own cost: a few
    microseconds that a noisy machine hides in the step times."""
    args, runtime, batch, ours, autocast = p.args, p.runtime, p.batch, p.ours, p.runtime.precision.autocast()
    C, d = ours.config.num_labels, ours.classifier.in_features
    features = Features()
    objectives = {mode: CMIObjective(mode=mode, lam=TRAIN_DEFAULTS.lam, num_classes=C, features=features,
                                     centroids=EpochCentroids(C, d, runtime.device)) for mode in ("ce", "min")}
    rows = []
    for mode in p.variants:
        torch._dynamo.reset()
        c = Contender(ours, runtime, 2 * (args.warmup + args.repeats), runtime.unpad, runs=compiled(ours, mode))
        stats = predict(c.runs, [batch], features, C, len(batch["labels"]), autocast=autocast, unpad=c.unpad)[1]
        objectives["min"].centroids.refresh(stats)  # the `epoch` policy's G: class means of f_x under the current model
        with autocast:
            out = c.runs(**model_inputs(batch, c.unpad))
        leaves = type(out)(*(t.detach().clone().requires_grad_() for t in out))  # a copy: CUDA graphs reuse theirs

        def objective_alone(objective):
            with autocast:
                terms, _ = objective(leaves, batch)
            sum(terms).backward()

        calls = {name: (lambda o=o: c.step(batch, o)) for name, o in objectives.items()}
        calls.update({f"{name}_alone": (lambda o=o: objective_alone(o)) for name, o in objectives.items()})
        seconds = alternate(calls, args.repeats, args.warmup, runtime.device)
        ratio, quartiles = paired_ratio(seconds["min"], seconds["ce"])
        # a call of microseconds is undisturbed or loses whole time slices to other processes: its fastest round
        # is its cost, as timeit reports
        term = min(seconds["min_alone"]) - min(seconds["ce_alone"])
        rows.append({"preset": p.name, "compile": mode or "eager", "batch_size": len(batch["labels"]),
                     "seq_len": batch["input_ids"].shape[1], "ce_seconds": statistics.median(seconds["ce"]),
                     "min_seconds": statistics.median(seconds["min"]), "all_seconds": seconds,
                     "overhead": ratio - 1, "overhead_quartiles": [q - 1 for q in quartiles],
                     "term_seconds": term, "term_overhead": term / statistics.median(seconds["ce"])})
        print(f"  cmi {p.name} {mode or 'eager'}: overhead {rows[-1]['overhead']:+.1%}, "
              f"term alone {rows[-1]['term_overhead']:+.2%}", flush=True)
    return rows


def cmi_table(rows: list[dict]) -> str:
    return captioned(
        "The CMI term's cost (goal: <= 3%): step time with --mode min (epoch centroids) over --mode ce, median over "
        "rounds, minus 1; and the term alone: min minus ce objective on one forward's outputs (its forward and "
        "backward, fastest round), over the ce step",
        ["preset", "B x T", "compile", "ce ms", "min ms", "step overhead", "term alone", "term / step"],
        [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["compile"], f"{r['ce_seconds'] * 1e3:.1f}",
          f"{r['min_seconds'] * 1e3:.1f}", spread(r["overhead"], r["overhead_quartiles"], "+.1%"),
          f"{r['term_seconds'] * 1e6:.0f} us", f"**{r['term_overhead']:+.2%}**"] for r in rows])


# -----------------------------------------------------------------------------
# epoch


def bench_epoch(p: Preset) -> list[dict]:
    """Training on each --epoch-tasks' real examples: the same shuffled batches (train.py's default) for ours
    unpadded, ours padded and transformers', each from the same weights, compiled as train.py compiles; with
    --amp both each of them (padded aside) in float32 and in bf16 autocast; with --epoch-lam also ours trained
    with the min-CMI objective (train.py's epoch centroids, from an untimed pass)."""
    models = {name: m for name, m in p.contenders().items() if len(p.precisions()) == 1 or name != "padded"}
    if p.args.epoch_lam is not None:
        models["ours_min"] = (p.ours, True)
    return [epoch_row(p, task, train, models, p.name) for task, train in p.data["epoch"].items()]


def bench_decoder(p: Preset) -> list[dict]:
    """A decoder of Qwen2.5-0.5B's width (--decoder-layers layers, random weights, the vocabulary of --checkpoint's
    tokenizer, which encodes the real examples) trained on each --epoch-tasks' real batches, as bench_epoch trains
    BERT: ours unpadded against transformers' Qwen2ForSequenceClassification (SDPA, every slot). Measured once, at
    the first preset: the model is the section's own."""
    if p.name != p.args.presets[0]:
        return []
    torch.manual_seed(p.args.seed)
    config = qwen_width_config(p)
    ours = LlamaForSequenceClassification(config).to(p.runtime.device).train()
    theirs = transformers_twin(ours)
    models = {"ours": (ours, True)} | ({"transformers": (theirs, False)} if theirs is not None else {})
    label = f"qwen2.5-0.5b width, {p.args.decoder_layers} layers"
    return [epoch_row(p, task, train, models, label) | {"step": step_race(p, train, models)}
            for task, train in p.data["epoch"].items()]


def qwen_width_config(p: Preset) -> LlamaConfig:
    """The decoder and memory sections' model: Qwen2.5-0.5B's width, --decoder-layers layers, the vocabulary of
    --checkpoint's tokenizer."""
    # pad 0: the tokenizer's [PAD], never a real token, as transformers needs
    return LlamaConfig(vocab_size=p.ours.config.vocab_size, num_hidden_layers=p.args.decoder_layers, pad_token_id=0,
                       **QWEN25_05B)


def step_race(p: Preset, train, models: dict) -> dict:
    """One training step of each of `models` (name -> (model, unpadded)) on the first batch of train.py's first
    epoch, alternating (--repeats rounds after --warmup): median milliseconds, and the others' time over ours."""
    batch = next(iter(Batches(train, epoch_order(train, p.args.batch_size, p.args.seed, 1), p.runtime.device,
                              p.runtime.pad_multiple)))
    steps = 2 * (p.args.warmup + p.args.repeats)
    calls = {}
    for name, (model, unpad) in models.items():
        copied = copy.deepcopy(model)
        c = Contender(copied, p.runtime, steps, unpad, runs=p.runtime.wrap(copied))
        calls[name] = lambda c=c: c.step(batch)
    seconds = alternate(calls, p.args.repeats, p.args.warmup, p.runtime.device)
    row = {"tokens": int(batch["attention_mask"].sum()), "slots": batch["attention_mask"].numel()}
    row |= {f"{name}_ms": 1e3 * statistics.median(s) for name, s in seconds.items()}
    for name in seconds.keys() - {"ours"}:
        row[f"speedup_{name}"], row[f"speedup_{name}_quartiles"] = paired_ratio(seconds[name], seconds["ours"])
    return row


def decoder_table(rows: list[dict]) -> str:
    steps = [f"{r['task']}: ours {r['step']['ours_ms']:.4g} ms, transformers {fmt(r['step'].get('transformers_ms'), '.4g')} "
             f"ms ({r['step']['tokens']} real tokens in {r['step']['slots']} slots), speedup "
             + (spread(r["step"]["speedup_transformers"], r["step"]["speedup_transformers_quartiles"])
                if "speedup_transformers" in r["step"] else "n/a") for r in rows]
    return epoch_table(rows) + "\n\nOne training step on the first batch of the epoch, median over rounds: " + "; ".join(steps)


def bench_memory(p: Preset) -> list[dict]:
    """The memory of train.py's training step on a decoder of Qwen2.5-0.5B's width (--decoder-layers layers, random
    weights, --checkpoint's vocabulary), on the widest of the first --epoch-tasks task's batches: full fine-tuning
    in float32 and under bf16 autocast, LoRA (r 8 on q_proj, v_proj; the head trained) on bf16 weights, and that
    with activation checkpointing. Per setting: the parameters and those trained, the MiB of the weights and of
    AdamW's moments (allocated by a first step), and the peak MiB a second step allocates above them (gradients,
    activations, temporaries). Measured once, at the first preset."""
    if p.name != p.args.presets[0]:
        return []
    task, train = next(iter(p.data["epoch"].items()))
    batches = epoch_order(train, p.args.batch_size, p.args.seed, p.args.epoch_batches or None)
    widest = widest_batch(train, batches, p.runtime)
    f32, bf16 = (replace(p.runtime, precision=precision(p.runtime.device, dtype)) for dtype in (None, torch.bfloat16))
    settings = {"full, float32": (f32, False, False), "full, bf16 autocast": (bf16, False, False),
                "LoRA, bf16 weights": (bf16, True, False), "LoRA, bf16 weights, checkpointing": (bf16, True, True)}
    config = qwen_width_config(p)
    rows = []
    for name, (runtime, lora, checkpointed) in settings.items():
        torch.manual_seed(p.args.seed)
        model = LlamaForSequenceClassification(config).to(p.runtime.device).train()
        if lora:
            model.to(torch.bfloat16)
            add_lora(model, r=8, alpha=16)  # the adapters in float32 (models/lora.py)
            model.score.float()  # the head in float32, as AdamW's updates of it need
        checkpoint_layers(model, checkpointed)
        c = Contender(model, runtime, steps=2, unpad=True)
        c.step(widest)  # AdamW's moments are allocated here
        moments = sum(t.numel() * t.element_size() for state in c.optimizer.state.values() for t in state.values()
                      if torch.is_tensor(t) and t.dim() > 0)
        rows.append({"setting": name, "task": task, "layers": p.args.decoder_layers,
                     "tokens": int(widest["attention_mask"].sum()),
                     "parameters": sum(q.numel() for q in model.parameters()),
                     "trained": sum(q.numel() for q in model.parameters() if q.requires_grad),
                     "weights_mib": sum(q.numel() * q.element_size() for q in model.parameters()) / 2**20,
                     "moments_mib": moments / 2**20,
                     "step_peak_mib": peak_memory_mib(lambda: c.step(widest), p.runtime.device)})
        rows[-1]["total_mib"] = rows[-1]["weights_mib"] + rows[-1]["moments_mib"] + rows[-1]["step_peak_mib"]
        print(f"  memory {name}: {rows[-1]['total_mib']:.0f} MiB")
    return rows


def memory_table(rows: list[dict]) -> str:
    return captioned(
        f"Memory of one training step, a decoder of Qwen2.5-0.5B's width with {rows[0]['layers']} layers, "
        f"{rows[0]['tokens']} real tokens ({rows[0]['task']}); MiB",
        ["setting", "parameters", "trained", "weights", "AdamW moments", "step peak", "total"],
        [[r["setting"], f"{r['parameters']:,}", f"{r['trained']:,}", f"{r['weights_mib']:.1f}",
          f"{r['moments_mib']:.1f}", f"{r['step_peak_mib']:.1f}", f"{r['total_mib']:.1f}"] for r in rows])


def epoch_row(p: Preset, task: str, train, models: dict, label: str) -> dict:
    """The race of `models` (name -> (model, unpadded)) on `task`'s batches: one row of the table, `label`'s."""
    args = p.args
    batches = epoch_order(train, args.batch_size, args.seed, args.epoch_batches or None)
    torch._dynamo.reset()
    graphs = compiled_graphs()
    precisions = p.precisions()
    runs = {}
    for suffix, runtime in precisions.items():
        for name, (model, unpad) in models.items():
            copied = copy.deepcopy(model)
            c = Contender(copied, runtime, len(batches), unpad, runs=runtime.wrap(copied))  # compiled as train.py
            runs[name + suffix] = (c, min_objective(c, train, batches, runtime, args.epoch_lam)
                                   if name == "ours_min" else cross_entropy)
    reference = "ours" + next(reversed(precisions))  # ours; in bf16 when both precisions are timed
    seconds, peaks = race(runs, train, batches, p.runtime, args.chunk)
    row = {"preset": label, "task": task, "compile": p.train_mode or "eager", "batch_size": args.batch_size,
           "max_len": args.max_len, "train_examples": len(train), "graphs_compiled": compiled_graphs() - graphs,
           "padding": padding_fraction(train.lengths, batches, p.runtime.pad_multiple), "reference": reference,
           "contenders": list(runs), "lam": args.epoch_lam}
    for name in runs:
        row[name] = epoch_figures(seconds[name], batches, len(train)) | {"peak_mib": peaks[name]}
    for name in runs:
        if name != reference:  # the same batches in the same turns: a paired ratio
            row[f"speedup_{name}"], row[f"speedup_{name}_quartiles"] = paired_ratio(seconds[name], seconds[reference])
    print(f"  epoch {label} {task}: " + ", ".join(f"{row[f'speedup_{n}']:.2f} over {n}" for n in runs
                                                    if n != reference), flush=True)
    return row


def epoch_table(rows: list[dict]) -> str:
    names, reference = rows[0]["contenders"], rows[0]["reference"]
    others = [n for n in names if n != reference]
    return captioned(
        f"Training epochs on real data, the same shuffled batches of each task for {' / '.join(names)}"
        + (f" (ours_min: --mode min, lambda {rows[0]['lam']:g})" if rows[0]["lam"] is not None else "")
        + f"; epoch seconds = the task's examples at the timed rate; speedup over X = X's time / {reference}'s "
        "over the same turns, median (quartiles); peak memory of a step on the widest batch",
        ["preset", "task", "compile", "batches timed", "padding", "samples/s", "epoch s", "peak MiB",
         *[f"speedup over {n}" for n in others]],
        [[r["preset"], r["task"], r["compile"],
          f"{r[reference]['batches']} of {num_train_batches(r['train_examples'], r['batch_size'])}",
          f"{r['padding']:.0%}", " / ".join(f"{r[n]['samples_per_s']:.4g}" for n in names),
          " / ".join(f"{r[n]['epoch_seconds']:.4g}" for n in names),
          " / ".join(fmt(r[n]["peak_mib"], ".0f") for n in names),
          *[spread(r[f"speedup_{n}"], r[f"speedup_{n}_quartiles"]) for n in others]] for r in rows])


# -----------------------------------------------------------------------------
# distill


def bench_distill(p: Preset) -> list[dict]:
    """A DistilBERT student trained against cached teacher logits (one eval pass) and against a live teacher; a
    BERT preset's only (the teacher's config makes the student)."""
    if not isinstance(p.ours, BertForSequenceClassification):
        return []
    args, runtime, cola = p.args, p.runtime, p.data["cola"]
    teacher = copy.deepcopy(p.ours).eval().requires_grad_(False)
    # half the teacher's layers (bert-base -> distilbert-base's 6)
    student = DistilBertForSequenceClassification(student_config(teacher, max(1, teacher.config.num_hidden_layers // 2)))
    torch._dynamo.reset()
    live = runtime.wrap(teacher)  # compiled as train.py compiles
    batches = epoch_order(cola, args.batch_size, args.seed, args.epoch_batches or None)

    def teacher_pass(index_batches, desc):
        return examples_pass(live, cola, index_batches, runtime, num_classes=teacher.config.num_labels,
                             unpad=runtime.unpad, desc=desc)

    # the cache: one pass over the examples trained on (after a warm-up on one batch's), timed
    teacher_pass(batches[:1], "warm-up")
    (logits, _), seconds = timed(lambda: teacher_pass(batches, "teacher logits"), runtime.device)
    cache_seconds = seconds * len(cola) / sum(map(len, batches))  # extrapolated to the whole split
    c = Contender(student, runtime, 2 * len(batches), runtime.unpad, runs=runtime.wrap(student))
    runs = {"cached": (c, DistillationObjective(KD["alpha"], KD["temperature"], teacher_logits=logits)),
            "live": (c, DistillationObjective(KD["alpha"], KD["temperature"], teacher=live, unpad=runtime.unpad))}
    seconds, peaks = race(runs, cola, batches, runtime, args.chunk)
    row = {"teacher": p.name, "student_layers": student.config.n_layers, "compile": p.train_mode or "eager",
           "batch_size": args.batch_size, "train_examples": len(cola), "teacher_pass_seconds": cache_seconds,
           "padding": padding_fraction(cola.lengths, batches, runtime.pad_multiple)}
    for name in runs:
        row[name] = epoch_figures(seconds[name], batches, len(cola)) | {"peak_mib": peaks[name]}
    row["speedup"], row["speedup_quartiles"] = paired_ratio(seconds["live"], seconds["cached"])  # same batches
    live, cached = row["live"]["epoch_seconds"], row["cached"]["epoch_seconds"]  # the cache costs one teacher pass
    row["speedup_10_epochs"] = STUDENT_EPOCHS * live / (STUDENT_EPOCHS * cached + cache_seconds)
    print(f"  distill {p.name}: speedup {row['speedup']:.2f}", flush=True)
    return [row]


def distill_table(rows: list[dict]) -> str:
    return captioned(
        "Distillation on CoLA, a DistilBERT student: cached teacher logits / live teacher (epoch s extrapolated from "
        "the batches timed; speedup = live / cached time of the same batches, median over turns; over 10 epochs the "
        "cache costs one teacher pass)",
        ["teacher", "student layers", "compile", "batches timed", "padding", "epoch s cached / live", "teacher pass s",
         "speedup", "over 10 epochs"],
        [[r["teacher"], r["student_layers"], r["compile"], f"{r['cached']['batches']}", f"{r['padding']:.0%}",
          f"{r['cached']['epoch_seconds']:.4g} / {r['live']['epoch_seconds']:.4g}", f"{r['teacher_pass_seconds']:.3g}",
          spread(r["speedup"], r["speedup_quartiles"]), f"{r['speedup_10_epochs']:.2f}"] for r in rows])


# -----------------------------------------------------------------------------
# main

SECTIONS = {"step": Section(bench_step, step_table), "cmi": Section(bench_cmi, cmi_table),
            "epoch": Section(bench_epoch, epoch_table), "distill": Section(bench_distill, distill_table),
            "decoder": Section(bench_decoder, decoder_table), "memory": Section(bench_memory, memory_table)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    real = bool({"epoch", "distill", "decoder", "memory"} & set(args.sections))
    check_presets(args, real=real, synthetic=bool({"step", "cmi"} & set(args.sections)))
    runtime = setup(**runtime_options(args))
    data = {"cola": train_split(args, "cola") if "distill" in args.sections else None,
            "epoch": {task: train_split(args, task, args.epoch_examples) for task in args.epoch_tasks}
            if {"epoch", "decoder", "memory"} & set(args.sections) else {}}
    return measure(args, runtime, SECTIONS, data, "bench.py")


if __name__ == "__main__":
    run_main(main, INTERRUPTED)
