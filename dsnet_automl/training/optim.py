"""Optimizer and learning-rate schedule of a :class:`TrainConfig` (stepped every batch)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..supernets.base import CNN_RECIPE
from .config import TrainConfig, with_recipe

__all__ = ["WarmupCosine", "build_optimizer"]


class WarmupCosine:
    """LR multiplier at step ``s``: linear warm-up from ~0 to 1 over ``warmup`` steps, then
    cosine down to ``min_ratio`` at ``total`` steps. A callable object (not a lambda), so
    ``LambdaLR.state_dict`` keeps it."""

    def __init__(self, total: int, warmup: int, min_ratio: float = 0.0) -> None:
        self.total, self.warmup, self.min_ratio = max(1, total), max(0, warmup), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def build_optimizer(
    net: nn.Module, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD (nesterov) or AdamW; no weight decay on norms and biases (tensors with ndim <= 1).
    Optimizer, lr and weight decay left unset in ``cfg`` come from ``net.default_recipe`` (the
    run's config keeps them unset, so a resume compares what the user gave)."""
    cfg = with_recipe(cfg, getattr(net, "default_recipe", CNN_RECIPE))
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0
        )
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupCosine(total, round(cfg.warmup_epochs * steps_per_epoch), cfg.min_lr_ratio)
    )
    return opt, sched
