"""Where and how a run computes, decided once (`setup`): the seeds, the device, the precision (cmi/precision.py),
whether to compile, the padding, the processes under torchrun (data parallel, or sharded with --fsdp); and the
model made ready to run there (`Runtime.wrap`)."""
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch._functorch.config
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP

from cmi.distributed import world_size
from cmi.precision import Float32, precision
from common.errors import TrainingError
from models.bert import Layers

AMP_DTYPES = {"on": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}  # --amp (auto: bf16 on CUDA)


@dataclass
class Runtime:
    """Where and how a run computes, decided once by `setup`."""

    device: torch.device
    precision: Float32        # float32, or autocast in bf16 / fp16
    compile: bool             # torch.compile the model
    pad_multiple: int | None  # batches padded to a multiple of this many tokens
    unpad: bool               # our models compute the real tokens only (models/unpadded.py)
    fsdp: bool = False        # under torchrun, FSDP2 shards the parameters, gradients and AdamW's moments

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model moved to the device, and the module the steps call: compiled (CUDA), and under torchrun
        wrapped in DDP, so that backward averages the gradients over the processes (the model itself otherwise);
        with `fsdp` sharded instead (shard)."""
        model.to(self.device)
        if self.fsdp:
            return shard(model, self.device, self.precision.dtype)
        if self.compile and self.precision.dtype is not None:
            # under autocast the CMI term may be backpropagated on its own through the same graph
            # (cmi.precision.backward), which needs retain_graph; a compiled backward that donates its saved
            # buffers refuses that
            torch._functorch.config.donated_buffer = False
        runs = torch.compile(model, dynamic=True) if self.compile else model
        if world_size() > 1:
            runs = DDP(runs, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return runs


def shard(model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None) -> torch.nn.Module:
    """FSDP2 over the processes: each layer its own unit (its parameters gathered just for its forward and its
    backward), then the root (embeddings, final norm, heads). Each process keeps 1 / world of the parameters,
    gradients and AdamW's moments. Gradients are reduced in float32; parameters are gathered in the autocast dtype
    (--amp) or float32. fully_shard changes `model` in place: it is also the module the steps call."""
    mesh = init_device_mesh(device.type, (world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for stack in [m for m in model.modules() if isinstance(m, Layers)]:
        for layer in stack:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def setup(seed: int, device: str = "auto", amp: str = "auto", compile: str = "auto", pad_multiple: int | None = None,
          padded: bool = False, fsdp: bool = False) -> Runtime:
    """Seed everything; pick the device, the precision (`amp`: --amp), whether to compile, and the padding. Started
    by torchrun (WORLD_SIZE set), join the process group: NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK),
    Gloo on CPU."""
    # CPU tensors of 2 MB or more on transparent huge pages (c10's allocator reads this at its first allocation):
    # the word embeddings' dense gradient is allocated afresh every step, and on 4 kB pages its first touch is a
    # page fault every 4 kB (docs/results.md, "Performance")
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # the same on every process: DDP also broadcasts rank 0's weights
    where = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                         "cpu" if device == "auto" else device)
    cuda = where.type == "cuda"
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if cuda:
            where = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if cuda else "gloo")
    if fsdp and compile == "on":
        raise TrainingError("--compile on: an --fsdp model is not compiled (Runtime.wrap); leave one of them out")
    if fsdp and world_size() < 2:
        raise TrainingError("--fsdp shards the model over torchrun's processes: start the script with torchrun "
                            "--nproc_per_node N (N >= 2), or leave --fsdp out")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = AMP_DTYPES.get(amp, torch.bfloat16 if amp == "auto" and cuda else None)
    if dtype == torch.bfloat16 and not cuda and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(f"warning: --amp {amp}: this CPU has no native bf16 (avx512_bf16 or AMX), so bf16 autocast is "
              "emulated and slower than float32; --amp off is faster here", file=sys.stderr)
    return Runtime(device=where, precision=precision(where, dtype),
                   # compiling pays back within a run on CUDA, not on CPU (docs/results.md, "Performance")
                   compile=compile == "on" or (compile == "auto" and cuda),
                   # 8 on CUDA: tensor-core friendly widths, fewer shapes to compile; none on CPU
                   pad_multiple=pad_multiple or (8 if cuda else None), unpad=not padded, fsdp=fsdp)
