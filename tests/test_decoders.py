"""The decoder classifiers (models/llama.py for Llama, Mistral, Qwen2, Qwen3; models/gpt2.py) against transformers,
the test-only oracle, on tiny random configs: hidden states, features, logits and one training step's gradients on
right-padded batches; padding invariance and the unpadded path; every checkpoint layout real ones use (classifier,
*ForCausalLM tied and untied, bare base model, sharded, pytorch_model.bin, a legacy config.json); folders we write
load in transformers with the same logits."""

import json
import logging
import weakref

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers.pytorch_utils import Conv1D

from cmi.loop import model_inputs
from cmi.objectives import CausalLM
from models import checkpoint
from models.checkpoint import CheckpointError
from models.gpt2 import GPT2ForSequenceClassification
from models.llama import LlamaForSequenceClassification
from models.student import decoder_student

ATOL = 1e-5
PAD = 0  # never a real token in these batches, so that transformers' last-token rule picks our token
LENGTHS = (9, 6, 2)

LLAMA = dict(vocab_size=99, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=256, pad_token_id=PAD, num_labels=3)
GPT2 = dict(vocab_size=99, n_embd=48, n_layer=2, n_head=4, n_positions=32, pad_token_id=PAD, bos_token_id=98,
            eos_token_id=98, num_labels=3, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 128}  # D = 12: waves of 6, 56, 498... in all 3 bands

FAMILIES = {  # family: transformers' config, prefix of its model classes, our classifier, our size keys
    "llama": (transformers.LlamaConfig, "Llama", LlamaForSequenceClassification, LLAMA),
    "mistral": (transformers.MistralConfig, "Mistral", LlamaForSequenceClassification, LLAMA),
    "qwen2": (transformers.Qwen2Config, "Qwen2", LlamaForSequenceClassification, LLAMA),
    "qwen3": (transformers.Qwen3Config, "Qwen3", LlamaForSequenceClassification, LLAMA),
    "gpt2": (transformers.GPT2Config, "GPT2", GPT2ForSequenceClassification, GPT2),
}
CASES = {  # name: family, config changes
    "llama-gqa-untied": ("llama", dict(num_key_value_heads=2, tie_word_embeddings=False)),
    "llama-mqa-tied-biases-llama3-rope": ("llama", dict(num_key_value_heads=1, tie_word_embeddings=True, attention_bias=True,
                                                        mlp_bias=True, rope_parameters=LLAMA3_ROPE)),
    "mistral-window-3-of-9": ("mistral", dict(num_key_value_heads=2, sliding_window=3)),
    "qwen2-biases-window-on-layer-1": ("qwen2", dict(num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
                                                     max_window_layers=1, tie_word_embeddings=True)),
    "qwen3-head-dim-24-qk-norm": ("qwen3", dict(num_key_value_heads=2, head_dim=24)),
    "qwen3-biases": ("qwen3", dict(num_key_value_heads=1, head_dim=16, attention_bias=True)),
    "gpt2": ("gpt2", {}),
    "gpt2-untied-inverse-layer-scale": ("gpt2", dict(tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True)),
}


def assert_close(ours, theirs, what):
    diff = (ours - theirs).abs().max().item()
    print(f"{what}: max |diff| {diff:.2e}")
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0, msg=f"{what}: max |diff| {diff:.3g} > {ATOL}")


