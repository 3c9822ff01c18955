"""Sliced linear layer: ``weight[:out, :in]`` of one stored matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import ViewMemo

__all__ = ["SlicedLinear"]


class SlicedLinear(ViewMemo, nn.Module):
    """Linear layer whose active in/out features are prefixes of the stored ones.

    Args:
        max_in_features: stored input features (capacity).
        max_out_features: stored output features (capacity).
        bias: whether a bias vector is stored.
    """

    def __init__(
        self,
        max_in_features: int,
        max_out_features: int,
        *,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_in_features = max_in_features
        self.max_out_features = max_out_features
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(max_out_features, max_in_features, **kw))
        self.bias = nn.Parameter(torch.zeros(max_out_features, **kw)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02)
        self._init_views()

    def forward(self, x: Tensor, out_features: int | None = None) -> Tensor:
        """x: (..., F_in) with F_in <= max_in_features -> (..., out_features)."""
        k = self.max_out_features if out_features is None else out_features
        c = x.shape[-1]
        weight, bias = self.weight, self.bias
        if torch.is_grad_enabled():
            return F.linear(x, weight[:k, :c], None if bias is None else bias[:k])
        token = (weight.data_ptr(), None if bias is None else bias.data_ptr())
        hit = self._views.get((c, k))
        if hit is None or hit[0] != token:
            hit = (token, weight[:k, :c], None if bias is None else bias[:k])
            self._memo_put((c, k), hit)
        return F.linear(x, hit[1], hit[2])

    @staticmethod
    def macs(in_features: int, out_features: int, tokens: int = 1) -> int:
        return in_features * out_features * tokens

    def params(self, in_features: int, out_features: int) -> int:
        return in_features * out_features + (out_features if self.bias is not None else 0)

    @torch.no_grad()
    def dense_copy(self, in_features: int, out_features: int) -> nn.Linear:
        """A plain ``nn.Linear`` holding a dense copy of the active slice."""
        lin = nn.Linear(
            in_features,
            out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        lin.weight.copy_(self.weight[:out_features, :in_features])
        if self.bias is not None:
            lin.bias.copy_(self.bias[:out_features])
        return lin

    def extra_repr(self) -> str:
        return f"max_in={self.max_in_features}, max_out={self.max_out_features}"
