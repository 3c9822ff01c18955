"""Slicify timm ``ResNet`` (BasicBlock / Bottleneck): inner width and depth per stage.

Dims: ``stage{i}.width`` is the inner width of every block of ``layer{i}`` in channels (for a
BasicBlock the output width of its first conv, for a Bottleneck the width of its 1x1 and 3x3
convs); ``stage{i}.depth`` runs the first ``d`` blocks of the stage (the first block, which may
change stride and width, always runs). The residual stream keeps its width, so the stem, every
shortcut (``downsample``) and the head run as the timm modules are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

from ..config import SliceSpace
from ..supernets.base import Shape, Unit
from ._common import (
    FixedUnit,
    Limit,
    SlicedNormAct,
    StaticResidual,
    TimmSupernet,
    module_macs,
    sliced_conv,
    unsupported,
    width_channels,
)

__all__ = ["ResNetBlock", "build", "derive_dims", "limits", "matches"]

FAMILY = "resnet"
DESCRIPTION = "ResNet (timm ResNet with BasicBlock/Bottleneck, e.g. resnet18/34/50/101, resnet50d)"
WIDTH_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def matches(model: nn.Module) -> bool:
    return type(model) is ResNet


def _stages(model: ResNet) -> list[nn.Sequential]:
    return [getattr(model, f"layer{i}") for i in range(1, 5) if hasattr(model, f"layer{i}")]


class ResNetBlock(Unit):
    """A timm BasicBlock or Bottleneck with a sliced inner width ``mid``.

    Every BN inside the block is keyed by ``mid`` (the last one sees a full-width tensor whose
    distribution depends on ``mid``). The shortcut (timm ``downsample``) runs unchanged.

    Args:
        block: the timm block (weights are copied).
        mid_widths: the inner widths the block will run at (stat keys of its BNs).
        where: location for error messages, e.g. ``"layer2.0"``.
    """

    kind = "resnet_block"

    def __init__(self, block: nn.Module, mid_widths: Sequence[int], *, where: str) -> None:
        super().__init__()
        if type(block) not in (BasicBlock, Bottleneck):
            raise unsupported(where, f"ResNet block type {type(block).__name__}")
        if block.se is not None:
            raise unsupported(where, "a block with an attention/SE layer")
        if type(block.aa) is not nn.Identity or type(getattr(block, "drop_block", None)) not in (
            nn.Identity,
            type(None),
        ):
            raise unsupported(where, "anti-aliasing or drop-block layers")
        bottleneck = type(block) is Bottleneck
        names = ("conv1", "conv2", "conv3") if bottleneck else ("conv1", "conv2")
        convs = [getattr(block, n) for n in names]
        self.in_ch = convs[0].in_channels
        self.max_mid = convs[0].out_channels
        self.out_ch = convs[-1].out_channels
        if bottleneck and convs[1].out_channels != self.max_mid:
            raise unsupported(where, "a bottleneck whose 1x1 and 3x3 widths differ")
        keys = sorted({*mid_widths, self.max_mid})
        self.block_type = "bottleneck" if bottleneck else "basic"
        self.convs = nn.ModuleList(
            sliced_conv(c, f"{where}.{n}") for c, n in zip(convs, names, strict=True)
        )
        acts = [block.act1, block.act2] if bottleneck else [block.act1]
        bns = [getattr(block, f"bn{i + 1}") for i in range(len(names))]
        self.norms = nn.ModuleList(
            SlicedNormAct(bn, keys, act, where=f"{where}.bn{i + 1}")
            for i, (bn, act) in enumerate(zip(bns, [*acts, None], strict=True))
        )
        self.stride = self.convs[1 if bottleneck else 0].stride
        self.post = copy.deepcopy(block.act3 if bottleneck else block.act2)
        self.drop_path = copy.deepcopy(block.drop_path) if block.drop_path is not None else None
        self.downsample = copy.deepcopy(block.downsample)
        self.__dict__["_down_cache"] = {}

    def active_sizes(self, width: int | None = None) -> dict[str, Any]:
        return {"mid": self.max_mid if width is None else int(width)}

    def _outs(self, mid: int) -> list[int]:
        return [mid] * (len(self.convs) - 1) + [self.out_ch]

    def forward(self, x: Tensor, mid: int) -> Tensor:
        """x: (B, in, H, W) -> (B, out, H/stride, W/stride)."""
        y = x
        for conv, norm, out in zip(self.convs, self.norms, self._outs(mid), strict=True):
            y = norm(conv(y, out), mid)
        if self.drop_path is not None:
            y = self.drop_path(y)
        sc = x if self.downsample is None else self.downsample(x)
        return self.post(y + sc)

    @torch.no_grad()
    def extract(self, mid: int) -> nn.Module:
        layers: list[nn.Module] = []
        cin = self.in_ch
        for conv, norm, out in zip(self.convs, self.norms, self._outs(mid), strict=True):
            layers += [conv.dense_copy(cin, out), norm.dense_copy(out, mid)]
            cin = out
        down = copy.deepcopy(self.downsample) if self.downsample is not None else nn.Identity()
        return StaticResidual(
            nn.Sequential(*layers),
            down,
            copy.deepcopy(self.post),
            copy.deepcopy(self.drop_path) if self.drop_path is not None else None,
        )

    def _down_macs(self, in_shape: Shape) -> int:
        """MACs of the (fixed) timm shortcut, counted once per input shape."""
        if self.downsample is None:
            return 0
        cache = self.__dict__.setdefault("_down_cache", {})
        key = tuple(int(s) for s in in_shape)
        if key not in cache:
            meta = copy.deepcopy(self.downsample).to("meta").eval()
            cache[key] = module_macs(meta, key)[0]
        return cache[key]

    def macs(self, in_shape: Shape, mid: int) -> tuple[int, Shape]:
        _, h, w = in_shape
        m, cin = 0, self.in_ch
        for conv, out in zip(self.convs, self._outs(mid), strict=True):
            m += conv.macs(cin, out, h, w)
            h, w = conv.out_hw(h, w)
            cin = out
        return m + self._down_macs(tuple(in_shape)), (self.out_ch, h, w)

    def params(self, mid: int) -> int:
        p, cin = 0, self.in_ch
        for conv, out in zip(self.convs, self._outs(mid), strict=True):
            p += conv.params(cin, out) + 2 * out
            cin = out
        if self.downsample is not None:
            p += sum(q.numel() for q in self.downsample.parameters())
        return p

    def hparams(self) -> dict[str, Any]:
        return {
            "block": self.block_type,
            "in": self.in_ch,
            "out": self.out_ch,
            "stride": self.stride,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_down_cache"] = {}
        return state


def _stage_info(model: ResNet) -> list[tuple[int, int, int]]:
    """Per stage: (inner width, number of blocks, smallest allowed depth)."""
    out = []
    for i, stage in enumerate(_stages(model), start=1):
        blocks = list(stage)
        widths = {b.conv1.out_channels for b in blocks}
        if len(widths) != 1:
            raise unsupported(f"layer{i}", f"blocks with different inner widths {sorted(widths)}")
        # a later block that changes shape cannot be skipped: depth must reach it
        fixed = max([0] + [j for j, b in enumerate(blocks) if j and b.downsample is not None])
        out.append((widths.pop(), len(blocks), fixed + 1))
    return out


def derive_dims(model: ResNet) -> list[tuple[str, tuple[int, ...]]]:
    """Default grid: widths at 1/4..1 of each stage (multiples of 8), depth from ~half to all."""
    dims = []
    for i, (width, n, min_d) in enumerate(_stage_info(model), start=1):
        ws = tuple(sorted({width_channels(f, width) for f in WIDTH_FRACTIONS}))
        ds = tuple(range(max(min_d, n // 2, 1), n + 1))
        dims += [(f"stage{i}.width", ws), (f"stage{i}.depth", ds)]
    return [(d, c) for d, c in dims if len(c) > 1]


def limits(model: ResNet) -> dict[str, Limit]:
    out = {}
    for i, (width, n, min_d) in enumerate(_stage_info(model), start=1):
        out[f"stage{i}.width"] = Limit(1, width, True, f"inner width of layer{i} blocks")
        out[f"stage{i}.depth"] = Limit(min_d, n, True, f"blocks in layer{i}")
    return out


def build(model: ResNet, space: SliceSpace) -> TimmSupernet:
    """The supernet of a timm ResNet for a validated ``space``."""
    net = TimmSupernet(space, model.num_classes, family=FAMILY)
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    net.add_block(FixedUnit(stem, "timm_stem"), "stem")
    have = set(space.dim_names)
    for i, stage in enumerate(_stages(model), start=1):
        wdim = f"stage{i}.width"
        mids = space.choices(wdim) if wdim in have else ()
        for j, block in enumerate(stage):
            unit = ResNetBlock(block, [int(m) for m in mids], where=f"layer{i}.{j}")
            net.add_block(unit, f"stage{i}", index=j, params={"width": wdim})
    head = nn.Sequential(model.global_pool, nn.Dropout(float(model.drop_rate)), model.fc)
    net.add_block(FixedUnit(head, "timm_head"), "head")
    net.default_gate_stage = f"stage{max(1, len(_stages(model)) - 1)}"  # as DSResNet
    return net