def hf_random(case, kind="ForSequenceClassification", seed=0, **changes):
    """transformers' model `kind` of the case's family, eval mode, every weight (the norms too) moved well away from
    its initialisation."""
    family, case_changes = CASES[case]
    config_class, prefix, _, sizes = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_class(**{**sizes, **case_changes, **changes})
    config._attn_implementation = "eager"
    model = getattr(transformers, prefix + ("LMHeadModel" if kind == "ForCausalLM" and family == "gpt2" else kind))(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def ours_class(case):
    return FAMILIES[CASES[case][0]][2]


def batch(seed=0, low=1, high=99, pad=PAD):
    """Three sequences of lengths 9, 6 and 2, right-padded with `pad`, real ids in [low, high)."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS)[:, None]).long()
    ids = torch.randint(low, high, mask.shape, generator=g)
    return torch.where(mask.bool(), ids, pad), mask


def real_tokens(mask):
    return mask.bool().flatten().nonzero().squeeze(1)


def last_states(hidden, mask):
    return hidden[torch.arange(len(mask)), mask.sum(1) - 1]


def loaded(case, tmp_path, **changes):
    """transformers' classifier of the case, saved by transformers and loaded by ours."""
    theirs = hf_random(case, **changes)
    theirs.save_pretrained(tmp_path / "theirs")
    return theirs, ours_class(case).from_pretrained(tmp_path / "theirs").eval()


def their_base(model):
    return getattr(model, model.base_model_prefix, model)


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


# ---------------------------------------------------------------------------------------------------------------
# parity with transformers


@pytest.mark.parametrize("case", CASES)
def test_parity(case, tmp_path):
    theirs, ours = loaded(case, tmp_path)
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        out = ours(ids, mask)
        hidden = their_base(theirs)(input_ids=ids, attention_mask=mask).last_hidden_state
        # Padded slots differ by design: transformers' padded queries see only real keys, ours every earlier slot.
        assert_close(out.hidden_states[real], hidden[real], f"{case} hidden states (real tokens)")
        assert_close(out.features, last_states(hidden, mask), f"{case} features (last real token)")
        assert_close(out.logits, theirs(input_ids=ids, attention_mask=mask).logits, f"{case} logits")


@pytest.mark.parametrize("case", CASES)
def test_training_step_gradients(case, tmp_path):
    """One cross-entropy step: every parameter's gradient equals transformers' (dropout is off in these configs)."""
    theirs, ours = loaded(case, tmp_path)
    ids, mask = batch(seed=1)
    labels = torch.tensor([0, 2, 1])
    ours.train(), theirs.train()
    F.cross_entropy(ours(ids, mask).logits, labels).backward()
    F.cross_entropy(theirs(input_ids=ids, attention_mask=mask).logits, labels).backward()
    their_params = dict(theirs.named_parameters())
    diffs = []
    for name, p in ours.named_parameters():
        hf = ours.layout.hf_name(name)
        module = theirs.get_submodule(hf.rsplit(".", 1)[0])
        grad = their_params[hf].grad
        grad = grad.t() if isinstance(module, Conv1D) and hf.endswith(".weight") else grad  # stored (in, out)
        torch.testing.assert_close(p.grad, grad, atol=ATOL, rtol=0, msg=f"{case} gradient of {name} ({hf})")
        diffs.append((p.grad - grad).abs().max().item())
        assert p.grad.abs().sum() > 0, name
    assert len(diffs) == len(their_params)
    print(f"{case} gradients of {len(diffs)} parameters: max |diff| {max(diffs):.2e}")


# ---------------------------------------------------------------------------------------------------------------
# padding and the unpadded path


@pytest.mark.parametrize("case", CASES)
def test_padded_batch_equals_one_sequence_at_a_time(case, tmp_path):
    """Also when a sequence's last real token is the pad id: the mask, not the ids, says which token that is."""
    _, ours = loaded(case, tmp_path)
    ids, mask = batch(seed=2)
    ids[1, LENGTHS[1] - 1] = PAD
    with torch.no_grad():
        padded = ours(ids, mask)
        for b, n in enumerate(LENGTHS):
            alone = ours(ids[b:b + 1, :n], mask[b:b + 1, :n])
            assert_close(padded.logits[b:b + 1], alone.logits, f"{case} logits of sequence {b}, padded vs alone")
            assert_close(padded.features[b:b + 1], alone.features, f"{case} features of sequence {b}")
            assert_close(padded.hidden_states[b:b + 1, :n], alone.hidden_states, f"{case} states of sequence {b}")
        torch.testing.assert_close(padded.features[1], padded.hidden_states[1, LENGTHS[1] - 1], atol=0, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_unpadded_equals_padded(case, tmp_path):
    """token_index (the real tokens only) gives the padded model's outputs and gradients; padded slots are zeros."""
    _, ours = loaded(case, tmp_path)
    ids, mask = batch(seed=3)
    real = mask.bool()
    ours.train()
    outputs, grads = [], []
    for index in (None, real_tokens(mask)):
        ours.zero_grad()
        out = ours(ids, mask, token_index=index)
        out.logits.square().sum().backward()
        outputs.append(out)
        grads.append({name: p.grad.clone() for name, p in ours.named_parameters()})
    padded, unpadded = outputs
    assert_close(unpadded.logits, padded.logits, f"{case} unpadded logits")
    assert_close(unpadded.features, padded.features, f"{case} unpadded features")
    assert_close(unpadded.hidden_states[real], padded.hidden_states[real], f"{case} unpadded states")
    assert not unpadded.hidden_states[~real].any()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=ATOL, rtol=0, msg=f"{case} unpadded gradient of {name}")


@pytest.mark.parametrize("case", ["mistral-window-3-of-9", "qwen3-head-dim-24-qk-norm", "gpt2"])
def test_forward_is_one_graph_for_torch_compile(case, tmp_path):
    _, ours = loaded(case, tmp_path)
    ids, mask = batch()
    compiled = torch.compile(ours, backend="eager", fullgraph=True)
    with torch.no_grad():
        expected = ours(ids, mask).logits
        torch.testing.assert_close(compiled(ids, mask).logits, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(compiled(ids, mask, token_index=real_tokens(mask)).logits, expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# checkpoint layouts


LAYOUTS = {  # name: case, transformers' model kind, how it is written
    "llama-causal-lm-untied": ("llama-gqa-untied", "ForCausalLM", "safetensors"),
    "llama-causal-lm-tied": ("llama-mqa-tied-biases-llama3-rope", "ForCausalLM", "safetensors"),
    "qwen2-causal-lm-tied-bin": ("qwen2-biases-window-on-layer-1", "ForCausalLM", "bin"),
    "gpt2-lm-head-tied": ("gpt2", "ForCausalLM", "safetensors"),
    "gpt2-lm-head-untied": ("gpt2-untied-inverse-layer-scale", "ForCausalLM", "safetensors"),
    "llama-bare-model": ("llama-gqa-untied", "Model", "safetensors"),
    "qwen3-bare-model-bin-legacy-buffers": ("qwen3-head-dim-24-qk-norm", "Model", "legacy-bin"),
    "gpt2-bare-model": ("gpt2", "Model", "safetensors"),
    "gpt2-bare-model-bin-legacy-buffers": ("gpt2", "Model", "legacy-bin"),
    "mistral-classifier-sharded": ("mistral-window-3-of-9", "ForSequenceClassification", "sharded"),
    "gpt2-classifier-sharded": ("gpt2", "ForSequenceClassification", "sharded"),
    "llama-classifier-bin": ("llama-gqa-untied", "ForSequenceClassification", "bin"),
}


def write(model, folder, how):
    """Save a transformers model the way checkpoints are found in the wild."""
    if how == "safetensors":
        model.save_pretrained(folder)
    elif how == "sharded":
        model.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").is_file()
    else:  # .bin as older transformers wrote it: the whole state dict (tied copies included), and buffers
        model.config.save_pretrained(folder)
        state = model.state_dict()
        if how == "legacy-bin":
            for i in range(model.config.num_hidden_layers):
                if isinstance(model, transformers.GPT2Model):  # the causal mask buffers
                    state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32, dtype=torch.bool))[None, None]
                    state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
                else:  # the rotary frequencies
                    state[f"layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(6)
        torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_checkpoint_layouts(layout, tmp_path, caplog):
    case, kind, how = LAYOUTS[layout]
    theirs = hf_random(case, kind)
    write(theirs, tmp_path, how)
    with caplog.at_level(logging.WARNING, logger="models.checkpoint"):
        ours = ours_class(case).from_pretrained(tmp_path).eval()
    assert not any(p.is_meta for p in ours.parameters()) and {p.dtype for p in ours.parameters()} == {torch.float32}
    untied_lm_head = kind == "ForCausalLM" and not theirs.config.tie_word_embeddings
    assert (ours.mlm is not None) == untied_lm_head  # kept for the gamma * L1 term (mlm=True, the default)
    if untied_lm_head:
        assert torch.equal(ours.mlm.weight, theirs.lm_head.weight)
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        out = ours(ids, mask)
        hidden = their_base(theirs)(input_ids=ids, attention_mask=mask).last_hidden_state
        assert_close(out.hidden_states[real], hidden[real], f"{layout} hidden states (real tokens)")
        assert_close(out.features, last_states(hidden, mask), f"{layout} features")
        if kind == "ForSequenceClassification":
            assert not caplog.records
            assert_close(out.logits, theirs(input_ids=ids, attention_mask=mask).logits, f"{layout} logits")
        else:  # no classifier in the checkpoint: ours is fresh, drawn as transformers draws one, and says so
            assert len(caplog.records) == 1 and "score.weight" in caplog.records[0].getMessage()
            assert 0.01 < ours.score.weight.std() < 0.03  # normal(0, initializer_range = 0.02)
            assert_close(out.logits, last_states(hidden, mask) @ ours.score.weight.T, f"{layout} logits")


def test_loading_draws_no_weight_but_the_fresh_head_and_copies_none(tmp_path, monkeypatch):
    """Built on the meta device (Layout.meta): initialisation draws nothing real, and the parameters are the float32
    tensors read from the file, not copies."""
    hf_random("llama-gqa-untied", "ForCausalLM").save_pretrained(tmp_path)
    drawn, read = [], {}
    normal, read_file = torch.nn.init.normal_, checkpoint._read_file
    def recorded_normal(*args, **kwargs):
        drawn.append((args[0] if args else kwargs["tensor"]).is_meta)
        return normal(*args, **kwargs)
    monkeypatch.setattr(torch.nn.init, "normal_", recorded_normal)
    monkeypatch.setattr(checkpoint, "_read_file", lambda path: read.setdefault("state", read_file(path)))
    ours = LlamaForSequenceClassification.from_pretrained(tmp_path)
    assert drawn and all(drawn)
    assert ours.model.embed.weight.data_ptr() == read["state"]["model.embed_tokens.weight"].data_ptr()
    assert ours.model.layers[1].mlp.down.weight.data_ptr() == read["state"]["model.layers.1.mlp.down_proj.weight"].data_ptr()
    assert not any(p.is_meta for p in ours.parameters()) and all(p.requires_grad for p in ours.parameters())


def test_a_bf16_checkpoint_is_read_shard_by_shard_in_the_dtype_asked_for(tmp_path, monkeypatch):
    """Read as bf16, the parameters are the file's own tensors (no copy); read as float32 (the default), each shard is
    cast as it is read, its bf16 tensors released before the next shard is read: peak memory is the model's size
    and one shard, not the whole bf16 checkpoint and its float32 copy."""
    theirs = hf_random("qwen2-biases-window-on-layer-1", "ForCausalLM").to(torch.bfloat16)
    theirs.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(shards.values())) > 2
    read, alive_at_read = {}, []
    read_file = checkpoint._read_file
    def recorded(path):
        alive_at_read.append(sum(ref() is not None for ref in read.values()))
        state = read_file(path)
        read.update({k: weakref.ref(v) for k, v in state.items()})
        return state
    monkeypatch.setattr(checkpoint, "_read_file", recorded)
    full = LlamaForSequenceClassification.from_pretrained(tmp_path)
    assert {p.dtype for p in full.parameters()} == {torch.float32} and not any(alive_at_read)

    kept = {}
    monkeypatch.setattr(checkpoint, "_read_file", lambda path: kept.setdefault(path, read_file(path)))
    ours = LlamaForSequenceClassification.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    pointers = {v.data_ptr() for state in kept.values() for v in state.values()}
    body = [name for name, _ in ours.named_parameters() if not name.startswith("score.")]
    assert all(ours.get_parameter(name).data_ptr() in pointers for name in body)
    assert all(torch.equal(ours.get_parameter(name).float(), full.get_parameter(name)) for name in body)


def test_legacy_config_json_and_bf16_weights(tmp_path):
    """An older config.json (rope_theta, rope_scaling with `type`, torch_dtype, a list of eos ids, no pad id) over
    bf16 weights reads as transformers reads it; the float32 model we save says float32 and the rest in the new form."""
    theirs = hf_random("llama-gqa-untied", "ForCausalLM", pad_token_id=None, eos_token_id=[97, 98],
                       rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 5000.0})
    with torch.no_grad():  # weights that bf16 holds exactly (not theirs.to(bfloat16), which rounds its RoPE buffer too)
        for p in theirs.parameters():
            p.copy_(p.bfloat16().float())
    theirs.save_pretrained(tmp_path / "legacy")
    weights = tmp_path / "legacy" / "model.safetensors"
    save_file({k: v.bfloat16() for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    path = tmp_path / "legacy" / "config.json"
    config = json.loads(path.read_text())
    assert config.pop("rope_parameters")["rope_type"] == "linear" and config.pop("dtype") == "float32"
    config |= {"rope_theta": 5000.0, "rope_scaling": {"type": "linear", "factor": 2.0}, "torch_dtype": "bfloat16"}
    path.write_text(json.dumps(config))

    ours = LlamaForSequenceClassification.from_pretrained(tmp_path / "legacy").eval()
    assert ours.config.rope_parameters == {"type": "linear", "rope_type": "linear", "factor": 2.0, "rope_theta": 5000.0}
    assert ours.config.pad_token_id == 97  # the first eos id
    assert {p.dtype for p in ours.parameters()} == {torch.float32}
    ids, mask = batch(high=97, pad=97)  # so transformers' classifier, by pad id, reads our token
    with torch.no_grad():
        out = ours(ids, mask)
        hidden = theirs.model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert_close(out.features, last_states(hidden, mask), "legacy config features")
        # transformers reads the legacy file as we do
        again = transformers.AutoModel.from_pretrained(tmp_path / "legacy", dtype=torch.float32).eval()
        assert_close(again(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()], hidden[mask.bool()],
                     "legacy config read by transformers")

        ours.save_pretrained(tmp_path / "saved")
        saved = json.loads((tmp_path / "saved" / "config.json").read_text())
        assert saved["torch_dtype"] == "float32" and saved["pad_token_id"] == 97
        assert saved["rope_parameters"]["rope_type"] == "linear" and "rope_scaling" not in saved and "rope_theta" not in saved
        reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
        assert next(reloaded.parameters()).dtype == torch.float32
        assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, out.logits, "legacy round trip logits")


# ---------------------------------------------------------------------------------------------------------------
# saving


@pytest.mark.parametrize("case", CASES)
def test_our_folder_loads_in_transformers(case, tmp_path):
    """From a *ForCausalLM folder (the usual start, a fresh score) to our save: transformers' Auto class reads
    it, pad_token_id included, with the same logits; ours reads it back identically."""
    kind = "ForCausalLM"
    theirs = hf_random(case, kind)
    theirs.save_pretrained(tmp_path / "lm")
    ours = ours_class(case).from_pretrained(tmp_path / "lm").eval()
    ours.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    hf_class = FAMILIES[CASES[case][0]][1] + "ForSequenceClassification"
    assert config["pad_token_id"] == PAD and config["architectures"] == [hf_class]
    # the keys transformers writes for this family, and no other family's (a Mistral naming layer_types is read
    # as Ministral); Qwen2's adds head_dim, which its modules read when present
    theirs_config = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert config.keys() - theirs_config.keys() <= {"num_labels", "head_dim"} and theirs_config.keys() <= config.keys()
    ids, mask = batch(seed=4)
    with torch.no_grad():
        out = ours(ids, mask)
        reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "saved", attn_implementation="eager").eval()
        assert type(reloaded).__name__ == hf_class
        assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, out.logits, f"{case} round trip logits")
        again = ours_class(case).from_pretrained(tmp_path / "saved").eval()
        assert again.config == ours.config
        assert all(torch.equal(v, again.state_dict()[k]) for k, v in ours.state_dict().items())
        assert torch.equal(again(ids, mask).logits, out.logits)


