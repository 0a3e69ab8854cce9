"""models/lora.py against peft, the test-only oracle, on tiny random BERT, DistilBERT, GPT-2 (Conv1D weights) and
Llama / Qwen2 classifiers: the adapted model's logits, its trainable parameters, adapters written by us and read by
peft and the reverse, the merged checkpoint read by transformers, and what one training step may change."""
import json

import peft
import pytest
import torch
import transformers
from safetensors.torch import load_file

import test_decoders
import test_parity
from conftest import MINILM, cola_rows, metric_lines, run_cli, write_own
from test_predict import predict_cli
from models.bert import BertForSequenceClassification, checkpoint_layers
from models.checkpoint import CheckpointError
from models.distilbert import DistilBertForSequenceClassification
from models.lora import (LoRALinear, add_lora, in_head, is_adapter, load_adapter, merged_state, module_names,
                         save_adapter)

ATOL = 1e-5


def bert():
    return test_parity.hf_random(transformers.BertForSequenceClassification, transformers.BertConfig,
                                 **test_parity.BERT), BertForSequenceClassification


def distilbert():
    return test_parity.hf_random(transformers.DistilBertForSequenceClassification, transformers.DistilBertConfig,
                                 **test_parity.DISTIL), DistilBertForSequenceClassification


def decoder(case):
    return lambda: (test_decoders.hf_random(case), test_decoders.ours_class(case))


ARCHITECTURES = {"bert": bert, "distilbert": distilbert, "gpt2": decoder("gpt2"),
                 "llama": decoder("llama-gqa-untied"), "qwen2": decoder("qwen2-biases-window-on-layer-1")}
