"""bf16 autocast on CPU: what of the CMI term's gradient reaches the parameters, the rule that gives the term its own
backward only where it needs one (cmi.precision.TermBackward), real runs with autocast and torch.compile, fp16's loss
scaling, and the set-up's lines about the CPU.

bf16 resolves ~4e-3 of a value; at lambda 0.05 the term's gradient is ~1e-3 of CE's (docs/design.md,
"Numerics"), so as part of one sum it is rounded away in every layer; backpropagated on its own it arrives."""
import json
import os
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from cmi.loop import TrainState, predict, train_step
from cmi.objectives import CMIObjective, EpochCentroids, Features
from cmi.precision import Autocast, Float32, TermBackward, backward
from conftest import GLUE, MINILM, args_for, run_cli
from data.batching import collate
from data.loading import load_split
from data.tasks import get_task
from data.tokenization import encode, load_tokenizer
from harness.cli import parse_train_args, runtime_options
from harness.runtime import setup
from models.bert import BertForSequenceClassification

LAM = 0.05


class Capture:
    """Stands in for the optimiser and schedule of train_step: keeps the gradients it is asked to apply."""

    def __init__(self, model):
        self.model, self.grads = model, None

    def step(self):
        if self.grads is None:  # the optimiser's step (the scheduler's step is the same call, ignored)
            self.grads = torch.cat([p.grad.flatten() for p in self.model.parameters() if p.grad is not None])

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def cola_batch(model_dir, n=8):
    task = get_task("cola")
    encoded = encode(load_tokenizer(model_dir), load_split(task, "train", GLUE, n), 128)
    return collate(encoded, np.arange(n))


def step_gradients(model, objective, batch, precision):
    capture = Capture(model)
    train_step(TrainState(model, objective, capture, capture, precision, clip=0), batch)
    return capture.grads


def test_cmi_gradient_reaches_the_parameters_under_bf16_autocast():
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()  # no dropout: repeatable
    batch = cola_batch(MINILM)
    features, d = Features(), model.config.hidden_size
    forward = lambda b: model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    stats = predict(model, [{**batch, "index": torch.arange(8)}], features, 2, 8, autocast=nullcontext())[1]
    centroids = EpochCentroids(2, d)
    centroids.refresh(stats)  # G: the batch's class means under the initial model (eq. 14)
    objectives = {mode: CMIObjective(mode, LAM, 2, centroids, features) for mode in ("ce", "min")}

    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    ref = step_gradients(model, objectives["min"], batch, Float32()) - \
        step_gradients(model, objectives["ce"], batch, Float32())  # lambda * grad CMI in float32
    diff = step_gradients(model, objectives["min"], batch, Autocast(torch.device("cpu"))) - \
        step_gradients(model, objectives["ce"], batch, Autocast(torch.device("cpu")))

    def agreement(diff):
        return (diff @ ref / (ref @ ref)).item(), ((diff - ref).norm() / ref.norm()).item()

    projection, error = agreement(diff)
    # the same gradients with one backward of the sum, as before the fix
    params = [p for p in model.parameters()]
    one_sum = []
    for mode in ("min", "ce"):
        model.zero_grad(set_to_none=True)
        with bf16:
            terms, _ = objectives[mode](forward(batch), batch)
        backward(terms, params, separate=False)
        one_sum.append(torch.cat([p.grad.flatten() for p in params if p.grad is not None]))
    old_projection, old_error = agreement(one_sum[0] - one_sum[1])
    print(f"bf16, lambda {LAM}: |lambda grad CMI| / |grad CE| = {ref.norm() / one_sum[1].norm():.1e}; "
          f"separate backward: projection {projection:.3f}, relative error {error:.3f}; "
          f"one backward of the sum: projection {old_projection:.3f}, relative error {old_error:.3f}")
    assert projection >= 0.9 and error <= 0.3
    assert not (old_projection >= 0.9 and old_error <= 0.3)  # the test can tell the two apart


def test_the_term_takes_one_backward_exactly_where_one_backward_keeps_it():
    """TermBackward's rule, against what reaches the parameters on real MiniLM batches: where the measured ratio of
    the term's gradient to CE's is at least joint_from, one backward of the sum keeps >= 95% of the term (the
    projection on its float32 gradient); where one backward would lose more, the ratio is below joint_from."""
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()
    batch = cola_batch(MINILM, n=16)
    features, d = Features(), model.config.hidden_size
    forward = lambda b: model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    stats = predict(model, [{**batch, "index": torch.arange(16)}], features, 2, 16, autocast=nullcontext())[1]
    centroids = EpochCentroids(2, d)
    centroids.refresh(stats)
    params = list(model.parameters())
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)

    def gradient(objective, ctx, separate):
        model.zero_grad(set_to_none=True)
        with ctx:
            terms, _ = objective(forward(batch), batch)
        ratio = backward(terms, params, separate=separate, measure=True)
        return torch.cat([p.grad.flatten() for p in params if p.grad is not None]), ratio

    rule = TermBackward()
    seen = set()
    for lam in (0.05, 2.0):
        objectives = {mode: CMIObjective(mode, lam, 2, centroids, features) for mode in ("ce", "min")}
        ref = gradient(objectives["min"], nullcontext(), False)[0] - gradient(objectives["ce"], nullcontext(), False)[0]
        ratio = gradient(objectives["min"], bf16, True)[1].item()
        one = gradient(objectives["min"], bf16, False)[0] - gradient(objectives["ce"], bf16, False)[0]
        kept = (one @ ref / (ref @ ref)).item()
        print(f"lambda {lam}: ratio {ratio:.1e}, one backward keeps {kept:.3f}")
        joint = ratio >= rule.joint_from
        assert joint == (kept >= 0.95)  # at these two weights, far from the threshold on either side
        seen.add(joint)
    assert seen == {True, False}  # both sides of the rule were tested


