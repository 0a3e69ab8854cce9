"""The options bench.py and scripts/bench_diagnostics.py share, and every input checked before anything is
measured (the results are written after all the measuring): the flags, the presets' checkpoint and lengths, the
results file's folder; and the real examples they time."""
import argparse
import os
from pathlib import Path

from benchmark.contenders import PRESETS
from data.loading import load_split
from data.tasks import DataError, get_task
from data.tokenization import Encoded, encode, load_tokenizer
from harness.cli import TRAIN_DEFAULTS, Parser, check_ranges, ranged
from models.bert import BertConfig
from models.checkpoint import read_config, resolve
from models.distilbert import DistilBertConfig

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
    ranged(g, "--batch-size", "> 0", type=int, default=TRAIN_DEFAULTS.batch_size, help="examples per step")
    ranged(g, "--seq-len", "> 0", type=int, default=TRAIN_DEFAULTS.max_len,
           help="padded length of the synthetic batch (its real lengths drawn from [T/2, T])")
    ranged(g, "--max-len", "> 0", type=int, default=TRAIN_DEFAULTS.max_len, help="truncation length of real examples")
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
    # what harness.runtime.setup reads (harness.cli.runtime_options): each section says which path it times
    parser.set_defaults(padded=False)
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
