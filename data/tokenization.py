"""Tokenisation with the `tokenizers` library: BERT's WordPiece, or a decoder's byte-level BPE (`tokenizer.json`);
each split is encoded once, kept as arrays.

A decoder's inputs are what its tokenizer's own post-processor makes of them: BOS / EOS where it adds them (Llama 3
adds <|begin_of_text|>, GPT-2 nothing), and a sentence pair by the post-processor's pair rule (a template's `pair`,
else the two texts' tokens one after the other). Its batches are right-padded with a pad id of the tokenizer's:
tokenizer_config.json's `pad_token`, else a reserved padding token of the vocabulary (PAD_TOKENS), else the end of
sequence token, with a warning. Our decoders never read the pad id (the attention mask says which tokens are
real); transformers' classifier does, and skips a real final token equal to it."""

import copy
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from data.loading import Examples
from common.files import first_line
from data.tasks import DataError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_TOKENS = ("<pad>", "<|pad|>", "<|finetune_right_pad_id|>", "[PAD]")  # reserved for padding in decoder vocabularies
EOS_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<|eot_id|>")  # where tokenizer_config has none


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The checkpoint's BERT tokenizer: `tokenizer.json` when present, else WordPiece built from `vocab.txt`
    with the lower-casing of `tokenizer_config.json` (`do_lower_case`, default True). Padding and truncation
    are off; `encode` sets truncation on its own copy."""
    model_dir = Path(model_dir)
    path = model_dir / ("tokenizer.json" if (model_dir / "tokenizer.json").is_file() else "vocab.txt")
    if not path.is_file():
        raise DataError(f"{model_dir}: no tokenizer.json or vocab.txt")
    try:
        tokenizer = Tokenizer.from_file(str(path)) if path.name == "tokenizer.json" else _bert_wordpiece(model_dir)
    except Exception as e:  # the tokenizers library raises its own untyped exceptions for a damaged file
        raise DataError(f"{path}: cannot read the tokenizer ({first_line(e)})") from None
    # a saved tokenizer.json may pad every input to a fixed length (all-MiniLM-L6-v2 pads to 128)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if isinstance(tokenizer.model, BPE):  # a decoder's: its pad id is kept as its padding token (Encoded.pad_id)
        pad_id, token = decoder_pad(tokenizer, model_dir)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=token)
        return tokenizer
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:  # every batch is built from them: without them ids are None, or past the table, deep inside a run
        raise DataError(f"{path}: the tokenizer lacks the special token(s) {', '.join(missing)} that BERT inputs need")
    return tokenizer


def decoder_pad(tokenizer: Tokenizer, model_dir: Path) -> tuple[int, str]:
    """The pad id and token of a decoder's batches (the rule above), and a warning line where it is the end of
    sequence token."""
    config_path = model_dir / "tokenizer_config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, ValueError) as e:
        raise DataError(f"{config_path}: cannot read it ({first_line(e)})") from None
    if not isinstance(config, dict):
        raise DataError(f"{config_path}: expected a JSON object, got {type(config).__name__}")

    def token(key: str) -> str | None:  # tokenizer_config.json writes a token as a string or {"content": ...}
        value = config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    eos = token("eos_token") or next((t for t in EOS_TOKENS if tokenizer.token_to_id(t) is not None), None)
    candidates = [token("pad_token"), *PAD_TOKENS, eos]
    pad = next((t for t in candidates if t is not None and tokenizer.token_to_id(t) is not None), None)
    if pad is None:
        raise DataError(f"{model_dir / 'tokenizer.json'}: no token to pad with: no pad_token in tokenizer_config.json, "
                        f"none of {', '.join(PAD_TOKENS)} and no end-of-sequence token in the vocabulary")
    if pad == eos:
        print(f"warning: {model_dir}: padding with the end-of-sequence token {pad!r} (the tokenizer has no pad "
              "token); our decoders read the attention mask, but transformers' classifier, which reads "
              "pad_token_id, would skip a final end-of-sequence token", file=sys.stderr)
    return tokenizer.token_to_id(pad), pad


def _bert_wordpiece(model_dir: Path) -> Tokenizer:
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    tokenizer = Tokenizer(WordPiece.from_file(str(model_dir / "vocab.txt"), unk_token="[UNK]"))
    # strip_accents=None follows lowercase, as in the original BERT
    tokenizer.normalizer = normalizers.BertNormalizer(
        lowercase=config.get("do_lower_case", True), strip_accents=config.get("strip_accents"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # so "[SEP]" in a text stays one token
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",  # token type 1 for the second segment and its [SEP]
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    return tokenizer


@dataclass
class Encoded:
    """A tokenised split: variable-length token ids per example, kept once for every epoch."""

    input_ids: list[np.ndarray]       # per example, int32 [length]: [CLS] a [SEP] or [CLS] a [SEP] b [SEP]
    token_type_ids: list[np.ndarray]  # per example, int32 [length]: 0 for [CLS] a [SEP], 1 for b [SEP]
    labels: np.ndarray                # int64 [N]
    lengths: np.ndarray               # int64 [N], tokens per example
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """SHA-256 of what a model sees of this split (token ids, token types, labels, in order): two runs
        with equal fingerprints read the same examples, however their files were named or found."""
        digest = hashlib.sha256()
        for array in (self.labels, self.lengths, *self.input_ids, *self.token_type_ids):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()


def encode(tokenizer: Tokenizer, examples: Examples, max_len: int) -> Encoded:
    """Tokenise every example once (batched, in the tokenizers library's own threads), truncated to
    `max_len` tokens including the special ones; pairs lose tokens from the longer text first, as BERT does."""
    padding = tokenizer.padding  # a decoder's pad token (load_tokenizer); the batches are padded by collate
    tokenizer = copy.deepcopy(tokenizer)  # truncation is tokenizer state: set it on a copy, not the caller's
    tokenizer.enable_truncation(max_len, strategy="longest_first")
    tokenizer.no_padding()
    inputs = examples.texts[0] if len(examples.texts) == 1 else list(zip(*examples.texts))
    encodings = tokenizer.encode_batch(inputs)
    input_ids = [np.array(e.ids, dtype=np.int32) for e in encodings]
    return Encoded(
        input_ids=input_ids,
        token_type_ids=[np.array(e.type_ids, dtype=np.int32) for e in encodings],
        labels=examples.labels,
        lengths=np.array([len(ids) for ids in input_ids], dtype=np.int64),
        pad_id=padding["pad_id"] if padding else tokenizer.token_to_id("[PAD]"),
    )
