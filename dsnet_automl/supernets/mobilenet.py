"""DS-MobileNetV1: the DS-Net ImageNet supernet (stem + 5 depthwise-separable stages).

Widths per stage follow DS-Net's ``slimmable_mbnet_v1_bn_uniform`` (stem {16,24}; stages
{32..88}, {48..168}, {96..264}, {224..640 step 32}, {736..1152 step 32}; 1/2/2/6/2 blocks;
Swish), but every stage's width is an independent slice dimension (DS-Net ties them to one
index). ``ds_mobilenet_v1_tiny`` is the same shape for 32x32 inputs with few channels. The
gate (dynamic routing) sits before stage 4 by default, as in DS-Net.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..config import SliceSpace
from .base import Supernet
from .cnn_units import ClassifierHead, ConvBNAct, DepthwiseSeparable
from .registry import register_supernet

__all__ = ["DSMobileNetV1"]


class DSMobileNetV1(Supernet):
    """Dims: ``stem.width`` and ``stage{i}.width`` for each stage.

    Args:
        space: the slice grid (largest choices = capacity).
        num_classes: classifier outputs.
        stage_blocks: blocks per stage.
        strides: stride of the stem, then of each stage's first block.
        in_chans: input channels.
        act_layer: activation (DS-Net uses Swish = SiLU).
    """

    prefers_channels_last = True  # depthwise convs: faster Stage I steps on CPU

    def __init__(
        self,
        space: SliceSpace,
        num_classes: int = 1000,
        *,
        stage_blocks: Sequence[int] = (1, 2, 2, 6, 2),
        strides: Sequence[int] = (2, 1, 2, 2, 2, 2),
        in_chans: int = 3,
        act_layer: type[nn.Module] = nn.SiLU,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(space, num_classes)
        n = len(stage_blocks)
        self.dims = ["stem.width"] + [f"stage{i + 1}.width" for i in range(n)]
        self._require_dims(self.dims)
        if len(strides) != n + 1:
            raise ValueError(f"strides needs {n + 1} entries (stem + stages), got {len(strides)}")
        self.in_chans = in_chans
        widths = [space.choices(d) for d in self.dims]
        self.add_unit(
            ConvBNAct(in_chans, widths[0][-1], 3, strides[0], widths[0], act_layer=act_layer),
            "stem",
        )
        self._unit_dims: list[tuple[str, str]] = [("", "stem.width")]
        for s, blocks in enumerate(stage_blocks):
            prev, cur = self.dims[s], self.dims[s + 1]
            for b in range(blocks):
                in_dim = prev if b == 0 else cur
                self.add_unit(
                    DepthwiseSeparable(
                        space.capacity(in_dim),
                        space.capacity(cur),
                        strides[s + 1] if b == 0 else 1,
                        space.choices(in_dim),
                        space.choices(cur),
                        act_layer=act_layer,
                    ),
                    f"stage{s + 1}",
                )
                self._unit_dims.append((in_dim, cur))
        self.add_unit(
            ClassifierHead(space.capacity(self.dims[-1]), num_classes, drop_rate=drop_rate), "head"
        )
        self.default_gate_stage = f"stage{max(1, n - 1)}"
        self._unit_dims.append((self.dims[-1], ""))

    def _build_plan(self, values: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        plan: list[tuple[int, dict[str, Any]]] = []
        for i, (in_dim, out_dim) in enumerate(self._unit_dims):
            if i == 0:
                plan.append((i, {"in_ch": self.in_chans, "out_ch": values[out_dim]}))
            elif out_dim:
                plan.append((i, {"in_ch": values[in_dim], "out_ch": values[out_dim]}))
            else:
                plan.append((i, {"in_ch": values[in_dim]}))
        return plan


def _space(name: str, dims: dict[str, Sequence[int]], size: tuple[int, int, int]) -> SliceSpace:
    return SliceSpace(name, tuple((k, tuple(v)) for k, v in dims.items()), size)


def mobilenet_v1_space() -> SliceSpace:
    return _space(
        "ds_mobilenet_v1",
        {
            "stem.width": [16, 24],
            "stage1.width": range(32, 88 + 1, 8),
            "stage2.width": range(48, 168 + 1, 8),
            "stage3.width": range(96, 264 + 1, 24),
            "stage4.width": range(224, 640 + 1, 32),
            "stage5.width": range(736, 1152 + 1, 32),
        },
        (3, 224, 224),
    )


def mobilenet_v1_tiny_space() -> SliceSpace:
    return _space(
        "ds_mobilenet_v1_tiny",
        {
            "stem.width": [8, 16],
            "stage1.width": [16, 24, 32],
            "stage2.width": [16, 32, 48],
            "stage3.width": [32, 48, 64, 80, 96],
            "stage4.width": [32, 64, 96, 128, 192, 256],
            "stage5.width": [64, 128, 256, 384],
        },
        (3, 32, 32),
    )


@register_supernet(mobilenet_v1_space)
def ds_mobilenet_v1(*, num_classes: int = 1000, space: SliceSpace, **kw: Any) -> DSMobileNetV1:
    return DSMobileNetV1(space, num_classes, **kw)


@register_supernet(mobilenet_v1_tiny_space)
def ds_mobilenet_v1_tiny(*, num_classes: int = 10, space: SliceSpace, **kw: Any) -> DSMobileNetV1:
    # digits are 8x8 upsampled: a stride-2 stem loses nothing, and keeps most compute in the
    # routed stages 4-5 (after the gate), as in the full-size net
    kw.setdefault("strides", (2, 1, 2, 2, 1, 2))
    return DSMobileNetV1(space, num_classes, **kw)
