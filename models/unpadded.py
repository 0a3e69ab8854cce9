"""The tokens a model computes: the real tokens only (the unpadded path, the default), or every slot (padded).

Everything in a BERT layer but attention acts on each token alone (embeddings, projections, LayerNorm, the
feed-forward block, dropout), so it runs on the (N, d) rows of the tokens computed. Attention needs each
sequence's keys: around F.scaled_dot_product_attention the rows are put back into (B, T, d), zeros in the slots
not computed, and its output is gathered again (MosaicBERT's scheme). A padded key is masked, so the real tokens
get the padded model's outputs; dropout draws its mask at the padded shape, so a seed gives the same masks.
The padded model is the same code with every slot a token (`Tokens.of` without an index): one path through the
modules. Why re-padding and not a jagged nested tensor or a loop over sequences: docs/results.md, "Performance".

Shape letters: B batch, T tokens (the padded width), N tokens computed, d hidden size.
"""
from typing import NamedTuple

import torch
import torch.nn as nn


class Tokens(NamedTuple):
    """Where the N tokens a model computes sit in its (B, T) batch: `index` (N,), their flat slots b * T + t.

    Every module takes the (N, d) rows of these tokens. The padded model is the case that computes every slot
    (`full`: N = B * T, the index covers them all), where gathering and padding are reshapes."""

    index: torch.Tensor
    B: int
    T: int
    full: bool = False

    @classmethod
    def of(cls, input_ids: torch.Tensor, token_index: torch.Tensor | None = None) -> "Tokens":
        """The real tokens `token_index` of a (B, T) batch (their flat slots, computed by the caller outside a
        compiled model: `nonzero` would break its graph; cmi.loop.real_tokens); without it, every slot, padding
        included (the padded model)."""
        B, T = input_ids.shape
        if token_index is None:
            return cls(torch.arange(B * T, device=input_ids.device), B, T, full=True)
        return cls(token_index, B, T)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...): the rows of these tokens."""
        x = x.flatten(0, 1)
        return x if self.full else x[self.index]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (B, T, d), zeros in the slots not computed."""
        if self.full:
            return x.view(self.B, self.T, -1)
        return x.new_zeros(self.B * self.T, x.size(-1)).index_copy(0, self.index, x).view(self.B, self.T, -1)

    def positions(self) -> torch.Tensor:
        """(N,) each token's position id: its slot within its row."""
        return self.index % self.T


def dropout(module: nn.Dropout, x: torch.Tensor, tokens: Tokens) -> torch.Tensor:
    """module(x) on the (N, d) rows of `tokens`, with the mask the padded model draws: drawn at (B, T, d), as
    torch's dropout draws it (bernoulli, then / (1 - p)), and gathered."""
    p = module.p
    if not module.training or not 0 < p < 1:
        return module(x)
    keep = x.new_empty(tokens.B, tokens.T, x.size(-1)).bernoulli_(1 - p).div_(1 - p)
    return x * tokens.gather(keep)
