"""BERT (Devlin et al., 2019) for sequence classification, with its masked-LM head, in plain PyTorch.

Read top to bottom: config, embeddings, self-attention, feed-forward, layer, model, heads, the classifier, and
last the names these weights have in Hugging Face checkpoints (the reading and writing is models/checkpoint.py).
Outputs equal transformers' BertForSequenceClassification to float32 rounding (tests/test_parity.py).

Every module takes the (N, d) rows of the tokens it computes and the `Tokens` that say where they sit in the
(B, T) batch (models/unpadded.py): the real tokens only, given `token_index`, else every slot (N = B * T).

Shape letters: B batch, T tokens, H heads, D head size, d hidden size, V vocabulary, C classes.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.checkpoint import CheckpointError, Layout, Pretrained
from models.unpadded import Tokens, dropout


@dataclass
class BertConfig:
    """config.json of a BERT checkpoint: transformers' field names, bert-base-uncased defaults."""

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None  # None: hidden_dropout_prob
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    label2id: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)  # the other config.json keys, written back unchanged


ACTIVATIONS = {
    "gelu": F.gelu,  # the exact erf form BERT was trained with
    "gelu_new": partial(F.gelu, approximate="tanh"),  # GPT-2's tanh approximation
    "relu": F.relu,
}


def activation(name: str):
    """The function `hidden_act` names in config.json."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported, expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' initialisation: normal(0, std) weights, zero biases and padding row; LayerNorm stays 1, 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding) and module.weight.requires_grad:  # frozen tables (sinusoids) keep theirs
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) with 1 for real tokens, 0 for padding -> (B, 1, 1, T) bool, True where a key may be attended to.

    None when nothing is padded: SDPA then can take its fastest kernels. Reading the mask is data-dependent,
    so torch.compile skips that check and always gets the mask.
    """
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    return attention_mask.bool()[:, None, None, :]


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.position_embedding_type != "absolute":
            raise ValueError(f"position_embedding_type {config.position_embedding_type!r} is not supported, only 'absolute'")
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        """(B, T) ids and types -> (N, d) rows of the tokens computed."""
        ids, types, positions = tokens.gather(input_ids), tokens.gather(token_type_ids), tokens.positions()  # (N,)
        x = self.word(ids) + self.token_type(types) + self.position(positions)  # (N, d)
        return dropout(self.dropout, self.norm(x), tokens)


class SelfAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention, with the output projection."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not a multiple of the number of heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout  # on the attention probabilities
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, tokens: Tokens) -> torch.Tensor:
        # (N, d) -> (B, T, d): attention needs the sequences apart
        q, k, v = tokens.pad(self.query(x)), tokens.pad(self.key(x)), tokens.pad(self.value(x))
        B, T, d = q.shape
        # (B, T, d) -> (B, T, H, D) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        # A padded query row still sees the real keys, so no row is fully masked (that would give NaN).
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        y = tokens.gather(y.transpose(1, 2).reshape(B, T, d))  # (B, H, T, D) -> (B, T, d) -> (N, d)
        return self.out(y)


class FeedForward(nn.Module):
    """d -> hidden -> d with the configured activation; dropout on the output, before the residual sum."""

    def __init__(self, dim: int, hidden_dim: int, act: str, dropout: float):
        super().__init__()
        self.up = nn.Linear(dim, hidden_dim)
        self.act = activation(act)
        self.down = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        return dropout(self.dropout, self.down(self.act(self.up(x))), tokens)  # (N, d)


class BertLayer(nn.Module):
    """Post-LayerNorm transformer layer: LayerNorm after each residual sum, as in the original Transformer."""

    def __init__(self, config: BertConfig):
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.attn = SelfAttention(d, config.num_attention_heads, config.attention_probs_dropout_prob)
        self.attn_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.mlp = FeedForward(d, config.intermediate_size, config.hidden_act, config.hidden_dropout_prob)
        self.mlp_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, tokens: Tokens) -> torch.Tensor:
        x = self.attn_norm(x + dropout(self.attn_dropout, self.attn(x, mask, tokens), tokens))  # (N, d)
        return self.mlp_norm(x + self.mlp(x, tokens))


class Layers(nn.ModuleList):
    """A model's layers, run in order on (N, d) rows. `checkpointed` (--gradient-checkpointing, set by
    checkpoint_layers): in training each layer keeps only its input, and its activations are recomputed in the
    backward (torch.utils.checkpoint), so memory holds one layer's activations at a time. Non-reentrant: the
    reentrant form gives no gradient to a layer's parameters when its input needs none (LoRA's adapters over frozen
    embeddings). Dropout draws the same masks again in the recomputation (the RNG state is restored)."""

    checkpointed = False

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        for layer in self:
            x = checkpoint(layer, x, *args, use_reentrant=False) if self.checkpointed and self.training else layer(x, *args)
        return x


