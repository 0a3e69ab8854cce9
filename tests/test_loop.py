"""The training loop of cmi/loop.py on a tiny model: the epoch means it logs and the learning-rate schedule.
(Its files, kills and resumes: test_reliability.py; the alternating step through fit: test_objectives.py.)"""
import pytest
import torch

from cmi.loop import TrainState, linear_schedule, train_epoch, train_step
from cmi.objectives import CENTROIDS, CMIObjective, Features
from cmi.precision import Float32
from tests.tiny import TinyClassifier, synthetic_batches


def make_objective(mode, policy, lam=0.5, dim=8, num_classes=2):
    return CMIObjective(mode, lam, num_classes, CENTROIDS[policy](num_classes, dim), Features())


def test_train_epoch_returns_the_sample_means_of_the_loss_and_of_every_logged_value():
    torch.manual_seed(0)
    model = TinyClassifier()
    batches = synthetic_batches(n=36)  # the last batch has 4 examples: the means weigh batches by their size
    cmi_objective, seen = make_objective("min", "batch"), []

    class Recording:  # the objective, recording what it returns for each batch
        centroids, inputs = cmi_objective.centroids, cmi_objective.inputs

        def __call__(self, outputs, batch):
            terms, logs = cmi_objective(outputs, batch)
            seen.append((len(batch["labels"]), {"loss": sum(terms).detach(), **logs}))
            return terms, logs

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    means, n = train_epoch(TrainState(model, Recording(), opt, sched, clip=0), batches, desc="test")
    assert n == 36 and set(means) == {"loss", "ce", "batch_cmi"}
    for k in means:
        assert means[k] == pytest.approx(float(sum(b * logs[k] for b, logs in seen)) / n, rel=1e-6), k


def test_linear_schedule():
    assert linear_schedule(0, 100, 10) == 0.0
    assert linear_schedule(5, 100, 10) == 0.5
    assert linear_schedule(10, 100, 10) == 1.0
    assert linear_schedule(55, 100, 10) == pytest.approx(0.5)
    assert linear_schedule(100, 100, 10) == 0.0
    assert linear_schedule(0, 100, 0) == 1.0


def test_loss_scaling_by_a_power_of_two_leaves_the_step_exactly_as_it_was():
    """fp16's GradScaler multiplies the loss by 2**k and divides the gradients by it before clipping and the
    update: in float32 both are exact, so the weights after a step are bit for bit those without it."""
    def one_step(scaler):
        torch.manual_seed(0)
        model = TinyClassifier(dropout=0.0)
        opt = torch.optim.AdamW(model.parameters(), lr=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        state = TrainState(model, make_objective("min", "batch"), opt, sched, Float32(scaler), clip=0.2)
        _, _, grad_norm = train_step(state, synthetic_batches()[0])
        return [p.detach().clone() for p in model.parameters()], float(grad_norm)

    plain, norm = one_step(None)
    scaled, scaled_norm = one_step(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    assert scaled_norm == norm > 0.2  # the norm of the true gradients, before clipping
    assert all(torch.equal(a, b) for a, b in zip(plain, scaled))
