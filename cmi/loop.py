"""The training loop that train.py and distill.py share, and the files a run writes.

It takes the model, the batches and the objective as arguments and knows nothing of BERT or GLUE:
`forward(batch)` runs the model, `objective(forward, batch)` gives the loss, `evaluate()` gives the dev
metrics. Every file is written atomically (temporary file in the same folder, fsync, rename), so a run
killed at any instant leaves the old or the new version of each file, never a torn one.
"""
import datetime
import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist
from tqdm import tqdm

from cmi.core import CMIStats


def rank() -> int:
    """This process's rank under torch.distributed (torchrun), 0 in a single-process run. Before the process
    group is joined, torchrun's RANK says it (the run folder is claimed by rank 0 alone, before set-up)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    """The number of processes under torch.distributed, 1 in a single-process run."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all processes, in place (a no-op in a single-process run)."""
    if world_size() > 1:
        dist.all_reduce(t)
    return t


class TrainingError(RuntimeError):
    """A run cannot go on (a NaN loss, an output folder holding another run); the message is one line."""


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


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked, nothing otherwise; built once and re-entered every step."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


# -----------------------------------------------------------------------------
# one epoch of training, one pass of inference


def backward(terms: tuple[torch.Tensor, ...], params: list[torch.nn.Parameter], separate: bool) -> None:
    """Accumulate the gradient of sum(terms) into the parameters' (float32) .grad.

    separate=False: one backward of the sum. separate=True (bf16 autocast): one backward per term. Under
    autocast the activations and their gradients are bf16, whose 8-bit mantissa resolves ~4e-3 of a value;
    the CMI term's gradient is ~1e-3 of CE's at the paper's lambdas (DESIGN.md), so flowing back as part of one
    sum it would be rounded away in every layer. Backpropagated alone, it is rounded relative to itself and
    joins CE's gradient only in the float32 .grad. The price is one more backward pass per extra term.
    The extra terms go through torch.autograd.grad, which DDP's hooks do not see: their gradients are averaged
    over the processes here, as DDP averages the first term's."""
    if not separate or len(terms) == 1:
        sum(terms).backward()
        return
    extra = [torch.autograd.grad(t, params, retain_graph=True, allow_unused=True) for t in terms[1:]]
    terms[0].backward()
    for grads in extra:
        for p, g in zip(params, grads):
            if g is not None:
                g = all_reduce(g) / world_size()
                p.grad = g if p.grad is None else p.grad.add_(g)


@dataclass
class Step:
    """The parts of one optimisation step. `model` is the uncompiled module (saved, checkpointed); `forward`
    may run a compiled or DDP-wrapped version of it; `ctx` is the autocast context, entered every step."""

    forward: Callable
    model: torch.nn.Module
    objective: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ctx: AbstractContextManager = field(default_factory=nullcontext)
    clip: float = 1.0


def train_step(step: Step, batch: dict) -> tuple[torch.Tensor, dict]:
    """One optimisation step: the loss under `ctx`, backward (each term on its own under autocast: see
    `backward`), gradient clipping, AdamW, the schedule. Returns the loss, still on the device (not read back:
    no sync), and the objective's logs."""
    with step.ctx:
        terms, logs = step.objective(step.forward, batch)
    params = [p for p in step.model.parameters() if p.requires_grad]
    backward(terms, params, separate=isinstance(step.ctx, torch.autocast))
    if step.clip:
        torch.nn.utils.clip_grad_norm_(params, step.clip, foreach=True)
    step.optimizer.step()
    step.scheduler.step()
    step.optimizer.zero_grad(set_to_none=True)
    return sum(terms).detach(), logs


