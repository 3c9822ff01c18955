"""Sliced normalisation layers.

``SlicedBatchNorm2d`` shares prefix-sliced affine weights between widths but keeps **private
running statistics per key** (by default the active width): shared statistics break thin
sub-nets (DS-Net, US-Nets). ``SlicedLayerNorm`` normalises over the active prefix of the
embedding and slices its affine weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import ViewMemo

__all__ = ["SlicedBatchNorm2d", "SlicedLayerNorm"]


class SlicedBatchNorm2d(ViewMemo, nn.Module):
    """BatchNorm2d over a channel prefix with one row of running statistics per stat key.

    Args:
        max_features: stored channels (capacity).
        stat_keys: the keys that get private running statistics, usually the allowed active
            widths. A BN whose input distribution depends on another slice (e.g. the last BN of
            a bottleneck, whose input comes from the sliced inner width) is keyed by that one.
        eps, momentum: as ``nn.BatchNorm2d``.
    """

    def __init__(
        self,
        max_features: int,
        stat_keys: Sequence[int],
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        keys = tuple(sorted({int(k) for k in stat_keys}))
        if not keys:
            raise ValueError("SlicedBatchNorm2d needs at least one stat key")
        self.max_features = max_features
        self.stat_keys = keys
        self._row = {k: i for i, k in enumerate(keys)}
        self.eps = eps
        self.momentum = momentum
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(max_features, **kw))
        self.bias = nn.Parameter(torch.zeros(max_features, **kw))
        n = len(keys)
        self.register_buffer("running_mean", torch.zeros(n, max_features, **kw))
        self.register_buffer("running_var", torch.ones(n, max_features, **kw))
        self.register_buffer("num_batches_tracked", torch.zeros(n, dtype=torch.long, device=device))
        self._init_views()

    def row(self, key: int) -> int:
        try:
            return self._row[key]
        except KeyError:
            raise ValueError(
                f"BatchNorm has no statistics for key {key}; keys: {list(self.stat_keys)}"
            ) from None

    def forward(self, x: Tensor, key: int | None = None) -> Tensor:
        """x: (B, C, H, W), C <= max_features; ``key`` defaults to C."""
        c = x.shape[1]
        r = self.row(c if key is None else key)
        if self.training:
            self.num_batches_tracked[r] += 1
        mean, var, w, b = self.sliced_tensors(r, c)
        return F.batch_norm(x, mean, var, w, b, self.training, self.momentum, self.eps)

    def sliced_tensors(self, row: int, features: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(running mean, running var, weight, bias) views of statistics row ``row`` and the
        first ``features`` channels; memoised outside autograd (see :mod:`._views`)."""
        rm, rv, w, b = self.running_mean, self.running_var, self.weight, self.bias
        if torch.is_grad_enabled():
            return rm[row, :features], rv[row, :features], w[:features], b[:features]
        key = (row, features)
        token = (rm.data_ptr(), rv.data_ptr(), w.data_ptr(), b.data_ptr())
        hit = self._views.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        views = (rm[row, :features], rv[row, :features], w[:features], b[:features])
        self._memo_put(key, (token, views))
        return views

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    @staticmethod
    def params(features: int) -> int:
        return 2 * features

    @torch.no_grad()
    def dense_copy(self, features: int, key: int | None = None) -> nn.BatchNorm2d:
        r = self.row(features if key is None else key)
        bn = nn.BatchNorm2d(
            features, self.eps, self.momentum, device=self.weight.device, dtype=self.weight.dtype
        )
        bn.weight.copy_(self.weight[:features])
        bn.bias.copy_(self.bias[:features])
        bn.running_mean.copy_(self.running_mean[r, :features])
        bn.running_var.copy_(self.running_var[r, :features])
        bn.num_batches_tracked.copy_(self.num_batches_tracked[r])
        return bn

    def extra_repr(self) -> str:
        return f"max_features={self.max_features}, stat_keys={list(self.stat_keys)}"


class SlicedLayerNorm(ViewMemo, nn.Module):
    """LayerNorm over the active embedding prefix ``x[..., :e]`` with sliced affine weights."""

    def __init__(
        self,
        max_dim: int,
        *,
        eps: float = 1e-6,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_dim = max_dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(max_dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(max_dim, device=device, dtype=dtype))
        self._init_views()

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., e) with e <= max_dim -> (..., e)."""
        e = x.shape[-1]
        w, b = self.weight, self.bias
        if torch.is_grad_enabled():
            return F.layer_norm(x, (e,), w[:e], b[:e], self.eps)
        token = (w.data_ptr(), b.data_ptr())
        hit = self._views.get(e)
        if hit is None or hit[0] != token:
            hit = (token, w[:e], b[:e])
            self._memo_put(e, hit)
        return F.layer_norm(x, (e,), hit[1], hit[2], self.eps)

    @staticmethod
    def params(dim: int) -> int:
        return 2 * dim

    @torch.no_grad()
    def dense_copy(self, dim: int) -> nn.LayerNorm:
        ln = nn.LayerNorm(dim, eps=self.eps, device=self.weight.device, dtype=self.weight.dtype)
        ln.weight.copy_(self.weight[:dim])
        ln.bias.copy_(self.bias[:dim])
        return ln
