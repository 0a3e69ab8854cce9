"""A student initialised from its teacher by "taking one layer out of two" (Sanh et al., 2019, section 3), the
starting point of the distillation in distill.py.

A BERT teacher's student is a DistilBERT: BERT without token-type embeddings and without the pooler, with the same
layer, so the student takes the teacher's word and position embeddings, the embedding LayerNorm, and the teacher
layers named by a list; its classifier head (pre_classifier, classifier) starts fresh, as the pooler it would
replace is a different function (tanh, not ReLU).
A decoder teacher's student is the same architecture with fewer layers (decoder_student): every tensor but those
of the layers left out is copied, the `score` head too, since it reads the same kind of state (the last real
token's, after the final norm) in both.
"""

import dataclasses
import logging
import re

import torch

from models.bert import BertForSequenceClassification
from models.distilbert import LAYER_NORM_EPS, DistilBertConfig, DistilBertForSequenceClassification

log = logging.getLogger(__name__)

DEFAULT_LAYERS = (0, 2, 4, 6, 8, 10)  # every other layer of a 12-layer teacher, the bottom one included


def layer_count(config: dict) -> int | None:
    """The number of layers a config.json (as a dict) names: num_hidden_layers, or GPT-2's n_layer."""
    return config.get("num_hidden_layers", config.get("n_layer"))


def every_other_layer(num_layers: int) -> list[int]:
    """The default layer list: one layer out of two, the bottom one included (DEFAULT_LAYERS of 12 layers)."""
    return list(range(0, num_layers, 2))


def student_config(teacher: BertForSequenceClassification, n_layers: int) -> DistilBertConfig:
    """The DistilBERT config of a student of `teacher` with `n_layers` layers: every size, the activation, the
    dropouts and the labels are the teacher's; the classifier dropout keeps DistilBERT's default."""
    t = teacher.config
    return DistilBertConfig(
        vocab_size=t.vocab_size, max_position_embeddings=t.max_position_embeddings, n_layers=n_layers,
        n_heads=t.num_attention_heads, dim=t.hidden_size, hidden_dim=t.intermediate_size, activation=t.hidden_act,
        dropout=t.hidden_dropout_prob, attention_dropout=t.attention_probs_dropout_prob,
        initializer_range=t.initializer_range, pad_token_id=t.pad_token_id, num_labels=t.num_labels,
        id2label=t.id2label, label2id=t.label2id,
    )


def check_layers(layers, num_layers: int | None = None) -> None:
    """A layer list must be non-empty, of distinct indices in [0, num_layers): ValueError otherwise. Without
    num_layers (the command line, before the teacher is read) only the lower bound is known."""
    if not layers:
        raise ValueError("the layer list is empty")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer indices must be distinct: they repeat in {','.join(map(str, layers))}")
    outside = [i for i in layers if i < 0 or num_layers is not None and i >= num_layers]
    if outside:
        where = "indices start at 0" if num_layers is None else \
            f"the teacher has {num_layers} layers (0-{num_layers - 1})"
        raise ValueError(f"layer {outside[0]} does not exist: {where}")


@torch.no_grad()
def distilbert_from_bert(
    teacher: BertForSequenceClassification, layers=DEFAULT_LAYERS, fold_token_type: bool = True
) -> DistilBertForSequenceClassification:
    """A DistilBERT whose layer k is a copy of the teacher's layer layers[k] (in the order given) and whose
    embeddings are the teacher's. The copies are independent tensors: training the student leaves the teacher.

    fold_token_type: BERT's embedding is LayerNorm(word + position + token_type); DistilBERT has no token types.
    A single-segment input has token type 0 at every position, so adding the teacher's type-0 vector to every
    position row gives the student exactly the teacher's sum before the LayerNorm, hence the same embedding
    output (and with all layers copied, the same last hidden states). For sentence pairs the second segment's
    tokens get the type-0 vector instead of type 1's: approximate, but closer than leaving the type out."""
    check_layers(layers, teacher.config.num_hidden_layers)
    if teacher.config.layer_norm_eps != LAYER_NORM_EPS:
        log.warning("teacher layer_norm_eps %g, DistilBERT's is fixed at %g: the copied LayerNorms will differ slightly",
                    teacher.config.layer_norm_eps, LAYER_NORM_EPS)
    student = DistilBertForSequenceClassification(student_config(teacher, len(layers)))
    t, s = teacher.bert, student.distilbert
    s.embeddings.word.weight.copy_(t.embeddings.word.weight)
    position = t.embeddings.position.weight
    s.embeddings.position.weight.copy_(position + t.embeddings.token_type.weight[0] if fold_token_type else position)
    s.embeddings.norm.load_state_dict(t.embeddings.norm.state_dict())
    # BertLayer and DistilBertLayer have the same submodules (attn, attn_norm, mlp, mlp_norm), so a strict load
    # copies every tensor and fails on any difference.
    for k, i in enumerate(layers):
        s.layers[k].load_state_dict(t.layers[i].state_dict(), strict=True)
    student.tokenizer_files = dict(teacher.tokenizer_files)  # the student reads the teacher's token ids
    return student


@torch.no_grad()
def decoder_student(teacher, layers):
    """A decoder of the teacher's class whose layer k is a copy of the teacher's layer layers[k], every other tensor
    (embeddings, final norm, score) a copy of the teacher's. Built on the meta device and given the copies: no
    random draw. A per-layer setting follows its layer: Qwen's sliding windows (written as layer_types); GPT-2's
    attention scale by inverse layer index would not, so such a teacher is refused (ValueError)."""
    config = teacher.config
    depth = "n_layer" if hasattr(config, "n_layer") else "num_hidden_layers"
    check_layers(layers, getattr(config, depth))
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("the teacher scales attention by 1 / (layer index + 1) (scale_attn_by_inverse_layer_idx): a "
                         "copied layer would change its scale")
    changes = {depth: len(layers)}
    if getattr(config, "use_sliding_window", False):
        changes["layer_types"] = ["full_attention" if config.window(i) is None else "sliding_attention" for i in layers]
    with torch.device("meta"):
        student = type(teacher)(dataclasses.replace(config, extra=dict(config.extra), **changes))
    source = teacher.state_dict()
    layer = re.compile(r"\.layers\.(\d+)\.")
    state = {k: source[layer.sub(lambda m: f".layers.{layers[int(m.group(1))]}.", k)].clone()
             for k in student.state_dict()}
    student.load_state_dict(state, strict=True, assign=True)
    student.tokenizer_files = dict(teacher.tokenizer_files)  # the student reads the teacher's token ids
    return student