# targets beyond the default query and value: peft's names, the MLP included
TARGETS = {"bert": ["query", "key", "value", "output.dense"], "distilbert": ["q_lin", "v_lin", "lin1", "lin2"],
           "gpt2": ["c_attn", "c_proj"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
           "qwen2": ["q_proj", "v_proj", "gate_proj", "up_proj"]}


def logits(model, name):
    """The model's logits on three padded sequences (by keyword: GPT-2's second positional is its cache)."""
    ids, mask = test_parity.batch()[:2] if name in ("bert", "distilbert") else test_decoders.batch()
    return model(input_ids=ids, attention_mask=mask).logits


def setup(name, tmp_path, targets=None, rslora=False):
    """transformers' classifier (saved) and ours loaded from it with LoRA added, its B drawn away from zero so the
    adapters change the function."""
    theirs, cls = ARCHITECTURES[name]()
    theirs.save_pretrained(tmp_path / "base")
    ours = cls.from_pretrained(tmp_path / "base")
    add_lora(ours, r=4, alpha=12, targets=targets, rslora=rslora)
    torch.manual_seed(1)
    with torch.no_grad():
        for module in ours.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.weight.normal_(std=0.3)
    return theirs, ours.eval()


def peft_model(theirs, folder):
    return peft.PeftModel.from_pretrained(theirs, folder, is_trainable=True).eval()


def assert_close(ours, theirs, what):
    diff = (ours - theirs).abs().max().item()
    assert diff <= ATOL, f"{what}: max |diff| {diff:.3g} > {ATOL}"


@pytest.mark.parametrize("targets", ["default", "more"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_our_adapters_load_in_peft_with_the_same_logits(name, targets, tmp_path):
    theirs, ours = setup(name, tmp_path, None if targets == "default" else TARGETS[name], rslora=targets == "more")
    save_adapter(ours, tmp_path / "adapter", str(tmp_path / "base"))
    with torch.no_grad():
        before = logits(ours, name)
        base = logits(theirs, name)
        adapted = peft_model(theirs, tmp_path / "adapter")
        assert_close(before, logits(adapted, name), f"{name} logits, ours and peft's")
    assert (before - base).abs().max() > 1e-2  # the adapters change the function: the comparison can fail
    # the gradients of A and B, of one cross-entropy step (as tests/test_decoders.py's)
    labels = torch.tensor([0, 2, 1])
    torch.nn.functional.cross_entropy(logits(ours, name), labels).backward()
    torch.nn.functional.cross_entropy(logits(adapted, name), labels).backward()
    theirs_params = dict(adapted.named_parameters())
    names = module_names(ours)
    for module_name, module in ours.named_modules():
        if isinstance(module, LoRALinear):
            for part in ("lora_A", "lora_B"):
                theirs_grad = theirs_params[f"base_model.model.{names[module_name]}.{part}.default.weight"].grad
                ours_grad = getattr(module, part).weight.grad
                # float32 rounding grows with the gradient: rsLoRA's larger scale makes some of A's ~50
                scale = max(1.0, ours_grad.abs().max().item())
                assert_close(ours_grad / scale, theirs_grad / scale, f"{name} {module_name}.{part} gradient / {scale:.3g}")
    # the same parameters train: the adapters and the task head
    ours_trained = {n for n, p in ours.named_parameters() if p.requires_grad}
    theirs_trained = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert sum(p.numel() for n, p in ours.named_parameters() if n in ours_trained) == \
        sum(p.numel() for n, p in adapted.named_parameters() if n in theirs_trained) > 0


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_peft_adapters_load_in_ours_with_the_same_logits(name, tmp_path):
    theirs, cls = ARCHITECTURES[name]()
    theirs.save_pretrained(tmp_path / "base")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS[name], task_type="SEQ_CLS",
                             fan_in_fan_out=name == "gpt2")
    adapted = peft.get_peft_model(theirs, config)
    torch.manual_seed(2)
    with torch.no_grad():
        for n, p in adapted.named_parameters():
            if "lora_B" in n or "modules_to_save" in n:
                p.normal_(std=0.3)
    adapted.save_pretrained(tmp_path / "adapter")
    ours = cls.from_pretrained(tmp_path / "base")
    load_adapter(ours, tmp_path / "adapter")
    with torch.no_grad():
        assert_close(logits(ours.eval(), name), logits(adapted.eval(), name),
                     f"{name} logits of peft's adapter")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_merged_checkpoint_is_peft_merge_and_unload_in_transformers(name, tmp_path):
    theirs, ours = setup(name, tmp_path, TARGETS[name])
    save_adapter(ours, tmp_path / "adapter", str(tmp_path / "base"))
    ours.save_pretrained(tmp_path / "merged", state_dict=merged_state(ours))
    assert not any("lora" in key for key in load_file(tmp_path / "merged" / "model.safetensors"))
    merged = type(theirs).from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        expected = logits(peft_model(theirs, tmp_path / "adapter").merge_and_unload(), name)
        assert_close(logits(merged, name), expected, f"{name} merged logits")
        assert_close(logits(ours, name), expected, f"{name} adapted logits")


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_a_training_step_changes_the_adapters_and_the_head_only(name, tmp_path):
    _, ours = setup(name, tmp_path)
    before = {n: p.detach().clone() for n, p in ours.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2)
    ours.train()
    torch.nn.functional.cross_entropy(logits(ours, name), torch.tensor([0, 1, 2])).backward()
    optimizer.step()
    changed = {n for n, p in ours.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(is_adapter(n) or in_head(ours, n) for n in changed), changed
    assert any(".lora_A." in n for n in changed) and any(in_head(ours, n) for n in changed)


def test_a_target_that_matches_nothing_is_one_line(tmp_path):
    theirs, cls = bert()
    theirs.save_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match=r"^LoRA target 'q_proj' matches no linear layer of "
                                         r"BertForSequenceClassification \(e\.g\. .*query.*\)$"):
        add_lora(cls.from_pretrained(tmp_path / "base"), r=4, alpha=8, targets=["q_proj"])


@pytest.mark.parametrize("change, message", [
    ({"use_dora": True}, "use_dora = True is not supported"),
    ({"peft_type": "IA3"}, "peft_type 'IA3', expected 'LORA'"),
    ({"r": 8}, "has shape (4, 48), expected (8, 48)"),
])
def test_an_adapter_this_lora_does_not_compute_is_one_line(change, message, tmp_path):
    theirs, ours = setup("bert", tmp_path)
    save_adapter(ours, tmp_path / "adapter", str(tmp_path / "base"))
    path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | change))
    with pytest.raises(CheckpointError) as excinfo:
        load_adapter(BertForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value) and "adapter" in str(excinfo.value)


