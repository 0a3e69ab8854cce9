"""Where a training step's time goes, beside bench.py's comparisons: the fixed per-step cost, the unpadded path's
attention candidates, and the profiler's view of one step. What these found and chose: docs/results.md,
"Performance"; docs/design.md, "Numerics".

    python scripts/bench_diagnostics.py --presets tiny,minilm --out bench_diagnostics.json

Contenders alternate in one process (benchmark/timing.py), so the figures to read are the ratios. Sections:

  overhead  the step at batch 1 x 8: nearly all of it is fixed per-step cost (AdamW's pass over every parameter,
            the embedding tables included; Python; kernel launches), against the --batch-size x --seq-len step
            timed in the same rotation
  attention the unpadded path's attention candidates on a real CoLA batch (forward and backward of attention
            alone, from the (N, d) rows of the real tokens): re-padding around SDPA, a jagged nested tensor with
            SDPA, a loop over the sequences; each one's largest difference from padded SDPA
  profile   one training step of our unpadded model on a real CoLA batch, by the profiler: the share of the
            matrix products of the linear layers, attention, the unpadding's gathers, AdamW and clipping

The real CoLA batch is the first of an epoch's shuffled batches of --batch-size, as train.py draws them.
"""
import copy
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmark.contenders import Contender, Preset, Section, compiled, epoch_order  # noqa: E402
from benchmark.options import INTERRUPTED, bench_parser, check_bench_args, check_presets, train_split  # noqa: E402
from benchmark.measuring import measure  # noqa: E402
from benchmark.timing import alternate, synthetic_batch  # noqa: E402
from cmi.loop import real_tokens  # noqa: E402
from harness.cli import run_main, runtime_options  # noqa: E402
from harness.rundata import Batches  # noqa: E402
from harness.runtime import setup  # noqa: E402
from models.bert import key_padding_mask  # noqa: E402
from models.unpadded import Tokens  # noqa: E402
from study.markdown import captioned  # noqa: E402

OVERHEAD_SHAPE = (1, 8)  # batch x tokens of the overhead section: almost no arithmetic left


# -----------------------------------------------------------------------------
# overhead


def bench_overhead(p: Preset) -> list[dict]:
    """The step at batch 1 x 8, ours against transformers': what a step costs beyond its arithmetic, as a share of
    the B x T step, timed in the same rotation."""
    args, runtime = p.args, p.runtime
    small = synthetic_batch(p.ours.config.vocab_size, p.ours.config.num_labels, *OVERHEAD_SHAPE, args.seed,
                            runtime.device)
    models = {"ours": p.ours, "transformers": p.theirs} if p.theirs is not None else {"ours": p.ours}
    rows = []
    for mode in p.variants:
        torch._dynamo.reset()
        calls = {}
        for name, model in models.items():
            c = Contender(model, runtime, 2 * (args.warmup + args.repeats), name == "ours", runs=compiled(model, mode))
            calls[name], calls[f"{name}_full"] = (lambda c=c: c.step(small)), (lambda c=c: c.step(p.batch))
        seconds = alternate(calls, args.repeats, args.warmup, runtime.device)
        row = {"preset": p.name, "compile": mode or "eager", "batch_size": small["input_ids"].shape[0],
               "seq_len": small["input_ids"].shape[1]}
        for name in models:
            s = statistics.median(seconds[name])
            row[name] = {"seconds": s, "share_of_step": s / statistics.median(seconds[f"{name}_full"]),
                         "all_seconds": seconds[name]}
        rows.append(row)
        print(f"  overhead {p.name} {row['compile']}: {row['ours']['seconds'] * 1e3:.1f} ms", flush=True)
    return rows


def overhead_table(rows: list[dict]) -> str:
    return captioned(
        f"Fixed per-step cost: the step at {OVERHEAD_SHAPE[0]} x {OVERHEAD_SHAPE[1]}",
        ["preset", "compile", "ours ms", "transformers ms", "ours, share of the B x T step"],
        [[r["preset"], r["compile"], f"{r['ours']['seconds'] * 1e3:.1f}",
          f"{r['transformers']['seconds'] * 1e3:.1f}" if "transformers" in r else "n/a",
          f"{r['ours']['share_of_step']:.1%}"] for r in rows])


# -----------------------------------------------------------------------------
# attention


