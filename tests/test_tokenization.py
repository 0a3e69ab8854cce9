"""Tokenisation parity with transformers' BertTokenizerFast (the test-only oracle) on the real dev sets."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.batching import collate
from data.loading import Examples, load_split
from data.tasks import get_task
from data.tokenization import encode, load_tokenizer

transformers = pytest.importorskip("transformers")

from conftest import GLUE, MINILM as MODEL  # noqa: E402 (after the importorskip where there is one)

# hand-made cases: accents, capitals, Chinese characters, a literal [SEP], an empty text, and pairs whose
# truncation budget is odd and split between equal lengths (which side keeps the extra token)
EDGE = Examples((["Héllo WORLD [SEP] 中文 naïve", "a b c d e f g h", "", "one two three"],
                 ["un deux trois quatre cinq six", "a b c d e f g h", "x", ""]), np.zeros(4, np.int64))


def vocab_only_checkpoint(root: Path, do_lower_case: bool) -> Path:
    shutil.copy(MODEL / "vocab.txt", root / "vocab.txt")
    (root / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": do_lower_case}))
    return root


def assert_same_as_transformers(tokenizer, oracle, examples: Examples, max_len: int):
    """ids, token types and attention masks of the whole split, padded as one batch, equal the oracle's."""
    batch = collate(encode(tokenizer, examples, max_len), np.arange(len(examples)))
    expected = oracle(*examples.texts, truncation=True, max_length=max_len, padding="longest", return_tensors="np")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(batch[key].numpy(), expected[key], err_msg=key)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MODEL)


@pytest.fixture(scope="module")
def oracle():
    return transformers.BertTokenizerFast.from_pretrained(MODEL)


@pytest.mark.parametrize("max_len", [32, 128])
@pytest.mark.parametrize("task_name", ["cola", "sst2", "mrpc"])
def test_dev_sets_match_transformers(tokenizer, oracle, task_name, max_len):
    examples = load_split(get_task(task_name), "validation", GLUE)
    assert_same_as_transformers(tokenizer, oracle, examples, max_len)
    if max_len == 32:  # the comparison covers truncation, of single sentences and of pairs
        assert encode(tokenizer, examples, max_len).lengths.max() == 32


@pytest.mark.parametrize("max_len", [6, 9, 10, 128])
def test_edge_cases_match_transformers(tokenizer, oracle, max_len):
    assert_same_as_transformers(tokenizer, oracle, EDGE, max_len)
    assert_same_as_transformers(tokenizer, oracle, Examples(EDGE.texts[:1], EDGE.labels), max_len)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_vocab_txt_only(tmp_path, do_lower_case):
    checkpoint = vocab_only_checkpoint(tmp_path, do_lower_case)
    tokenizer = load_tokenizer(checkpoint)
    oracle = transformers.BertTokenizerFast.from_pretrained(checkpoint, do_lower_case=do_lower_case)
    for max_len in (10, 128):
        assert_same_as_transformers(tokenizer, oracle, EDGE, max_len)
    for task_name in ("cola", "mrpc"):
        assert_same_as_transformers(tokenizer, oracle, load_split(get_task(task_name), "validation", GLUE), 128)


def test_vocab_txt_and_tokenizer_json_agree(tmp_path, tokenizer):
    from_vocab = load_tokenizer(vocab_only_checkpoint(tmp_path, do_lower_case=True))
    examples = load_split(get_task("mrpc"), "validation", GLUE)
    a, b = encode(tokenizer, examples, 64), encode(from_vocab, examples, 64)
    assert all(np.array_equal(x, y) for x, y in zip(a.input_ids + a.token_type_ids, b.input_ids + b.token_type_ids))


def test_encode_leaves_tokenizer_reusable(tokenizer):
    examples = load_split(get_task("mrpc"), "validation", GLUE, max_samples=50)
    long = encode(tokenizer, examples, 128)
    short = encode(tokenizer, examples, 16)
    assert tokenizer.truncation is None and tokenizer.padding is None
    assert short.lengths.max() == 16 and long.lengths.max() > 16
    assert all(np.array_equal(x, y) for x, y in zip(long.input_ids, encode(tokenizer, examples, 128).input_ids))
    assert long.input_ids[0].dtype == np.int32 and np.array_equal(long.labels, examples.labels)
    assert long.pad_id == 0 and np.array_equal(long.lengths, [len(ids) for ids in long.input_ids])
