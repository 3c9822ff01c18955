"""Sliced 2-d convolution: a contiguous prefix ``weight[:out, :in]`` of one stored kernel.

A prefix slice over both channel dims is a *strided* view. ``F.conv2d`` copies a non-contiguous
weight before calling oneDNN (a copy of every strided weight in every forward), so stride-1
pointwise convs run as a GEMM on the strided view instead
(:func:`pointwise_conv`: BLAS takes the row stride, no copy). The extracted static model uses
the same kernel (:class:`PointwiseConv2d`, an ``nn.Conv2d`` subclass), so sliced-vs-static
comparisons stay like for like (sliced vs extracted, measured: docs/results/slicing.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._views import ViewMemo

__all__ = ["PointwiseConv2d", "SlicedConv2d", "pointwise_conv"]


def pointwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """1x1 stride-1 conv as a GEMM. x: (B, C_in, H, W); weight: (C_out, C_in) (may be strided).

    Channels-last inputs stay channels-last (NHWC GEMM); NCHW inputs use a batched GEMM.
    """
    b, _, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.linear(x.permute(0, 2, 3, 1), weight, bias).permute(0, 3, 1, 2)
    x3 = x.reshape(b, x.shape[1], h * w)
    y = torch.bmm(weight.expand(b, -1, -1), x3).view(b, weight.shape[0], h, w)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


class PointwiseConv2d(nn.Conv2d):
    """A plain 1x1 stride-1 ``nn.Conv2d`` (same parameters/state dict) computed as a GEMM."""

    def forward(self, x: Tensor) -> Tensor:
        return pointwise_conv(x, self.weight.flatten(1), self.bias)


class SlicedConv2d(ViewMemo, nn.Module):
    """Conv2d whose active in/out channels are prefixes of ``max_in_channels``/``max_out_channels``.

    Args:
        max_in_channels: stored input channels (capacity).
        max_out_channels: stored output channels (capacity).
        kernel_size: square kernel size; padding is ``kernel_size // 2`` ("same" at stride 1).
        stride: spatial stride.
        depthwise: one filter per channel (``groups = active width``); then in == out.
        bias: whether a bias vector is stored.
    """

    def __init__(
        self,
        max_in_channels: int,
        max_out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        depthwise: bool = False,
        bias: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if depthwise and max_in_channels != max_out_channels:
            raise ValueError("a depthwise conv needs max_in_channels == max_out_channels")
        self.max_in_channels = max_in_channels
        self.max_out_channels = max_out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = kernel_size // 2
        self.depthwise = depthwise
        fan_in = 1 if depthwise else max_in_channels
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(max_out_channels, fan_in, kernel_size, kernel_size, **kw)
        )
        self.bias = nn.Parameter(torch.zeros(max_out_channels, **kw)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self._init_views()

    def forward(self, x: Tensor, out_channels: int | None = None) -> Tensor:
        """x: (B, C_in, H, W) with C_in <= max_in_channels -> (B, out_channels, H', W').

        For a depthwise conv ``out_channels`` is ignored (it equals C_in).
        """
        c_in = x.shape[1]
        if self.depthwise:
            k = c_in
        else:
            k = self.max_out_channels if out_channels is None else out_channels
        w, b = self.sliced_weights(c_in, k)
        if self.depthwise:
            return F.conv2d(x, w, b, self.stride, self.padding, 1, c_in)
        if w.dim() == 2:
            return pointwise_conv(x, w, b)
        return F.conv2d(x, w, b, self.stride, self.padding)

    def sliced_weights(self, in_channels: int, out_channels: int) -> tuple[Tensor, Tensor | None]:
        """(weight, bias) views of the active slice: ``(out, in)`` for a 1x1 stride-1 conv
        (the GEMM kernel's layout), ``(out, in, k, k)`` / ``(ch, 1, k, k)`` otherwise.

        Outside autograd the views are memoised per size (see :mod:`._views`)."""
        weight, bias = self.weight, self.bias
        if torch.is_grad_enabled():
            return self._slice(weight, bias, in_channels, out_channels)
        key = (in_channels, out_channels)
        token = (weight.data_ptr(), None if bias is None else bias.data_ptr())
        hit = self._views.get(key)
        if hit is not None and hit[0] == token:
            return hit[1], hit[2]
        w, b = self._slice(weight, bias, in_channels, out_channels)
        self._memo_put(key, (token, w, b))
        return w, b

    def _slice(
        self, weight: Tensor, bias: Tensor | None, c_in: int, k: int
    ) -> tuple[Tensor, Tensor | None]:
        if self.depthwise:
            return weight[:c_in], None if bias is None else bias[:c_in]
        b = None if bias is None else bias[:k]
        if self.pointwise:
            return weight.view(self.max_out_channels, self.max_in_channels)[:k, :c_in], b
        return weight[:k, :c_in], b

    @property
    def pointwise(self) -> bool:
        return self.kernel_size == 1 and self.stride == 1 and not self.depthwise

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def macs(self, in_channels: int, out_channels: int, h: int, w: int) -> int:
        """Multiply-accumulates of one sample at input resolution (h, w)."""
        ho, wo = self.out_hw(h, w)
        per_out = (1 if self.depthwise else in_channels) * self.kernel_size**2
        return out_channels * per_out * ho * wo

    def params(self, in_channels: int, out_channels: int) -> int:
        per_out = (1 if self.depthwise else in_channels) * self.kernel_size**2
        return out_channels * per_out + (out_channels if self.bias is not None else 0)

    @torch.no_grad()
    def dense_copy(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding a dense copy of the active slice."""
        if self.depthwise:
            out_channels = in_channels
        cls = PointwiseConv2d if self.pointwise else nn.Conv2d
        conv = cls(
            in_channels,
            out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            groups=in_channels if self.depthwise else 1,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        fan_in = 1 if self.depthwise else in_channels
        conv.weight.copy_(self.weight[:out_channels, :fan_in])
        if self.bias is not None:
            conv.bias.copy_(self.bias[:out_channels])
        return conv

    def extra_repr(self) -> str:
        dw = ", depthwise" if self.depthwise else ""
        return (
            f"max_in={self.max_in_channels}, max_out={self.max_out_channels}, "
            f"k={self.kernel_size}, stride={self.stride}{dw}"
        )
