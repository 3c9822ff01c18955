"""Slicify timm ``EfficientNet`` / ``MobileNetV3`` (MobileNetV2, EfficientNet, MobileNetV3,
MNASNet, ...): expansion width and depth per stage.

Dims: ``stage{i}.width`` is a *fraction* (0 < f <= 1) of each inverted-residual block's own
expansion width in ``blocks[i-1]`` (blocks of one stage differ: the first one expands its
narrower input), turned into channels by :func:`width_channels` (a multiple of 8; 1 = the
timm width). ``stage{i}.depth`` runs the first ``d`` blocks (the first block, which may change
stride and width, always runs). ``InvertedResidual`` (incl. squeeze-excite, sliced in
proportion) and ``EdgeResidual`` blocks are sliced; other blocks (depthwise-separable,
conv-bn-act, universal IR, ...) as well as stem and head run as the timm modules are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from torch import Tensor, nn

from .._private_api import timm_mbconv_blocks
from ..config import SliceSpace, Value
from ..supernets.base import Shape, Unit
from ._common import (
    FixedUnit,
    Limit,
    SlicedNormAct,
    StaticResidual,
    TimmSupernet,
    sliced_conv,
    unsupported,
    width_channels,
)

__all__ = ["MBConvUnit", "SlicedSqueezeExcite", "build", "derive_dims", "limits", "matches"]

FAMILY = "efficientnet"
EdgeResidual, InvertedResidual, SqueezeExcite = timm_mbconv_blocks()
DESCRIPTION = (
    "MobileNetV2/EfficientNet/MobileNetV3 (timm EfficientNet, MobileNetV3, e.g. "
    "mobilenetv2_100, efficientnet_b0, mobilenetv3_large_100)"
)
WIDTH_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def matches(model: nn.Module) -> bool:
    return type(model) in (EfficientNet, MobileNetV3)


def _sliceable(block: nn.Module) -> bool:
    return type(block) in (InvertedResidual, EdgeResidual)


class SlicedSqueezeExcite(nn.Module):
    """timm ``SqueezeExcite`` over a channel prefix; the reduced width scales with it."""

    def __init__(self, se: SqueezeExcite, *, where: str) -> None:
        super().__init__()
        self.max_ch = se.conv_reduce.in_channels
        self.max_rd = se.conv_reduce.out_channels
        self.reduce = sliced_conv(se.conv_reduce, f"{where}.conv_reduce")
        self.expand = sliced_conv(se.conv_expand, f"{where}.conv_expand")
        self.act = copy.deepcopy(se.act1)
        self.gate = copy.deepcopy(se.gate)

    def rd(self, ch: int) -> int:
        """Reduced channels at ``ch`` active channels (all of them at full width)."""
        return self.max_rd if ch >= self.max_ch else max(1, round(self.max_rd * ch / self.max_ch))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, C, H, W) reweighted per channel."""
        c = x.shape[1]
        s = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True), self.rd(c))), c)
        return x * self.gate(s)

    def macs(self, ch: int) -> int:
        return 2 * ch * self.rd(ch)

    def params(self, ch: int) -> int:
        rd = self.rd(ch)
        return self.reduce.params(ch, rd) + self.expand.params(rd, ch)

    @torch.no_grad()
    def dense_copy(self, ch: int) -> SqueezeExcite:
        rd = self.rd(ch)
        se = SqueezeExcite(ch, rd_channels=rd)
        se.conv_reduce = self.reduce.dense_copy(ch, rd)
        se.conv_expand = self.expand.dense_copy(rd, ch)
        se.act1, se.gate = copy.deepcopy(self.act), copy.deepcopy(self.gate)
        return se


