"""Data-parallel Stage I: each rank trains on its slice of every global batch.

Why not ``DistributedDataParallel``: DDP's reducer assumes one forward/backward over a fixed
graph per step and all-reduces during backward. The sandwich rule runs 2 + N forward/backward
passes per step over *different parameter subsets* (slices), so DDP would need
``find_unused_parameters`` plus ``no_sync`` juggling, and all-reduce up to 2 + N times. Instead
every rank accumulates the gradients of all its passes locally and :func:`allreduce_grads`
averages them ONCE per step, in a few flat buckets, together with the step's losses (so every
rank sees the same loss and takes the same control flow, e.g. the non-finite-loss stop).

Equivalence with one process: the global batch order depends only on ``(seed, epoch)``; rank
``r`` of ``W`` takes rows ``[r*B/W, (r+1)*B/W)`` of each global batch; the random sub-nets of
step ``s`` come from ``(seed, s)`` on every rank; view augmentation draws its random numbers
for the *global* batch and keeps this rank's rows. Per-rank losses are means over equal-sized
slices, so the averaged gradient is the single-process gradient. The one difference is
BatchNorm: training-mode statistics are per rank (as with DDP without SyncBN); LayerNorm-only
ViTs match a single process to float rounding.

The process group is whatever launched us (Ray Train's ``TorchTrainer``, ``torchrun``): gloo on
CPU, nccl on GPU. Without an initialised group, :meth:`Shard.current` is rank 0 of 1 and
nothing here communicates.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import DsnetError

__all__ = ["Shard", "allreduce_grads", "broadcast_state"]


@dataclass(frozen=True)
class Shard:
    """This process's place in a data-parallel run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> Shard:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        return cls()

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes checkpoints, metrics and progress."""
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Samples per rank in a global batch of ``batch_size`` (must divide evenly)."""
        if batch_size % self.world:
            raise DsnetError(
                f"batch_size={batch_size} is not divisible by the {self.world} data-parallel "
                f"workers; use a multiple of {self.world} (it is the global batch size)"
            )
        return batch_size // self.world

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous rows of a global batch of ``batch_size``."""
        n = self.local_batch(batch_size)
        return slice(self.rank * n, (self.rank + 1) * n)


def allreduce_grads(params: Iterable[torch.nn.Parameter], extra: Tensor, shard: Shard) -> Tensor:
    """Average the gradients of ``params`` and the values ``extra`` over all ranks, in place.

    Parameters without a gradient on this rank count as zeros (every rank must send the same
    buckets). Gradients are flattened into one bucket per (device, dtype): one collective call
    per step for a float32 model. Returns the averaged ``extra``.
    """
    if shard.world == 1:
        return extra
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        buckets.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    key = (extra.device, extra.dtype)
    buckets.setdefault(key, [])
    for (device, dtype), grads in buckets.items():
        parts = [g.reshape(-1) for g in grads]
        if (device, dtype) == key:
            parts.append(extra.reshape(-1))
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= shard.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        if (device, dtype) == key:
            extra = flat[offset:].view_as(extra)
    return extra


def broadcast_state(module: torch.nn.Module, shard: Shard) -> None:
    """Make every rank's parameters and buffers rank 0's (start of a run or a resume)."""
    if shard.world == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)
