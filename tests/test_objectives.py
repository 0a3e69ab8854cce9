"""The objectives (eqs. 13-16), the alternating centroid step (eq. 14, through cmi.loop.fit) and the KD loss
(eq. 8), on a tiny model."""
import copy

import torch
import torch.nn.functional as F

from cmi.core import class_centroids, conditional_mutual_information, feature_distribution
from cmi.loop import EvalPasses, TrainState, fit, linear_scheduler, make_optimizer, model_inputs, predict
from cmi.objectives import (CENTROIDS, CMIObjective, DistillationObjective, EpochCentroids, Features, MaskedLM,
                            kd_loss, mask_tokens)
from harness.runfiles import RunFiles
from tests.tiny import TinyClassifier, synthetic_batches

FEATURES = Features("pooled", tau=1.0)


def make_objective(mode, policy, lam=0.5, dim=8, num_classes=2):
    return CMIObjective(mode, lam, num_classes, CENTROIDS[policy](num_classes, dim), FEATURES)


def train_stats(model, batches):
    return predict(model, batches, FEATURES, 2, 40, autocast=torch.no_grad())[1]


def test_min_and_max_add_and_subtract_lambda_times_the_kl():
    torch.manual_seed(0)
    model, batch = TinyClassifier(dropout=0.0), synthetic_batches()[0]
    out = model(batch["input_ids"])
    ce = F.cross_entropy(out.logits, batch["labels"])
    f = feature_distribution(out.features)
    stale = class_centroids(f.detach() * 0.5 + 0.5 / 8, batch["labels"], 2)
    for mode, sign in (("ce", 0), ("min", 1), ("max", -1)):
        objective = make_objective(mode, "epoch", lam=0.3)
        if mode != "ce":  # ce trains against no G
            objective.centroids.G = stale
        terms, logs = objective(model(batch["input_ids"]), batch)
        kl = conditional_mutual_information(f, batch["labels"], stale)
        torch.testing.assert_close(sum(terms), ce + sign * 0.3 * kl)
        assert len(terms) == (1 if mode == "ce" else 2)  # the CMI term apart, for backward under autocast
    paper = CMIObjective("min", 0.3, 2, EpochCentroids(2, 8), FEATURES, scale="paper")
    paper.centroids.G = stale
    torch.testing.assert_close(sum(paper(model(batch["input_ids"]), batch)[0]), ce + 0.3 / 2 * kl)


def test_no_gradient_reaches_the_centroids_and_none_would_flow_through_batch_means():
    torch.manual_seed(0)
    model, batch = TinyClassifier(dropout=0.0), synthetic_batches()[0]
    objective = make_objective("max", "epoch")
    objective.centroids.refresh(train_stats(model, synthetic_batches()))
    sum(objective(model(batch["input_ids"]), batch)[0]).backward()
    assert not objective.centroids.G.requires_grad and objective.centroids.G.grad is None
    stale_grad = model.pool.weight.grad.clone()

    # `batch`: G_y is the batch's own class mean, detached. Differentiating through the means instead gives
    # the same gradient: sum_x KL(f_x || g_y) is minimal at the class mean, so its gradient there is zero.
    model.zero_grad()
    sum(make_objective("max", "batch")(model(batch["input_ids"]), batch)[0]).backward()
    detached = model.pool.weight.grad.clone()
    assert not torch.allclose(detached, stale_grad)  # current centroids, not the stale ones
    model.zero_grad()
    out, y = model(batch["input_ids"]), batch["labels"]
    f = feature_distribution(out.features)
    (F.cross_entropy(out.logits, y) - 0.5 * conditional_mutual_information(f, y, class_centroids(f, y, 2))).backward()
    print(f"batch centroids, detached vs differentiated: max |grad diff| "
          f"{(model.pool.weight.grad - detached).abs().max():.1e} of {detached.abs().max():.1e}")
    torch.testing.assert_close(model.pool.weight.grad, detached, rtol=1e-5, atol=1e-8)


class Recorder:
    """Wraps an objective and records, at each epoch start, the centroids it trains against and a copy of the
    model as it was then."""

    def __init__(self, objective, model):
        self.objective, self.model, self.seen = objective, model, []

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def __call__(self, outputs, batch):
        return self.objective(outputs, batch)

    def epoch(self):
        """An epoch's batches, which record when the loop starts on them."""
        recorder = self

        class Batches(list):
            def __iter__(self):
                G = recorder.objective.centroids.G
                recorder.seen.append((None if G is None else G.clone(), copy.deepcopy(recorder.model)))
                return super().__iter__()
        return Batches(synthetic_batches())


def run_tiny(tmp_path, objective, epochs=3, lr=0.05):
    torch.manual_seed(0)
    model = TinyClassifier()
    recorder = Recorder(objective, model)
    opt = make_optimizer(model, lr, 0.01)
    total = epochs * len(synthetic_batches())
    sched = linear_scheduler(opt, total, 0)
    passes = EvalPasses(train=(synthetic_batches(), 40), dev={"validation": (synthetic_batches(), 40)},
                        features=Features(), num_classes=2,
                        score=lambda split, logits, stats: {"accuracy": 0.5, "eval_cmi": 0.0})
    with RunFiles(tmp_path, {}) as run:
        fit(TrainState(model=model, objective=recorder, optimizer=opt, scheduler=sched), run,
            epochs=[recorder.epoch() for _ in range(epochs)], passes=passes, primary="accuracy", record={})
    return recorder.seen


