"""Data parallelism under torchrun: this process's rank, the number of processes, and a sum over them. In a
single-process run they are 0, 1 and the identity."""
import os

import torch
import torch.distributed as dist


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
