"""What bench.py's and scripts/bench_diagnostics.py's sections measure: the presets, and their contenders, each a
model ready to train as train.py trains it, built from the pieces train.py is built of (cmi.loop's TrainState,
AdamW and its schedule, train.py's defaults, the precision of cmi/precision.py, compiled as
harness.runtime.Runtime.wrap compiles), beside transformers' twin of our model, called as ours are."""
import copy
import functools
import tempfile
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from benchmark.timing import alternate, peak_memory_mib, synthetic_batch
from cmi.loop import TrainState, linear_scheduler, make_optimizer, model_inputs, predict, train_epoch, train_step
from cmi.objectives import CMIObjective, EpochCentroids, Features, Objective
from cmi.precision import Autocast, Float32, precision
from data.batching import eval_batches, train_batches
from data.tokenization import Encoded
from harness.cli import TRAIN_DEFAULTS
from harness.rundata import Batches
from harness.runtime import Runtime
from models.bert import BertConfig, BertForSequenceClassification
from models.distilbert import DistilBertConfig, DistilBertForSequenceClassification

try:  # optional: the sections compare against it when it is installed
    import transformers
except ImportError:
    transformers = None

PRESETS = ("tiny", "minilm", "distilbert-base", "bert-base")
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that record CUDA graphs


# -----------------------------------------------------------------------------
# the models


def build_model(preset: str, checkpoint: str, num_labels: int):
    """Our classifier of a preset: random weights (seeded), or the minilm checkpoint's real ones."""
    if preset == "minilm":
        return BertForSequenceClassification.from_pretrained(checkpoint, num_labels=num_labels)
    if preset == "distilbert-base":
        return DistilBertForSequenceClassification(DistilBertConfig(num_labels=num_labels))
    return BertForSequenceClassification(BertConfig(num_labels=num_labels, **(TINY if preset == "tiny" else {})))


class TransformersClassifier(nn.Module):
    """A transformers classifier called as ours are (cmi.loop.model_inputs): input_ids, attention_mask and
    token_type_ids by name, the last only where its forward takes them (its DistilBERT has no token types); it
    computes every slot, so it takes no token_index (it is trained padded). Returns its own output (`.logits`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.token_types = model.config.model_type != "distilbert"  # its DistilBERT takes no token_type_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, token_index: torch.Tensor | None = None):
        if token_index is not None:
            raise ValueError("transformers' models compute every slot: they take no token_index (unpad=False)")
        types = {"token_type_ids": token_type_ids} if self.token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **types)


def transformers_twin(model) -> TransformersClassifier | None:
    """transformers' class of ours (its `architecture`) with the same config and weights (saved and loaded back, SDPA
    attention, same dtype), in training mode; None when transformers is not installed."""
    if transformers is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        twin = getattr(transformers, model.architecture()).from_pretrained(
            folder, attn_implementation="sdpa", dtype=next(model.parameters()).dtype)
    # from_pretrained returns it in eval mode
    return TransformersClassifier(twin.to(next(model.parameters()).device).train())


class CudaGraphSteps(nn.Module):
    """A module compiled with CUDA graphs, which keep their outputs in place: each call is marked as a new step."""

    def __init__(self, compiled: nn.Module):
        super().__init__()
        self.compiled = compiled

    def forward(self, **inputs):
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(**inputs)


def compiled(model: nn.Module, mode: str | None) -> nn.Module:
    """The module `model`'s steps call on the synthetic batch: compiled with torch.compile `mode` (None: eager,
    the model itself). Training on real examples compiles as train.py does: Runtime.wrap."""
    if mode is None:
        return model
    runs = torch.compile(model, mode=mode)
    return CudaGraphSteps(runs) if mode in CUDA_GRAPH_MODES else runs


def sdpa_kernels(model, batch, autocast) -> str:
    """The kernel(s) F.scaled_dot_product_attention dispatched to in one eager padded forward of `model` in its
    current (training) mode, under the `autocast` context: attention_math, flash_attention, efficient_attention,
    cudnn_attention, ... (profiler op names)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof, autocast:
        model(**model_inputs(batch, unpad=False))
    prefix = "aten::_scaled_dot_product_"
    return ", ".join(sorted({e.name.removeprefix(prefix) for e in prof.events() if e.name.startswith(prefix)})) or "none"


