"""How bench.py and scripts/bench_diagnostics.py time things: contenders alternated in one process (A B, B A, ...)
so that the load of a shared machine falls on each alike, paired ratios with their quartiles, peak memory, the
shapes torch.compile made, FLOP counts and the device's matrix-product rate."""
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import MemoryProfileTimeline  # no public API gives the CPU timeline

from models.bert import SelfAttention

MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}  # n of the n x n x n product that gives the device's FLOP rate


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: dict, repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Call every contender `warmup` times untimed, then `repeats` timed rounds of one call each, the order
    reversed every other round (A B, B A, ...) so that a drift in the machine's load falls on all alike.
    Returns each contender's seconds per call."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    seconds = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            seconds[name].append(timed(contenders[name], device)[1])
    return seconds


def timed(call, device: torch.device):
    """call()'s result and the wall seconds it took, the device's queue drained before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    result = call()
    synchronize(device)
    return result, time.perf_counter() - t0


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of one contender's time over the other's in the same round, and its quartiles (the
    spread the machine's noise leaves): calls adjacent in time share the machine's load, so this ratio is
    steadier than a ratio of medians on a shared machine."""
    ratios = [n / d for n, d in zip(numerator, denominator)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    return median, [q1, q3]


def compiled_graphs() -> int:
    """Graphs torch.compile has built so far in this process (recompiles included)."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def peak_memory_mib(call, device: torch.device) -> float:
    """The memory one call allocates at its peak above what was allocated before it (activations, gradients,
    temporaries), in MiB. On CUDA from the allocator's counters (under CUDA graphs the graphs' memory pool, held
    since their recording, is not counted); on CPU, where no allocator keeps the figure, from the timeline of
    the allocations the profiler records during the call."""
    if device.type != "cuda":
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            call()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(device)
        return max(map(sum, sizes), default=0) / 2**20
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def synthetic_batch(vocab_size: int, num_labels: int, batch_size: int, seq_len: int, seed: int, device) -> dict:
    """A batch in collate's format: real lengths drawn from [T/2, T] (one of them T), the rest padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(1, seq_len // 2), seq_len + 1, (batch_size,), generator=g)
    lengths[0] = seq_len
    mask = (torch.arange(seq_len) < lengths[:, None]).long()
    batch = {
        "input_ids": torch.randint(1000, vocab_size, (batch_size, seq_len), generator=g) * mask,  # 0 = [PAD]
        "attention_mask": mask,
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, num_labels, (batch_size,), generator=g),
        "index": torch.arange(batch_size),
    }
    return {k: v.to(device) for k, v in batch.items()}


def step_flops(model, attention_mask: torch.Tensor) -> tuple[float, float]:
    """FLOPs of one training step (forward and backward), 6 N tokens + 12 L T d tokens, with N the parameters
    outside the embedding tables, L layers, d the hidden size and T the attended length: counted over the real
    tokens (each sequence its own T) and over all padded slots (T the padded width)."""
    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    L, d = len(attention), attention[0].query.in_features
    N = sum(p.numel() for p in model.parameters()) - sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    lengths = attention_mask.sum(1).double()
    B, T = attention_mask.shape
    real = 6 * N * lengths.sum() + 12 * L * d * (lengths**2).sum()
    return float(real), float(6 * N * B * T + 12 * L * d * B * T**2)


def matmul(device: torch.device, dtype: torch.dtype):
    """A call doing one n x n x n matrix product, and its FLOPs: the device's attainable rate at this dtype."""
    n = MATMUL_SIZE[device.type]
    a, b, c = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(3))
    # into a kept output: a fresh n x n result after a big model's step can page-fault its way in (on CPU it
    # halved the measured rate), which is allocation, not the matrix-product rate
    return (lambda: torch.matmul(a, b, out=c)), 2.0 * n**3


def rates(seconds: list[float], examples: int, tokens: int, slots: int) -> dict:
    s = statistics.median(seconds)
    return {"seconds": s, "samples_per_s": examples / s, "tokens_per_s": tokens / s, "slots_per_s": slots / s,
            "repeats": len(seconds), "all_seconds": seconds}


def epoch_figures(turns: list[float], batches: list[np.ndarray], num_train: int) -> dict:
    """Totals of the timed turns, and the epoch time at their rate."""
    examples, seconds = sum(len(b) for b in batches), sum(turns)
    return {"seconds": seconds, "batches": len(batches), "examples": examples, "samples_per_s": examples / seconds,
            "epoch_seconds": num_train / examples * seconds, "all_seconds": turns}
