"""The DistilBERT student made from a BERT teacher (models/student.py): which tensors are copied, and that with
every layer and the token-type fold it computes exactly what the teacher computes."""
import pytest
import torch

from conftest import MINILM
from models.bert import BertConfig, BertForSequenceClassification
from models.student import check_layers, distilbert_from_bert


TINY = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=16, num_labels=3)


def random_bert(config=TINY, seed=0):
    """An eval-mode BERT whose every weight (LayerNorm and token types too) is moved well away from its init."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def single_segment_batch(vocab=99, lengths=(9, 6, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(max(lengths)) < torch.tensor(lengths)[:, None]).long()
    return torch.randint(1, vocab, mask.shape, generator=g) * mask, mask


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("fold", [True, False])
def test_layer_copy_copies_every_listed_tensor(fold):
    teacher = random_bert()
    layers = [0, 2, 4, 7, 9, 11]
    student = distilbert_from_bert(teacher, layers, fold_token_type=fold)
    c = student.config
    assert (c.n_layers, c.dim, c.n_heads, c.hidden_dim, c.vocab_size, c.max_position_embeddings, c.num_labels) == \
           (6, 32, 4, 64, 99, 16, 3)
    t, s = teacher.bert.embeddings, student.distilbert.embeddings
    assert torch.equal(s.word.weight, t.word.weight)
    assert torch.equal(s.norm.weight, t.norm.weight) and torch.equal(s.norm.bias, t.norm.bias)
    position = t.position.weight + t.token_type.weight[0] if fold else t.position.weight
    assert torch.equal(s.position.weight, position)
    for k, i in enumerate(layers):
        ours, theirs = student.distilbert.layers[k].state_dict(), teacher.bert.layers[i].state_dict()
        assert ours.keys() == theirs.keys() and len(ours) == 16
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), (k, i, name)
    # copies, not shared tensors: training the student must leave the teacher as it was
    with torch.no_grad():
        student.distilbert.layers[0].attn.query.weight.add_(1.0)
    assert not torch.equal(student.distilbert.layers[0].attn.query.weight, teacher.bert.layers[0].attn.query.weight)


def test_all_layers_and_the_fold_reproduce_the_teacher_on_single_segment_inputs():
    teacher = random_bert()
    ids, mask = single_segment_batch()
    expected = teacher(ids, mask).hidden_states  # token types default to 0: one segment
    folded = distilbert_from_bert(teacher, list(range(12))).eval()(ids, mask).hidden_states
    real = mask.bool()  # padded positions hold values nobody reads
    diff = max_diff(folded[real], expected[real])
    print(f"12-layer student with the fold vs teacher, last hidden state: max |diff| {diff:.2e}")
    assert diff < 1e-5
    unfolded = distilbert_from_bert(teacher, list(range(12)), fold_token_type=False).eval()(ids, mask).hidden_states
    assert max_diff(unfolded[real], expected[real]) > 1e-2  # the fold is what makes it exact


def test_real_minilm_copied_whole_gives_the_teachers_hidden_states():
    teacher = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()
    ids, mask = single_segment_batch(vocab=teacher.config.vocab_size, lengths=(40, 17, 5))
    student = distilbert_from_bert(teacher, list(range(6))).eval()
    diff = max_diff(student(ids, mask).hidden_states[mask.bool()], teacher(ids, mask).hidden_states[mask.bool()])
    print(f"all-MiniLM-L6-v2 copied whole: max |diff| {diff:.2e}")
    assert diff < 1e-5


@pytest.mark.parametrize("layers, message", [
    ([], "empty"),
    ([0, 2, 2], "must be distinct: they repeat in 0,2,2"),
    ([0, 12], "layer 12 does not exist: the teacher has 12 layers (0-11)"),
    ([-1, 3], "layer -1 does not exist"),
])
def test_bad_layer_lists_are_refused(layers, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_layers(layers, 12)
