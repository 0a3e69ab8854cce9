"""LoRA (Hu et al., 2021, arXiv 2106.09685): fine-tune a few low-rank matrices instead of the whole model.

A targeted linear layer y = W x + b keeps W and b frozen and learns a rank-r update of W:

    y = W x + b + s * B (A dropout(x)),    A: (r, in), B: (out, r),    s = alpha / r  (alpha / sqrt(r): rsLoRA)

A starts as nn.Linear's own weights do (Kaiming-uniform) and B at zero, so training starts from the checkpoint's
own function. Only A, B and the task head train, so AdamW keeps moments for them alone: for a decoder of billions
of parameters that is the difference between fitting one GPU and not (docs/design.md, "Memory at scale"). The CMI term
needs nothing of its own: it reads the features the adapted model computes (eq. 7).

Adapters are read and written as peft does (adapter_config.json; adapter_model.safetensors keyed by transformers'
module names), so that peft loads ours onto the transformers model and we load peft's; `merged_state` folds s B A
into W for a plain checkpoint (best/).
"""
import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from common.files import write_folder
from models.checkpoint import CheckpointError, Pretrained

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PREFIX = "base_model.model."  # peft's: its LoraModel around the transformers model
# adapter_config.json fields that change what an adapter computes beyond the LoRA above: refused unless at their
# defaults, so that an adapter is never loaded as something else
UNSUPPORTED = {"use_dora": False, "bias": "none", "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
               "lora_bias": False, "target_parameters": None, "layer_replication": None}


class LoRALinear(nn.Linear):
    """An nn.Linear whose weight and bias are the frozen ones of the layer it replaces (the same tensors, under the
    same names, so the model's own keys are unchanged) plus the trainable `lora_A`, `lora_B` (peft's names)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        nn.Module.__init__(self)  # not nn.Linear's: it would draw a weight of its own
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        for p in base.parameters():
            p.requires_grad_(False)
        # float32 adapters whatever the base's dtype (peft's autocast_adapter_dtype): bf16 moments and updates of
        # small matrices would round most of each step away
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=base.weight.device)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=base.weight.device)
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        update = self.lora_B(self.lora_A(self.dropout(x.to(self.lora_A.weight.dtype))))
        return out + (update * self.scaling).to(out.dtype)


def module_names(model: Pretrained) -> dict[str, str]:
    """Our nn.Linear modules -> transformers' names for them, e.g. bert.layers.0.attn.query ->
    bert.encoder.layer.0.attention.self.query: what target names and adapter keys are matched against."""
    return {name: model.layout.hf_name(name + ".weight").removesuffix(".weight")
            for name, module in model.named_modules() if isinstance(module, nn.Linear) and not is_adapter(name)}


def matches(hf: str, target: str) -> bool:
    """peft's rule: a target names the module, or its last dot-separated parts."""
    return hf == target or hf.endswith("." + target)


def is_adapter(name: str) -> bool:
    """Whether a parameter or module name is one of LoRALinear's own (lora_A, lora_B)."""
    return ".lora_A" in name or ".lora_B" in name


def in_head(model: Pretrained, name: str) -> bool:
    """Whether a parameter is the task head's (Layout.heads), which trains whole."""
    return not is_adapter(name) and model.layout.hf_name(name).startswith(model.layout.heads)


def head_modules(model: Pretrained) -> list[str]:
    """The task head's module names (transformers' last name part: pooler, pre_classifier, classifier, score):
    trained whole and saved whole, peft's modules_to_save."""
    return [prefix.rstrip(".").rsplit(".", 1)[-1] for prefix in model.layout.heads]


def add_lora(model: Pretrained, r: int, alpha: float, dropout: float = 0.0, targets: list[str] | None = None,
             rslora: bool = False) -> list[str]:
    """Replace the targeted linear layers by LoRALinear and freeze every other parameter except the task head.

    `targets` are module names as peft takes them (a transformers module name or its last parts: "query",
    "self_attn.q_proj"), or ["all-linear"], every linear layer; default the architecture's attention query and
    value (Layout.lora_targets, as the LoRA paper and peft). The task head (Layout.heads) is never targeted: it
    trains whole; nor is the pre-training head (Layout.mlm), which stays frozen. Returns the targeted modules'
    transformers names; ValueError naming a target that matches no linear layer."""
    targets = list(targets or model.layout.lora_targets)
    heads = (*model.layout.heads, model.layout.mlm)  # the task head and the pre-training one
    names = {ours: hf for ours, hf in module_names(model).items() if not (hf + ".").startswith(heads)}
    if targets == ["all-linear"]:
        targets = sorted(set(names.values()))
    for target in targets:
        if not any(matches(hf, target) for hf in names.values()):
            raise ValueError(f"LoRA target {target!r} matches no linear layer of {model.architecture()} "
                             f"(e.g. {', '.join(sorted({hf.rsplit('.', 1)[-1] for hf in names.values()}))})")
    chosen = [ours for ours, hf in names.items() if any(matches(hf, t) for t in targets)]
    for ours in chosen:
        parent, _, leaf = ours.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, leaf, LoRALinear(getattr(owner, leaf), r, alpha, dropout, rslora))
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter(name) or in_head(model, name))
    model.lora = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": rslora,
                  "target_modules": sorted(targets)}
    return [names[ours] for ours in chosen]


