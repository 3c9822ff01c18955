"""One Stage I optimisation step: the sandwich rule with in-place bootstrapping.

Per batch the sub-nets are, in this order: the largest, the smallest and ``num_random``
uniformly random configs (or one fixed config in ``single_config`` mode). Each runs forward
and backward in turn (gradients accumulate; peak memory is one sub-net's graph), then ONE
optimizer step, then the EMA teacher update.

Targets by ``distill`` mode:

- ``ib``: largest on labels (label-smoothed CE); the others on the EMA teacher's soft output at
  the largest config (soft CE, T=1), computed once per batch without gradients. With
  ``ib_ensemble`` the smallest sub-net's target is instead the mean of the teacher's outputs at
  the largest and at the step's random configs (DS-Net's "ensemble IB", off by default).
- ``inplace``: as ``ib`` but the teacher is the current largest sub-net's detached output
  (AutoSlim / US-Nets in-place distillation).
- ``none``: every sub-net on labels.

With MvCo the batch is two augmented views stacked (2B samples) and the soft targets are
:func:`~.losses.mvco_targets` (each view's target = the teacher's mean over both views).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import SliceSpace, SubnetConfig
from ..data import make_views
from .config import TrainConfig
from .distributed import Shard, allreduce_grads
from .ema import EmaTeacher
from .losses import label_smoothed_ce, mvco_targets, soft_ce

__all__ = ["SandwichStep", "StepStats"]


@dataclass
class StepStats:
    loss_largest: float
    loss_total: float
    n_subnets: int


class SandwichStep:
    """Callable doing one training step on a batch.

    Args:
        net: the supernet being trained (``net(x, cfg)``).
        space: its slice grid.
        cfg: training config (``num_random``, ``distill``, ``label_smoothing``, ``augment``).
        teacher: the EMA teacher (``distill == "ib"`` only).
        mvco: use two views and multi-view consistency targets.
        single: train only this config on labels (overrides the sandwich rule).
        flip_ok: the data allows horizontal flips in view augmentation.
        shard: data-parallel place; ``x`` is then this rank's rows of the global batch and the
            gradients are averaged over ranks before the optimizer step
            (:mod:`.distributed`).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        space: SliceSpace,
        cfg: TrainConfig,
        *,
        teacher: EmaTeacher | None = None,
        mvco: bool = False,
        single: SubnetConfig | None = None,
        flip_ok: bool = False,
        shard: Shard | None = None,
    ) -> None:
        if cfg.distill == "ib" and single is None and teacher is None:
            raise ValueError("distill='ib' needs an EMA teacher")
        self.net, self.space, self.cfg = net, space, cfg
        self.teacher, self.mvco, self.single, self.flip_ok = teacher, mvco, single, flip_ok
        self.largest = space.largest()
        self.shard = shard or Shard()

    def configs(self, rng: random.Random) -> list[SubnetConfig]:
        """The sub-nets of one step, in run order."""
        if self.single is not None:
            return [self.single]
        return [self.largest, self.space.smallest()] + [
            self.space.sample(rng) for _ in range(self.cfg.num_random)
        ]

    def views(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """(B, C, H, W) -> (V*B, C, H, W), V = 2 with MvCo else 1."""
        b, world = x.shape[0], self.shard.world
        part = (self.shard.rank * b, b * world) if world > 1 else None
        if self.mvco:
            return torch.cat(make_views(x, gen, 2, flip=self.flip_ok, part=part))
        if self.cfg.augment:
            return make_views(x, gen, 1, flip=self.flip_ok, part=part)[0]
        return x

    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        rng: random.Random,
        gen: torch.Generator,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> StepStats:
        """x: (B, C, H, W), y: (B,) -> one optimizer step; returns the losses."""
        cfg, net = self.cfg, self.net
        n_views = 2 if self.mvco else 1
        xv = self.views(x, gen)
        yv = y.repeat(n_views)
        configs = self.configs(rng)
        distill = "none" if self.single is not None else cfg.distill

        def targets_from(logits: Tensor) -> Tensor:
            return mvco_targets(logits, n_views)

        soft: Tensor | None = None
        soft_smallest: Tensor | None = None  # ensemble IB: the smallest sub-net's own target
        if distill == "ib":
            with torch.no_grad(), autocast():
                soft = targets_from(self.teacher(xv, self.largest))
                if cfg.ib_ensemble and len(configs) > 2:
                    outs = [soft] + [targets_from(self.teacher(xv, c)) for c in configs[2:]]
                    soft_smallest = torch.stack(outs).mean(0)

        net.train()
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, sub in enumerate(configs):
            with autocast():
                out = net(xv, sub)
            if distill == "none" or i == 0:
                loss = label_smoothed_ce(out.float(), yv, cfg.label_smoothing)
            else:
                loss = soft_ce(out, soft_smallest if i == 1 and soft_smallest is not None else soft)
            if i == 0 and distill == "inplace":
                soft = targets_from(out.detach())
            (scaler.scale(loss) if scaler is not None else loss).backward()
            losses.append(loss.detach().float())
        # one collective per step: gradients and the losses averaged over data-parallel ranks
        loss_vec = allreduce_grads(net.parameters(), torch.stack(losses), self.shard).tolist()
        total, first = sum(loss_vec), loss_vec[0]
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if self.teacher is not None:
            self.teacher.update(net)
        return StepStats(first, total, len(configs))
