"""Llama (Touvron et al., 2023) and its kin Mistral, Qwen2 and Qwen3 as sequence classifiers, in plain PyTorch.

One pre-norm decoder block serves the four families, which differ only in details the config names: grouped-query
attention, rotary positions (RoPE) and a SwiGLU feed-forward block, with
- Llama: biases on q/k/v/o if `attention_bias`, on the feed-forward block if `mlp_bias`;
- Mistral: no biases; a sliding window on every layer when `sliding_window` is set;
- Qwen2: biases on q/k/v (never on o); a sliding window on the layers `layer_types` / `max_window_layers` name,
  only when `use_sliding_window`;
- Qwen3: biases as Llama's attention; RMSNorm of each query and key head (q_norm, k_norm) before the rotation;
  a `head_dim` of its own (not hidden_size / heads); the window as Qwen2's.
The classifier reads the final state of each sequence's last real token (h_s), found from the attention mask:
transformers finds it by comparing ids with pad_token_id, and so skips a real last token equal to that id.
Outputs equal transformers' *ForSequenceClassification to float32 rounding (tests/test_decoders.py).

As in models/bert.py, every token-wise module acts on the (N, d) rows of the tokens computed (models/unpadded.py);
attention puts them back into (B, T) sequences. Sequences are right-padded (data/batching.py), so with the causal
mask a real query never sees a padded key: attention needs no key mask, and a token's position is its slot.
The embedding has no padding_idx (transformers' has one at pad_token_id): the pad id's row never meets the loss
through padding, and a real token with that id (eos, the usual pad of a decoder) is trained like any other.

Shape letters: B batch, T tokens, N tokens computed, H query heads, K key/value heads, D head size, d hidden size,
C classes.
"""

import math
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.bert import ClassifierOutput, Layers
from models.checkpoint import Layout, Pretrained
from models.unpadded import Tokens

ROPE_TYPES = ("default", "linear", "llama3")
CLASS_PREFIXES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}  # of transformers' classes
QWEN3_HEAD_DIM = 128  # transformers' Qwen3Config default, where config.json has no head_dim
DEFAULT_ROPE_THETA = 10000.0  # transformers' default base for all four families


def family(*model_types: str, default=None):
    """A config field that only the families `model_types` read (models.checkpoint.config_dict)."""
    return field(default=default, metadata={"model_types": model_types})


