"""DS-ResNet: bottleneck ResNet-50 with a sliced inner width and a sliced depth per stage.

The residual stream (stage output width) is not sliced; each bottleneck's inner width
(``stage{i}.width``) and the number of blocks run per stage (``stage{i}.depth``: the first
``d`` blocks, trailing ones skipped) are. ``ds_resnet50_tiny`` is a CIFAR-style variant (3x3
stem, no max-pool, 32x32 inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import SliceSpace
from .base import Supernet
from .cnn_units import Bottleneck, ClassifierHead, ConvBNAct, MaxPool
from .registry import register_supernet

__all__ = ["DSResNet"]


class DSResNet(Supernet):
    """Dims: ``stage{i}.width`` (inner width) and ``stage{i}.depth`` for each stage.

    Args:
        space: slice grid; the largest depth of a stage is how many blocks it stores.
        num_classes: classifier outputs.
        stage_out: output (residual stream) channels of each stage.
        strides: stride of each stage's first block.
        stem_width: stem conv output channels.
        stem_kernel, stem_stride, stem_pool: ImageNet stem is 7x7/2 + max-pool.
    """

    def __init__(
        self,
        space: SliceSpace,
        num_classes: int = 1000,
        *,
        stage_out: Sequence[int] = (256, 512, 1024, 2048),
        strides: Sequence[int] = (1, 2, 2, 2),
        stem_width: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__(space, num_classes)
        n = len(stage_out)
        self.dims = [f"stage{i + 1}.{w}" for i in range(n) for w in ("width", "depth")]
        self._require_dims(self.dims)
        self.in_chans, self.stem_width = in_chans, stem_width
        self.add_unit(
            ConvBNAct(in_chans, stem_width, stem_kernel, stem_stride, [stem_width]), "stem"
        )
        self._fixed = [0]
        if stem_pool:
            self.add_unit(MaxPool(), "stem")
            self._fixed.append(1)
        # (unit index, stage number, block index in stage)
        self._blocks: list[tuple[int, int, int]] = []
        prev = stem_width
        for s in range(n):
            widths = space.choices(f"stage{s + 1}.width")
            for b in range(int(space.capacity(f"stage{s + 1}.depth"))):
                self.add_unit(
                    Bottleneck(
                        prev if b == 0 else stage_out[s],
                        widths[-1],
                        stage_out[s],
                        strides[s] if b == 0 else 1,
                        widths,
                    ),
                    f"stage{s + 1}",
                )
                self._blocks.append((len(self.units) - 1, s + 1, b))
            prev = stage_out[s]
        self.add_unit(ClassifierHead(stage_out[-1], num_classes), "head")
        self.default_gate_stage = f"stage{max(1, n - 1)}"
        self._head = len(self.units) - 1
        self._out = stage_out[-1]

    def _build_plan(self, values: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        plan: list[tuple[int, dict[str, Any]]] = [
            (0, {"in_ch": self.in_chans, "out_ch": self.stem_width})
        ]
        plan += [(i, {}) for i in self._fixed[1:]]
        for unit, stage, b in self._blocks:
            if b < values[f"stage{stage}.depth"]:
                plan.append((unit, {"mid": values[f"stage{stage}.width"]}))
        plan.append((self._head, {"in_ch": self._out}))
        return plan


def _space(name: str, widths: Sequence[Sequence[int]], depths: Sequence[Sequence[int]], size):
    dims = []
    for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
        dims += [(f"stage{i + 1}.width", tuple(w)), (f"stage{i + 1}.depth", tuple(d))]
    return SliceSpace(name, tuple(dims), size)


def resnet50_space() -> SliceSpace:
    base = (64, 128, 256, 512)
    return _space(
        "ds_resnet50",
        [[b // 4, b // 2, 3 * b // 4, b] for b in base],
        [[1, 2, 3], [2, 3, 4], [4, 5, 6], [1, 2, 3]],
        (3, 224, 224),
    )


def resnet50_tiny_space() -> SliceSpace:
    base = (8, 16, 32, 64)
    return _space(
        "ds_resnet50_tiny",
        [[b // 4, b // 2, 3 * b // 4, b] for b in base],
        [[1, 2], [1, 2], [1, 2], [1, 2]],
        (3, 32, 32),
    )


@register_supernet(resnet50_space)
def ds_resnet50(*, num_classes: int = 1000, space: SliceSpace, **kw: Any) -> DSResNet:
    return DSResNet(space, num_classes, **kw)


@register_supernet(resnet50_tiny_space)
def ds_resnet50_tiny(*, num_classes: int = 10, space: SliceSpace, **kw: Any) -> DSResNet:
    kw.setdefault("stage_out", (32, 64, 128, 256))
    kw.setdefault("stem_width", 16)
    kw.setdefault("stem_kernel", 3)
    kw.setdefault("stem_stride", 1)
    kw.setdefault("stem_pool", False)
    return DSResNet(space, num_classes, **kw)
