"""Sliced 2-d convolution: a contiguous prefix ``weight[:out, :in]`` of one stored kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SlicedConv2d"]


class SlicedConv2d(nn.Module):
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

    def forward(self, x: Tensor, out_channels: int | None = None) -> Tensor:
        """x: (B, C_in, H, W) with C_in <= max_in_channels -> (B, out_channels, H', W').

        For a depthwise conv ``out_channels`` is ignored (it equals C_in).
        """
        c_in = x.shape[1]
        if self.depthwise:
            b = None if self.bias is None else self.bias[:c_in]
            return F.conv2d(x, self.weight[:c_in], b, self.stride, self.padding, 1, c_in)
        k = self.max_out_channels if out_channels is None else out_channels
        b = None if self.bias is None else self.bias[:k]
        return F.conv2d(x, self.weight[:k, :c_in], b, self.stride, self.padding)

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
    def export(self, in_channels: int, out_channels: int) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding a dense copy of the active slice."""
        if self.depthwise:
            out_channels = in_channels
        conv = nn.Conv2d(
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
