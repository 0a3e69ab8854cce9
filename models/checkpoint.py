"""Reading and writing Hugging Face checkpoint folders, the same way for every architecture in models/.

A folder holds config.json and the weights: model.safetensors, a sharded model.safetensors.index.json, or
pytorch_model.bin (read with weights_only=True, so a pickle that would run code is refused). Each architecture
describes its checkpoint names once, in a `Layout`; loading then goes:

1. config.json -> the config dataclass: model_type checked, unknown keys kept in `extra`, labels set;
2. weights -> one dict in transformers' names of the task model (`bert.encoder.layer.0...`): legacy
   `LayerNorm.gamma/beta` renamed, the base-model prefix added to bare BertModel / DistilBertModel keys,
   tied copies checked and dropped, buffers and unused heads (NSP, a decoder's LM head) dropped, GPT-2's
   Conv1D weights (stored in, out) transposed to nn.Linear's (out, in);
3. key sets and shapes must match exactly, except the task head (classifier, pooler), which keeps its fresh
   initialisation when the checkpoint lacks it or shapes it for another num_labels; then a strict load.
   Decoders (`Layout.meta`) are built on the meta device and take the checkpoint's tensors as their parameters,
   with no random float32 copy first; their fresh head is drawn then.
"""

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn
from huggingface_hub import snapshot_download
from safetensors.torch import load_file, save

from common.files import first_line, write_folder

log = logging.getLogger(__name__)

# BERT's WordPiece vocabulary; the fast tokenizers' file and its settings; and the other files a decoder's folder
# carries (GPT-2's vocab.json and merges.txt, SentencePiece's tokenizer.model, the chat template), kept with a saved
# model so that its folder is the whole tokenizer, as transformers wrote it
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja")
# In order of preference; an index names the shards that hold each key.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked. The message is one line naming the file or key."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one architecture's weights are named in Hugging Face checkpoints."""

    config_class: type
    prefix: str  # transformers' base_model_prefix + ".", absent from bare base-model checkpoints
    names: dict[str, str]  # our module -> transformers' module, "{}" standing for the layer index
    tied: dict[str, str]  # a key that repeats another (the MLM decoder = the word embeddings) -> that key
    heads: tuple[str, ...]  # key prefixes of the task head: may be missing or shaped for other labels
    mlm: str  # key prefix of the masked-LM head: the model gets one when the checkpoint has it
    ignored: tuple[str, ...]  # key prefixes of buffers and heads that we do not use ("{}" = layer index)
    transposed: tuple[str, ...] = ()  # weights stored (in, out) (GPT-2's Conv1D): transposed on reading and saving
    # Build on the meta device and assign the checkpoint's tensors (cast to the dtype asked for as each shard is
    # read): no random float32 model first, which for a 7B decoder is 28 GB and minutes of drawing. BERT and
    # DistilBERT keep False: built and initialised whole, so a fresh classifier draws what it always drew.
    meta: bool = False
    tie_flag: str | None = None  # the config field that turns `tied` on (decoders: tie_word_embeddings); None: always
    lora_targets: tuple[str, ...] = ()  # models.lora's default targets: the attention's query and value

    def hf_name(self, name: str) -> str:
        """Our parameter name -> transformers', e.g. bert.layers.3.attn.query.weight -> bert.encoder.layer.3.attention.self.query.weight."""
        module, leaf = name.rsplit(".", 1)
        template = re.sub(r"\.\d+\.", ".{}.", module)
        return self.names[template].format(*re.findall(r"\.(\d+)\.", module)) + "." + leaf


