"""The training loop that train.py and distill.py share: epochs of the alternating step of eq. (14) (`fit`), one
optimisation step (`train_step`: forward and loss, backward, clipping, AdamW, the schedule), and an eval-mode pass
(`predict`).

It takes the model, the batches and the objective as values and knows nothing of BERT or GLUE: `forward(batch)`
runs the model, `objective(forward, batch)` gives the loss's terms, an `Evaluation` holds the eval-mode passes and
how a dev split is scored; the run's files are written through the `run` that `fit` is handed
(harness.runfiles.RunFiles).
"""
import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from cmi.core import CMIStats
from cmi.distributed import all_reduce, rank, world_size
from common.errors import TrainingError


# -----------------------------------------------------------------------------
# optimiser and schedule


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


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """Autocast in `dtype` (bf16, fp16) when given, nothing otherwise; built once and re-entered every step."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


# -----------------------------------------------------------------------------
# the loop: epochs of eq. (14)


@dataclass
class Evaluation:
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


def fit(step: "Step", run, *, epochs: list[Iterable], evaluation: Evaluation, primary: str, record: dict,
        log_every: int = 10, on_step: Callable[[dict], None] | None = None) -> dict:
    """Train on `epochs` (each epoch's batches), evaluating after each; keep the best epoch by the dev metric
    `primary` in best/. Each metrics.jsonl line holds `record` (task, mode, lam, seed, ...), train_loss and
    train_K for every value K the objective logs (the epoch's means), the exact train_cmi, the dev metrics and
    the timings. `run`: the run's files (harness.runfiles.RunFiles), which a killed run resumes from. Every
    `log_every` steps a line goes to steps.jsonl, and to `on_step` (rank 0) with the epoch's steps and seconds."""
    model, centroids = step.model, step.objective.centroids  # G of eq. (14); None without a CMI term

    def measure_train() -> CMIStats:  # the training set's CMI statistics under the current parameters
        batches, n = evaluation.train
        return predict(step.forward, model, batches, evaluation.features, evaluation.num_classes, n, ctx=step.ctx,
                       desc="train CMI")[1]

    def evaluate() -> dict:
        metrics = {}
        for split, (batches, n) in evaluation.dev.items():
            logits, stats = predict(step.forward, model, batches, evaluation.features, evaluation.num_classes, n,
                                    ctx=step.ctx, desc=f"eval {split}")
            metrics.update(evaluation.score(split, logits, stats))
        return metrics

    best, start = None, 1
    with run.started() as ckpt:
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            step.optimizer.load_state_dict(ckpt["optimizer"])
            step.scheduler.load_state_dict(ckpt["scheduler"])
            if centroids is not None:
                centroids.load_state_dict(ckpt["objective"])
            if step.scaler is not None and "scaler" in ckpt:
                step.scaler.load_state_dict(ckpt["scaler"])
            best, start = ckpt["best"], ckpt["epoch"] + 1
        elif centroids is not None and centroids.needs_initial_stats:
            centroids.refresh(measure_train())  # eq. (14): the first G, from the initial model

        for epoch in range(start, len(epochs) + 1):
            t0 = time.perf_counter()
            batches = epochs[epoch - 1]

            def on_log(i, values, epoch=epoch, steps=len(batches)):
                line = {"epoch": epoch, "step": (epoch - 1) * steps + i, **values}
                run.log_step(line)
                if on_step is not None and rank() == 0:
                    on_step({**line, "epoch_steps": steps, "seconds": time.perf_counter() - t0})

            # eq. (14), first line: G fixed, the parameters take an epoch of steps against it
            step.terms.start_epoch()
            means, seen = train_epoch(step, batches, f"epoch {epoch}/{len(epochs)}", log_every, on_log)
            seconds = time.perf_counter() - t0
            # eq. (14), second line: G = the class means of f_x under the new parameters (the policy says how)
            train_stats = measure_train()  # the exact train CMI of the epoch, too
            if centroids is not None:
                centroids.refresh(train_stats)

            metrics = evaluate()
            line = {"epoch": epoch, **record, **{f"train_{k}": v for k, v in means.items()},
                    "train_cmi": train_stats.cmi(evaluation.weighting), **step.terms.record(), **metrics,
                    "epoch_seconds": seconds, "samples_per_s": seen / seconds}
            bad = [k for k, v in line.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:  # never save a broken model as the best, nor write NaN into a JSON file
                raise TrainingError(f"epoch {epoch}: {', '.join(bad)} not finite (a learning rate too high?); "
                                    "the model is not saved, the last checkpoint of the run is intact")
            if best is None or metrics[primary] > best["metrics"][primary]:
                run.save_best(model)
                best = {"epoch": epoch, "metrics": metrics}
            run.log_epoch(line)
            run.save_checkpoint({
                "epoch": epoch, "best": best, "model": model.state_dict(), "optimizer": step.optimizer.state_dict(),
                "scheduler": step.scheduler.state_dict(),
                "objective": {} if centroids is None else centroids.state_dict(),
                **({"scaler": step.scaler.state_dict()} if step.scaler is not None else {}),
            })
            if rank() == 0:
                print(json.dumps(line), flush=True)

        results = {"args": run.args, "best_epoch": best["epoch"], **best["metrics"]}
        run.save_results(results, next(model.parameters()).device)
        return results


def train_epoch(step: "Step", batches, desc: str, log_every: int = 10, on_log=None) -> tuple[dict, int]:
    """One pass over `batches` taking a step per batch. Returns ({"loss": mean loss, and the mean of every
    value the objective logs, e.g. "ce"}, number of samples); means are over samples.

    Loss values stay on the device and are read back only every `log_every` steps (a read is a device sync);
    a non-finite loss raises TrainingError before the corrupted weights can be saved. There, `on_log(i, values)`
    gets the step number in the epoch and that step's values: loss, the objective's logs, lr, grad_norm."""
    step.model.train()
    totals, seen = {}, 0
    bar = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None if rank() == 0 else True)
    for i, batch in enumerate(bar, 1):
        loss, logs, grad_norm = train_step(step, batch)
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
            if on_log is not None:
                norm = float(grad_norm)  # inf: an fp16 step skipped for overflow
                on_log(i, {"loss": value, **{k: float(v) for k, v in logs.items()},
                           "lr": step.scheduler.get_last_lr()[0], "grad_norm": norm if math.isfinite(norm) else None})
    # the means over the samples of every process: one all-reduce of the sums and the count
    keys = sorted(totals)
    count = torch.tensor(seen, dtype=torch.float64, device=loss.device)
    sums = all_reduce(torch.stack([totals[k] for k in keys] + [count]))
    return {k: (sums[i] / sums[-1]).item() for i, k in enumerate(keys)}, int(sums[-1])


# -----------------------------------------------------------------------------
# one optimisation step


@dataclass
class TermBackward:
    """Whether the objective's extra terms (the CMI term) are backpropagated on their own (`backward`).

    In float32, never: one backward of the sum is exact. Under autocast the activations' gradients are bf16, which
    keeps ~3 significant digits: a term whose gradient is ~1e-3 of CE's is rounded away in one backward of the sum,
    one ~1e-2 of it arrives (docs/design.md, "Numerics"). So each epoch's first `probe_steps` steps backpropagate
    the terms on their own and measure, per term, its gradient's norm over the first term's; if the smallest mean
    is at least `joint_from`, the rest of the epoch takes one backward of the sum. Measured anew each epoch (CE's
    gradient shrinks as training goes on) from the epoch's own steps, so a resumed run decides as the uninterrupted
    one did. Under DDP the ratios are averaged over the processes: all of them take the same path."""

    autocast: bool
    probe_steps: int = 10
    joint_from: float = 1e-2
    ratios: list = field(default_factory=list)  # this epoch's probe steps: the smallest ratio over the terms
    ratio: float | None = None  # their mean, once the probe steps are done

    def start_epoch(self) -> None:
        self.ratios, self.ratio = [], None

    @property
    def probing(self) -> bool:
        return self.autocast and self.ratio is None

    @property
    def separate(self) -> bool:  # `not >=`: a NaN ratio (fp16 overflow) keeps the terms apart
        return self.autocast and (self.ratio is None or not self.ratio >= self.joint_from)

    def observe(self, ratio: torch.Tensor) -> None:
        """One probe step's ratio (a 0-d tensor, not read back); after the last, their mean over the steps and the
        processes."""
        self.ratios.append(ratio)
        if len(self.ratios) == self.probe_steps:
            self.ratio = all_reduce(torch.stack(self.ratios).mean()).item() / world_size()

    def record(self) -> dict:
        """The epoch's decision, for its metrics line (nothing in float32)."""
        if not self.autocast or self.ratio is None:
            return {}
        return {"term_ratio": self.ratio, "term_backward": "separate" if self.separate else "joint"}


@dataclass
class Step:
    """The parts of one optimisation step. `model` is the uncompiled module (saved, checkpointed); `forward(batch)`
    runs it, or a compiled or DDP-wrapped version of it, on the batch fields it takes (harness.training.forward_of);
    `objective(forward, batch) -> (terms, logs)` (cmi.objectives); `ctx` is the autocast context, entered every
    step; `accum`: the batch of a step is computed in this many chunks (gradient accumulation, for memory);
    `terms`: whether the extra terms take their own backward (set from `ctx`)."""

    forward: Callable
    model: torch.nn.Module
    objective: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ctx: AbstractContextManager = field(default_factory=nullcontext)
    clip: float = 1.0
    accum: int = 1
    scaler: torch.amp.GradScaler | None = None  # fp16: loss scaling
    terms: TermBackward | None = None

    def __post_init__(self):
        if self.terms is None:
            self.terms = TermBackward(autocast=isinstance(self.ctx, torch.autocast))


def train_step(step: Step, batch: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """One optimisation step: forward and loss (the objective, under `ctx`), backward (each term on its own under
    autocast: see `backward`), gradient clipping, AdamW, the schedule. Returns the loss and the objective's logs,
    still on the device (not read back: no sync), and the gradient norm before clipping.

    With `step.accum` > 1 the batch is cut into that many chunks, each backpropagated with its share of the
    batch mean (its size over the batch's), so the step is that of the whole batch up to float rounding; only
    the `batch` centroid policy differs, its class means then being the chunk's."""
    params = [p for p in step.model.parameters() if p.requires_grad]
    loss, logs, n = 0.0, {}, len(batch["labels"])
    for chunk in chunks(batch, step.accum):
        share = len(chunk["labels"]) / n
        with step.ctx:
            terms, chunk_logs = step.objective(step.forward, chunk)  # forward, then the loss's terms
        terms = tuple(share * t for t in terms)
        scaled = terms if step.scaler is None else tuple(step.scaler.scale(t) for t in terms)
        ratio = backward(scaled, params, separate=step.terms.separate, measure=step.terms.probing)
        if ratio is not None:
            step.terms.observe(ratio)
        loss = loss + sum(terms).detach()
        logs = {k: logs.get(k, 0.0) + share * v for k, v in chunk_logs.items()}
    if step.scaler is not None:
        step.scaler.unscale_(step.optimizer)  # the true gradients, for clipping and the logged norm
    grad_norm = (torch.nn.utils.clip_grad_norm_(params, step.clip, foreach=True) if step.clip else
                 torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True))
    if step.scaler is None:
        step.optimizer.step()
    else:  # skips the step if the scaled gradients overflowed (grad_norm inf), and adapts the scale
        step.scaler.step(step.optimizer)
        step.scaler.update()
    step.scheduler.step()
    step.optimizer.zero_grad(set_to_none=True)
    return loss, logs, grad_norm


def backward(terms: tuple[torch.Tensor, ...], params: list[torch.nn.Parameter], separate: bool,
             measure: bool = False) -> torch.Tensor | None:
    """Accumulate the gradient of sum(terms) into the parameters' (float32) .grad.

    separate=False: one backward of the sum. separate=True (autocast, `TermBackward`): one backward per term.
    Under autocast the activations and their gradients are bf16, whose 8-bit mantissa resolves ~4e-3 of a value;
    the CMI term's gradient is ~1e-3 of CE's at the paper's lambdas (docs/design.md, "Numerics"), so flowing
    back as part of one sum it would be rounded away in every layer. Backpropagated alone, it is rounded
    relative to itself and joins CE's gradient only in the float32 .grad. The price is one more backward pass
    per extra term. With `measure`, when separate and .grad was empty (a step's first chunk), returns the smallest
    over the extra terms of the norm of its gradient over the first term's (`TermBackward`); None otherwise.
    The extra terms go through torch.autograd.grad, which DDP's hooks do not see: their gradients are averaged
    over the processes here, as DDP averages the first term's."""
    if not separate or len(terms) == 1:
        sum(terms).backward()
        return None
    measure = measure and all(p.grad is None for p in params)
    extra = [[None if g is None else all_reduce(g) / world_size()
              for g in torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)] for t in terms[1:]]
    terms[0].backward()
    ratio = None
    if measure:  # .grad holds the first term's gradient alone
        first = norm([p.grad for p in params])
        ratio = torch.stack([norm(grads) / first for grads in extra]).min()
    for grads in extra:
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
    return ratio


def norm(grads) -> torch.Tensor:
    """The 2-norm of a list of gradients (None: unused, zero)."""
    return torch.nn.utils.get_total_norm([g for g in grads if g is not None], foreach=True).float()


def chunks(batch: dict, k: int) -> list[dict]:
    """The batch cut into k consecutive chunks of examples (every field along its first dimension)."""
    if k == 1:
        return [batch]
    parts = {name: torch.tensor_split(t, k) for name, t in batch.items()}
    return [{name: parts[name][i] for name in batch} for i in range(k) if len(parts["labels"][i])]


# -----------------------------------------------------------------------------
# inference


@torch.no_grad()
def predict(forward, model, batches, features, num_classes: int, num_examples: int, *, ctx, desc="eval"):
    """Eval-mode pass: the logits (N, C) in example order (by `batch["index"]`) and the exact CMI statistics
    of the features against the split's own class means (eqs. 9, 11)."""
    was_training = model.training
    model.eval()
    logits, stats = None, None
    for batch in tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None if rank() == 0 else True):
        with ctx:
            out = forward(batch)
        f = features(out)
        if stats is None:
            stats = CMIStats(num_classes, f.shape[-1], f.device)
            logits = torch.zeros(num_examples, num_classes, device=f.device)
        stats.add(f, batch["labels"])
        logits[batch["index"]] = out.logits.float()
    # Under DDP each process saw its own share of the examples: the sums gather them all, no example counted
    # twice, none dropped.
    stats.all_reduce()
    all_reduce(logits)
    model.train(was_training)
    if not torch.isfinite(logits).all():
        raise TrainingError(f"{desc}: the model's outputs are not finite (a learning rate too high?); "
                            "the model is not saved, the last checkpoint of the run is intact")
    return logits, stats
