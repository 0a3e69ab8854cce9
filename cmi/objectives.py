"""The training objectives: CE, min-CMI and max-CMI (eqs. 13-16) with the alternating centroids of
eq. (14), the optional gamma * L1 pre-training term (eq. 7: BERT's masked-LM loss, a decoder's causal-LM loss),
and the distillation loss (eq. 8).

The training loop (cmi/loop.py) runs the model and hands its outputs (`.logits`, `.features`, `.hidden_states`)
to the objective, which only scores them: `objective(outputs, batch) -> (loss_terms, logs)`. Before the forward,
`objective.inputs(batch)` says what the model is run on: the batch itself, or with the gamma * L1 term the clean
and the masked inputs joined. `loss_terms` is a tuple of scalar tensors whose sum is the loss: the CMI term is
kept apart from CE because under bf16 autocast its gradient, ~1e-3 of CE's at the paper's lambdas
(docs/design.md, "Numerics"), would be rounded away if both flowed back through the network as one sum
(cmi.precision.backward).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cmi.core import CMIStats, class_centroids, conditional_mutual_information, log_feature_distribution
from cmi.loop import model_inputs

MODES = ("ce", "min", "max")
FEATURES = ("pooled", "cls")
SCALES = ("true", "paper")


@dataclass
class Features:
    """h_s and f_x of a model's outputs: which vector is h_s, and the temperature of f_x = softmax(h_s / tau).

    "pooled": the vector BERT's classification layer reads (`out.features`, tanh(W_p h_[CLS]));
    "cls": the raw last-layer [CLS] state (`out.hidden_states[:, 0]`), the h_s that the text of the paper's
    eq. (5) defines. The paper's classifier reads h_s, BERT's reads the pooled vector: the paper is ambiguous,
    and on real checkpoints the two differ a lot (docs/design.md, "h_s: pooled or [CLS]")."""

    kind: str = "pooled"
    tau: float = 1.0

    def __call__(self, out) -> torch.Tensor:
        """f_x (B, d), float32."""
        return self.log_probs(out).exp()

    def vector(self, out) -> torch.Tensor:
        """h_s (B, d)."""
        return out.features if self.kind == "pooled" else out.hidden_states[:, 0]

    def log_probs(self, out) -> torch.Tensor:
        """log f_x (B, d), float32: finite where f_x underflows to 0, so the CMI's gradient is too."""
        return log_feature_distribution(self.vector(out), self.tau)