# ---------------------------------------------------------------------------------------------------------------
# train.py --lora-r on real CoLA and the real all-MiniLM-L6-v2


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory):
    """ce and min runs with LoRA, on 96 real CoLA sentences (dev: 48 others, in a file predict.py can score)."""
    folder = tmp_path_factory.mktemp("lora")
    train, dev = write_own(folder / "cola.csv", cola_rows(96)), write_own(folder / "cola_dev.csv", cola_rows(48, 200))
    for mode in ("ce", "min"):
        result = run_cli(["--train-file", str(train), "--validation-file", str(dev), "--model", str(MINILM),
                          "--out", str(folder / mode), "--mode", mode, "--lam", "1", "--epochs", "2", "--batch-size",
                          "16", "--lr", "1e-3", "--lora-r", "8", "--lora-alpha", "16", "--keep-last"])
        assert result.returncode == 0, result.stderr
    return folder, dev


def test_a_lora_run_trains_the_adapters_and_head_and_keeps_the_base_bit_identical(lora_runs):
    folder, _ = lora_runs
    state = torch.load(folder / "min" / "last.pt", weights_only=False)["model"]
    base = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2, mlm=False).state_dict()
    frozen = [k for k in state if not is_adapter(k) and not k.startswith(("bert.pooler.", "classifier."))]
    assert frozen and all(torch.equal(state[k], base[k]) for k in frozen)
    lora_B = [k for k in state if ".lora_B." in k]
    assert len(lora_B) == 12 and all(state[k].abs().max() > 0 for k in lora_B)  # query and value of 6 layers
    assert not torch.equal(state["classifier.weight"], base["classifier.weight"])


def test_a_lora_runs_best_reloads_with_its_dev_metrics_and_its_adapter_in_peft(lora_runs, tmp_path):
    folder, dev = lora_runs
    out = folder / "min"
    result = predict_cli("--model", str(out / "best"), "--file", str(dev), "--out", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    best = json.loads((out / "results.json").read_text())
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "mcc", "eval_cmi"):
        assert metrics[key] == pytest.approx(best[key], abs=1e-6), key
    # best/ (merged) in transformers without peft, and adapter/ in peft onto the base: the same logits
    ids, mask = test_parity.batch()[:2]
    merged = transformers.BertForSequenceClassification.from_pretrained(out / "best").eval()
    base = transformers.BertForSequenceClassification.from_pretrained(MINILM, num_labels=2)
    with torch.no_grad():
        assert_close(logits(peft_model(base, out / "adapter"), "bert"), logits(merged, "bert"), "adapter in peft")


def test_min_with_lora_lowers_the_train_cmi_against_ce(lora_runs):
    folder, _ = lora_runs
    ce, cmi_min = (metric_lines(folder / mode)[-1]["train_cmi"] for mode in ("ce", "min"))
    print(f"train CMI after 2 epochs with LoRA: ce {ce:.4f}, min {cmi_min:.4f}")
    assert cmi_min < ce


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_gradient_checkpointing_gives_the_adapters_the_same_gradients(name, tmp_path):
    """Non-reentrant checkpointing: the frozen layers' inputs need no gradient, and the adapters still get theirs."""
    grads = []
    for on in (False, True):
        _, ours = setup(name, tmp_path)
        checkpoint_layers(ours, on)
        ours.train()
        loss = torch.nn.functional.cross_entropy(logits(ours, name), torch.tensor([0, 1, 2]))
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}))
    (loss, plain), (loss_ckpt, ckpt) = grads
    assert torch.equal(loss, loss_ckpt) and plain.keys() == ckpt.keys()
    for n in plain:
        assert ckpt[n] is not None and ckpt[n].abs().max() > 0, n
        torch.testing.assert_close(ckpt[n], plain[n], atol=1e-6, rtol=1e-5, msg=n)