class Pretrained(nn.Module):
    """A task model that reads and writes Hugging Face checkpoint folders; subclasses set `layout`."""

    layout: Layout

    def __init__(self):
        super().__init__()
        # the tokenizer files of the folder from_pretrained read, kept in memory so that save_pretrained writes them
        # even when that folder is gone (a run that --overwrites the run whose best/ it started from)
        self.tokenizer_files: dict[str, bytes] = {}
        self.lora: dict | None = None  # the adapters' settings, once models.lora.add_lora has added them

    def architecture(self) -> str:
        """The transformers class that a saved folder holds (config.json's `architectures`): ours has its name."""
        return type(self).__name__

    def has_lm_head(self) -> bool:
        """Whether the model scores its pre-training loss (the gamma * L1 term of eq. 7): its head was loaded (`mlm`),
        or, in a decoder, it is the tied embeddings."""
        return self.mlm is not None

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, num_labels: int | None = None,
                        mlm: bool = True, dtype: torch.dtype = torch.float32) -> "Pretrained":
        """Load a checkpoint folder, or a hub name (downloaded once into the Hugging Face cache).

        num_labels defaults to the checkpoint's, whose classifier must then fit it (a config naming three labels over
        a classifier of two rows is an error, not two unnamed labels); a num_labels given loads the classifier when its
        shape fits, else initialises it afresh (and logs it). The masked-LM head is built when the checkpoint has one (`model.mlm`) and
        `mlm`; mlm=False drops it (a head the loss does not use would get no gradient, which DDP refuses). `dtype`:
        of the floating-point weights; a meta-built model (Layout.meta) reads each shard in it, so a bf16 checkpoint
        read as bf16 takes the file's tensors as they are, and needs its own size in memory, not a float32 copy too.
        """
        folder = resolve(name_or_path)
        config = read_config(folder, cls.layout.config_class, num_labels)
        state, source = read_weights(folder, cls.layout, config, dtype)
        try:
            with torch.device("meta") if cls.layout.meta else contextlib.nullcontext():
                model = cls(config, mlm=any(key.startswith(cls.layout.mlm) for key in state))
        except ValueError as e:  # a config value the architecture does not support, e.g. hidden_act
            raise CheckpointError(f"{folder / 'config.json'}: {e}") from None
        load_state(model, state, source, own_head=num_labels is None)
        model.to(dtype)  # a no-op where the weights were read in `dtype` (meta-built)
        if not mlm:  # dropped after loading, so the random draws of initialisation are those of the whole model
            model.mlm = None
        model.tokenizer_files = read_tokenizer_files(folder)
        return model

    def save_pretrained(self, path: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write config.json, model.safetensors (transformers' names, tied weights once; of `state_dict`, default
        the model's own: FSDP2's shards gathered, cmi.distributed.model_state) and the tokenizer files of
        `tokenizer_dir`, or those of the folder the model was loaded from. A temporary sibling folder is written and
        fsynced, then swapped into place, so an interrupted save leaves the old folder or the new one; a failed
        one (a full disk) raises CheckpointError and leaves the old folder. So a folder holding anything else (not
        a saved model's files) is refused: the swap would remove it; so is a file. A link to a folder is followed
        (common.files.write_folder)."""
        path = Path(path)
        if path.exists() and not path.is_dir():  # the swap would move the file away
            raise CheckpointError(f"{path}: exists and is not a folder; a model is saved as a folder of its own")
        others = sorted(p.name for p in path.iterdir() if not is_model_file(p.name)) if path.is_dir() else []
        if others:
            raise CheckpointError(f"{path}: holds {others[0]!r}, not a file of a saved model; a save replaces the folder "
                                  "as a whole, so it goes into a folder of its own")
        state = {self.layout.hf_name(k): v for k, v in (self.state_dict() if state_dict is None else state_dict).items()}
        state = {k: (v.t() if _matches(k, self.layout.transposed) else v).contiguous() for k, v in state.items()}
        config = config_dict(self.config, self.architecture())
        # transformers 5 loads a model in the dtype that config.json names (dtype, formerly torch_dtype): name the saved one
        dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
        config |= {key: dtype for key in ("dtype", "torch_dtype") if key in config}
        files = {
            "config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
            # bytes written by Python, not safetensors' save_file: its writer can drop a write error (ENOSPC)
            "model.safetensors": save(state, metadata={"format": "pt"}),
        }
        files |= self.tokenizer_files if tokenizer_dir is None else read_tokenizer_files(Path(tokenizer_dir))
        try:
            write_folder(path, files)
        except OSError as e:
            raise CheckpointError(f"{path}: saving the model failed ({e.strerror or e}); the previous save there is kept") from None


# ----------------------------------------------------------------------------------------------------------------
# reading


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A local checkpoint folder, or a hub name such as `bert-base-uncased` fetched into the Hugging Face cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: is a file, expected a checkpoint folder")
    if path.is_absolute() or str(name_or_path).startswith((".", "~")) or len(path.parts) > 2:
        raise CheckpointError(f"{path}: checkpoint folder does not exist")
    # Hub names are "name" or "org/name". Only config, weights and tokenizer are fetched, and pytorch_model.bin
    # only when the repository has no safetensors weights (hub repositories often hold both, and TF/Flax ones).
    patterns = ["config.json", *TOKENIZER_FILES, "model*.safetensors*"]
    try:
        folder = Path(snapshot_download(str(name_or_path), allow_patterns=patterns))
        if not any(folder.glob("model*.safetensors")):
            folder = Path(snapshot_download(str(name_or_path), allow_patterns=patterns + ["pytorch_model*.bin*"]))
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"{name_or_path!r} is not a local folder and could not be fetched from the Hugging Face hub ({first_line(e)}); "
            "offline, pass a local checkpoint folder"
        ) from None
    return folder


def is_model_file(name: str) -> bool:
    """A file of a saved model's folder: config.json, weights (their shards and indexes included), tokenizer files."""
    return (name in ("config.json", *WEIGHT_FILES, *TOKENIZER_FILES)
            or re.fullmatch(r"(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)", name) is not None)


def read_tokenizer_files(folder: Path) -> dict[str, bytes]:
    """The tokenizer files (TOKENIZER_FILES) that `folder` has: name -> bytes."""
    return {name: (folder / name).read_bytes() for name in TOKENIZER_FILES if (folder / name).is_file()}


def read_json(path: Path, error: type = None) -> dict:
    """A JSON object from `path`, or `error` (default CheckpointError) naming the file and what is wrong."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as e:
        raise (error or CheckpointError)(f"{path}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:  # UnicodeDecodeError included
        raise (error or CheckpointError)(f"{path}: not valid JSON ({first_line(e)})") from None
    if not isinstance(raw, dict):
        raise (error or CheckpointError)(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def read_config(folder: Path, config_class: type, num_labels: int | None = None):
    """config.json -> `config_class`; keys it does not name are kept in `config.extra` and written back on save."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json, so not a Hugging Face checkpoint folder")
    raw = read_json(path)
    model_type = raw.get("model_type")
    expected = getattr(config_class, "model_types", (config_class.model_type,))  # one class may serve several families
    if model_type not in expected:
        raise CheckpointError(f"{path}: model_type is {model_type!r}, expected {' or '.join(map(repr, expected))}")
    try:
        id2label = {int(i): label for i, label in (raw.get("id2label") or {}).items()}
    except (ValueError, TypeError, AttributeError):
        raise CheckpointError(f"{path}: id2label must map label numbers to names, got {raw.get('id2label')!r}") from None
    sizes = [f.name for f in dataclasses.fields(config_class) if f.type in (int, "int") and not f.name.endswith("_id")]
    for name in sizes:  # zero heads, a negative hidden size: a clear line, not a ZeroDivisionError deep in a module
        value = raw.get(name, 1)
        if name != "num_labels" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{path}: {name} must be a positive integer, got {value!r}")
    own = raw.get("num_labels", len(id2label) or 2)  # transformers writes id2label alone: its length is the count
    if id2label and len(id2label) != own:  # label_maps would drop the names: predictions would read LABEL_0
        raise CheckpointError(f"{path}: id2label names {len(id2label)} labels, num_labels is {own}; expected one "
                              "name per label")
    if num_labels is None:
        num_labels = own
    if num_labels < 2:
        raise CheckpointError(f"num_labels must be at least 2 for classification, got {num_labels}")
    id2label, label2id = label_maps(num_labels, id2label, raw.get("label2id"))
    labels = {"num_labels", "id2label", "label2id"}
    fields = {f.name for f in dataclasses.fields(config_class)} - labels - {"extra"}
    return config_class(
        **{k: v for k, v in raw.items() if k in fields},
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
        # "architectures" is rewritten on save, to the class saved.
        extra={k: v for k, v in raw.items() if k not in fields | labels | {"architectures"}},
    )


def label_maps(num_labels: int, id2label: dict | None, label2id: dict | None) -> tuple[dict, dict]:
    """The given label names when there are num_labels of them, else transformers' LABEL_0, LABEL_1, ..."""
    if not id2label or len(id2label) != num_labels:
        id2label, label2id = {i: f"LABEL_{i}" for i in range(num_labels)}, None
    return id2label, label2id or {label: i for i, label in id2label.items()}


def config_dict(config, architecture: str) -> dict:
    """The config.json of `config`: its fields over the unknown keys it was read with. A field that only some
    families read (metadata "model_types", in a config class serving several) is left out of the others' files
    while it holds its default: transformers takes a Mistral config naming layer_types for another model."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra" and (
        config.model_type in f.metadata.get("model_types", (config.model_type,)) or getattr(config, f.name) != f.default)}
    fields["id2label"], fields["label2id"] = label_maps(config.num_labels, config.id2label, config.label2id)
    return {**config.extra, **fields, "architectures": [architecture]}


def read_weights(folder: Path, layout: Layout, config, dtype: torch.dtype | None = None
                 ) -> tuple[dict[str, torch.Tensor], Path]:
    """The folder's weights in transformers' names of the task model, and the file they came from; with `dtype`
    (meta-built layouts), the floating-point ones cast to it shard by shard, so that a shard's own tensors are
    released before the next one is read."""
    cast = dtype is not None and layout.meta

    def read(path: Path) -> dict[str, torch.Tensor]:
        state = _read_file(path)
        return {k: v.to(dtype) if cast and v.is_floating_point() else v for k, v in state.items()}

    path = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if path is None:
        raise CheckpointError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})")
    if path.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{path}: not a shard index with a weight_map ({e!r})") from None
        state = {k: v for shard in shards for k, v in read(folder / shard).items()}
    else:
        state = read(path)

    state = {re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k)): v for k, v in state.items()}
    if not any(k.startswith(layout.prefix) for k in state):  # a bare BertModel / DistilBertModel / LlamaModel checkpoint
        state = {layout.prefix + k: v for k, v in state.items()}
    state = {k: v.t().contiguous() if _matches(k, layout.transposed) else v for k, v in state.items()}
    tied = layout.tied if layout.tie_flag is None or getattr(config, layout.tie_flag) else {}
    for alias, key in tied.items():
        if alias in state:
            value = state.pop(alias)
            if key in state and not torch.equal(state[key], value):
                why = f"config.json's {layout.tie_flag} ties them" if layout.tie_flag else "untied MLM decoders are not supported"
                raise CheckpointError(f"{path}: {alias} differs from {key}; {why}")
            state.setdefault(key, value)
    return {k: v for k, v in state.items() if not _matches(k, layout.ignored)}, path


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `key` starts with one of `prefixes`, "{}" in them standing for a layer index."""
    return any(re.match(re.escape(p).replace(r"\{\}", r"\d+"), key) for p in prefixes)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:  # weights_only: a pickle is unpickled only as tensors and plain containers, never as code
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message is many lines of advice to turn the check off
        raise CheckpointError(f"{path}: refused, not a pickle of plain tensors (a full unpickle could run code), or corrupt") from None
    except Exception as e:  # truncated, corrupt or missing: the reader's own reason
        raise CheckpointError(f"{path}: cannot read weights ({first_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors")
    return state


def load_state(model: Pretrained, state: dict[str, torch.Tensor], source: Path, own_head: bool = False) -> None:
    """Copy `state` (transformers' names) into `model`: every key must match, but a task head may stay fresh,
    unless `own_head` (the model has the checkpoint's own label count): then its head must fit too. A model built
    on the meta device (Layout.meta) takes the tensors themselves (read_weights cast them), and its fresh head is
    drawn in float32."""
    ours = model.state_dict()
    on_meta = model.layout.meta
    names = {model.layout.hf_name(k): k for k in ours}
    unexpected = sorted(state.keys() - names.keys())
    if unexpected:
        raise CheckpointError(f"{source}: unexpected keys for {type(model).__name__}: {_some(unexpected)}")
    missing = sorted(k for k in names.keys() - state.keys() if not k.startswith(model.layout.heads))
    if missing:
        raise CheckpointError(f"{source}: missing keys: {_some(missing)}")
    fresh = []
    for hf, k in names.items():
        if hf in state and state[hf].is_floating_point() != ours[k].is_floating_point():  # fp16/bf16 are cast
            raise CheckpointError(f"{source}: {hf} has dtype {state[hf].dtype}, expected {ours[k].dtype}")
        if hf in state and state[hf].shape == ours[k].shape:
            ours[k] = state[hf]
        elif hf in state and not hf.startswith(model.layout.heads):
            raise CheckpointError(f"{source}: {hf} has shape {tuple(state[hf].shape)}, the config gives {tuple(ours[k].shape)}")
        elif hf in state and own_head:
            raise CheckpointError(f"{source}: {hf} has shape {tuple(state[hf].shape)}, but config.json names "
                                  f"{model.config.num_labels} labels (id2label), shape {tuple(ours[k].shape)}; "
                                  "expected one label name per classifier row")
        else:
            fresh.append(hf)
            if on_meta:  # transformers' draw for a fresh Linear layer: weight normal(0, initializer_range), bias 0
                ours[k] = torch.zeros_like(ours[k], device="cpu") if k.endswith(".bias") else \
                    torch.empty_like(ours[k], device="cpu").normal_(std=model.config.initializer_range)
    model.load_state_dict(ours, strict=True, assign=on_meta)
    if fresh:
        log.warning("%s: newly initialised, train before use (not in the checkpoint, or shaped for other labels): %s", source, ", ".join(fresh))


def _some(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
