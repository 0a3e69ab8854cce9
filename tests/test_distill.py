"""distill.py and its parts: the student made from the teacher's layers, the teacher chosen from a sweep, the cached
teacher logits, and runs end to end on real CoLA examples."""
import json
from pathlib import Path

import pytest
import torch

from cmi.loop import TrainingError
from cmi.selection import select_teacher
from models.bert import BertConfig, BertForSequenceClassification
from models.student import check_layers, distilbert_from_bert

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GLUE, MINILM = SHARED / "glue", SHARED / "models" / "all-MiniLM-L6-v2"
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


# -----------------------------------------------------------------------------
# the student made from the teacher


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
    ([0, 2, 2], "repeat in 0,2,2"),
    ([0, 12], "layer 12 does not exist: the teacher has 12 layers (0-11)"),
    ([-1, 3], "layer -1 does not exist"),
])
def test_bad_layer_lists_are_refused(layers, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_layers(layers, 12)


# -----------------------------------------------------------------------------
# the teacher chosen from a sweep


def fake_run(sweep, name, mode="max", task="cola", best=True, **metrics):
    run = sweep / name
    run.mkdir(parents=True)
    if best:
        (run / "best").mkdir()
    if metrics:
        results = {"args": {"mode": mode, "task": task, "lam": 0.1, "seed": 0}, "best_epoch": 3, **metrics}
        (run / "results.json").write_text(json.dumps(results))
    return run


def test_the_teacher_is_the_max_run_with_the_highest_metric_to_cmi_ratio(tmp_path):
    fake_run(tmp_path, "a", mcc=0.40, eval_cmi=0.010)  # ratio 40
    fake_run(tmp_path, "b", mcc=0.50, eval_cmi=0.020)  # 25: the best metric, not the best ratio
    fake_run(tmp_path, "c", mcc=0.30, eval_cmi=0.005)  # 60: chosen
    fake_run(tmp_path, "d", mode="min", mcc=0.90, eval_cmi=0.001)  # not a max-CMI run
    fake_run(tmp_path, "e", task="sst2", accuracy=0.9, eval_cmi=0.001)  # another task
    fake_run(tmp_path, "f")  # unfinished: no results.json
    fake_run(tmp_path, "g", mcc=0.30, eval_cmi=0.0)
    fake_run(tmp_path, "h", eval_cmi=0.001)  # no metric
    fake_run(tmp_path, "i", best=False, mcc=0.9, eval_cmi=0.001)
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "results.json").write_text("{")
    (tmp_path / "not-a-run.txt").write_text("")
    selection = select_teacher(tmp_path, "cola", "mcc")
    assert selection.chosen.run == tmp_path / "c" and selection.chosen.best == tmp_path / "c" / "best"
    assert selection.chosen.ratio == pytest.approx(60)
    assert [c.run.name for c in selection.candidates] == ["c", "a", "b"]
    notes = "\n".join(selection.notes)
    assert len(selection.notes) == 5, notes
    for fragment in ("f: skipped, no results.json", "g: skipped, eval_cmi is 0.0", "h: skipped, results.json lacks 'mcc'",
                     "i: skipped, no best/", "j: skipped, results.json is not valid JSON"):
        assert fragment in notes, notes
    assert "highest of 3 max-CMI runs" in selection.summary() and str(tmp_path / "c" / "best") in selection.summary()


def test_a_tie_goes_to_the_first_run_by_name_and_says_so(tmp_path):
    fake_run(tmp_path, "seed1", mcc=0.2, eval_cmi=0.01)
    fake_run(tmp_path, "seed0", mcc=0.4, eval_cmi=0.02)
    selection = select_teacher(tmp_path, "cola", "mcc")
    assert selection.chosen.run.name == "seed0"
    assert selection.notes == ["runs seed0, seed1 tie at ratio 20: took seed0, the first by name"]


def test_no_usable_run_is_one_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="not a folder"):
        select_teacher(tmp_path / "missing", "cola", "mcc")
    with pytest.raises(TrainingError, match="no usable max-CMI run of task cola \\(no sub-folder holds one\\)"):
        select_teacher(tmp_path, "cola", "mcc")
    fake_run(tmp_path, "a", mcc=0.3, eval_cmi=-1e-9)
    fake_run(tmp_path, "b", mode="ce", mcc=0.3, eval_cmi=0.01)
    with pytest.raises(TrainingError) as e:
        select_teacher(tmp_path, "cola", "mcc")
    assert "a: skipped, eval_cmi is -1e-09" in str(e.value) and "\n" not in str(e.value)