@dataclass
class LlamaConfig:
    """config.json of a Llama, Mistral, Qwen2 or Qwen3 checkpoint: transformers' field names, Llama's defaults.

    config.json comes in two generations: transformers 5 writes `rope_parameters` (rope_type, rope_theta and the
    scaling's keys); older files have `rope_theta` and `rope_scaling` (its type under `rope_type`, or `type`).
    Both are read as transformers reads them and kept in `rope_parameters` (written back in the new form).
    A key config.json leaves out takes Llama's default (Qwen3's head_dim: 128). transformers writes every key, and
    the hub files of these families name the keys whose defaults differ: left out, Mistral's num_key_value_heads
    and sliding_window would be read here as no grouping and no window, where transformers reads 8 and 4096."""

    model_types: ClassVar[tuple[str, ...]] = tuple(CLASS_PREFIXES)

    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: num_attention_heads (no grouping)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads (Qwen3: 128)
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False  # the LM head is the embeddings (read only by the gamma * L1 term)
    rope_parameters: dict | None = None
    # Fields only some families read (family()): written only into their config.json, or where not the default.
    rope_theta: float | None = family()  # older files' RoPE base, folded into rope_parameters
    rope_scaling: dict | None = family()  # older files' RoPE scaling, folded into rope_parameters
    attention_bias: bool = family("llama", "qwen3", default=False)
    mlp_bias: bool = family("llama", default=False)
    attention_dropout: float = 0.0
    sliding_window: int | None = family("mistral", "qwen2", "qwen3")  # Mistral: all layers; Qwen: use_sliding_window
    use_sliding_window: bool = family("qwen2", "qwen3", default=False)
    max_window_layers: int = family("qwen2", "qwen3", default=28)  # layers from this one on slide (no layer_types)
    layer_types: list[str] | None = family("qwen2", "qwen3")  # "full_attention" or "sliding_attention" per layer
    pad_token_id: int | None = None  # None: the first eos_token_id (pad_or_eos)
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    num_labels: int = 2
    id2label: dict[int, str] | None = None  # None: LABEL_0, LABEL_1, ...
    label2id: dict[str, int] | None = None
    extra: dict = field(default_factory=dict)  # the other config.json keys, written back unchanged

    def __post_init__(self):
        """The values transformers derives, so that the modules read one form."""
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = QWEN3_HEAD_DIM if self.model_type == "qwen3" else self.hidden_size // self.num_attention_heads
        rope = dict(self.rope_scaling or self.rope_parameters or {})  # rope_scaling first, as transformers reads it
        rope.setdefault("rope_theta", DEFAULT_ROPE_THETA if self.rope_theta is None else self.rope_theta)
        rope.setdefault("rope_type", rope.get("type", "default"))
        if rope["rope_type"] == "llama3":
            rope.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        self.rope_parameters, self.rope_theta, self.rope_scaling = rope, None, None
        self.pad_token_id = pad_or_eos(self.pad_token_id, self.eos_token_id)

    def biases(self) -> tuple[bool, bool, bool]:
        """Whether q/k/v, o and the feed-forward projections have biases, as each family's transformers module."""
        if self.model_type == "mistral":
            return False, False, False
        if self.model_type == "qwen2":
            return True, False, False
        return self.attention_bias, self.attention_bias, self.mlp_bias and self.model_type == "llama"

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s sliding window (a query sees the `window` keys up to itself), None for full attention."""
        if self.model_type == "mistral":
            return self.sliding_window
        if self.model_type not in ("qwen2", "qwen3") or not self.use_sliding_window:
            return None
        kinds = self.layer_types or ["sliding_attention" if i >= self.max_window_layers else "full_attention"
                                     for i in range(self.num_hidden_layers)]
        return self.sliding_window if kinds[layer] == "sliding_attention" else None


def pad_or_eos(pad_token_id: int | None, eos_token_id: int | list[int] | None) -> int | None:
    """The pad_token_id to write, the first eos_token_id where config.json has none. Ours never reads it (the
    attention mask says which tokens are real), but transformers' classifier finds each sequence's last token
    by it, and base decoders have none: this is the usual fine-tuning recipe's, so that our folders classify there."""
    if pad_token_id is not None:
        return pad_token_id
    return (eos_token_id or [None])[0] if isinstance(eos_token_id, list) else eos_token_id


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' initialisation of a model built from its config: normal(0, std) weights, zero biases; the
    norms stay 1 (and 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and cast back to the input's dtype before the weight, as transformers."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE's cos and sin for each token's position: frequencies base^(-2i/D), rescaled by `linear` (divided by
    factor) or `llama3` (Llama 3.1: low frequencies divided by factor, high ones kept, a smooth blend between).

    The frequencies are computed in each forward, in float32 on the positions' device: a buffer would be cast by
    model.to(torch.bfloat16) and would not be there in a model built on the meta device (models/checkpoint.py)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.rope = config.rope_parameters
        self.head_dim = config.head_dim
        if self.rope["rope_type"] not in ROPE_TYPES:
            raise ValueError(f"rope_type {self.rope['rope_type']!r} is not supported, expected one of {', '.join(ROPE_TYPES)}")
        if self.rope.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError(f"partial_rotary_factor {self.rope['partial_rotary_factor']} is not supported, only 1")

    def frequencies(self, device: torch.device) -> torch.Tensor:
        """(D/2,) inverse frequencies, as transformers' ROPE_INIT_FUNCTIONS compute them."""
        D, rope = self.head_dim, self.rope
        inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float, device=device) / D))
        if rope["rope_type"] == "linear":
            return inv_freq / rope["factor"]
        if rope["rope_type"] == "llama3":
            factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
            context = rope["original_max_position_embeddings"]
            wavelength = 2 * math.pi / inv_freq
            scaled = torch.where(wavelength > context / low, inv_freq / factor, inv_freq)  # long waves slowed
            smooth = (context / wavelength - low) / (high - low)
            blended = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wavelength < context / high) * ~(wavelength > context / low)
            return torch.where(medium, blended, scaled)
        return inv_freq

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) positions -> cos, sin (N, D) in `dtype` (the embeddings', as transformers casts them)."""
        angles = positions[:, None].float() * self.frequencies(positions.device)  # (N, D/2)
        angles = torch.cat((angles, angles), dim=-1)  # (N, D): the rotate-half convention pairs i with i + D/2
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(N, heads, D) rotated by each token's angles, cos and sin (N, D): halves (x1, x2) -> (x1 cos - x2 sin,
    x2 cos + x1 sin)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat((-x2, x1), dim=-1) * sin[:, None]


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tokens: Tokens, dropout_p: float = 0.0,
                     window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """Causal self-attention of the tokens computed: (N, H, D) queries, (N, K, D) keys and values -> (N, H * D).

    The rows are re-padded into (B, T) sequences around F.scaled_dot_product_attention, whose grouped-query mode
    lets each group of H / K query heads share a key/value head. Right padding: a real query only sees earlier
    slots, all real, so no key mask is needed. A sliding window shorter than T is a band mask instead."""
    B, T = tokens.B, tokens.T
    # (N, heads, D) -> (N, heads * D) -> (B, T, heads * D) -> (B, T, heads, D) -> (B, heads, T, D)
    q, k, v = (tokens.pad(t.flatten(1)).view(B, T, t.size(1), -1).transpose(1, 2) for t in (q, k, v))
    mask = None
    if window is not None and window < T:  # query i sees keys i - window < j <= i
        i = torch.arange(T, device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)  # (T, T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None,
                                       scale=scale, enable_gqa=True)
    return tokens.gather(y.transpose(1, 2).flatten(2))  # (B, H, T, D) -> (B, T, H * D) -> (N, H * D)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, d) states -> (B, d): each sequence's last real token, slot (number of real tokens - 1) with right
    padding; the last slot without a mask."""
    if attention_mask is None:
        return hidden[:, -1]
    last = attention_mask.sum(1) - 1  # (B,)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions and the output projection; Qwen3's q/k norms."""

    def __init__(self, config: LlamaConfig, window: int | None):
        super().__init__()
        H, K, D, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim, config.hidden_size
        if H % K:
            raise ValueError(f"num_attention_heads {H} is not a multiple of num_key_value_heads {K}")
        qkv_bias, out_bias, _ = config.biases()
        self.n_heads, self.n_kv_heads, self.head_dim, self.window = H, K, D, window
        self.dropout = config.attention_dropout  # on the attention probabilities
        self.query = nn.Linear(d, H * D, bias=qkv_bias)
        self.key = nn.Linear(d, K * D, bias=qkv_bias)
        self.value = nn.Linear(d, K * D, bias=qkv_bias)
        self.out = nn.Linear(H * D, d, bias=out_bias)
        qk_norm = config.model_type == "qwen3"  # over each head's D values, before the rotation
        self.query_norm = RMSNorm(D, config.rms_norm_eps) if qk_norm else nn.Identity()
        self.key_norm = RMSNorm(D, config.rms_norm_eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], tokens: Tokens) -> torch.Tensor:
        N, D = x.size(0), self.head_dim
        q = self.query_norm(self.query(x).view(N, self.n_heads, D))  # (N, H, D)
        k = self.key_norm(self.key(x).view(N, self.n_kv_heads, D))  # (N, K, D)
        v = self.value(x).view(N, self.n_kv_heads, D)  # (N, K, D)
        q, k = rotate(q, *rope), rotate(k, *rope)
        y = causal_attention(q, k, v, tokens, self.dropout if self.training else 0.0, self.window)  # (N, H * D)
        return self.out(y)  # (N, d)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): the gated feed-forward block (Shazeer, 2020)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool):
        super().__init__()
        self.gate = nn.Linear(dim, hidden_dim, bias=bias)
        self.up = nn.Linear(dim, hidden_dim, bias=bias)
        self.down = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (N, d)