# ---------------------------------------------------------------------------------------------------------------
# refused checkpoints: each a CheckpointError with a one-line message


@pytest.mark.parametrize("rope", [
    {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0, "original_max_position_embeddings": 32}},
    {"rope_scaling": {"type": "yarn", "factor": 4.0}, "rope_theta": 10000.0},
])
def test_unsupported_rope_type_is_refused(rope, tmp_path):
    hf_random("llama-gqa-untied").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **rope}))
    with pytest.raises(CheckpointError) as e:
        LlamaForSequenceClassification.from_pretrained(tmp_path)
    one_line_error(e, "config.json", "rope_type 'yarn' is not supported", "default, linear, llama3")


def test_config_of_another_model_type_is_refused(tmp_path):
    hf_random("gpt2").save_pretrained(tmp_path / "gpt2")
    hf_random("qwen3-biases").save_pretrained(tmp_path / "qwen3")
    with pytest.raises(CheckpointError) as e:
        LlamaForSequenceClassification.from_pretrained(tmp_path / "gpt2")
    one_line_error(e, "config.json", "model_type is 'gpt2'", "expected 'llama' or 'mistral' or 'qwen2' or 'qwen3'")
    with pytest.raises(CheckpointError) as e:
        GPT2ForSequenceClassification.from_pretrained(tmp_path / "qwen3")
    one_line_error(e, "config.json", "model_type is 'qwen3'", "expected 'gpt2'")


