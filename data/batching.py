"""Batches with dynamic padding: a length-grouped training order, length-sorted evaluation, and collate.

A batch is padded only to its own longest sequence, so what it wastes depends on how different the
lengths inside it are. Grouping examples of similar length keeps that waste small (GLUE sentences are
short: CoLA averages 11 tokens, against the usual fixed max-len of 128)."""

import math

import numpy as np
import torch

from data.tokenization import Encoded

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
