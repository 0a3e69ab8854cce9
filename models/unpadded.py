"""The unpadded path: every token-wise operation on the real tokens only, attention on the sequences apart.

A right-padded batch (B, T) holds N real tokens; in GLUE's shuffled batches of 32 about half the slots are
padding. Everything in a BERT layer except attention acts on each token alone (the embeddings, the Q/K/V and
output projections, LayerNorm, the feed-forward block, dropout), so it runs on the (N, d) rows of the real tokens.
Attention needs each sequence's keys: around F.scaled_dot_product_attention the (N, d) queries, keys and values
are put back into (B, T, d), zeros in the padded slots, and its output is gathered again (MosaicBERT's scheme).

Exact: every real token sees the same values through the same operations as in the padded model (a padded key is
masked, so its value never counts), so the outputs equal the padded model's to the rounding of the matrix
products (bit for bit in the elementwise steps). Dropout draws its mask at the padded shape and gathers the real
rows, so a seed gives the padded model's masks; attention dropout acts on the re-padded (B, H, T, T) probabilities
as in the padded model.

Of the candidates for attention on variable lengths, measured on CPU (bench.py --sections attention: forward and
backward on a real CoLA batch of 32, all-MiniLM-L6-v2's 12 heads, 2 threads, 2026-12-03), re-padding is the
fastest, and the only one bit for bit the padded model's: a loop over the sequences took 1.32x as long, a jagged
nested tensor with SDPA 5.4x (docs/results.md, "Performance").

Shape letters: B batch, T tokens (the padded width), N real tokens, d hidden size.
"""
from typing import NamedTuple

import torch
import torch.nn as nn


def real_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of a right-padded batch -> (N,) flat slot index b * T + t of each real token, in order.

    Data-dependent (`nonzero`), so computed once per batch outside a compiled model and passed in. Right padding
    is checked: with left padding the first real row of a sequence would not be its [CLS] token."""
    mask = attention_mask.bool()
    if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("the unpadded path needs right-padded sequences of at least one token: every row of "
                         "attention_mask must read 1 ... 1 0 ... 0")
    return mask.flatten().nonzero().squeeze(1)


class Unpadded(NamedTuple):
    """Where the N real tokens of a (B, T) batch sit: `index` (N,), their flat slots (real_tokens)."""

    index: torch.Tensor
    B: int
    T: int

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...): the real tokens' rows."""
        return x.flatten(0, 1)[self.index]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (B, T, d), zeros in the padded slots."""
        return x.new_zeros(self.B * self.T, x.size(-1)).index_copy(0, self.index, x).view(self.B, self.T, -1)

    def positions(self) -> torch.Tensor:
        """(N,) each real token's position id: its slot within its row, as in the padded model."""
        return self.index % self.T


def dropout(module: nn.Dropout, x: torch.Tensor, unpadded: Unpadded | None) -> torch.Tensor:
    """module(x); on the real tokens (N, d), with the mask the padded model would draw: drawn at (B * T, d), as
    torch's dropout draws it (bernoulli, then / (1 - p)), and gathered."""
    p = module.p
    if unpadded is None or not module.training or not 0 < p < 1:
        return module(x)
    keep = x.new_empty(unpadded.B * unpadded.T, x.size(-1)).bernoulli_(1 - p).div_(1 - p)
    return x * keep[unpadded.index]
