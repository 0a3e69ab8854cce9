"""Batches with dynamic padding: a length-grouped training order, length-sorted evaluation, and collate.

A batch is padded only to its own longest sequence, so what it wastes depends on how different the
lengths inside it are. Grouping examples of similar length keeps that waste small (GLUE sentences are
short: CoLA averages 11 tokens, against the usual fixed max-len of 128)."""

import argparse
import math

import numpy as np
import torch

from data.loading import load_split
from data.tasks import DataError, get_task
from data.tokenization import Encoded, encode, load_tokenizer

GROUP_BATCHES = 50  # batches per length-sorted group (the "mega-batch" of HF's LengthGroupedSampler)


def num_train_batches(num_examples: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per epoch on each rank: the LR schedule's steps per epoch."""
    return math.ceil(num_examples / batch_size) // world_size


def _sorted_batches(index: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    index = index[np.argsort(-lengths[index], kind="stable")]  # longest first
    return [index[i:i + batch_size] for i in range(0, len(index), batch_size)]


def train_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_batches: int = GROUP_BATCHES,
                  rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """One epoch's training batches as arrays of example indices, the same for the same seed and epoch (so a
    resumed epoch replays its order). Shuffle; sort each group of `group_batches` batches by length and cut
    it into batches; shuffle the batches. Every example appears once; group_batches=1 is plain shuffling.
    With world_size > 1, rank r takes every world_size-th batch, and the epoch's last
    (num_batches % world_size) batches are dropped so that every rank takes the same number of steps."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = batch_size * group_batches
    batches = [b for start in range(0, len(order), group)
               for b in _sorted_batches(order[start:start + group], lengths, batch_size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches[rank::world_size][:num_train_batches(len(lengths), batch_size, world_size)]


def eval_batches(lengths: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """Evaluation batches: all examples sorted by length, longest first (a too-large batch fails at once).
    With world_size > 1, rank r takes every world_size-th example, so each example is evaluated exactly once
    and every rank has some as long as there are at least world_size examples."""
    return _sorted_batches(np.arange(len(lengths))[rank::world_size], lengths, batch_size)


def batch_width(lengths: np.ndarray, pad_to_multiple_of: int | None = None) -> int:
    """Padded length of a batch: its longest sequence, rounded up to a multiple (8 suits tensor cores)."""
    width = int(lengths.max())
    return math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else width


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray], pad_to_multiple_of: int | None = None) -> float:
    """Fraction of the padded batches' token slots that are padding."""
    slots = sum(len(b) * batch_width(lengths[b], pad_to_multiple_of) for b in batches)
    tokens = sum(int(lengths[b].sum()) for b in batches)
    return 1 - tokens / slots


def collate(encoded: Encoded, index: np.ndarray, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """The batch of examples `index`, padded to its longest sequence: int64 input_ids, attention_mask,
    token_type_ids [B, T], labels [B], and index [B] (each example's position in the split)."""
    lengths = encoded.lengths[index]
    shape = (len(index), batch_width(lengths, pad_to_multiple_of))
    input_ids = np.full(shape, encoded.pad_id, dtype=np.int64)
    token_type_ids = np.zeros(shape, dtype=np.int64)
    for row, (i, n) in enumerate(zip(index, lengths)):
        input_ids[row, :n] = encoded.input_ids[i]
        token_type_ids[row, :n] = encoded.token_type_ids[i]
    attention_mask = (np.arange(shape[1]) < lengths[:, None]).astype(np.int64)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "labels": torch.from_numpy(encoded.labels[index]),
        "index": torch.as_tensor(index, dtype=torch.int64),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Padding fraction of one epoch of training batches: "
                                                 "length-grouped vs plain shuffled vs padded to --max-len.")
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
