"""DistilBERT (Sanh et al., 2019) for sequence classification, with its masked-LM head, in plain PyTorch.

DistilBERT is BERT with half the layers, no token-type embeddings and no pooler. Its attention, feed-forward and
masked-LM blocks are BERT's (models/bert.py); what differs is written here: the embeddings, a layer without
dropout on the attention output, and the classifier head (pre_classifier + ReLU on the first token).
Outputs equal transformers' DistilBertForSequenceClassification to float32 rounding (tests/test_parity.py).

Shape letters: B batch, T tokens, d hidden size (`dim`), V vocabulary, C classes.
"""

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.bert import (ClassifierOutput, FeedForward, Layers, MaskedLMHead, SelfAttention, init_weights,
                         key_padding_mask)
from models.checkpoint import CheckpointError, Layout, Pretrained
from models.unpadded import Tokens, dropout

LAYER_NORM_EPS = 1e-12  # fixed in DistilBERT, not a config.json field


@dataclass
class DistilBertConfig:
    """config.json of a DistilBERT checkpoint: transformers' field names, distilbert-base-uncased defaults."""

    model_type: str = "distilbert"
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False  # fixed sinusoidal position table instead of a learned one
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    activation: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    label2id: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)  # the other config.json keys, written back unchanged


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """(n_positions, d) table: sin(pos / 10000^(2i/d)) in even columns 2i, cos of the same angle in odd 2i+1."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    angle = pos / 10000 ** (2 * (torch.arange(dim) // 2) / dim)  # (n_positions, d)
    return torch.where(torch.arange(dim) % 2 == 0, angle.sin(), angle.cos()).float()


class DistilBertEmbeddings(nn.Module):
    """Word + position embeddings (no token types), LayerNorm, dropout."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.dim)
        if config.sinusoidal_pos_embds:  # a fixed table: never trained
            with torch.no_grad():
                self.position.weight.copy_(sinusoidal_positions(config.max_position_embeddings, config.dim))
            self.position.weight.requires_grad_(False)
        self.norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        """(B, T) ids -> (N, d) rows of the tokens computed, as in BERT's embeddings."""
        x = self.word(tokens.gather(input_ids)) + self.position(tokens.positions())  # (N, d)
        return dropout(self.dropout, self.norm(x), tokens)


class DistilBertLayer(nn.Module):
    """BERT's post-LayerNorm layer, except that the attention output goes into the residual sum without dropout."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attn = SelfAttention(config.dim, config.n_heads, config.attention_dropout)
        self.attn_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.mlp = FeedForward(config.dim, config.hidden_dim, config.activation, config.dropout)
        self.mlp_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, tokens: Tokens) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, mask, tokens))  # (N, d)
        return self.mlp_norm(x + self.mlp(x, tokens))


class DistilBertModel(nn.Module):
    """Embeddings and the layers."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.embeddings = DistilBertEmbeddings(config)
        self.layers = Layers(DistilBertLayer(config) for _ in range(config.n_layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_index: torch.Tensor | None = None) -> torch.Tensor:
        """Last-layer states (B, T, d); with `token_index`, of the real tokens only (as BertModel)."""
        mask = key_padding_mask(attention_mask)
        tokens = Tokens.of(input_ids, token_index)
        x = self.embeddings(input_ids, tokens)  # (N, d)
        return tokens.pad(self.layers(x, mask, tokens))  # (B, T, d)


class DistilBertForSequenceClassification(Pretrained):
    """DistilBERT, then pre_classifier + ReLU on the first token, dropout, and a linear classifier."""

    def __init__(self, config: DistilBertConfig, mlm: bool = False):
        super().__init__()
        self.config = config
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.mlm = MaskedLMHead(config.dim, config.vocab_size, config.activation, LAYER_NORM_EPS) if mlm else None
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None) -> ClassifierOutput:
        """As BERT's classifier; DistilBERT has no token types: `token_type_ids` is accepted and not read, so that
        both are called with the same inputs."""
        hidden = self.distilbert(input_ids, attention_mask, token_index)  # (B, T, d)
        # transformers' classifier reads dropout(relu(pre_classifier(h_CLS))): the features are that vector
        # before the dropout, the counterpart of BERT's pooled output.
        features = F.relu(self.pre_classifier(hidden[:, 0]))  # (B, d)
        return ClassifierOutput(self.classifier(self.dropout(features)), features, hidden)

    def mlm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Masked-LM scores (B, T, V) from the last-layer states."""
        if self.mlm is None:
            raise CheckpointError("this model has no masked-LM head: load a checkpoint that has vocab_transform/vocab_layer_norm/vocab_projector (DistilBertForMaskedLM)")
        return self.mlm(hidden_states, self.distilbert.embeddings.word.weight)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint names: our module -> transformers' module ("{}" = layer index). DistilBertModel checkpoints have the
# same names without "distilbert.".

DistilBertForSequenceClassification.layout = Layout(
    config_class=DistilBertConfig,
    prefix="distilbert.",
    names={
        "distilbert.embeddings.word": "distilbert.embeddings.word_embeddings",
        "distilbert.embeddings.position": "distilbert.embeddings.position_embeddings",
        "distilbert.embeddings.norm": "distilbert.embeddings.LayerNorm",
        "distilbert.layers.{}.attn.query": "distilbert.transformer.layer.{}.attention.q_lin",
        "distilbert.layers.{}.attn.key": "distilbert.transformer.layer.{}.attention.k_lin",
        "distilbert.layers.{}.attn.value": "distilbert.transformer.layer.{}.attention.v_lin",
        "distilbert.layers.{}.attn.out": "distilbert.transformer.layer.{}.attention.out_lin",
        "distilbert.layers.{}.attn_norm": "distilbert.transformer.layer.{}.sa_layer_norm",
        "distilbert.layers.{}.mlp.up": "distilbert.transformer.layer.{}.ffn.lin1",
        "distilbert.layers.{}.mlp.down": "distilbert.transformer.layer.{}.ffn.lin2",
        "distilbert.layers.{}.mlp_norm": "distilbert.transformer.layer.{}.output_layer_norm",
        "pre_classifier": "pre_classifier",
        "classifier": "classifier",
        "mlm.dense": "vocab_transform",
        "mlm.norm": "vocab_layer_norm",
        "mlm": "vocab_projector",  # mlm.bias -> vocab_projector.bias
    },
    tied={"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"},
    heads=("pre_classifier.", "classifier."),
    lora_targets=("q_lin", "v_lin"),
    mlm="vocab_",
    ignored=("distilbert.embeddings.position_ids",),
)