class MBConvUnit(Unit):
    """timm ``InvertedResidual`` (expand 1x1 -> depthwise -> SE -> project) or
    ``EdgeResidual`` (expand kxk -> SE -> project) with a sliced expansion width ``mid``.

    Every BN is keyed by ``mid``; the block's input/output width is not sliced.

    Args:
        block: the timm block (weights are copied).
        mid_widths: expansion widths (channels) the block will run at.
        where: location for error messages, e.g. ``"blocks.2.1"``.
    """

    kind = "mbconv"

    def __init__(self, block: nn.Module, mid_widths: Sequence[int], *, where: str) -> None:
        super().__init__()
        if type(block.aa) is not nn.Identity:
            raise unsupported(where, "anti-aliasing layers")
        edge = type(block) is EdgeResidual
        if not edge and block.conv_s2d is not None:
            raise unsupported(where, "space-to-depth inverted residuals")
        expand = block.conv_exp if edge else block.conv_pw
        self.in_ch, self.max_mid = expand.in_channels, expand.out_channels
        self.out_ch = block.conv_pwl.out_channels
        keys = sorted({*mid_widths, self.max_mid})
        self.block_type = "er" if edge else "ir"
        self.expand = sliced_conv(expand, f"{where}.{'conv_exp' if edge else 'conv_pw'}")
        if self.expand.depthwise:
            raise unsupported(where, "a grouped expansion conv")
        self.bn_e = SlicedNormAct(block.bn1, keys, where=f"{where}.bn1")
        self.dw: nn.Module | None = None
        self.bn_dw: nn.Module | None = None
        if not edge:
            self.dw = sliced_conv(block.conv_dw, f"{where}.conv_dw")
            if not self.dw.depthwise:
                raise unsupported(where, "a non-depthwise conv_dw")
            self.bn_dw = SlicedNormAct(block.bn2, keys, where=f"{where}.bn2")
        if type(block.se) is nn.Identity:
            self.se = None
        elif type(block.se) is SqueezeExcite:
            self.se = SlicedSqueezeExcite(block.se, where=f"{where}.se")
        else:
            raise unsupported(where, f"attention layer {type(block.se).__name__}")
        self.proj = sliced_conv(block.conv_pwl, f"{where}.conv_pwl")
        self.bn_p = SlicedNormAct(block.bn2 if edge else block.bn3, keys, where=f"{where}.bn_p")
        self.has_skip = bool(block.has_skip)
        self.drop_path = copy.deepcopy(block.drop_path)
        spatial = self.expand if edge else self.dw
        self.stride, self.k = spatial.stride, spatial.kernel_size

    def active_sizes(self, width: Value | None = None) -> dict[str, Any]:
        return {"mid": self.max_mid if width is None else width_channels(width, self.max_mid)}

    def forward(self, x: Tensor, mid: int) -> Tensor:
        """x: (B, in, H, W) -> (B, out, H/stride, W/stride)."""
        y = self.bn_e(self.expand(x, mid))
        if self.dw is not None:
            y = self.bn_dw(self.dw(y))
        if self.se is not None:
            y = self.se(y)
        y = self.bn_p(self.proj(y, self.out_ch), mid)
        return self.drop_path(y) + x if self.has_skip else y

    @torch.no_grad()
    def extract(self, mid: int) -> nn.Module:
        layers = [self.expand.dense_copy(self.in_ch, mid), self.bn_e.dense_copy(mid)]
        if self.dw is not None:
            layers += [self.dw.dense_copy(mid, mid), self.bn_dw.dense_copy(mid)]
        if self.se is not None:
            layers.append(self.se.dense_copy(mid))
        layers += [self.proj.dense_copy(mid, self.out_ch), self.bn_p.dense_copy(self.out_ch, mid)]
        short = nn.Identity() if self.has_skip else None
        return StaticResidual(nn.Sequential(*layers), short, None, copy.deepcopy(self.drop_path))

    def macs(self, in_shape: Shape, mid: int) -> tuple[int, Shape]:
        _, h, w = in_shape
        m = self.expand.macs(self.in_ch, mid, h, w)
        h, w = self.expand.out_hw(h, w)
        if self.dw is not None:
            m += self.dw.macs(mid, mid, h, w)
            h, w = self.dw.out_hw(h, w)
        if self.se is not None:
            m += self.se.macs(mid)
        return m + self.proj.macs(mid, self.out_ch, h, w), (self.out_ch, h, w)

    def params(self, mid: int) -> int:
        p = self.expand.params(self.in_ch, mid) + 2 * mid
        if self.dw is not None:
            p += self.dw.params(mid, mid) + 2 * mid
        if self.se is not None:
            p += self.se.params(mid)
        return p + self.proj.params(mid, self.out_ch) + 2 * self.out_ch

    def hparams(self) -> dict[str, Any]:
        return {
            "block": self.block_type,
            "in": self.in_ch,
            "out": self.out_ch,
            "k": self.k,
            "stride": self.stride,
            "se": self.se is not None,
            "act": type(self.bn_e.act).__name__,
        }


