"""CNN units: conv-BN-act, depthwise-separable block, bottleneck, max-pool, classifier head.

Every unit takes its active sizes as keyword arguments, extracts to plain torch modules, and
counts MACs/params analytically (only convs and linears: what ``FlopCounterMode`` counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..slicing import SlicedBatchNorm2d, SlicedConv2d, SlicedLinear
from .base import Shape, Unit

__all__ = ["Bottleneck", "ClassifierHead", "ConvBNAct", "DepthwiseSeparable", "MaxPool"]


def _act(act_layer: type[nn.Module]) -> nn.Module:
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()


class ConvBNAct(Unit):
    """Sliced conv -> BN (per-width stats) -> activation. Active sizes: ``in_ch``, ``out_ch``."""

    kind = "conv_bn_act"

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel_size: int,
        stride: int,
        out_widths: Sequence[int],
        *,
        act_layer: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = SlicedConv2d(max_in, max_out, kernel_size, stride)
        self.bn = SlicedBatchNorm2d(max_out, out_widths)
        self.act_layer = act_layer
        self.act = _act(act_layer) if act_layer is not None else nn.Identity()

    def forward(self, x: Tensor, in_ch: int, out_ch: int) -> Tensor:
        return self.act(self.bn(self.conv(x, out_ch)))

    def extract(self, in_ch: int, out_ch: int) -> nn.Module:
        act = _act(self.act_layer) if self.act_layer is not None else nn.Identity()
        return nn.Sequential(self.conv.dense_copy(in_ch, out_ch), self.bn.dense_copy(out_ch), act)

    def macs(self, in_shape: Shape, in_ch: int, out_ch: int) -> tuple[int, Shape]:
        _, h, w = in_shape
        ho, wo = self.conv.out_hw(h, w)
        return self.conv.macs(in_ch, out_ch, h, w), (out_ch, ho, wo)

    def params(self, in_ch: int, out_ch: int) -> int:
        return self.conv.params(in_ch, out_ch) + self.bn.params(out_ch)

    def hparams(self) -> dict:
        return {"k": self.conv.kernel_size, "stride": self.conv.stride}


class DepthwiseSeparable(Unit):
    """MobileNetV1 block: depthwise 3x3 (groups = active width) -> BN -> act -> pointwise ->
    BN -> act. Active sizes: ``in_ch``, ``out_ch``."""

    kind = "dw_separable"

    def __init__(
        self,
        max_in: int,
        max_out: int,
        stride: int,
        in_widths: Sequence[int],
        out_widths: Sequence[int],
        *,
        kernel_size: int = 3,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.dw = SlicedConv2d(max_in, max_in, kernel_size, stride, depthwise=True)
        self.bn_dw = SlicedBatchNorm2d(max_in, in_widths)
        self.pw = SlicedConv2d(max_in, max_out, 1, 1)
        self.bn_pw = SlicedBatchNorm2d(max_out, out_widths)
        self.act_layer = act_layer
        self.act = _act(act_layer)

    def forward(self, x: Tensor, in_ch: int, out_ch: int) -> Tensor:
        x = self.act(self.bn_dw(self.dw(x)))
        return self.act(self.bn_pw(self.pw(x, out_ch)))

    def extract(self, in_ch: int, out_ch: int) -> nn.Module:
        return nn.Sequential(
            self.dw.dense_copy(in_ch, in_ch),
            self.bn_dw.dense_copy(in_ch),
            _act(self.act_layer),
            self.pw.dense_copy(in_ch, out_ch),
            self.bn_pw.dense_copy(out_ch),
            _act(self.act_layer),
        )

    def macs(self, in_shape: Shape, in_ch: int, out_ch: int) -> tuple[int, Shape]:
        _, h, w = in_shape
        ho, wo = self.dw.out_hw(h, w)
        m = self.dw.macs(in_ch, in_ch, h, w) + self.pw.macs(in_ch, out_ch, ho, wo)
        return m, (out_ch, ho, wo)

    def params(self, in_ch: int, out_ch: int) -> int:
        return (
            self.dw.params(in_ch, in_ch)
            + self.bn_dw.params(in_ch)
            + self.pw.params(in_ch, out_ch)
            + self.bn_pw.params(out_ch)
        )

    def hparams(self) -> dict:
        return {"k": self.dw.kernel_size, "stride": self.dw.stride}


class StaticBottleneck(nn.Module):
    """Plain-torch ResNet bottleneck (what a sliced :class:`Bottleneck` extracts to)."""

    # (conv, BN) attribute pairs whose BN directly follows the conv (routing.fold_batchnorm)
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, conv1, bn1, conv2, bn2, conv3, bn3, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv1, bn1
        self.conv2, self.bn2 = conv2, bn2
        self.conv3, self.bn3 = conv3, bn3
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.downsample(x))


class Bottleneck(Unit):
    """ResNet bottleneck 1x1 -> 3x3 (stride) -> 1x1 with a sliced inner width ``mid``.

    The residual stream keeps ``out_ch`` channels. ``bn3`` sees a full-width tensor whose
    distribution depends on ``mid``, so its running statistics are keyed by ``mid``.
    """

    kind = "bottleneck"

    def __init__(
        self, in_ch: int, max_mid: int, out_ch: int, stride: int, mid_widths: Sequence[int]
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.conv1 = SlicedConv2d(in_ch, max_mid, 1, 1)
        self.bn1 = SlicedBatchNorm2d(max_mid, mid_widths)
        self.conv2 = SlicedConv2d(max_mid, max_mid, 3, stride)
        self.bn2 = SlicedBatchNorm2d(max_mid, mid_widths)
        self.conv3 = SlicedConv2d(max_mid, out_ch, 1, 1)
        self.bn3 = SlicedBatchNorm2d(out_ch, mid_widths)
        nn.init.zeros_(self.bn3.weight)  # residual branch starts as identity (timm zero_init_last)
        self.has_downsample = stride != 1 or in_ch != out_ch
        if self.has_downsample:
            self.down_conv = SlicedConv2d(in_ch, out_ch, 1, stride)
            self.down_bn = SlicedBatchNorm2d(out_ch, [out_ch])

    def forward(self, x: Tensor, mid: int) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x, mid)))
        y = F.relu(self.bn2(self.conv2(y, mid)))
        y = self.bn3(self.conv3(y, self.out_ch), mid)
        sc = self.down_bn(self.down_conv(x)) if self.has_downsample else x
        return F.relu(y + sc)

    @torch.no_grad()
    def extract(self, mid: int) -> nn.Module:
        down = None
        if self.has_downsample:
            down = nn.Sequential(
                self.down_conv.dense_copy(self.in_ch, self.out_ch),
                self.down_bn.dense_copy(self.out_ch),
            )
        return StaticBottleneck(
            self.conv1.dense_copy(self.in_ch, mid),
            self.bn1.dense_copy(mid),
            self.conv2.dense_copy(mid, mid),
            self.bn2.dense_copy(mid),
            self.conv3.dense_copy(mid, self.out_ch),
            self.bn3.dense_copy(self.out_ch, key=mid),
            down,
        )

    def macs(self, in_shape: Shape, mid: int) -> tuple[int, Shape]:
        _, h, w = in_shape
        ho, wo = self.conv2.out_hw(h, w)
        m = (
            self.conv1.macs(self.in_ch, mid, h, w)
            + self.conv2.macs(mid, mid, h, w)
            + self.conv3.macs(mid, self.out_ch, ho, wo)
        )
        if self.has_downsample:
            m += self.down_conv.macs(self.in_ch, self.out_ch, h, w)
        return m, (self.out_ch, ho, wo)

    def params(self, mid: int) -> int:
        p = (
            self.conv1.params(self.in_ch, mid)
            + self.conv2.params(mid, mid)
            + self.conv3.params(mid, self.out_ch)
            + 2 * mid * 2
            + 2 * self.out_ch
        )
        if self.has_downsample:
            p += self.down_conv.params(self.in_ch, self.out_ch) + 2 * self.out_ch
        return p

    def hparams(self) -> dict:
        return {"in": self.in_ch, "out": self.out_ch, "stride": self.stride}


class MaxPool(Unit):
    """3x3 stride-2 max-pool (ResNet stem). No active sizes."""

    kind = "maxpool"

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, 3, 2, 1)

    def extract(self) -> nn.Module:
        return nn.MaxPool2d(3, 2, 1)

    def macs(self, in_shape: Shape) -> tuple[int, Shape]:
        c, h, w = in_shape
        return 0, (c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)

    def params(self) -> int:
        return 0


class ClassifierHead(Unit):
    """Global average pool -> linear classifier sliced on its input. Active size: ``in_ch``."""

    kind = "classifier"

    def __init__(self, max_in: int, num_classes: int, *, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.fc = SlicedLinear(max_in, num_classes)
        self.num_classes = num_classes
        self.drop_rate = drop_rate

    def forward(self, x: Tensor, in_ch: int) -> Tensor:
        x = x.mean((2, 3))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return self.fc(x)

    def extract(self, in_ch: int) -> nn.Module:
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), self.fc.dense_copy(in_ch, self.num_classes)
        )

    def macs(self, in_shape: Shape, in_ch: int) -> tuple[int, Shape]:
        return SlicedLinear.macs(in_ch, self.num_classes), (self.num_classes,)

    def params(self, in_ch: int) -> int:
        return self.fc.params(in_ch, self.num_classes)

    def hparams(self) -> dict:
        return {"classes": self.num_classes}