class Centroids:
    """The dummy centroids G (C, d) of eq. (14), which the CMI term of a batch compares its f_x against.

    Between refreshes G is a constant: no gradient ever flows into it; the parameters take steps against a fixed
    G (eq. 14, first line, `target`), then G is set to the class means (second line, `refresh`). The policies,
    below, differ in which class means and when. This base class is the `epoch` policy's G, set by `refresh`."""

    needs_initial_stats = True  # the first G comes from a pass over the training set before the first step

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu"):
        self.num_classes, self.dim, self.device = num_classes, dim, device
        self.G: torch.Tensor | None = None

    def target(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """eq. (14), first line: the centroids a batch's f_x (B, d) with labels y (B,) are compared against,
        (C, d), never differentiated."""
        return self.G

    def observe(self, f: torch.Tensor, y: torch.Tensor) -> None:
        """See a training batch's f_x (B, d) and labels (B,) (only `online` keeps them)."""

    def refresh(self, train_stats: CMIStats) -> None:
        """eq. (14), second line: G = the class means of f_x. `train_stats`: an eval-mode pass over the training
        set with the current parameters, after each epoch (and before the first, if needs_initial_stats)."""
        self.G = train_stats.centroids().to(self.device)

    def state_dict(self) -> dict:
        return {"G": self.G, "running": None}

    def load_state_dict(self, state: dict) -> None:
        self.G = state["G"]


class EpochCentroids(Centroids):
    """epoch -- exact: G = the class means of an eval-mode pass over the training set before each epoch."""


class FrozenCentroids(Centroids):
    """frozen -- G from the initial model, never updated (the MCMI teacher recipe)."""

    def refresh(self, train_stats: CMIStats) -> None:
        if self.G is None:
            super().refresh(train_stats)


class OnlineCentroids(Centroids):
    """online -- G = the mean of the detached f_x of the previous epoch's own training batches (the first G: a
    pass over the training set). Under DDP the class sums are all-reduced: every process holds the same G."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu"):
        super().__init__(num_classes, dim, device)
        self.running = CMIStats(num_classes, dim, device)

    def observe(self, f: torch.Tensor, y: torch.Tensor) -> None:
        self.running.add(f, y)

    def refresh(self, train_stats: CMIStats) -> None:
        if self.G is None:
            super().refresh(train_stats)
            return
        self.running.all_reduce()
        self.G = self.running.centroids().to(self.device)
        self.running = CMIStats(self.num_classes, self.dim, self.device)

    def state_dict(self) -> dict:
        return {"G": self.G, "running": vars(self.running)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        vars(self.running).update(state["running"])


class BatchCentroids(Centroids):
    """batch -- G_y = the mean of f_x over the current mini-batch's class-y samples: the exact CMI of the batch.
    No gradient flows through G here either: the gradient of sum_x KL(f_x || G_y) through the class means is
    exactly zero (cmi.core.class_centroids), so G is detached. What makes this policy sound for max is that G is
    current: against a stale G, max-CMI can raise the KL by moving a whole cluster away instead of spreading it
    (docs/design.md). Under DDP the class sums and counts are all-reduced, so G is the class means of the global
    batch, whatever the number of processes."""

    needs_initial_stats = False

    def target(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        stats = CMIStats(self.num_classes, f.shape[-1], f.device)
        stats.add(f, y)
        stats.all_reduce()  # the global batch's class means under DDP
        return stats.centroids()

    def refresh(self, train_stats: CMIStats) -> None:
        """Nothing to refresh: G is each batch's own."""


CENTROIDS = {"epoch": EpochCentroids, "online": OnlineCentroids, "frozen": FrozenCentroids, "batch": BatchCentroids}
POLICIES = tuple(CENTROIDS)  # the values of --centroids


def mask_tokens(
    input_ids: torch.Tensor, maskable: torch.Tensor, mask_id: int, vocab_size: int, prob: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking for the L1 (masked-LM) term: pick `prob` of the maskable tokens; of those, 80% become
    [MASK], 10% a random token, 10% stay. Returns the corrupted ids and the picked positions, both (B, T)."""
    picked = (torch.rand(input_ids.shape, device=input_ids.device) < prob) & maskable
    roll = torch.rand(input_ids.shape, device=input_ids.device)
    random_ids = torch.randint_like(input_ids, vocab_size)
    corrupted = torch.where(picked & (roll < 0.8), mask_id, input_ids)
    corrupted = torch.where(picked & (roll >= 0.8) & (roll < 0.9), random_ids, corrupted)
    return corrupted, picked


@dataclass
class MaskedLM:
    """gamma * L1 of eq. (7) for BERT: the pre-training (masked-LM) loss on the task inputs, with the checkpoint's
    own MLM head (`mlm_logits`). `special_ids` ([CLS], [SEP], [PAD]) are never masked."""

    gamma: float
    mlm_logits: callable
    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    name = "mlm"  # its key in the step logs

    def inputs(self, batch: dict) -> dict:
        """The batch (B examples) with BERT's masking applied to a copy of its inputs, both run in one forward (one
        forward per backward, as DDP requires): the model fields hold the clean rows, then the masked ones (2B);
        `labels` and `index` stay the clean batch's, and `masked` (B, T) marks the picked positions."""
        ids = batch["input_ids"]
        maskable = (batch["attention_mask"] > 0) & ~torch.isin(ids, torch.tensor(self.special_ids, device=ids.device))
        corrupted, picked = mask_tokens(ids, maskable, self.mask_id, self.vocab_size)
        masked = {**batch, "input_ids": corrupted}
        both = {k: torch.cat([batch[k], masked[k]]) for k in batch if k not in ("labels", "index")}
        return {**batch, **both, "masked": picked}

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """L1: cross-entropy of the original tokens at the picked positions of the masked inputs' states."""
        n, picked = len(batch["labels"]), batch["masked"]
        logits = self.mlm_logits(outputs.hidden_states[n:][picked])  # (M, V): only the picked positions
        ids = batch["input_ids"][:n]
        return F.cross_entropy(logits.float(), ids[picked]) if picked.any() else logits.sum() * 0.0


@dataclass
class CausalLM:
    """gamma * L1 of eq. (7) for a decoder: its pre-training loss, next-token cross-entropy, on the task inputs
    themselves (no second copy: under causal attention each state sees only what it predicts from), with the
    checkpoint's LM head (`lm_logits`). Every real token after the first is a target; padding is none."""

    gamma: float
    lm_logits: callable
    name = "lm"

    def inputs(self, batch: dict) -> dict:
        return batch

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """L1: cross-entropy of each real token t + 1 from the final state at t (right padding: t + 1 real means t is)."""
        mask = batch["attention_mask"].bool()
        follows = mask[:, 1:]  # (B, T - 1): positions t whose next token is real
        logits = self.lm_logits(outputs.hidden_states[:, :-1][follows])  # (M, V): only the predicting rows
        targets = batch["input_ids"][:, 1:][follows]
        return F.cross_entropy(logits.float(), targets) if follows.any() else logits.sum() * 0.0


class Objective:
    """What the training loop asks of an objective besides being called (see above): the inputs the model is run
    on, and its centroids G, which the loop refreshes after each epoch (eq. 14, second line); None for an objective
    with no CMI term."""

    centroids: Centroids | None = None

    def inputs(self, batch: dict) -> dict:
        """The batch the model is run on and the objective scores (this one: `batch` itself)."""
        return batch


class CMIObjective(Objective):
    """Eqs. (13)-(16) per mini-batch, with batch means:
      ce:  L = CE + gamma * L_MLM
      min: L = CE + gamma * L_MLM + w * mean_x KL(f_x || G_{y_x})
      max: L = CE + gamma * L_MLM - w * mean_x KL(f_x || G_{y_x})
    The batch mean of KL(f_x || G_y) estimates I(X;Z|Y) (the true CMI, not the literal eq. 12; "balanced"
    weighting averages the per-class means instead, see cmi.core). Scale
    "true": w = lambda; "paper": w = lambda / C, the per-sample weight that eqs. (12)-(14) give when both
    sums run over the dataset (docs/design.md, "The scale of the term")."""

    def __init__(
        self,
        mode: str,
        lam: float,
        num_classes: int,
        centroids: Centroids | None,
        features: Features,
        scale: str = "true",
        weighting: str = "true",
        mlm: MaskedLM | CausalLM | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if scale not in SCALES:
            raise ValueError(f"cmi scale must be one of {SCALES}, got {scale!r}")
        self.sign = {"ce": 0.0, "min": 1.0, "max": -1.0}[mode]
        self.weight = lam if scale == "true" else lam / num_classes
        self.centroids = centroids if self.sign else None  # ce trains against no G
        self.num_classes, self.features, self.mlm, self.weighting = num_classes, features, mlm, weighting

    def inputs(self, batch: dict) -> dict:
        return batch if self.mlm is None else self.mlm.inputs(batch)

    def __call__(self, outputs, batch: dict) -> tuple[tuple[torch.Tensor, ...], dict]:
        y = batch["labels"]
        clean = len(outputs.logits) == len(y)  # else MaskedLM's masked copy follows the clean rows
        out = outputs if clean else type(outputs)(*(t[: len(y)] for t in outputs))
        loss = F.cross_entropy(out.logits.float(), y)
        logs = {"ce": loss.detach()}
        if self.mlm is not None:
            l1 = self.mlm.loss(outputs, batch)
            loss = loss + self.mlm.gamma * l1
            logs[self.mlm.name] = l1.detach()
        log_f = self.features.log_probs(out)
        f = log_f.exp()
        if self.centroids is not None:  # eq. (14), first line: G fixed (no gradient into it), step the parameters
            self.centroids.observe(f, y)
            cmi = conditional_mutual_information(f, y, self.centroids.target(f, y), self.weighting, log_f)
            loss_terms = (loss, self.sign * self.weight * cmi)
        else:  # ce: the batch's own CMI, for the progress bar only
            with torch.no_grad():
                cmi = conditional_mutual_information(f, y, class_centroids(f, y, self.num_classes), self.weighting)
            loss_terms = (loss,)
        logs["batch_cmi"] = cmi.detach()  # the mean over batches is no CMI of the epoch: not named train_cmi
        return loss_terms, logs


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float, T: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """eq. (8): L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T)), the KL summed
    over classes and averaged over the batch. T^2 keeps the soft term's gradients on the scale of the CE's
    as T grows (Hinton et al.); the paper's eq. (8) does not write it. Returns (loss, ce, kl)."""
    s, t = student_logits.float(), teacher_logits.float()
    ce = F.cross_entropy(s, labels)
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean")
    return (1 - alpha) * ce + alpha * T**2 * kl, ce, kl


class DistillationObjective(Objective):
    """Knowledge distillation from a fixed teacher. The teacher is in eval mode, so its logits are a function
    of the example alone: `teacher_logits` (N, C) holds them for the whole training split, indexed by
    `batch["index"]`; with `teacher` (the model, and `unpad` as the student's) instead they are recomputed every
    step (for comparison)."""

    def __init__(self, alpha: float, temperature: float, teacher_logits=None, teacher=None, unpad: bool = False):
        self.alpha, self.T = alpha, temperature
        self.teacher_logits, self.teacher, self.unpad = teacher_logits, teacher, unpad

    def __call__(self, outputs, batch: dict) -> tuple[tuple[torch.Tensor, ...], dict]:
        if self.teacher_logits is not None:
            t = self.teacher_logits[batch["index"]]
        else:
            with torch.no_grad():
                t = self.teacher(**model_inputs(batch, self.unpad)).logits
        loss, ce, kl = kd_loss(outputs.logits, t, batch["labels"], self.alpha, self.T)
        return (loss,), {"ce": ce.detach(), "kd": kl.detach()}