def test_term_backward_decides_from_each_epochs_probe_steps():
    rule = TermBackward(probe_steps=3)
    rule.start_epoch()
    for r in (0.02, 0.03):
        assert rule.separate and rule.probing
        rule.observe(torch.tensor(r))
    rule.observe(torch.tensor(0.004))  # the mean, 0.018, decides
    assert not rule.separate and rule.record() == {"term_ratio": pytest.approx(0.018), "term_backward": "joint"}
    rule.start_epoch()  # a new epoch measures again
    assert rule.separate and rule.record() == {}
    for r in (0.005, 0.004, float("nan")):
        rule.observe(torch.tensor(r))
    assert rule.separate and rule.record()["term_backward"] == "separate"
    assert Float32().record() == {}  # float32 takes one backward of the sum: no rule, nothing recorded


def test_a_bf16_run_records_which_backward_the_term_took(tiny_bert, tmp_path):
    """12 steps per epoch: 10 probe steps, then the decision, in metrics.jsonl; a weight far too small for bf16
    keeps the separate backward, a large one takes one backward of the sum."""
    taken = {}
    for lam in ("1e-4", "100"):
        out = tmp_path / lam
        result = run_cli(args_for(tiny_bert, out, "--mode", "min", "--lam", lam, "--amp", "bf16", "--epochs", "1"))
        assert result.returncode == 0, result.stderr
        [line] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        taken[lam] = line["term_backward"], line["term_ratio"]
    assert taken["1e-4"][0] == "separate" and taken["1e-4"][1] < 1e-2
    assert taken["100"][0] == "joint" and taken["100"][1] >= 1e-2


def test_fp16_autocast_trains_with_loss_scaling_and_checkpoints_the_scale(tiny_bert, tmp_path):
    """--amp fp16 (GPUs without bf16: V100, T4) runs with a GradScaler, whose state a resumed run needs."""
    out = tmp_path / "run"
    result = run_cli(args_for(tiny_bert, out, "--amp", "fp16", "--keep-last", "--mode", "min", "--lam", "1"))
    assert result.returncode == 0, result.stderr
    assert "float16 autocast" in result.stdout
    scaler = torch.load(out / "last.pt", weights_only=True)["scaler"]
    assert scaler["scale"] > 1
    lines = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert all(line["grad_norm"] is None or line["grad_norm"] > 0 for line in lines)


def test_a_real_run_trains_under_bf16_autocast_and_torch_compile(tiny_bert, tmp_path):
    """The path a GPU run takes by default (bf16 autocast, the CMI term's own backward, a compiled unpadded model
    fed batches of varying token counts), end to end on CPU, so that it cannot rot unseen."""
    out = tmp_path / "run"
    result = run_cli(args_for(tiny_bert, out, "--mode", "min", "--lam", "1", "--amp", "bf16", "--compile", "on",
                              "--epochs", "1"))
    assert result.returncode == 0, result.stderr
    assert "bfloat16 autocast, compile on" in result.stdout
    [line] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert line["train_examples"] == 192 and 0 < line["train_cmi"] and -1 <= line["mcc"] <= 1
    provenance = json.loads((out / "results.json").read_text())["provenance"]
    assert (provenance["amp"], provenance["compile"], provenance["path"]) == ("bfloat16", True, "unpadded")


def test_bf16_on_a_cpu_without_native_bf16_says_it_is_slower(monkeypatch, capsys):
    """Where the CPU has no bf16 instructions, autocast emulates them, slower than float32: one line says so."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    runtime = setup(**runtime_options(parse_train_args(["--task", "cola", "--amp", "bf16", "--device", "cpu"])))
    assert runtime.precision.dtype == torch.bfloat16  # still done as asked
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: --amp bf16: this CPU has no native bf16") and "--amp off" in line
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    setup(**runtime_options(parse_train_args(["--task", "cola", "--amp", "bf16", "--device", "cpu"])))
    assert capsys.readouterr().err == ""


def test_setup_puts_large_cpu_tensors_on_huge_pages_unless_told_otherwise(monkeypatch):
    """THP_MEM_ALLOC_ENABLE (c10's CPU allocator, read at its first allocation) spares the word embeddings' fresh
    dense gradient of every step ~11,000 page faults; a value the user set is kept."""
    args = runtime_options(parse_train_args(["--task", "cola", "--device", "cpu"]))
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    setup(**args)
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    setup(**args)
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