# -----------------------------------------------------------------------------
# training them


class CrossEntropy(Objective):
    """The plain CE objective, which both libraries' models can be trained with."""

    def __call__(self, outputs, batch: dict) -> tuple[tuple[torch.Tensor, ...], dict]:
        return (F.cross_entropy(outputs.logits.float(), batch["labels"]),), {}


cross_entropy = CrossEntropy()


def own_precision(runtime: Runtime) -> Float32:
    """The runtime's precision for one contender's TrainState: float32 keeps no state, so the runtime's own; under
    (bench's bf16) autocast one of its own, whose rule of the CMI term's backward (cmi.precision.TermBackward) no
    other contender moves. All its timed calls are steps of one epoch (only fit starts epochs): it decides once, from
    their first probe steps, as over a run's epoch."""
    p = runtime.precision
    return p if p.dtype is None else Autocast(runtime.device, p.dtype)


class Contender:
    """A model ready to train as train.py trains it: `runs`, the module its steps call (compiled; None: the model
    itself), train.py's optimiser and schedule from the same builders and defaults, clipping, the runtime's
    precision. `steps`: the steps it is timed for, the schedule's length (the learning rate's values do not change
    a step's time); `unpad`: ours computing the real tokens only."""

    def __init__(self, model: nn.Module, runtime: Runtime, steps: int, unpad: bool = False,
                 runs: nn.Module | None = None):
        self.model, self.runtime, self.unpad = model, runtime, unpad
        self.runs = model if runs is None else runs
        self.optimizer = make_optimizer(model, TRAIN_DEFAULTS.lr, TRAIN_DEFAULTS.weight_decay)
        self.scheduler = linear_scheduler(self.optimizer, steps, int(TRAIN_DEFAULTS.warmup_ratio * steps))
        self.states = {}  # objective -> its TrainState, kept over calls as over a run's epoch (own_precision)

    def state(self, objective) -> TrainState:
        if objective not in self.states:
            self.states[objective] = TrainState(
                model=self.runs, raw_model=self.model, objective=objective, optimizer=self.optimizer,
                scheduler=self.scheduler, precision=own_precision(self.runtime), clip=TRAIN_DEFAULTS.clip,
                unpad=self.unpad)
        return self.states[objective]

    def step(self, batch, objective=cross_entropy) -> None:
        train_step(self.state(objective), batch)

    def epoch(self, batches, objective=cross_entropy) -> None:
        train_epoch(self.state(objective), batches, desc="bench")


def widest_batch(encoded: Encoded, batches: list[np.ndarray], runtime: Runtime) -> dict:
    """The batch of `batches` with the longest example, loaded: where a step's memory peaks."""
    return next(iter(Batches(encoded, [max(batches, key=lambda b: encoded.lengths[b].max())], runtime.device,
                             runtime.pad_multiple)))


def race(runs: dict, encoded: Encoded, batches: list[np.ndarray], runtime: Runtime, chunk: int) -> tuple[dict, dict]:
    """runs: name -> (Contender, objective), each trained on the same index `batches` of `encoded`, taken in turns
    of `chunk` alternating as in `alternate`, after one untimed batch (torch.compile compiles there). Returns each
    run's seconds per turn, and the peak memory of one step on the widest batch."""
    def loader(index_batches):
        return Batches(encoded, index_batches, runtime.device, runtime.pad_multiple)

    widest = widest_batch(encoded, batches, runtime)
    peaks = {}
    for name, (c, objective) in runs.items():
        c.epoch(loader(batches[:1]), objective)
        peaks[name] = peak_memory_mib(lambda: c.step(widest, objective), runtime.device)
    turns = [batches[i:i + chunk] for i in range(0, len(batches), chunk)]
    calls = {name: (lambda c=c, o=o, t=iter(turns): c.epoch(loader(next(t)), o)) for name, (c, o) in runs.items()}
    return alternate(calls, len(turns), 0, runtime.device), peaks


