"""Data parallelism under torchrun: this process's rank, the number of processes, and a sum over them. In a
single-process run they are 0, 1 and the identity. And the whole state of a model or an optimizer whose parameters
FSDP2 shards over the processes (--fsdp), gathered for a checkpoint, and put back from one."""
import os

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import FSDPModule


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


def sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 (fully_shard) shards `model`'s parameters over the processes."""
    return isinstance(model, FSDPModule)


# gathered on rank 0 (on the CPU; the other ranks get {}); every process must call, as each holds a shard
WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: torch.nn.Module) -> dict:
    """model.state_dict(), whole (on rank 0) where FSDP2 shards it. A collective then: every process calls it."""
    return get_model_state_dict(model, options=WHOLE) if sharded(model) else model.state_dict()


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict(), whole (on rank 0, keyed by parameter name) where FSDP2 shards the model."""
    return get_optimizer_state_dict(model, optimizer, options=WHOLE) if sharded(model) else optimizer.state_dict()


def load_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optimizer_sd: dict) -> None:
    """Put back what model_state and optimizer_state gave (every process has read the checkpoint)."""
    if not sharded(model):
        model.load_state_dict(model_sd)
        optimizer.load_state_dict(optimizer_sd)
        return
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_sd, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_sd, options=options)
