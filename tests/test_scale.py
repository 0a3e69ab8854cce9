"""LLM-scale training pieces on CPU: activation checkpointing (models.bert.Layers) gives the same loss and gradients,
with dropout on and on the unpadded path, for every architecture, and train.py the same run."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cmi.loop import model_inputs
from conftest import args_for, metric_lines
from models.bert import BertConfig, BertForSequenceClassification, checkpoint_layers
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification
from models.gpt2 import GPT2Config, GPT2ForSequenceClassification
from models.llama import LlamaConfig, LlamaForSequenceClassification

MODELS = {  # tiny random models, dropout on where the architecture has it
    "bert": lambda: BertForSequenceClassification(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                                             num_attention_heads=2, intermediate_size=32,
                                                             max_position_embeddings=16)),
    "distilbert": lambda: DistilBertForSequenceClassification(DistilBertConfig(vocab_size=60, dim=16, n_layers=2,
                                                                               n_heads=2, hidden_dim=32,
                                                                               max_position_embeddings=16)),
    "llama": lambda: LlamaForSequenceClassification(LlamaConfig(vocab_size=60, hidden_size=16, intermediate_size=32,
                                                                num_hidden_layers=2, num_attention_heads=4,
                                                                num_key_value_heads=2)),
    "gpt2": lambda: GPT2ForSequenceClassification(GPT2Config(vocab_size=60, n_embd=16, n_layer=2, n_head=2,
                                                             n_positions=16)),
}


def batch():
    ids = torch.randint(1, 60, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(9) < torch.tensor([[9], [5], [2]])).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


def loss_and_gradients(model, unpad: bool, seed: int = 3):
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks
    loss = F.cross_entropy(model(**model_inputs(batch(), unpad)).logits, batch()["labels"])
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("unpad", [False, True])
@pytest.mark.parametrize("kind", MODELS)
def test_checkpointed_layers_give_the_same_loss_and_gradients(kind, unpad):
    torch.manual_seed(0)
    model = MODELS[kind]().train()
    loss, grads = loss_and_gradients(model, unpad)
    checkpoint_layers(model)
    saved = []  # what autograd keeps for the backward: with checkpointing, each layer's input, not its activations
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        checkpointed_loss, checkpointed = loss_and_gradients(model, unpad)
    assert torch.equal(checkpointed_loss, loss)
    assert grads.keys() == checkpointed.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(checkpointed[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)
    checkpoint_layers(model, on=False)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
        loss_and_gradients(model, unpad)
    assert sum(saved) < sum(kept)


def test_train_py_with_gradient_checkpointing_trains_the_same_run(tiny_bert, tmp_path):
    """--gradient-checkpointing (min-CMI, dropout on, real CoLA): the same metrics at every epoch and the same best/
    weights as without."""
    import train
    train.main(args_for(tiny_bert, tmp_path / "plain", "--mode", "min", "--lam", "1"))
    train.main(args_for(tiny_bert, tmp_path / "checkpointed", "--mode", "min", "--lam", "1", "--gradient-checkpointing"))
    assert metric_lines(tmp_path / "checkpointed") == metric_lines(tmp_path / "plain")
    plain, checkpointed = (load_file(tmp_path / run / "best" / "model.safetensors") for run in ("plain", "checkpointed"))
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)
