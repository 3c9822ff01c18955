"""Multi-head self-attention sliced by number of heads (and by the active embedding prefix).

Layout: the fused qkv weight is stored **head-major**, rows ordered ``(head, q|k|v, head_dim)``,
so the first ``h`` heads are the contiguous row prefix ``qkv.weight[: h * 3 * head_dim]``. (timm
stores ``(q|k|v, head, head_dim)``, where a head prefix is three separate row blocks.) The
output projection takes head-major input, so its active slice is ``proj.weight[:e, : h*hd]``.
Export converts to timm's layout and returns a ``timm.layers.Attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import ViewMemo

__all__ = ["SlicedAttention", "qkv_head_major_to_timm", "qkv_timm_to_head_major"]


def qkv_head_major_to_timm(w: Tensor, heads: int, head_dim: int) -> Tensor:
    """Reorder qkv rows ``(head, 3, hd)`` -> ``(3, head, hd)``. w: (heads*3*hd, ...)."""
    rest = w.shape[1:]
    return w.reshape(heads, 3, head_dim, *rest).transpose(0, 1).reshape(heads * 3 * head_dim, *rest)


def qkv_timm_to_head_major(w: Tensor, heads: int, head_dim: int) -> Tensor:
    """Inverse of :func:`qkv_head_major_to_timm`."""
    rest = w.shape[1:]
    return w.reshape(3, heads, head_dim, *rest).transpose(0, 1).reshape(heads * 3 * head_dim, *rest)


class SlicedAttention(ViewMemo, nn.Module):
    """Self-attention with ``max_heads`` heads of ``head_dim``; runs the first ``heads`` heads.

    Args:
        max_embed_dim: stored input/output embedding width.
        max_heads: stored heads.
        head_dim: width of one head (fixed; slicing picks whole heads).
        qkv_bias: bias on the fused qkv projection.
    """

    def __init__(
        self,
        max_embed_dim: int,
        max_heads: int,
        head_dim: int = 64,
        *,
        qkv_bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.max_embed_dim = max_embed_dim
        self.max_heads = max_heads
        self.head_dim = head_dim
        kw = {"device": device, "dtype": dtype}
        inner = max_heads * head_dim
        self.qkv_weight = nn.Parameter(torch.empty(3 * inner, max_embed_dim, **kw))
        self.qkv_bias = nn.Parameter(torch.zeros(3 * inner, **kw)) if qkv_bias else None
        self.proj_weight = nn.Parameter(torch.empty(max_embed_dim, inner, **kw))
        self.proj_bias = nn.Parameter(torch.zeros(max_embed_dim, **kw))
        nn.init.trunc_normal_(self.qkv_weight, std=0.02)
        nn.init.trunc_normal_(self.proj_weight, std=0.02)
        self._init_views()

    def forward(self, x: Tensor, heads: int | None = None) -> Tensor:
        """x: (B, N, e) with e <= max_embed_dim -> (B, N, e), using the first ``heads`` heads."""
        h = self.max_heads if heads is None else heads
        b, n, e = x.shape
        qw, qb, pw, pb = self.sliced_weights(e, h)
        qkv = F.linear(x, qw, qb)
        q, k, v = qkv.reshape(b, n, h, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, n, h * self.head_dim)
        return F.linear(o, pw, pb)

    def sliced_weights(self, embed_dim: int, heads: int) -> tuple[Tensor, ...]:
        """(qkv weight, qkv bias, proj weight, proj bias) views of the first ``heads`` heads
        over ``embed_dim`` features; memoised outside autograd (see :mod:`._views`)."""
        tensors = (self.qkv_weight, self.qkv_bias, self.proj_weight, self.proj_bias)
        if torch.is_grad_enabled():
            return self._slice(*tensors, embed_dim, heads)
        token = tuple(None if t is None else t.data_ptr() for t in tensors)
        hit = self._views.get((embed_dim, heads))
        if hit is not None and hit[0] == token:
            return hit[1]
        views = self._slice(*tensors, embed_dim, heads)
        self._memo_put((embed_dim, heads), (token, views))
        return views

    def _slice(
        self, qw: Tensor, qb: Tensor | None, pw: Tensor, pb: Tensor, e: int, h: int
    ) -> tuple[Tensor, ...]:
        rows = h * 3 * self.head_dim
        qkv_b = None if qb is None else qb[:rows]
        return qw[:rows, :e], qkv_b, pw[:e, : h * self.head_dim], pb[:e]

    def macs(self, embed_dim: int, heads: int, tokens: int) -> int:
        inner = heads * self.head_dim
        qkv = tokens * embed_dim * 3 * inner
        attn = 2 * heads * tokens * tokens * self.head_dim  # q @ k^T and attn @ v
        proj = tokens * inner * embed_dim
        return qkv + attn + proj

    def params(self, embed_dim: int, heads: int) -> int:
        inner = heads * self.head_dim
        qkv = 3 * inner * embed_dim + (3 * inner if self.qkv_bias is not None else 0)
        return qkv + inner * embed_dim + embed_dim

    @torch.no_grad()
    def dense_copy(self, embed_dim: int, heads: int) -> nn.Module:
        """A ``timm.layers.Attention`` with the active heads copied (timm's qkv layout)."""
        from timm.layers import Attention  # imported here: timm costs ~3 s of CLI start-up

        attn = Attention(
            embed_dim,
            num_heads=heads,
            attn_head_dim=self.head_dim,
            qkv_bias=self.qkv_bias is not None,
            device=self.qkv_weight.device,
            dtype=self.qkv_weight.dtype,
        )
        rows = heads * 3 * self.head_dim
        attn.qkv.weight.copy_(
            qkv_head_major_to_timm(self.qkv_weight[:rows, :embed_dim], heads, self.head_dim)
        )
        if self.qkv_bias is not None:
            attn.qkv.bias.copy_(qkv_head_major_to_timm(self.qkv_bias[:rows], heads, self.head_dim))
        attn.proj.weight.copy_(self.proj_weight[:embed_dim, : heads * self.head_dim])
        attn.proj.bias.copy_(self.proj_bias[:embed_dim])
        return attn

    def extra_repr(self) -> str:
        return (
            f"max_embed={self.max_embed_dim}, max_heads={self.max_heads}, head_dim={self.head_dim}"
        )
