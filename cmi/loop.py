"""The training loop that train.py and distill.py share, in reading order: the parts of a step (`TrainState`, what
a model reads of a batch, AdamW and its schedule), one optimisation step (`train_step`: forward, loss, backward,
optimiser step), an epoch of them (`train_epoch`), the epochs of the alternating step of eq. (14) (`fit`), and an
eval-mode pass (`predict`).

It knows nothing of BERT or GLUE: the loop calls the model, `model(**inputs)`, and the objective scores its
outputs, `objective(outputs, batch)` (cmi/objectives.py); the precision (cmi/precision.py) does the backward and
the optimiser step; the run's files are written through the `run` that `fit` is handed
(harness.runfiles.RunFiles).
"""
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from cmi.core import CMIStats
from cmi.distributed import all_reduce, load_states, model_state, optimizer_state, rank, world_size
from cmi.precision import Float32
from common.errors import TrainingError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the batch fields a model reads


# -----------------------------------------------------------------------------
# the parts of a step


@dataclass
class TrainState:
    """What the optimisation steps use and change. `model` is the module the steps call (compiled, or DDP-wrapped
    under torchrun, or the model itself); `raw_model` the model those wrap, which is saved and checkpointed (None:
    `model`). `objective(outputs, batch) -> (loss_terms, logs)` (cmi/objectives.py); `precision` builds the autocast
    context, takes the backward and the optimiser step (cmi/precision.py); `accum`: the batch of a step is computed
    in this many chunks (gradient accumulation, for memory); `unpad`: the model computes the real tokens only."""

    model: torch.nn.Module
    objective: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Float32 = field(default_factory=Float32)
    clip: float = 1.0
    accum: int = 1
    unpad: bool = False
    raw_model: torch.nn.Module | None = None

    def __post_init__(self):
        if self.raw_model is None:
            self.raw_model = self.model

    def state_dict(self) -> dict:
        """What last.pt keeps of the training, for a resumed run to go on exactly."""
        centroids = self.objective.centroids
        return {"model": model_state(self.raw_model), "optimizer": optimizer_state(self.raw_model, self.optimizer),
                "scheduler": self.scheduler.state_dict(),
                "objective": {} if centroids is None else centroids.state_dict(), **self.precision.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        load_states(self.raw_model, self.optimizer, state["model"], state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.objective.centroids is not None:
            self.objective.centroids.load_state_dict(state["objective"])
        self.precision.load_state_dict(state)


def real_tokens(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of a right-padded batch -> (N,) flat slot index b * T + t of each real token, in order: the
    `token_index` of the models' unpadded path (models/unpadded.py).

    Data-dependent (`nonzero`), so computed once per batch outside a compiled model and passed in. Right padding
    is checked: with left padding the first real row of a sequence would not be its [CLS] token."""
    mask = attention_mask.bool()
    if not bool(mask[:, 0].all()) or bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("the unpadded path needs right-padded sequences of at least one token: every row of "
                         "attention_mask must read 1 ... 1 0 ... 0")
    return mask.flatten().nonzero().squeeze(1)


def model_inputs(batch: dict, unpad: bool) -> dict:
    """The fields of `batch` a model reads, by name (MODEL_INPUTS), and with `unpad` the index of its real tokens."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    if unpad:
        inputs["token_index"] = real_tokens(batch["attention_mask"])
    return inputs


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only: biases and LayerNorm parameters (1-D) are not
    decayed, as in BERT's original recipe. The fused kernel, on CUDA and CPU alike: one pass over the
    parameters instead of one per elementwise operation. On CPU it makes the update ~5x faster, which matters
    because short GLUE batches leave the update (all of BERT's parameters, the embedding table included) a
    large part of every step."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def linear_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """The LR multiplier at `step`: linear warm-up from 0 to 1, then linear decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return step / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def linear_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """The optimiser's LR times linear_schedule, stepped once per optimisation step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_schedule(step, total_steps, warmup_steps))


# -----------------------------------------------------------------------------
# one optimisation step, an epoch of them


def train_step(state: TrainState, batch: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """One optimisation step: forward, loss, backward, clipping, AdamW, the schedule. Returns the loss and the
    objective's logs, still on the device (not read back: no sync), and the gradient norm before clipping.

    With `state.accum` > 1 the batch is cut into that many chunks, each backpropagated with its share of the
    batch mean (its size over the batch's), so the step is that of the whole batch up to float rounding; only
    the `batch` centroid policy differs, its class means then being the chunk's."""
    params = [p for p in state.raw_model.parameters() if p.requires_grad]
    loss, logs, n = 0.0, {}, len(batch["labels"])
    for chunk in chunks(batch, state.accum):
        share = len(chunk["labels"]) / n
        chunk = state.objective.inputs(chunk)  # the gamma * L1 term adds masked copies of the inputs
        with state.precision.autocast():
            outputs = state.model(**model_inputs(chunk, state.unpad))
            loss_terms, chunk_logs = state.objective(outputs, chunk)
        del outputs  # what the loss needs of them the graph keeps; the rest (hidden_states) is freed before backward
        loss_terms = tuple(share * t for t in loss_terms)
        state.precision.backward(loss_terms, params)  # under autocast the CMI term may take its own backward
        loss = loss + sum(loss_terms).detach()
        logs = {k: logs.get(k, 0.0) + share * v for k, v in chunk_logs.items()}
    grad_norm = state.precision.step(state.optimizer, params, state.clip)
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    return loss, logs, grad_norm


def chunks(batch: dict, k: int) -> list[dict]:
    """The batch cut into k consecutive chunks of examples (every field along its first dimension)."""
    if k == 1:
        return [batch]
    parts = {name: torch.tensor_split(t, k) for name, t in batch.items()}
    return [{name: parts[name][i] for name in batch} for i in range(k) if len(parts["labels"][i])]


def train_epoch(state: TrainState, batches, desc: str, log_every: int = 10, log_step=None) -> tuple[dict, int]:
    """One pass over `batches` taking a step per batch. Returns ({"loss": mean loss, and the mean of every
    value the objective logs, e.g. "ce"}, number of samples); means are over samples.

    Loss values stay on the device and are read back only every `log_every` steps (a read is a device sync);
    a non-finite loss raises TrainingError before the corrupted weights can be saved. There, `log_step(i, values)`
    gets the step number in the epoch and that step's values: loss, the objective's logs, lr, grad_norm."""
    state.model.train()
    totals, seen = {}, 0
    bar = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None if rank() == 0 else True)
    for i, batch in enumerate(bar, 1):
        loss, logs, grad_norm = train_step(state, batch)
        n = len(batch["labels"])
        for k, v in {"loss": loss, **logs}.items():
            totals[k] = totals.get(k, 0.0) + v.detach().double() * n
        seen += n
        if i % log_every == 0 or i == len(batches):
            # every process reads the same number (the mean over processes), so all of them stop together
            value = all_reduce(loss.detach().float().reshape(1)).item() / world_size()
            if not math.isfinite(value):
                raise TrainingError(f"the loss became {value} at {desc}, step {i}: stopping; "
                                    "the last checkpoint of the run is intact")
            bar.set_postfix({k: f"{float(v):.4g}" for k, v in {"loss": value, **logs}.items()})
            if log_step is not None:
                norm = float(grad_norm)  # inf: an fp16 step skipped for overflow
                log_step(i, {"loss": value, **{k: float(v) for k, v in logs.items()},
                             "lr": state.scheduler.get_last_lr()[0], "grad_norm": norm if math.isfinite(norm) else None})
    # the means over the samples of every process: one all-reduce of the sums and the count
    keys = sorted(totals)
    count = torch.tensor(seen, dtype=torch.float64, device=loss.device)
    sums = all_reduce(torch.stack([totals[k] for k in keys] + [count]))
    return {k: (sums[i] / sums[-1]).item() for i, k in enumerate(keys)}, int(sums[-1])


# -----------------------------------------------------------------------------
# the epochs of eq. (14)


@dataclass
class EvalPasses:
    """The eval-mode passes `fit` makes around the epochs, as values: `train`, the training set in evaluation
    batches (its exact CMI, and the class means G of eq. 14), and `dev`, each dev split's; each (batches, number of
    examples). f_x by `features` over `num_classes` classes; `score(split, logits, stats)` -> the split's metrics by
    name (the task's, and its CMI); `weighting`: how train_cmi weighs the classes (cmi.core.WEIGHTINGS)."""

    train: tuple[Iterable, int]
    dev: dict[str, tuple[Iterable, int]]
    features: Callable
    num_classes: int
    score: Callable[[str, torch.Tensor, CMIStats], dict]
    weighting: str = "true"

    def train_stats(self, state: TrainState) -> CMIStats:
        """The training set's CMI statistics under the current parameters."""
        batches, n = self.train
        return predict(state.model, batches, self.features, self.num_classes, n, autocast=state.precision.autocast(),
                       unpad=state.unpad, desc="train CMI")[1]

    def dev_metrics(self, state: TrainState) -> dict:
        """Every dev split's metrics."""
        metrics = {}
        for split, (batches, n) in self.dev.items():
            logits, stats = predict(state.model, batches, self.features, self.num_classes, n,
                                    autocast=state.precision.autocast(), unpad=state.unpad, desc=f"eval {split}")
            metrics.update(self.score(split, logits, stats))
        return metrics


def fit(state: TrainState, run, *, epochs: list[Iterable], passes: EvalPasses, primary: str, record: dict,
        log_every: int = 10) -> dict:
    """Train on `epochs` (each epoch's batches), evaluating after each; the run's files (`run`, a
    harness.runfiles.RunFiles: metrics.jsonl, steps.jsonl every `log_every` steps, last.pt, best/ by the dev metric
    `primary`) are written as it goes, and a killed run resumes from them. Each metrics line holds `record` (task,
    mode, lam, seed, ...). Returns the run's results: its arguments, the best epoch and that epoch's metrics."""
    centroids = state.objective.centroids  # G of eq. (14); None without a CMI term
    with run.started(state) as first_epoch:  # 1, or after a resumed run's last checkpoint, its state restored
        if first_epoch == 1 and centroids is not None and centroids.needs_initial_stats:
            centroids.refresh(passes.train_stats(state))  # eq. (14): the first G, from the initial model
        for epoch in range(first_epoch, len(epochs) + 1):
            t0, batches = time.perf_counter(), epochs[epoch - 1]
            # eq. (14), first line: G fixed, the parameters take an epoch of steps against it
            state.precision.start_epoch()  # under autocast the term's backward is decided anew each epoch
            means, seen = train_epoch(state, batches, f"epoch {epoch}/{len(epochs)}", log_every,
                                      partial(run.log_step, epoch, len(batches), t0))
            seconds = time.perf_counter() - t0
            # eq. (14), second line: G = the class means of f_x under the new parameters (the policy says how)
            train_stats = passes.train_stats(state)  # the exact train CMI of the epoch, too
            if centroids is not None:
                centroids.refresh(train_stats)
            metrics = passes.dev_metrics(state)
            run.end_epoch(state, metrics, primary, {
                "epoch": epoch, **record, **{f"train_{k}": v for k, v in means.items()},
                "train_cmi": train_stats.cmi(passes.weighting), **state.precision.record(), **metrics,
                "epoch_seconds": seconds, "samples_per_s": seen / seconds})
        return run.results()


# -----------------------------------------------------------------------------
# inference


@torch.no_grad()
def predict(model, batches, features, num_classes: int, num_examples: int, *, autocast, unpad: bool = False,
            desc: str = "eval"):
    """Eval-mode pass of `model` over `batches` (under the `autocast` context): the logits (N, C) in example order
    (by `batch["index"]`) and the exact CMI statistics of the features against the split's own class means
    (eqs. 9, 11)."""
    was_training = model.training
    model.eval()
    logits, stats = None, None
    for batch in tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None if rank() == 0 else True):
        with autocast:
            outputs = model(**model_inputs(batch, unpad))
        f = features(outputs)
        if stats is None:
            stats = CMIStats(num_classes, f.shape[-1], f.device)
            logits = torch.zeros(num_examples, num_classes, device=f.device)
        stats.add(f, batch["labels"])
        logits[batch["index"]] = outputs.logits.float()
    # Under DDP each process saw its own share of the examples: the sums gather them all, no example counted
    # twice, none dropped.
    stats.all_reduce()
    all_reduce(logits)
    model.train(was_training)
    if not torch.isfinite(logits).all():
        raise TrainingError(f"{desc}: the model's outputs are not finite (a learning rate too high?); "
                            "the model is not saved, the last checkpoint of the run is intact")
    return logits, stats