def test_epoch_policy_uses_the_class_means_of_the_model_at_the_start_of_each_epoch(tmp_path):
    seen = run_tiny(tmp_path, make_objective("min", "epoch"))
    for G, model_at_start in seen:
        torch.testing.assert_close(G, train_stats(model_at_start, synthetic_batches()).centroids())
    assert not torch.allclose(seen[0][0], seen[-1][0])  # it does move


def test_frozen_policy_never_changes(tmp_path):
    seen = run_tiny(tmp_path, make_objective("max", "frozen"))
    torch.testing.assert_close(seen[0][0], train_stats(seen[0][1], synthetic_batches()).centroids())
    for G, _ in seen[1:]:
        torch.testing.assert_close(G, seen[0][0], rtol=0, atol=0)


def test_online_policy_uses_the_previous_epochs_training_features(tmp_path):
    objective = make_objective("min", "online")
    running = []
    original = objective.centroids.observe
    objective.centroids.observe = lambda f, y: (running.append((f.detach().clone(), y)), original(f, y))
    seen = run_tiny(tmp_path, objective, epochs=2)
    n = len(synthetic_batches())
    f = torch.cat([r[0] for r in running[:n]])
    y = torch.cat([r[1] for r in running[:n]])
    torch.testing.assert_close(seen[1][0], class_centroids(f, y, 2))


def test_ce_needs_no_centroid_pass_and_batch_policy_neither():
    assert make_objective("ce", "epoch").centroids is None
    assert not make_objective("max", "batch").centroids.needs_initial_stats
    assert make_objective("min", "online").centroids.needs_initial_stats


def test_kd_loss_closed_forms():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ce = F.cross_entropy(s, y)
    torch.testing.assert_close(kd_loss(s, t, y, 0.0, 2.0)[0], ce)
    torch.testing.assert_close(kd_loss(s, s, y, 0.7, 3.0)[0], 0.3 * ce)  # KL(p || p) = 0
    T = 2.0
    p, q = F.softmax(t / T, -1), F.softmax(s / T, -1)
    kl = (p * (p / q).log()).sum(-1).mean()  # summed over classes, averaged over the batch
    torch.testing.assert_close(kd_loss(s, t, y, 0.4, T)[0], 0.6 * ce + 0.4 * T**2 * kl)
    p, q = F.softmax(t, -1), F.softmax(s, -1)
    torch.testing.assert_close(kd_loss(s, t, y, 1.0, 1.0)[0], (p * (p / q).log()).sum(-1).mean())  # T = 1, alpha = 1: KL


def test_distillation_objective_cached_and_live_teacher_agree():
    torch.manual_seed(0)
    student, teacher = TinyClassifier(dropout=0.0), TinyClassifier(dropout=0.0).eval()
    batches = synthetic_batches()
    cached = predict(teacher, batches, FEATURES, 2, 40, autocast=torch.no_grad())[0]
    live = DistillationObjective(0.5, 2.0, teacher=teacher)
    cache = DistillationObjective(0.5, 2.0, teacher_logits=cached)
    for batch in batches:
        torch.testing.assert_close(cache(student(batch["input_ids"]), batch)[0], live(student(batch["input_ids"]), batch)[0])


def test_mask_tokens_masks_only_maskable_positions_at_the_rate():
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (64, 40))
    maskable = torch.rand(64, 40) < 0.7
    corrupted, picked = mask_tokens(ids, maskable, mask_id=1, vocab_size=100)
    assert not (picked & ~maskable).any()
    assert torch.equal(corrupted[~picked], ids[~picked])
    rate = picked.sum() / maskable.sum()
    assert 0.12 < rate < 0.18
    assert 0.75 < (corrupted[picked] == 1).float().mean() < 0.85


def test_masked_lm_term_is_gamma_times_the_mlm_loss_of_the_masked_inputs():
    from models.bert import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    model = BertForSequenceClassification(config, mlm=True).eval()
    ids = torch.randint(5, 60, (4, 10))
    ids[:, 0], ids[:, -1], ids[2, 6:] = 2, 3, 0  # [CLS] ... [SEP], one padded row
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids),
             "labels": torch.tensor([0, 1, 1, 0])}
    mlm = MaskedLM(0.7, model.mlm_logits, mask_id=4, vocab_size=60, special_ids=(2, 3, 0))
    objective = CMIObjective("ce", 0.0, 2, EpochCentroids(2, 16), FEATURES, mlm=mlm)
    forward = lambda b: model(b["input_ids"], b["attention_mask"], b["token_type_ids"])

    torch.manual_seed(1)
    joined = objective.inputs(batch)
    terms, logs = objective(model(**model_inputs(joined, unpad=False)), joined)
    torch.manual_seed(1)
    masked = mlm.inputs(batch)  # the same draws
    picked, masked = masked["masked"], {k: v[len(ids):] for k, v in masked.items() if k in model_inputs(batch, False)}
    assert picked.any() and not picked[ids == 0].any() and not picked[:, 0].any()
    ce = F.cross_entropy(forward(batch).logits, batch["labels"])
    l1 = F.cross_entropy(model.mlm_logits(forward(masked).hidden_states)[picked], ids[picked])
    torch.testing.assert_close(sum(terms), ce + 0.7 * l1)
    torch.testing.assert_close(logs["mlm"], l1)
