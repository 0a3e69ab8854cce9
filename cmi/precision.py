"""How a run computes: in float32, or under bf16 / fp16 autocast. One object, built once from the run's dtype
(`precision`), holds everything that depends on it: the autocast context, the backward of the loss's terms, the
optimiser step, and what it adds to each epoch's metrics line. In float32 (the CPU default) it is a plain
backward of the loss and a plain AdamW step; the rest of this file is what reduced precision needs on top.
"""
from contextlib import nullcontext

import torch

from cmi.distributed import all_reduce, world_size


def precision(device: torch.device, dtype: torch.dtype | None) -> "Float32":
    """The precision of a run on `device`: float32 (dtype None), or autocast in bf16, or in fp16 with loss scaling.

    fp16's 5-bit exponent underflows small gradients, so its loss is scaled up before backward and the gradients
    unscaled before clipping; a step whose scaled gradients overflowed is skipped (grad_norm inf) and the scale
    adapted. bf16 has float32's range and needs none of it."""
    if dtype is None:
        return Float32()
    return Autocast(device, dtype, scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None)


class Float32:
    """float32: one backward of the loss, then clipping and the optimiser step; with a `scaler` (fp16's), the loss
    scaled up before the backward and the gradients scaled back before clipping."""

    dtype = None
    name = "float32"

    def __init__(self, scaler: torch.amp.GradScaler | None = None):
        self.scaler = scaler

    def autocast(self):
        """The context every forward runs in (none here)."""
        return nullcontext()

    def start_epoch(self) -> None:
        """A new epoch begins (Autocast measures the CMI term's gradient anew)."""

    def backward(self, loss_terms: tuple[torch.Tensor, ...], params: list[torch.nn.Parameter]) -> None:
        """Accumulate the gradient of sum(loss_terms) into the parameters' .grad."""
        sum(self.scaled(loss_terms)).backward()

    def scaled(self, loss_terms: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return loss_terms if self.scaler is None else tuple(self.scaler.scale(t) for t in loss_terms)

    def step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], clip: float) -> torch.Tensor:
        """Clip the gradients to norm `clip` (0: no clipping), step the optimiser; the norm before clipping."""
        if self.scaler is None:
            grad_norm = clip_gradients(params, clip)
            optimizer.step()
            return grad_norm
        self.scaler.unscale_(optimizer)  # the true gradients, for clipping and the logged norm
        grad_norm = clip_gradients(params, clip)
        self.scaler.step(optimizer)  # skipped if the scaled gradients overflowed (grad_norm inf)
        self.scaler.update()
        return grad_norm

    def record(self) -> dict:
        """What the epoch's metrics line says of the precision (nothing in float32)."""
        return {}

    def state_dict(self) -> dict:
        """What last.pt keeps of it, for a resumed run."""
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


class Autocast(Float32):
    """Autocast in `dtype` (bf16, or fp16 with its `scaler`), with the CMI term's own backward where one backward
    of the sum would lose it.

    Under autocast the activations' gradients are bf16, which keeps ~3 significant digits: a term whose gradient is
    ~1e-3 of CE's is rounded away in one backward of the sum, one ~1e-2 of it arrives (docs/design.md, "Numerics").
    So each epoch's first `probe_steps` steps backpropagate the terms on their own (`backward`) and measure, per
    term, its gradient's norm over the first term's; if the smallest mean is at least `joint_from`, the rest of the
    epoch takes one backward of the sum. Measured anew each epoch (CE's gradient shrinks as training goes on) from
    the epoch's own steps, so a resumed run decides as the uninterrupted one did. Under DDP the ratios are averaged
    over the processes: all of them take the same path."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.bfloat16,
                 scaler: torch.amp.GradScaler | None = None):
        super().__init__(scaler)
        self.dtype, self.name = dtype, str(dtype).removeprefix("torch.") + " autocast"
        self.context = torch.autocast(device.type, dtype=dtype)  # built once, re-entered every step and pass
        self.terms = TermBackward()

    def autocast(self):
        return self.context

    def start_epoch(self) -> None:
        self.terms.start_epoch()

    def backward(self, loss_terms, params) -> None:
        ratio = backward(self.scaled(loss_terms), params, separate=self.terms.separate, measure=self.terms.probing)
        if ratio is not None:
            self.terms.observe(ratio)

    def record(self) -> dict:
        return self.terms.record()


class TermBackward:
    """The rule of `Autocast`: whether this epoch's steps backpropagate the extra terms (the CMI term) on their own.
    `ratios`: this epoch's probe steps' smallest ratio over the terms; `ratio`: their mean, once the probe steps are
    done."""

    def __init__(self, probe_steps: int = 10, joint_from: float = 1e-2):
        self.probe_steps, self.joint_from = probe_steps, joint_from
        self.start_epoch()

    def start_epoch(self) -> None:
        self.ratios, self.ratio = [], None

    @property
    def probing(self) -> bool:
        return self.ratio is None

    @property
    def separate(self) -> bool:  # `not >=`: a NaN ratio (fp16 overflow) keeps the terms apart
        return self.ratio is None or not self.ratio >= self.joint_from

    def observe(self, ratio: torch.Tensor) -> None:
        """One probe step's ratio (a 0-d tensor, not read back); after the last, their mean over the steps and the
        processes."""
        self.ratios.append(ratio)
        if len(self.ratios) == self.probe_steps:
            self.ratio = all_reduce(torch.stack(self.ratios).mean()).item() / world_size()

    def record(self) -> dict:
        """The epoch's decision, for its metrics line."""
        if self.ratio is None:
            return {}
        return {"term_ratio": self.ratio, "term_backward": "separate" if self.separate else "joint"}


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


def clip_gradients(params: list[torch.nn.Parameter], clip: float) -> torch.Tensor:
    """Clip the gradients to norm `clip` (0: leave them); their norm before clipping."""
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)


def norm(grads) -> torch.Tensor:
    """The 2-norm of a list of gradients (None: unused, zero)."""
    return torch.nn.utils.get_total_norm([g for g in grads if g is not None], foreach=True).float()