# ---------------------------------------------------------------------------------------------------------------
# the gamma * L1 term: the causal-LM loss with the checkpoint's LM head


@pytest.mark.parametrize("case", ["llama-gqa-untied", "qwen2-biases-window-on-layer-1", "gpt2",
                                  "gpt2-untied-inverse-layer-scale"])
@pytest.mark.parametrize("unpad", [False, True])
def test_causal_lm_term_is_transformers_causal_lm_loss(case, unpad, tmp_path):
    """L1 on a right-padded batch equals transformers' *ForCausalLM loss with the padding labelled -100, tied and
    untied heads alike, and so do the LM head's and the embeddings' gradients."""
    theirs = hf_random(case, "ForCausalLM")
    theirs.save_pretrained(tmp_path)
    ours = ours_class(case).from_pretrained(tmp_path, num_labels=2)
    assert ours.has_lm_head() and (ours.mlm is None) == theirs.config.tie_word_embeddings
    ids, mask = batch(seed=2)
    batch_ = {"input_ids": ids, "attention_mask": mask}
    loss = CausalLM(gamma=1.0, lm_logits=ours.lm_logits).loss(ours(**model_inputs(batch_, unpad)), batch_)
    their_loss = theirs(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
    assert_close(loss, their_loss, f"{case} causal-LM loss")
    loss.backward(), their_loss.backward()
    embeddings = ours.get_submodule(ours.layout.prefix + ("embed" if ours.layout.prefix == "model." else "word"))
    assert_close(embeddings.weight.grad, theirs.get_input_embeddings().weight.grad, f"{case} embedding gradient")
    if ours.mlm is not None:
        assert_close(ours.mlm.weight.grad, theirs.lm_head.weight.grad, f"{case} LM head gradient")


def test_a_tied_lm_head_that_differs_from_the_embeddings_is_refused(tmp_path):
    hf_random("qwen2-biases-window-on-layer-1", "ForCausalLM").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    save_file(state | {"lm_head.weight": torch.randn_like(state["model.embed_tokens.weight"])}, weights,
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as e:
        LlamaForSequenceClassification.from_pretrained(tmp_path)
    one_line_error(e, "model.safetensors", "lm_head.weight differs from model.embed_tokens.weight",
                   "config.json's tie_word_embeddings ties them")


# ---------------------------------------------------------------------------------------------------------------
# students: a decoder of the teacher's architecture with fewer layers (models/student.py)


@pytest.mark.parametrize("case", ["llama-gqa-untied", "qwen2-biases-window-on-layer-1", "gpt2"])
def test_a_decoder_student_of_every_layer_is_its_teacher_and_one_of_fewer_copies_them(case, tmp_path):
    _, teacher = loaded(case, tmp_path)
    ids, mask = batch()
    whole = decoder_student(teacher, [0, 1])
    with torch.no_grad():
        assert torch.equal(whole(ids, mask).logits, teacher(ids, mask).logits)
    student = decoder_student(teacher, [1])
    assert len(list(student.named_children())[0][1].layers) == 1 and not any(p.is_meta for p in student.parameters())
    source = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        assert torch.equal(p, source[name.replace(".layers.0.", ".layers.1.")]) and p.requires_grad, name
        assert p.data_ptr() != source[name.replace(".layers.0.", ".layers.1.")].data_ptr()  # a copy
    if case.startswith("qwen2"):  # layer 1 slides, layer 0 does not: the student's one layer slides
        assert student.config.layer_types == ["sliding_attention"] and student.config.window(0) == 4


def test_a_student_of_a_teacher_whose_attention_scale_depends_on_the_layer_is_refused(tmp_path):
    _, teacher = loaded("gpt2-untied-inverse-layer-scale", tmp_path)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        decoder_student(teacher, [1])