def checkpoint_layers(model: nn.Module, on: bool = True) -> None:
    """Turn activation checkpointing of every Layers in `model` on (or off)."""
    for module in model.modules():
        if isinstance(module, Layers):
            module.checkpointed = on


class BertModel(nn.Module):
    """Embeddings, the layers, and the pooler (dense + tanh on the [CLS] state)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.layers = Layers(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states (B, T, d) and the pooled output (B, d). With `token_index` (the flat slots of the real
        tokens, cmi.loop.real_tokens) only the real tokens are computed; the padded slots of the states are then zeros."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = key_padding_mask(attention_mask)
        tokens = Tokens.of(input_ids, token_index)
        x = self.embeddings(input_ids, token_type_ids, tokens)  # (N, d)
        x = self.layers(x, mask, tokens)
        x = tokens.pad(x)  # (N, d) -> (B, T, d): right padding keeps [CLS] in slot 0
        return x, torch.tanh(self.pooler(x[:, 0]))


class MaskedLMHead(nn.Module):
    """Transform (dense, activation, LayerNorm), then the decoder: the word-embedding matrix (tied) plus a bias."""

    def __init__(self, dim: int, vocab_size: int, act: str, eps: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = activation(act)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """(B, T, d) states and the (V, d) embedding matrix -> (B, T, V) scores."""
        return F.linear(self.norm(self.act(self.dense(x))), word_embeddings, self.bias)


class ClassifierOutput(NamedTuple):
    """What a classifier returns: eq. (5)'s logits, the feature vector h_s the CMI term reads, the last layer."""

    logits: torch.Tensor  # (B, C)
    features: torch.Tensor  # (B, d) h_s, the vector the classification layer reads (before its dropout)
    hidden_states: torch.Tensor  # (B, T, d) last layer; [:, 0] is the raw [CLS] state


class BertForSequenceClassification(Pretrained):
    """BERT, then dropout and a linear classifier on the pooled output; optionally the masked-LM head."""

    def __init__(self, config: BertConfig, mlm: bool = False):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        p = config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        # For the paper's gamma * L1 term: the masked-LM loss with the checkpoint's own head.
        self.mlm = MaskedLMHead(config.hidden_size, config.vocab_size, config.hidden_act, config.layer_norm_eps) if mlm else None
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids, token_index)
        return ClassifierOutput(self.classifier(self.dropout(pooled)), pooled, hidden)

    def mlm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Masked-LM scores (B, T, V) from the last-layer states."""
        if self.mlm is None:
            raise CheckpointError("this model has no masked-LM head: load a checkpoint that has cls.predictions.* (BertForPreTraining, BertForMaskedLM)")
        return self.mlm(hidden_states, self.bert.embeddings.word.weight)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint names: our module -> transformers' module ("{}" = layer index). BertModel checkpoints have the same
# names without "bert."; BertForPreTraining ones add the NSP head cls.seq_relationship, which we drop.

BertForSequenceClassification.layout = Layout(
    config_class=BertConfig,
    prefix="bert.",
    names={
        "bert.embeddings.word": "bert.embeddings.word_embeddings",
        "bert.embeddings.position": "bert.embeddings.position_embeddings",
        "bert.embeddings.token_type": "bert.embeddings.token_type_embeddings",
        "bert.embeddings.norm": "bert.embeddings.LayerNorm",
        "bert.layers.{}.attn.query": "bert.encoder.layer.{}.attention.self.query",
        "bert.layers.{}.attn.key": "bert.encoder.layer.{}.attention.self.key",
        "bert.layers.{}.attn.value": "bert.encoder.layer.{}.attention.self.value",
        "bert.layers.{}.attn.out": "bert.encoder.layer.{}.attention.output.dense",
        "bert.layers.{}.attn_norm": "bert.encoder.layer.{}.attention.output.LayerNorm",
        "bert.layers.{}.mlp.up": "bert.encoder.layer.{}.intermediate.dense",
        "bert.layers.{}.mlp.down": "bert.encoder.layer.{}.output.dense",
        "bert.layers.{}.mlp_norm": "bert.encoder.layer.{}.output.LayerNorm",
        "bert.pooler": "bert.pooler.dense",
        "classifier": "classifier",
        "mlm.dense": "cls.predictions.transform.dense",
        "mlm.norm": "cls.predictions.transform.LayerNorm",
        "mlm": "cls.predictions",  # mlm.bias -> cls.predictions.bias
    },
    tied={
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    },
    # A checkpoint saved from BertForMaskedLM has no pooler: like the classifier, it then starts fresh.
    heads=("bert.pooler.", "classifier."),
    lora_targets=("query", "value"),
    mlm="cls.predictions.",
    ignored=("cls.seq_relationship.", "bert.embeddings.position_ids", "bert.embeddings.token_type_ids"),
)