def _stage_info(model: nn.Module) -> list[tuple[bool, int, int]]:
    """Per stage: (has a sliceable block, number of blocks, smallest allowed depth)."""
    out = []
    for stage in model.blocks:
        blocks = list(stage)
        fixed = max(
            [0] + [j for j, b in enumerate(blocks) if j and not getattr(b, "has_skip", False)]
        )
        out.append((any(_sliceable(b) for b in blocks), len(blocks), fixed + 1))
    return out


def derive_dims(model: nn.Module) -> list[tuple[str, tuple[Value, ...]]]:
    """Default grid: width fractions 1/4..1 where a stage has inverted residuals, depth from
    ~half to all blocks. Dims with a single choice are left out."""
    dims: list[tuple[str, tuple[Value, ...]]] = []
    for i, (sliceable, n, min_d) in enumerate(_stage_info(model), start=1):
        if sliceable:
            dims.append((f"stage{i}.width", WIDTH_FRACTIONS))
        ds = tuple(range(max(min_d, n // 2, 1), n + 1))
        if len(ds) > 1:
            dims.append((f"stage{i}.depth", ds))
    return dims


def limits(model: nn.Module) -> dict[str, Limit]:
    out = {}
    for i, (sliceable, n, min_d) in enumerate(_stage_info(model), start=1):
        if sliceable:
            out[f"stage{i}.width"] = Limit(0.0, 1.0, False, f"fraction of blocks.{i - 1} widths")
        out[f"stage{i}.depth"] = Limit(min_d, n, True, f"blocks in blocks.{i - 1}")
    return out


def build(model: nn.Module, space: SliceSpace) -> TimmSupernet:
    """The supernet of a timm EfficientNet/MobileNetV3 for a validated ``space``."""
    net = TimmSupernet(space, model.num_classes, family=FAMILY)
    net.add_block(FixedUnit(nn.Sequential(model.conv_stem, model.bn1), "timm_stem"), "stem")
    have = set(space.dim_names)
    for i, stage in enumerate(model.blocks, start=1):
        wdim = f"stage{i}.width"
        fracs = space.choices(wdim) if wdim in have else (1,)
        for j, block in enumerate(stage):
            where = f"blocks.{i - 1}.{j}"
            if _sliceable(block):
                mid = (
                    block.conv_exp.out_channels
                    if type(block) is EdgeResidual
                    else block.conv_pw.out_channels
                )
                unit: Unit = MBConvUnit(block, [width_channels(f, mid) for f in fracs], where=where)
            else:
                unit = FixedUnit(block, f"timm_block_{type(block).__name__}")
            params = {"width": wdim} if _sliceable(block) else None
            net.add_block(unit, f"stage{i}", index=j, params=params)
    drop = nn.Dropout(float(model.drop_rate))
    if type(model) is MobileNetV3:
        head = nn.Sequential(
            model.global_pool,
            model.conv_head,
            model.norm_head,
            model.act2,
            model.flatten,
            drop,
            model.classifier,
        )
    else:
        head = nn.Sequential(model.conv_head, model.bn2, model.global_pool, drop, model.classifier)
    net.add_block(FixedUnit(head, "timm_head"), "head")
    net.default_gate_stage = f"stage{min(len(model.blocks), len(model.blocks) // 2 + 2)}"
    return net