def adapted(model: Pretrained) -> dict[str, LoRALinear]:
    """The model's LoRALinear modules, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merged_state(model: Pretrained, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's state dict with s B A folded into each adapted weight and the adapters left out: a plain
    checkpoint of the fine-tuned model (save_pretrained(state_dict=...)). `state`: the model's own state dict
    (the default) or one gathered from FSDP2's shards (cmi.distributed.model_state), with the same keys."""
    state = dict(model.state_dict() if state is None else state)
    for name, module in adapted(model).items():
        A, B = state.pop(f"{name}.lora_A.weight").float(), state.pop(f"{name}.lora_B.weight").float()
        W = state[f"{name}.weight"]
        state[f"{name}.weight"] = (W.float() + module.scaling * (B @ A)).to(W.dtype)
    return state


def adapter_state(model: Pretrained, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapters and the head, under peft's keys (base_model.model. + transformers' names)."""
    state = model.state_dict() if state is None else state
    names = module_names(model)
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        owner, _, part = module.rpartition(".")
        if part in ("lora_A", "lora_B"):
            out[f"{PREFIX}{names[owner]}.{part}.{leaf}"] = value
        elif in_head(model, key):
            out[PREFIX + model.layout.hf_name(key)] = value
    return out


def save_adapter(model: Pretrained, folder: str | os.PathLike, base: str,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """Write peft's two files for the model's adapters and head (of `state`, as merged_state's) into `folder`, as
    save_pretrained writes a model: a new folder swapped into place (common.files.write_folder), so an interrupted
    or failed save leaves the previous one; `base` is the checkpoint they adapt (base_model_name_or_path)."""
    config = model.lora | {
        "peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base, "bias": "none",
        "modules_to_save": head_modules(model), "init_lora_weights": True, "inference_mode": True,
        # GPT-2's Conv1D stores its weights (in, out): peft then says so; the adapters' shapes are the same
        "fan_in_fan_out": bool(model.layout.transposed),
    }
    tensors = {k: v.contiguous() for k, v in adapter_state(model, state).items()}
    try:
        write_folder(Path(folder), {
            "adapter_config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
            "adapter_model.safetensors": save(tensors, metadata={"format": "pt"})})
    except OSError as e:
        raise CheckpointError(f"{folder}: saving the adapter failed ({e.strerror or e}); the previous save there is "
                              "kept") from None


def load_adapter(model: Pretrained, folder: str | os.PathLike) -> list[str]:
    """Add the LoRA adapters that `folder` holds (ours or peft's: adapter_config.json and
    adapter_model.safetensors) to `model`, a model of the checkpoint they adapt, and load them and the head.
    CheckpointError, naming the file and the field or key, for a config this LoRA does not compute, or tensors
    that do not fit."""
    folder = Path(folder)
    path = folder / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the adapter's config ({e})") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise CheckpointError(f"{path}: peft_type {config.get('peft_type') if isinstance(config, dict) else None!r}, "
                              "expected 'LORA'")
    for field, default in UNSUPPORTED.items():
        if config.get(field) not in (None, default):
            raise CheckpointError(f"{path}: {field} = {config[field]!r} is not supported (expected {default!r})")
    targets = config.get("target_modules")
    targets = [targets] if isinstance(targets, str) else targets
    try:
        targeted = add_lora(model, int(config["r"]), float(config["lora_alpha"]),
                            float(config.get("lora_dropout", 0.0)), targets, bool(config.get("use_rslora", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    weights = folder / "adapter_model.safetensors"
    try:
        saved = load_file(weights)
    except Exception as e:  # OSError, or safetensors' own error for a damaged file
        raise CheckpointError(f"{weights}: cannot read it ({e})") from None
    # peft's in-memory names carry the adapter's name ("default"); its files do not, but accept both
    saved = {k.replace(".modules_to_save.default.", ".").replace(".default.", "."): v for k, v in saved.items()}
    ours = adapter_state(model)  # views of the model's parameters: copied into below
    missing = sorted(k for k in ours if k not in saved and is_adapter(k))
    if missing:
        raise CheckpointError(f"{weights}: has no {missing[0]!r} (another r, targets or base model)")
    with torch.no_grad():
        for key, target in ours.items():
            if key not in saved:  # a head module peft did not save: the base model's own
                continue
            if saved[key].shape != target.shape:
                raise CheckpointError(f"{weights}: {key} has shape {tuple(saved[key].shape)}, expected "
                                      f"{tuple(target.shape)}")
            target.copy_(saved[key])
    return targeted