def train_epoch(step: Step, batches, desc: str, log_every: int = 10) -> tuple[dict, int]:
    """One pass over `batches` taking a step per batch. Returns ({"loss": mean loss, and the mean of every
    value the objective logs, e.g. "ce"}, number of samples); means are over samples.

    Loss values stay on the device and are read back only every `log_every` steps (a read is a device sync);
    a non-finite loss raises TrainingError before the corrupted weights can be saved."""
    step.model.train()
    totals, seen = {}, 0
    bar = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None if rank() == 0 else True)
    for i, batch in enumerate(bar, 1):
        loss, logs = train_step(step, batch)
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
    # the means over the samples of every process: one all-reduce of the sums and the count
    keys = sorted(totals)
    sums = all_reduce(torch.stack([totals[k] for k in keys] + [torch.tensor(seen, dtype=torch.float64, device=loss.device)]))
    return {k: (sums[i] / sums[-1]).item() for i, k in enumerate(keys)}, int(sums[-1])


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



# -----------------------------------------------------------------------------
# the files of a run


def atomic_write(path: Path, write) -> None:
    """Write `path` via a temporary file in the same folder: `write(f)` fills the binary file, which is
    flushed and fsynced, then renamed over `path` (atomic on POSIX). A failure (a full disk) raises
    TrainingError and leaves the previous version of `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise TrainingError(f"{path}: writing failed ({e.strerror or e}); the previous version is kept") from None
    finally:
        tmp.unlink(missing_ok=True)


def to_json(obj, **kwargs) -> str:
    """json.dumps that refuses NaN and Infinity (not JSON: other tools cannot read them) with one clear line."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        bad = sorted(k for k, v in obj.items() if isinstance(v, float) and not math.isfinite(v))
        raise TrainingError(f"non-finite values ({', '.join(bad) or 'nested'}) cannot be written as JSON; "
                            "the run's files are left as they were") from None


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    text = to_json(obj, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_run_json(path: Path):
    """A JSON file of a run (args.json), or TrainingError naming it."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TrainingError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e}); "
                            "--overwrite starts afresh") from None


class RunFiles:
    """The files of a run under `out`: args.json, metrics.jsonl, last.pt, best/, results.json.

    The folder is locked (an flock on run.lock) for the life of the object: a second process on the same
    folder is refused at once. A folder that holds another run is refused unless `resume` (continue it: the
    arguments must match) or `overwrite` (replace it). Overwriting is safe: `start` moves the old run's files
    into .replaced/ instead of deleting them, and they are deleted only once the new run has written its first
    checkpoint (`save_checkpoint`); a run that fails before then gets them back (`restore`), and one killed
    before then finds them restored when it is started again."""

    FILES = ("args.json", "metrics.jsonl", "last.pt", "results.json", "best")

    def __init__(self, out: str | Path, args: dict, resume: bool = False, overwrite: bool = False):
        self.out, self.args, self.overwrite = Path(out), args, overwrite
        self.metrics, self.best = self.out / "metrics.jsonl", self.out / "best"
        self.last, self.replaced = self.out / "last.pt", self.out / ".replaced"
        self.lock = self._lock() if rank() == 0 else None
        try:
            self._check(resume)
        except BaseException:
            self.__exit__()
            raise

    def _check(self, resume: bool) -> None:
        self.restore()  # an earlier --overwrite killed before its first checkpoint: the old run comes back
        existing = [name for name in self.FILES if (self.out / name).exists()]
        self.resuming = resume and self.last.exists()
        if self.resuming:
            saved = read_run_json(self.out / "args.json")
            # the folder is the run itself, however it is spelled (relative, absolute, moved)
            ignored = {"resume", "overwrite", "out"}
            diff = sorted(k for k in set(saved) | set(self.args) if k not in ignored and saved.get(k) != self.args.get(k))
            if diff:
                raise TrainingError(f"--resume: {self.out} holds a run with other arguments ({', '.join(diff)})")
        elif existing and not (resume or self.overwrite):
            raise TrainingError(f"{self.out} already holds a run ({', '.join(existing)}); "
                                "pass --resume to continue it or --overwrite to replace it")

    def __enter__(self) -> "RunFiles":
        return self

    def __exit__(self, *exc) -> None:
        """Release the folder's lock (the end of the run, or a failure before it). A folder this run created
        and left empty (it failed before writing anything) is removed again."""
        if self.lock is None:
            return
        self.lock.close()
        self.lock = None
        if self.created and [p.name for p in self.out.iterdir()] == ["run.lock"]:
            (self.out / "run.lock").unlink()
            self.out.rmdir()

    def _lock(self):
        if self.out.exists() and not self.out.is_dir():
            raise TrainingError(f"--out {self.out}: exists and is not a folder")
        self.created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            lock = open(self.out / "run.lock", "a")
        except OSError as e:
            raise TrainingError(f"--out {self.out}: cannot create the run folder ({e.strerror or e})") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise TrainingError(f"--out {self.out}: another process is running in this folder (it holds "
                                f"{self.out / 'run.lock'}); wait for it or choose another --out") from None
        return lock

    def start(self) -> dict | None:
        """Return the checkpoint to resume from (None for a fresh run), or set the folder up for a fresh run.
        Under DDP every process reads the checkpoint (`--out` must be on a file system they share); only
        rank 0 writes."""
        if self.resuming:
            try:  # weights_only: tensors and plain containers, never code
                ckpt = torch.load(self.last, map_location="cpu", weights_only=True)
            except Exception as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise TrainingError(f"{self.last}: cannot resume from it ({reason}); --overwrite starts afresh") from None
            if rank() == 0:  # a kill between the metrics line and the checkpoint leaves an epoch to be redone
                lines = [line for line in self._metric_lines() if json.loads(line)["epoch"] <= ckpt["epoch"]]
                atomic_write(self.metrics, lambda f: f.write("".join(lines).encode()))
            return ckpt
        if rank() != 0:
            return None
        # a fresh start: --overwrite, or --resume of a run killed before its first checkpoint (whose
        # metrics.jsonl may already hold the line of the epoch it is about to redo); the old files are moved
        # aside, not deleted, until this run's first checkpoint
        old = [name for name in self.FILES if (self.out / name).exists()]
        if old:
            self.replaced.mkdir()
            for name in old:
                os.replace(self.out / name, self.replaced / name)
        write_json(self.out / "args.json", self.args)
        return None

    @contextmanager
    def started(self):
        """`start`, then the body; if the body fails before the run's first checkpoint, `restore`."""
        ckpt = self.start()
        try:
            yield ckpt
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put back the run that `start` moved aside, removing what the new run wrote (no-op once the new run
        has a checkpoint: then .replaced/ is gone)."""
        if rank() != 0 or not self.replaced.is_dir():
            return
        for name in self.FILES:
            path = self.out / name
            if (self.replaced / name).exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                os.replace(self.replaced / name, path)
            elif path.exists():  # written by the new run, which had no old counterpart
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for leftover in self.out.glob(".*.tmp"):  # a write of the new run that a kill interrupted
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        shutil.rmtree(self.replaced)

    def _metric_lines(self) -> list[str]:
        try:
            lines = self.metrics.read_text().splitlines(keepends=True) if self.metrics.exists() else []
            for line in lines:
                json.loads(line)["epoch"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TrainingError(f"{self.metrics}: damaged, cannot continue it ({e}); --overwrite starts afresh") from None
        return lines

    def log_epoch(self, record: dict) -> None:
        if rank() != 0:
            return
        lines = self._metric_lines() + [to_json(record) + "\n"]
        atomic_write(self.metrics, lambda f: f.write("".join(lines).encode()))

    def save_checkpoint(self, state: dict) -> None:
        if rank() == 0:
            atomic_write(self.last, lambda f: torch.save(state, f))
            shutil.rmtree(self.replaced, ignore_errors=True)  # the new run can resume now: the old one goes

    def save_best(self, model) -> None:
        if rank() == 0:
            model.save_pretrained(self.best)

    def save_results(self, results: dict) -> None:
        if rank() == 0:
            write_json(self.out / "results.json", results)


def provenance(device: torch.device) -> dict:
    """What made a run: the code's git commit (and whether the work tree had uncommitted changes), the torch
    version, the device and the date, so a committed result names the code that can repeat it."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
            "torch": torch.__version__, "device": f"{device.type} ({name})",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def rng_states() -> list[dict]:
    """The random-number states of every process (dropout, masking), so a resumed run repeats exactly."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    if world_size() == 1:
        return [state]
    states = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


def set_rng_state(state: dict) -> None:
    """Restore one process's random-number state, as `rng_states` saved it."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


# -----------------------------------------------------------------------------
# the loop


@dataclass
class Epochs:
    """What `fit` does around the steps of each epoch, and how many epochs.

    batches(epoch) -> the epoch's training batches (a sized iterable, same order for the same epoch);
    measure_train() -> CMIStats of the training set under the current model (an eval-mode pass);
    evaluate() -> the dev metrics by name, including `primary` and `eval_cmi`;
    record: the constant fields of every metrics.jsonl line (task, mode, lam, seed, ...);
    weighting: how train_cmi weighs the classes (cmi.core.WEIGHTINGS)."""

    count: int
    batches: Callable[[int], Iterable]
    measure_train: Callable[[], CMIStats]
    evaluate: Callable[[], dict]
    primary: str
    record: dict = field(default_factory=dict)
    weighting: str = "true"


def fit(step: Step, epochs: Epochs, run: RunFiles) -> dict:
    """Train for `epochs.count` epochs, evaluating after each; keep the best epoch by `epochs.primary` in best/.
    Each metrics.jsonl line holds the record, train_loss and train_K for every value K the objective logs (the
    epoch's means), the exact train_cmi, the dev metrics and the timings."""
    model, objective = step.model, step.objective
    best, start = None, 1
    with run.started() as ckpt:
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            step.optimizer.load_state_dict(ckpt["optimizer"])
            step.scheduler.load_state_dict(ckpt["scheduler"])
            objective.load_state_dict(ckpt["objective"])
            if len(ckpt["rng"]) != world_size():
                raise TrainingError(f"{run.last}: the run was started with {len(ckpt['rng'])} processes, "
                                    f"resume it with the same number (not {world_size()})")
            set_rng_state(ckpt["rng"][rank()])
            best, start = ckpt["best"], ckpt["epoch"] + 1
        elif objective.needs_initial_stats:
            objective.refresh(epochs.measure_train())  # eq. (14): the first G, from the initial model

        for epoch in range(start, epochs.count + 1):
            # eq. (14), first line: G fixed, the parameters take an epoch of steps against it
            t0 = time.perf_counter()
            means, seen = train_epoch(step, epochs.batches(epoch), desc=f"epoch {epoch}/{epochs.count}")
            seconds = time.perf_counter() - t0
            # eq. (14), second line: G = the class means of f_x under the new parameters (the policy says how)
            train_stats = epochs.measure_train()  # the exact train CMI of the epoch, too
            objective.refresh(train_stats)
            metrics = epochs.evaluate()
            line = {"epoch": epoch, **epochs.record, **{f"train_{k}": v for k, v in means.items()},
                    "train_cmi": train_stats.cmi(epochs.weighting), **metrics,
                    "epoch_seconds": seconds, "samples_per_s": seen / seconds}
            bad = [k for k, v in line.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:  # never save a broken model as the best, nor write NaN into a JSON file
                raise TrainingError(f"epoch {epoch}: {', '.join(bad)} not finite (a learning rate too high?); "
                                    "the model is not saved, the last checkpoint of the run is intact")
            if best is None or metrics[epochs.primary] > best["metrics"][epochs.primary]:
                run.save_best(model)
                best = {"epoch": epoch, "metrics": metrics}
            run.log_epoch(line)
            run.save_checkpoint({
                "epoch": epoch, "best": best, "model": model.state_dict(), "optimizer": step.optimizer.state_dict(),
                "scheduler": step.scheduler.state_dict(), "objective": objective.state_dict(), "rng": rng_states(),
            })
            if rank() == 0:
                print(json.dumps(line), flush=True)

        results = {"args": run.args, "best_epoch": best["epoch"], **best["metrics"],
                   "provenance": provenance(next(model.parameters()).device)}
        run.save_results(results)
        return results
