"""GPT-2 (Radford et al., 2019) as a sequence classifier, in plain PyTorch.

A pre-LayerNorm decoder with learned positions: word + position embeddings, layers of (LayerNorm, causal
attention through one fused q/k/v projection, LayerNorm, gelu_new feed-forward), a final LayerNorm. The causal
attention and the last-token classifier are the Llama family's (models/llama.py), the feed-forward block BERT's
(models/bert.py). transformers stores GPT-2's projections as Conv1D, weights (in, out); ours are nn.Linear, so the
checkpoint layer transposes them on reading and saving (Layout.transposed).
Outputs equal transformers' GPT2ForSequenceClassification to float32 rounding (tests/test_decoders.py).

Shape letters: B batch, T tokens, N tokens computed, H heads, D head size, d hidden size (`n_embd`), C classes.
"""

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.bert import ClassifierOutput, FeedForward, Layers
from models.checkpoint import Layout, Pretrained
from models.llama import causal_attention, init_weights, last_token, pad_or_eos
from models.unpadded import Tokens, dropout


@dataclass
class GPT2Config:
    """config.json of a GPT-2 checkpoint: transformers' field names, gpt2 (124M) defaults."""

    model_type: str = "gpt2"
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True  # scores / sqrt(D)
    scale_attn_by_inverse_layer_idx: bool = False  # and / (layer + 1)
    add_cross_attention: bool = False  # an encoder-decoder's: not supported
    tie_word_embeddings: bool = True  # the LM head is the word embeddings (read only by the gamma * L1 term)
    pad_token_id: int | None = None  # None: the first eos_token_id (models.llama.pad_or_eos)
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    label2id: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)  # the other config.json keys, written back unchanged

    def __post_init__(self):
        self.pad_token_id = pad_or_eos(self.pad_token_id, self.eos_token_id)

    # the names the other configs give these sizes, which the recipes read (not fields: config.json keeps GPT-2's)
    @property
    def hidden_size(self) -> int:
        return self.n_embd

    @property
    def max_position_embeddings(self) -> int:
        return self.n_positions


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention: one projection to [q | k | v], the output projection, residual dropout."""

    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        d, H = config.n_embd, config.n_head
        if d % H:
            raise ValueError(f"n_embd {d} is not a multiple of the number of heads {H}")
        self.n_heads = H
        self.dropout = config.attn_pdrop  # on the attention probabilities
        self.scale = ((d // H) ** -0.5 if config.scale_attn_weights else 1.0) / \
            (layer + 1 if config.scale_attn_by_inverse_layer_idx else 1)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        N, d = x.shape
        q, k, v = (t.view(N, self.n_heads, -1) for t in self.qkv(x).split(d, dim=-1))  # (N, 3d) -> 3 x (N, H, D)
        y = causal_attention(q, k, v, tokens, self.dropout if self.training else 0.0, scale=self.scale)  # (N, d)
        return dropout(self.resid_dropout, self.out(y), tokens)


class GPT2Layer(nn.Module):
    """Pre-LayerNorm layer: LayerNorm before attention and before the feed-forward block, each added to the residual."""

    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        d, eps = config.n_embd, config.layer_norm_epsilon
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(config, layer)
        self.mlp_norm = nn.LayerNorm(d, eps=eps)
        self.mlp = FeedForward(d, config.n_inner or 4 * d, config.activation_function, config.resid_pdrop)

    def forward(self, x: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), tokens)  # (N, d)
        return x + self.mlp(self.mlp_norm(x), tokens)


class GPT2Model(nn.Module):
    """Word + position embeddings and dropout, the layers, the final LayerNorm."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        if config.add_cross_attention:
            raise ValueError("add_cross_attention is not supported: a decoder of an encoder-decoder model")
        self.word = nn.Embedding(config.vocab_size, config.n_embd)
        self.position = nn.Embedding(config.n_positions, config.n_embd)
        self.dropout = nn.Dropout(config.embd_pdrop)
        self.layers = Layers(GPT2Layer(config, i) for i in range(config.n_layer))
        self.norm = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor, token_index: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm states (B, T, d); with `token_index`, of the real tokens only (zeros in the padded slots)."""
        tokens = Tokens.of(input_ids, token_index)
        # right padding: a token's position, the number of real tokens before it, is its slot
        x = self.word(tokens.gather(input_ids)) + self.position(tokens.positions())  # (N, d)
        x = dropout(self.dropout, x, tokens)
        x = self.layers(x, tokens)
        return tokens.pad(self.norm(x))  # (N, d) -> (B, T, d)


class GPT2ForSequenceClassification(Pretrained):
    """GPT-2, then `score` (linear, no bias) on the final state of each sequence's last real token. The LM head
    as the Llama family's (models/llama.py): the word embeddings where tied, else `mlm` when asked for."""

    def __init__(self, config: GPT2Config, mlm: bool = False):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, config.num_labels, bias=False)
        untied = mlm and not config.tie_word_embeddings
        self.mlm = nn.Linear(config.n_embd, config.vocab_size, bias=False) if untied else None
        self.apply(partial(init_weights, std=config.initializer_range))

    def has_lm_head(self) -> bool:
        return self.mlm is not None or self.config.tie_word_embeddings

    def lm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Next-token scores (..., V) from final-norm states: the LM head, or the word embeddings where tied."""
        return F.linear(hidden_states, self.transformer.word.weight if self.mlm is None else self.mlm.weight)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """As BERT's classifier; `token_type_ids` is accepted and not read (transformers would add their rows of
        the word embeddings)."""
        hidden = self.transformer(input_ids, token_index)  # (B, T, d)
        features = last_token(hidden, attention_mask)  # (B, d): h_s, what score reads
        return ClassifierOutput(self.score(features), features, hidden)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint names: our module -> transformers' module ("{}" = layer index). GPT2Model checkpoints (the hub's gpt2)
# have the same names without "transformer."; GPT2LMHeadModel ones add lm_head (absent or equal to wte where tied). Older files hold
# each layer's causal-mask buffers (attn.bias, attn.masked_bias), dropped too.

GPT2ForSequenceClassification.layout = Layout(
    config_class=GPT2Config,
    prefix="transformer.",
    names={
        "transformer.word": "transformer.wte",
        "transformer.position": "transformer.wpe",
        "transformer.layers.{}.attn_norm": "transformer.h.{}.ln_1",
        "transformer.layers.{}.attn.qkv": "transformer.h.{}.attn.c_attn",
        "transformer.layers.{}.attn.out": "transformer.h.{}.attn.c_proj",
        "transformer.layers.{}.mlp_norm": "transformer.h.{}.ln_2",
        "transformer.layers.{}.mlp.up": "transformer.h.{}.mlp.c_fc",
        "transformer.layers.{}.mlp.down": "transformer.h.{}.mlp.c_proj",
        "transformer.norm": "transformer.ln_f",
        "score": "score",
        "mlm": "lm_head",
    },
    tied={"lm_head.weight": "transformer.wte.weight"},
    heads=("score.",),
    lora_targets=("c_attn",),
    mlm="lm_head.",
    ignored=("transformer.h.{}.attn.bias", "transformer.h.{}.attn.masked_bias"),
    transposed=("transformer.h.{}.attn.c_attn.weight", "transformer.h.{}.attn.c_proj.weight",
                "transformer.h.{}.mlp.c_fc.weight", "transformer.h.{}.mlp.c_proj.weight"),
    meta=True,
    tie_flag="tie_word_embeddings",
)
