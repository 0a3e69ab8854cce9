"""Tiny-config tests of models/: shapes, masking, dropout, gradients, saving and loading, bad checkpoints."""

import dataclasses
import json
import logging
import pickle

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.bert import BertConfig, BertForSequenceClassification, key_padding_mask
from models.checkpoint import CheckpointError
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification, sinusoidal_positions
from cmi.loop import real_tokens

CONFIGS = {
    "bert": BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=16, num_labels=3),
    "distilbert": DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=16, num_labels=3),
}
CLASSES = {"bert": BertForSequenceClassification, "distilbert": DistilBertForSequenceClassification}


def make(arch, mlm=False, **changes):
    torch.manual_seed(0)
    return CLASSES[arch](dataclasses.replace(CONFIGS[arch], **changes), mlm=mlm)


def batch(lengths=(8, 5, 2), vocab=50, seed=0):
    """Token ids (B, T) padded with 0 and the mask (B, T), 1 for real tokens."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, vocab, mask.shape, generator=g) * mask
    return ids, mask


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("arch", CLASSES)
@pytest.mark.parametrize("mlm", [False, True])
def test_shapes(arch, mlm):
    model = make(arch, mlm).eval()
    ids, mask = batch()
    out = model(ids, mask)
    assert out.logits.shape == (3, 3) and out.features.shape == (3, 32) and out.hidden_states.shape == (3, 8, 32)
    if mlm:
        assert model.mlm_logits(out.hidden_states).shape == (3, 8, 50)
    else:
        assert model.mlm is None
        with pytest.raises(CheckpointError) as e:
            model.mlm_logits(out.hidden_states)
        one_line_error(e, "no masked-LM head")


@pytest.mark.parametrize("arch", CLASSES)
def test_padding_invariance(arch):
    model = make(arch).eval()
    ids, mask = batch(lengths=(8, 5))
    with torch.no_grad():
        padded = model(ids, mask)
        alone = model(ids[1:, :5], mask[1:, :5])
    torch.testing.assert_close(padded.logits[1:], alone.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.features[1:], alone.features, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.hidden_states[1:, :5], alone.hidden_states, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", CLASSES)
def test_mask_forms_agree(arch):
    model = make(arch).eval()
    ids, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask).logits, model(ids, mask.bool()).logits, atol=0, rtol=0)
        full = torch.ones_like(ids)
        torch.testing.assert_close(model(ids, full).logits, model(ids).logits, atol=0, rtol=0)
    assert key_padding_mask(full) is None and key_padding_mask(mask).shape == (3, 1, 1, 8)


@pytest.mark.parametrize("arch", CLASSES)
def test_dropout_on_in_train_off_in_eval(arch):
    model = make(arch)
    ids, mask = batch()
    model.train()
    assert not torch.equal(model(ids, mask).logits, model(ids, mask).logits)
    model.eval()
    assert torch.equal(model(ids, mask).logits, model(ids, mask).logits)


@pytest.mark.parametrize("arch", CLASSES)
def test_gradients_reach_every_parameter(arch):
    model = make(arch, mlm=True).train()
    ids, mask = batch()
    out = model(ids, mask)
    (out.logits.square().sum() + model.mlm_logits(out.hidden_states).square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", CLASSES)
def test_forward_is_one_graph_for_torch_compile(arch):
    """No data-dependent Python control flow: the whole forward traces without a graph break."""
    model = make(arch, mlm=True).eval()
    ids, mask = batch()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids, mask).logits, model(ids, mask).logits, atol=1e-6, rtol=0)
        # the unpadded path too: its one data-dependent step (the index of the real tokens) is computed outside
        index = real_tokens(mask)
        torch.testing.assert_close(compiled(ids, mask, token_index=index).logits, model(ids, mask).logits,
                                   atol=1e-6, rtol=0)


def test_token_types_matter():
    model = make("bert").eval()
    ids, mask = batch()
    with torch.no_grad():
        assert not torch.allclose(model(ids, mask).logits, model(ids, mask, torch.ones_like(ids)).logits)


def test_sinusoidal_positions_are_fixed():
    model = make("distilbert", sinusoidal_pos_embds=True)
    table = model.distilbert.embeddings.position.weight
    assert not table.requires_grad
    d = table.shape[1]
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0], [torch.sin(torch.tensor(1.0)), torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(10000 ** (-2 / d))), torch.cos(torch.tensor(10000 ** (-2 / d)))]])
    torch.testing.assert_close(table[:2, :4], expected)
    torch.testing.assert_close(sinusoidal_positions(16, d), table)


# ---------------------------------------------------------------------------------------------------------------
# saving and loading


@pytest.mark.parametrize("arch", CLASSES)
@pytest.mark.parametrize("mlm", [False, True])
def test_save_and_load_round_trip(arch, mlm, tmp_path):
    model = make(arch, mlm).eval()
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n")
    model.save_pretrained(tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    again = CLASSES[arch].from_pretrained(tmp_path / "out").eval()
    assert (again.mlm is not None) == mlm
    assert again.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    ids, mask = batch()
    assert torch.equal(model(ids, mask).logits, again(ids, mask).logits)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == [type(model).__name__] and config["num_labels"] == 3
    # The tokenizer files travel on: from the folder the model was loaded from, to the next save.
    again.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "vocab.txt").read_text() == "[PAD]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tok"]  # no temporary folder left behind


def test_config_keeps_unknown_keys_and_labels(tmp_path):
    make("bert").save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config.update(some_future_key={"x": 1}, id2label={"0": "neg", "1": "neu", "2": "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    model = BertForSequenceClassification.from_pretrained(tmp_path / "a")
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"} and model.config.extra["some_future_key"] == {"x": 1}
    model.save_pretrained(tmp_path / "b")
    again = json.loads((tmp_path / "b" / "config.json").read_text())
    assert again["some_future_key"] == {"x": 1} and again["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert {k: v for k, v in again.items() if k != "num_labels"} == {k: v for k, v in config.items() if k != "num_labels"}


@pytest.mark.parametrize("arch", CLASSES)
def test_classifier_loaded_when_it_fits_else_fresh(arch, tmp_path, caplog):
    model = make(arch)
    model.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        same = CLASSES[arch].from_pretrained(tmp_path)
    assert torch.equal(same.classifier.weight, model.classifier.weight) and not caplog.records
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        other = CLASSES[arch].from_pretrained(tmp_path, num_labels=5)
    assert other.classifier.weight.shape == (5, 32) and other.config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    assert len(caplog.records) == 1 and "classifier.weight" in caplog.records[0].getMessage()
    assert 0.01 < other.classifier.weight.std() < 0.03  # normal(0, initializer_range = 0.02)


# ---------------------------------------------------------------------------------------------------------------
# bad checkpoints: each a CheckpointError with a one-line message


@pytest.fixture
def saved(tmp_path):
    make("bert").save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def edit_weights(folder, edit):
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(tmp_path / "nowhere")
    one_line_error(e, "nowhere", "does not exist")


def test_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "no config.json")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "no weights", "model.safetensors")


def test_config_of_another_model_type(saved, tmp_path):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "config.json", "'gpt2'", "expected 'bert'")
    make("distilbert").save_pretrained(tmp_path / "distil")
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(tmp_path / "distil")
    one_line_error(e, "'distilbert'", "expected 'bert'")


def test_unsupported_activation(saved):
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "hidden_act": "swish"}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "config.json", "'swish'")


def test_truncated_safetensors(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "model.safetensors", "cannot read")


class MakesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused(saved, tmp_path, writer):
    (saved / "model.safetensors").unlink()
    marker, weights = tmp_path / "pwned", saved / "pytorch_model.bin"
    payload = {"bert.embeddings.word_embeddings.weight": MakesAFile(marker)}
    with open(weights, "wb") as f:
        torch.save(payload, f) if writer == "torch.save" else pickle.dump(payload, f)
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "pytorch_model.bin", "refused")
    assert not marker.exists()
    # The file really is dangerous: an unrestricted load would have run it.
    torch.load(weights, weights_only=False) if writer == "torch.save" else pickle.loads(weights.read_bytes())
    assert marker.exists()


def test_safetensors_preferred_and_the_pickle_beside_it_never_opened(saved, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"bert.embeddings.word_embeddings.weight": MakesAFile(marker)}, saved / "pytorch_model.bin")
    loaded = BertForSequenceClassification.from_pretrained(saved)
    assert torch.equal(loaded.classifier.weight, make("bert").classifier.weight)
    assert not marker.exists()


def test_half_precision_weights_are_cast_integer_ones_refused(saved):
    edit_weights(saved, lambda state: state.update({k: v.half() for k, v in state.items()}))
    loaded = BertForSequenceClassification.from_pretrained(saved)
    assert loaded.classifier.weight.dtype == torch.float32
    assert torch.equal(loaded.classifier.weight, make("bert").classifier.weight.half().float())
    edit_weights(saved, lambda state: state.update(
        {"bert.pooler.dense.weight": state["bert.pooler.dense.weight"].round().int()}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "bert.pooler.dense.weight has dtype torch.int32, expected torch.float32")


def test_num_labels_below_two(saved):
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved, num_labels=1)
    one_line_error(e, "num_labels", "got 1")


def test_missing_key(saved):
    edit_weights(saved, lambda state: state.pop("bert.encoder.layer.1.output.dense.weight"))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "missing keys", "bert.encoder.layer.1.output.dense.weight")


def test_unexpected_key(saved):
    edit_weights(saved, lambda state: state.update({"bert.encoder.layer.2.output.dense.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "unexpected keys", "bert.encoder.layer.2.output.dense.weight")


def test_shape_mismatch(saved):
    edit_weights(saved, lambda state: state.update({"bert.encoder.layer.0.attention.self.query.weight": torch.zeros(32, 16)}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(saved)
    one_line_error(e, "bert.encoder.layer.0.attention.self.query.weight", "(32, 16)", "(32, 32)")


def test_untied_decoder_is_refused(tmp_path):
    make("bert", mlm=True).save_pretrained(tmp_path)
    edit_weights(tmp_path, lambda state: state.update({"cls.predictions.decoder.weight": torch.zeros(50, 32)}))
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained(tmp_path)
    one_line_error(e, "cls.predictions.decoder.weight", "untied")


def test_hub_name_offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as e:
        BertForSequenceClassification.from_pretrained("cmi-finetune-tests/no-such-model")
    one_line_error(e, "'cmi-finetune-tests/no-such-model'", "Hugging Face hub", "pass a local checkpoint folder")