def bench_attention(p: Preset) -> list[dict]:
    """The unpadded path's attention candidates, forward and backward from the (N, d) rows of the real tokens,
    against padded SDPA on the same values: re-padding around SDPA (models/unpadded.py), a jagged nested tensor
    with SDPA, a loop over the sequences."""
    device, mask = p.runtime.device, p.data["attention_mask"]
    B, T = mask.shape
    H, d = p.ours.config.num_attention_heads, p.ours.config.hidden_size
    index = real_tokens(mask)
    tokens = Tokens(index, B, T)
    lengths = mask.sum(1).tolist()
    g = torch.Generator(device=device).manual_seed(p.args.seed)
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
    seconds = alternate(calls, p.args.repeats, p.args.warmup, device)
    row = {"preset": p.name, "batch_size": B, "seq_len": T, "real_tokens": len(index)}
    for name in candidates:
        row[name] = {"seconds": statistics.median(seconds[name]), "max_abs_diff": errors[name],
                     "all_seconds": seconds[name]}
    print(f"  attention {p.name}: " + ", ".join(f"{n} {row[n]['seconds'] * 1e3:.2f} ms" for n in candidates), flush=True)
    return [row]


def attention_table(rows: list[dict]) -> str:
    names = ("repad", "nested", "loop")
    return captioned(
        "Attention of the unpadded path, forward and backward on a real CoLA batch: re-padding around SDPA / a jagged "
        "nested tensor with SDPA / a loop over the sequences (medians; time over re-padding's; max |difference| from "
        "padded SDPA)",
        ["preset", "B x T", "real tokens", "ms", "time / repad", "max |diff|"],
        [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", r["real_tokens"],
          " / ".join(f"{r[n]['seconds'] * 1e3:.3g}" for n in names),
          " / ".join(f"{r[n]['seconds'] / r['repad']['seconds']:.2f}" for n in names),
          " / ".join(f"{r[n]['max_abs_diff']:.1e}" for n in names)] for r in rows])


# -----------------------------------------------------------------------------
# profile

PROFILE_GROUPS = {  # op name -> what it is part of, in one training step of our unpadded model (first match)
    "optimiser and clipping": ("aten::_fused_adamw", "aten::_foreach", "aten::_amp_foreach"),
    "attention": ("aten::_scaled_dot_product", "aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax"),
    "linear layers": ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear"),
    "unpadding (gathers, scatters)": ("aten::index", "aten::index_copy", "aten::index_select", "aten::index_add",
                                      "aten::index_put", "aten::_index_put_impl_", "aten::nonzero"),
}


def bench_profile(p: Preset) -> list[dict]:
    """Where one training step of our unpadded model goes: the profiler's self time of every op, summed by
    PROFILE_GROUPS (the rest is LayerNorm, GELU, dropout, embeddings, the loss and Python)."""
    batch, cuda = p.data, p.runtime.device.type == "cuda"
    c = Contender(copy.deepcopy(p.ours), p.runtime, max(1, p.args.warmup) + 1, unpad=True)
    for _ in range(max(1, p.args.warmup)):
        c.step(batch)
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        c.step(batch)
    times = {}
    for e in prof.key_averages():
        group = next((g for g, prefixes in PROFILE_GROUPS.items() if e.key.startswith(prefixes)), "other")
        times[group] = times.get(group, 0.0) + (e.self_device_time_total if cuda else e.self_cpu_time_total)
    total = sum(times.values())
    row = {"preset": p.name, "batch_size": batch["input_ids"].shape[0], "seq_len": batch["input_ids"].shape[1],
           "step_ms": total / 1e3, "shares": {g: times.get(g, 0.0) / total for g in [*PROFILE_GROUPS, "other"]}}
    print(f"  profile {p.name}: " + ", ".join(f"{g} {v:.0%}" for g, v in row["shares"].items()), flush=True)
    return [row]


def profile_table(rows: list[dict]) -> str:
    groups = list(rows[0]["shares"])
    return captioned(
        "Where one training step of ours (unpadded) goes, on a real CoLA batch: the profiler's self time by op",
        ["preset", "B x T", "step ms (profiled)", *groups],
        [[r["preset"], f"{r['batch_size']} x {r['seq_len']}", f"{r['step_ms']:.1f}",
          *(f"{r['shares'][g]:.0%}" for g in groups)] for r in rows])


# -----------------------------------------------------------------------------
# main

SECTIONS = {"overhead": Section(bench_overhead, overhead_table), "attention": Section(bench_attention, attention_table),
            "profile": Section(bench_profile, profile_table)}


def main(argv=None) -> dict:
    parser = bench_parser(__doc__, list(SECTIONS), "bench_diagnostics.json")
    args = parser.parse_args(argv)
    check_bench_args(args, parser, {"sections": list(SECTIONS)})
    real = bool({"attention", "profile"} & set(args.sections))
    check_presets(args, real=real, synthetic="overhead" in args.sections)
    runtime = setup(**runtime_options(args))
    batch = None
    if real:  # the first of an epoch's shuffled batches, as train.py draws them
        cola = train_split(args, "cola")
        first = epoch_order(cola, args.batch_size, args.seed, 1)
        batch = next(iter(Batches(cola, first, runtime.device, runtime.pad_multiple)))
    return measure(args, runtime, SECTIONS, batch, "scripts/bench_diagnostics.py")


if __name__ == "__main__":
    run_main(main, INTERRUPTED)
