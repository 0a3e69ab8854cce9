"""The unpadded path (models/unpadded.py) gives the padded model's results: the same logits and features in eval
mode (float64 to 1e-12, float32 to rounding) on real CoLA and MRPC batches, the same dropout masks for the same
seed in train mode, and the same parameters after a training step."""
import pytest
import torch

from conftest import GLUE, MINILM
from data.batching import collate, train_batches
from data.loading import load_split
from data.tasks import get_task
from data.tokenization import encode, load_tokenizer
from cmi.loop import make_optimizer, real_tokens
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification

TINY = {"bert": (BertForSequenceClassification, BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                                           intermediate_size=96)),
        "distilbert": (DistilBertForSequenceClassification, DistilBertConfig(dim=48, n_layers=2, n_heads=4,
                                                                             hidden_dim=96))}


def real_batch(task: str, seed: int = 0) -> dict:
    """A shuffled training batch of 32 real examples (train.py's default order), padded to its longest."""
    enc = encode(load_tokenizer(MINILM), load_split(get_task(task), "validation", str(GLUE)), 128)
    return collate(enc, train_batches(enc.lengths, 32, seed, epoch=1, group_batches=1)[0])


def run(model, batch, fields, unpad: bool):
    """`model` on the batch's `fields`; with `unpad`, on its real tokens only."""
    return model(*(batch[k] for k in fields), token_index=real_tokens(batch["attention_mask"]) if unpad else None)


def both(model, batch, types: bool):
    """The padded and the unpadded forward of `model` on `batch` (token types given or left out)."""
    fields = ("input_ids", "attention_mask", "token_type_ids") if types else ("input_ids", "attention_mask")
    padded = model(*(batch[k] for k in fields))
    return padded, run(model, batch, fields, True)


def random_model(arch: str, dtype):
    torch.manual_seed(0)
    cls, config = TINY[arch]
    return cls(config).to(dtype)


CASES = [("bert", "cola", False), ("bert", "mrpc", True), ("bert", "mrpc", False), ("distilbert", "cola", False),
         ("distilbert", "mrpc", False)]


@pytest.mark.parametrize("arch,task,types", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_eval_outputs_equal_the_padded_models(arch, task, types, dtype, tol):
    batch = real_batch(task)
    assert batch["attention_mask"].float().mean() < 0.8  # a real mix of lengths: much of the batch is padding
    model = random_model(arch, dtype).eval()
    with torch.no_grad():
        padded, unpadded = both(model, batch, types)
    real = batch["attention_mask"].bool()
    for name in ("logits", "features"):
        diff = (getattr(padded, name) - getattr(unpadded, name)).abs().max().item()
        print(f"{arch} {task} {dtype} {name}: max |diff| {diff:.2e}")
        assert diff <= tol
    assert (padded.hidden_states[real] - unpadded.hidden_states[real]).abs().max() <= tol * 10
    assert not unpadded.hidden_states[~real].any()  # padded slots are zeros: never computed


def test_real_minilm_unpadded_equals_padded():
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()
    for task in ("cola", "mrpc"):
        with torch.no_grad():
            padded, unpadded = both(model, real_batch(task), types=True)
        diff = (padded.features - unpadded.features).abs().max().item()
        print(f"all-MiniLM-L6-v2 {task}, pooled features: max |diff| {diff:.2e}")
        torch.testing.assert_close(unpadded.features, padded.features, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(unpadded.logits, padded.logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", TINY)
def test_same_seed_same_dropout_masks_in_training(arch):
    batch = real_batch("mrpc")
    model = random_model(arch, torch.float64).train()
    fields = ("input_ids", "attention_mask")
    torch.manual_seed(1)
    padded = model(*(batch[k] for k in fields))
    torch.manual_seed(1)
    unpadded = run(model, batch, fields, True)
    torch.manual_seed(2)
    other = run(model, batch, fields, True)
    assert (padded.logits - unpadded.logits).abs().max() <= 1e-12
    assert (padded.logits - other.logits).abs().max() > 1e-3  # dropout is on: another seed, other masks


@pytest.mark.parametrize("arch", TINY)
def test_one_training_step_gives_the_same_parameters(arch):
    batch = real_batch("cola")
    fields = ("input_ids", "attention_mask")
    models = {unpad: random_model(arch, torch.float64).train() for unpad in (False, True)}
    for unpad, model in models.items():
        optimizer = make_optimizer(model, 1e-3, 0.01)
        torch.manual_seed(1)
        out = run(model, batch, fields, unpad)
        torch.nn.functional.cross_entropy(out.logits, batch["labels"]).backward()
        optimizer.step()
    start = random_model(arch, torch.float64).state_dict()
    for (name, a), b in zip(models[False].state_dict().items(), models[True].state_dict().values()):
        assert (a - b).abs().max() <= 1e-12, name
    moved = max((a - start[name]).abs().max().item() for name, a in models[True].state_dict().items())
    assert moved > 1e-4  # the step changed the parameters


def test_the_index_of_real_tokens_needs_right_padding():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    assert real_tokens(mask).tolist() == [0, 1, 2, 3, 4, 6]
    for bad in ([[0, 1, 1]], [[1, 0, 1]], [[0, 0, 0]]):  # left padding, a hole, an empty sequence
        with pytest.raises(ValueError, match="right-padded"):
            real_tokens(torch.tensor(bad))


def test_masked_lm_head_reads_the_same_states():
    """The gamma * L1 term reads the masked positions' states: equal on both paths."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(TINY["bert"][1], mlm=True).double().eval()
    batch = real_batch("cola")
    with torch.no_grad():
        padded, unpadded = both(model, batch, types=False)
        picked = batch["attention_mask"].bool() & (torch.rand(batch["input_ids"].shape) < 0.15)
        diff = (model.mlm_logits(padded.hidden_states[picked]) - model.mlm_logits(unpadded.hidden_states[picked]))
    assert picked.any() and diff.abs().max() <= 1e-10