class DecoderLayer(nn.Module):
    """Pre-norm layer: RMSNorm before attention and before the feed-forward block, each added to the residual."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        if config.hidden_act != "silu":
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported, only 'silu' (SwiGLU)")
        d, eps = config.hidden_size, config.rms_norm_eps
        self.attn_norm = RMSNorm(d, eps)
        self.attn = Attention(config, config.window(layer))
        self.mlp_norm = RMSNorm(d, eps)
        self.mlp = SwiGLU(d, config.intermediate_size, config.biases()[2])

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], tokens: Tokens) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, tokens)  # (N, d)
        return x + self.mlp(self.mlp_norm(x))


class LlamaModel(nn.Module):
    """Token embeddings, the layers, the final RMSNorm."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(config)
        self.layers = Layers(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_index: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm states (B, T, d); with `token_index`, of the real tokens only (zeros in the padded slots)."""
        tokens = Tokens.of(input_ids, token_index)
        x = self.embed(tokens.gather(input_ids))  # (N, d)
        rope = self.rotary(tokens.positions(), x.dtype)  # right padding: a token's position is its slot
        x = self.layers(x, rope, tokens)
        return tokens.pad(self.norm(x))  # (N, d) -> (B, T, d)


class LlamaForSequenceClassification(Pretrained):
    """The decoder, then `score` (linear, no bias) on the final state of each sequence's last real token.

    The LM head serves only the gamma * L1 term (its causal-LM loss, lm_logits): tied to the embeddings it is no
    module of its own; untied, `mlm` holds a *ForCausalLM checkpoint's lm_head when asked for (from_pretrained's
    mlm, as BERT's masked-LM head: a head the loss does not use would get no gradient, which DDP refuses)."""

    def __init__(self, config: LlamaConfig, mlm: bool = False):
        super().__init__()
        if config.model_type not in config.model_types:
            raise ValueError(f"model_type {config.model_type!r} is not one of {', '.join(config.model_types)}")
        self.config = config
        self.model = LlamaModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        untied = mlm and not config.tie_word_embeddings
        self.mlm = nn.Linear(config.hidden_size, config.vocab_size, bias=False) if untied else None
        self.apply(partial(init_weights, std=config.initializer_range))

    def has_lm_head(self) -> bool:
        return self.mlm is not None or self.config.tie_word_embeddings

    def lm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Next-token scores (..., V) from final-norm states: the LM head, or the embeddings where tied."""
        return F.linear(hidden_states, self.model.embed.weight if self.mlm is None else self.mlm.weight)

    def architecture(self) -> str:
        """The family's transformers class, e.g. Qwen2ForSequenceClassification: what hub tools read to build it."""
        return CLASS_PREFIXES[self.config.model_type] + "ForSequenceClassification"

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """As BERT's classifier; `token_type_ids` is accepted and not read (decoders have no token types)."""
        hidden = self.model(input_ids, token_index)  # (B, T, d)
        features = last_token(hidden, attention_mask)  # (B, d): h_s, what score reads
        return ClassifierOutput(self.score(features), features, hidden)


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint names: our module -> transformers' module ("{}" = layer index), the same for the four families.
# LlamaModel checkpoints have the same names without "model."; *ForCausalLM ones add lm_head (absent, or equal to
# the embeddings, where config.json ties them).

LlamaForSequenceClassification.layout = Layout(
    config_class=LlamaConfig,
    prefix="model.",
    names={
        "model.embed": "model.embed_tokens",
        "model.layers.{}.attn_norm": "model.layers.{}.input_layernorm",
        "model.layers.{}.attn.query": "model.layers.{}.self_attn.q_proj",
        "model.layers.{}.attn.key": "model.layers.{}.self_attn.k_proj",
        "model.layers.{}.attn.value": "model.layers.{}.self_attn.v_proj",
        "model.layers.{}.attn.out": "model.layers.{}.self_attn.o_proj",
        "model.layers.{}.attn.query_norm": "model.layers.{}.self_attn.q_norm",
        "model.layers.{}.attn.key_norm": "model.layers.{}.self_attn.k_norm",
        "model.layers.{}.mlp_norm": "model.layers.{}.post_attention_layernorm",
        "model.layers.{}.mlp.gate": "model.layers.{}.mlp.gate_proj",
        "model.layers.{}.mlp.up": "model.layers.{}.mlp.up_proj",
        "model.layers.{}.mlp.down": "model.layers.{}.mlp.down_proj",
        "model.norm": "model.norm",
        "score": "score",
        "mlm": "lm_head",
    },
    tied={"lm_head.weight": "model.embed_tokens.weight"},
    heads=("score.",),
    lora_targets=("q_proj", "v_proj"),
    mlm="lm_head.",
    # the rotary frequencies older transformers saved as buffers (Llama 2's pytorch_model.bin)
    ignored=("model.rotary_emb.", "model.layers.{}.self_attn.rotary_emb."),
    meta=True,
    tie_flag="tie_word_embeddings",
)
