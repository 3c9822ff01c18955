"""Transformer MLP sliced by hidden width (MLP ratio) and by the active embedding prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import SlicedLinear

__all__ = ["SlicedMlp", "mlp_hidden"]


def mlp_hidden(embed_dim: int, mlp_ratio: float) -> int:
    """Hidden width of an MLP with ratio ``mlp_ratio`` over an ``embed_dim`` input."""
    return max(1, round(embed_dim * mlp_ratio))


class SlicedMlp(nn.Module):
    """fc1 -> GELU -> fc2 with ``fc1.weight[:hidden, :e]`` and ``fc2.weight[:e, :hidden]``."""

    def __init__(
        self,
        max_embed_dim: int,
        max_hidden: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_embed_dim = max_embed_dim
        self.max_hidden = max_hidden
        self.fc1 = SlicedLinear(max_embed_dim, max_hidden, device=device, dtype=dtype)
        self.fc2 = SlicedLinear(max_hidden, max_embed_dim, device=device, dtype=dtype)

    def forward(self, x: Tensor, hidden: int | None = None) -> Tensor:
        """x: (B, N, e) -> (B, N, e), ``hidden`` active hidden units (default: all)."""
        e = x.shape[-1]
        return self.fc2(F.gelu(self.fc1(x, hidden)), e)

    def macs(self, embed_dim: int, hidden: int, tokens: int) -> int:
        return 2 * tokens * embed_dim * hidden

    def params(self, embed_dim: int, hidden: int) -> int:
        return self.fc1.params(embed_dim, hidden) + self.fc2.params(hidden, embed_dim)

    @torch.no_grad()
    def dense_copy(self, embed_dim: int, hidden: int) -> nn.Module:
        """A ``timm.layers.Mlp`` holding dense copies of the active slices."""
        from timm.layers import Mlp  # imported here: timm costs ~3 s of CLI start-up

        w = self.fc1.weight
        mlp = Mlp(embed_dim, hidden, act_layer=nn.GELU, device=w.device, dtype=w.dtype)
        mlp.fc1 = self.fc1.dense_copy(embed_dim, hidden)
        mlp.fc2 = self.fc2.dense_copy(hidden, embed_dim)
        return mlp