def epoch_order(encoded: Encoded, batch_size: int, seed: int, count: int | None = None) -> list[np.ndarray]:
    """The first `count` (None: all) batches of example indices of train.py's first epoch, drawn as it draws them
    (its --batch-size and --seed given, its default --group-batches)."""
    return train_batches(encoded.lengths, batch_size, seed, epoch=1,
                         group_batches=TRAIN_DEFAULTS.group_batches)[:count]


def examples_pass(runs: nn.Module, encoded: Encoded, batches: list[np.ndarray], runtime: Runtime, *,
                  num_classes: int, unpad: bool, desc: str):
    """An eval-mode pass of `runs` (the module a contender's steps call) over the examples of the index `batches`,
    longest first as train.py's passes run: predict's (logits, CMI stats)."""
    index = np.concatenate(batches)
    passes = [index[b] for b in eval_batches(encoded.lengths[index], TRAIN_DEFAULTS.eval_batch_size)]
    return predict(runs, Batches(encoded, passes, runtime.device, runtime.pad_multiple), Features(), num_classes,
                   len(encoded), autocast=runtime.precision.autocast(), unpad=unpad, desc=desc)


def min_objective(c: Contender, train: Encoded, batches: list[np.ndarray], runtime: Runtime,
                  lam: float) -> CMIObjective:
    """train.py's min-CMI objective at `lam`, its epoch centroids (eq. 14) from a pass over the examples of `batches`
    under the contender's current weights."""
    C, d = c.model.config.num_labels, c.model.classifier.in_features
    centroids = EpochCentroids(C, d, runtime.device)
    centroids.refresh(examples_pass(c.runs, train, batches, runtime, num_classes=C, unpad=c.unpad,
                                    desc="centroids")[1])
    return CMIObjective(mode="min", lam=lam, num_classes=C, centroids=centroids, features=Features())


# -----------------------------------------------------------------------------
# a preset, a section


class Preset:
    """What a section measures on one preset: our model (seeded), transformers' twin and the synthetic batch (both
    built when a section first asks), the options, the runtime, the compile variants and the script's real data."""

    def __init__(self, name: str, args, runtime: Runtime, variants: list, data):
        self.name, self.args, self.runtime, self.variants, self.data = name, args, runtime, variants, data
        torch.manual_seed(args.seed)
        self.ours = build_model(name, args.checkpoint, num_labels=2).to(runtime.device).train()

    @functools.cached_property
    def theirs(self) -> TransformersClassifier | None:
        return transformers_twin(self.ours)

    def contenders(self) -> dict:
        """name -> (model, unpadded): ours unpadded (train.py's default), a copy of ours padded, transformers'."""
        models = {"ours": (self.ours, True), "padded": (copy.deepcopy(self.ours), False)}
        return models | ({"transformers": (self.theirs, False)} if self.theirs is not None else {})

    @property
    def train_mode(self) -> str | None:
        """torch.compile's mode for training on real examples, as train.py compiles (Runtime.wrap: dynamic shapes);
        None: eager."""
        return "default" if self.runtime.compile else None

    def precisions(self) -> dict[str, Runtime]:
        """name suffix -> runtime: the run's own, or with --amp both float32 ("") and bf16 autocast ("_bf16")."""
        if self.args.amp != "both":
            return {"": self.runtime}
        device = self.runtime.device
        return {"": replace(self.runtime, precision=precision(device, None)),
                "_bf16": replace(self.runtime, precision=precision(device, torch.bfloat16))}

    @functools.cached_property
    def batch(self) -> dict:
        """--batch-size sequences padded to --seq-len."""
        return synthetic_batch(self.ours.config.vocab_size, 2, self.args.batch_size, self.args.seq_len, self.args.seed,
                               self.runtime.device)


@dataclass
class Section:
    """One section of a script: its rows measured on a preset, and their Markdown (a caption and a table)."""

    measure: Callable[[Preset], list[dict]]
    table: Callable[[list[dict]], str]
