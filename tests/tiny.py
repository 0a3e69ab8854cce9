"""A tiny stand-in classifier with the output contract of models/ (logits, features, hidden_states), for
testing cmi/ without BERT, and its synthetic data."""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Output(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor
    hidden_states: torch.Tensor


class TinyClassifier(nn.Module):
    def __init__(self, vocab=50, dim=8, num_labels=2, dropout=0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pool = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(dim, num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, token_index=None):
        hidden = self.emb(input_ids)  # (B, T, d)
        pooled = torch.tanh(self.pool(hidden.mean(1)))
        return Output(self.cls(self.drop(pooled)), pooled, hidden)

    lora = None  # no LoRA adapters (models.lora), as a Pretrained model without them

    def save_pretrained(self, path, state_dict=None):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict() if state_dict is None else state_dict, path / "weights.pt")


def synthetic_batches(n=40, batch_size=8, seq=5, vocab=50, num_labels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab, (n, seq), generator=g)
    labels = (ids[:, 0] < vocab // 2).long() if num_labels == 2 else ids[:, 0] % num_labels
    return [
        {"input_ids": ids[i : i + batch_size], "labels": labels[i : i + batch_size],
         "index": torch.arange(i, min(i + batch_size, n))}
        for i in range(0, n, batch_size)
    ]


def cross_entropy_of(out, batch):
    return F.cross_entropy(out.logits, batch["labels"])
