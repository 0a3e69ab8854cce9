"""Padding fraction of one epoch of training batches: length-grouped vs plain shuffled vs padded to --max-len.

    python scripts/padding.py --data-dir glue --task cola --tokenizer all-MiniLM-L6-v2   # a GLUE download, a checkpoint

The figures of docs/results.md, "Padding"; the batches are those of data.batching, which train.py uses.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data.batching import GROUP_BATCHES, padding_fraction, train_batches  # noqa: E402
from data.loading import load_split  # noqa: E402
from data.tasks import DataError, get_task  # noqa: E402
from data.tokenization import encode, load_tokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cola", help="GLUE task name")
    parser.add_argument("--data-dir", help="folder in the GLUE download layout (default: the datasets hub)")
    parser.add_argument("--tokenizer", required=True, help="checkpoint folder with tokenizer.json or vocab.txt")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per batch")
    parser.add_argument("--max-len", type=int, default=128, help="truncation length in tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch order (epoch 0)")
    args = parser.parse_args()
    try:
        examples = load_split(get_task(args.task), "train", args.data_dir)
        lengths = encode(load_tokenizer(args.tokenizer), examples, args.max_len).lengths
    except DataError as e:
        raise SystemExit(f"error: {e}")

    grouped = train_batches(lengths, args.batch_size, args.seed, epoch=0)
    shuffled = train_batches(lengths, args.batch_size, args.seed, epoch=0, group_batches=1)
    print(f"{args.task} train: {len(lengths)} examples, {lengths.mean():.1f} tokens on average, "
          f"batch size {args.batch_size}, {len(grouped)} batches")
    rows = [
        (f"length-grouped ({GROUP_BATCHES} batches per group)", padding_fraction(lengths, grouped)),
        ("length-grouped, padded to a multiple of 8", padding_fraction(lengths, grouped, 8)),
        ("plain shuffled", padding_fraction(lengths, shuffled)),
        # every batch rounded up to a multiple of max-len is padded to max-len itself
        (f"padded to max-len {args.max_len}", padding_fraction(lengths, shuffled, args.max_len)),
    ]
    for name, fraction in rows:
        print(f"{name:<45} padding {fraction:6.1%}")


if __name__ == "__main__":
    main()
