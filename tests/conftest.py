"""Shared test helpers."""

from __future__ import annotations

import os

import pytest
import torch

from dsnet_automl.slicing import SlicedBatchNorm2d

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@torch.no_grad()
def randomize_norms(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN/LN random affine weights and running statistics, so that equality tests
    are not vacuous (fresh BN is the identity, zero-initialised last-BN hides a branch)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        is_norm = isinstance(m, SlicedBatchNorm2d | torch.nn.BatchNorm2d | torch.nn.LayerNorm)
        if is_norm and getattr(m, "weight", None) is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if isinstance(m, SlicedBatchNorm2d | torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


@pytest.fixture
def rand_norms():
    return randomize_norms
