"""DS-ViT: a DeiT-style vision transformer sliced by heads, MLP ratio, depth and embedding.

Blocks are grouped into stages; per stage the dims are ``stage{i}.embed_dim`` (idle slicing,
see :mod:`.vit_units`), ``stage{i}.heads`` (head_dim fixed), ``stage{i}.mlp_ratio`` (hidden =
round(ratio * active embed)) and ``stage{i}.depth`` (first ``d`` blocks of the stage run).
``ds_deit_small`` is DeiT-S (384 wide, 6 heads of 64, 12 blocks in 3 stages of 4, MLP ratio
4); ``ds_deit_small_tiny`` is a 64-wide, 4-block variant on 32x32 inputs with 4x4 patches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import SliceSpace
from ..slicing import mlp_hidden
from .base import VIT_RECIPE, Supernet
from .registry import register_supernet
from .vit_units import PatchEmbed, TokenHead, ViTBlock

__all__ = ["DSViT"]

_WHAT = ("embed_dim", "heads", "mlp_ratio", "depth")


class DSViT(Supernet):
    """A DS-Net++ vision transformer supernet (MvCo on by default in Stage I).

    Args:
        space: slice grid; stage count is read from it; the widest ``embed_dim`` of all
            stages is the residual stream width.
        num_classes: classifier outputs.
        patch_size: patch side; image size comes from ``space.input_size``.
        head_dim: width of one attention head.
    """

    default_mvco = True
    default_recipe = VIT_RECIPE

    def __init__(
        self,
        space: SliceSpace,
        num_classes: int = 1000,
        *,
        patch_size: int = 16,
        head_dim: int = 64,
    ) -> None:
        super().__init__(space, num_classes)
        n = len({d.split(".")[0] for d in space.dim_names})
        self.dims = [f"stage{i + 1}.{w}" for i in range(n) for w in _WHAT]
        self._require_dims(self.dims)
        c, h, w = space.input_size
        if h != w:
            raise ValueError(f"DS-ViT needs square inputs, got input_size {space.input_size}")
        embed = int(max(space.capacity(f"stage{i + 1}.embed_dim") for i in range(n)))
        self.embed_dim = embed
        self.add_unit(PatchEmbed(h, patch_size, c, embed), "stem")
        self._blocks: list[tuple[int, int, int]] = []
        for s in range(1, n + 1):
            e_cap = int(space.capacity(f"stage{s}.embed_dim"))
            hidden = mlp_hidden(e_cap, float(space.capacity(f"stage{s}.mlp_ratio")))
            heads = int(space.capacity(f"stage{s}.heads"))
            for b in range(int(space.capacity(f"stage{s}.depth"))):
                self.add_unit(ViTBlock(embed, e_cap, heads, head_dim, hidden), f"stage{s}")
                self._blocks.append((len(self.units) - 1, s, b))
        self.add_unit(TokenHead(embed, num_classes), "head")
        self.default_gate_stage = "stage2" if n > 1 else "stage1"
        self._head = len(self.units) - 1

    def _build_plan(self, values: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        plan: list[tuple[int, dict[str, Any]]] = [(0, {})]
        for unit, s, b in self._blocks:
            if b < values[f"stage{s}.depth"]:
                e = int(values[f"stage{s}.embed_dim"])
                plan.append(
                    (
                        unit,
                        {
                            "embed": e,
                            "heads": int(values[f"stage{s}.heads"]),
                            "hidden": mlp_hidden(e, float(values[f"stage{s}.mlp_ratio"])),
                        },
                    )
                )
        plan.append((self._head, {}))
        return plan


def _space(name: str, stages: Sequence[dict[str, Sequence[Any]]], size) -> SliceSpace:
    dims = []
    for i, st in enumerate(stages):
        dims += [(f"stage{i + 1}.{w}", tuple(st[w])) for w in _WHAT]
    return SliceSpace(name, tuple(dims), size)


def deit_small_space() -> SliceSpace:
    stage = {
        "embed_dim": [192, 256, 320, 384],
        "heads": [3, 4, 5, 6],
        "mlp_ratio": [2.0, 2.5, 3.0, 3.5, 4.0],
        "depth": [2, 3, 4],
    }
    return _space("ds_deit_small", [stage] * 3, (3, 224, 224))


def deit_small_tiny_space() -> SliceSpace:
    stage = {
        "embed_dim": [32, 48, 64],
        "heads": [2, 3, 4],
        "mlp_ratio": [1.0, 2.0, 3.0, 4.0],
        "depth": [1, 2],
    }
    return _space("ds_deit_small_tiny", [stage] * 2, (3, 32, 32))


@register_supernet(deit_small_space)
def ds_deit_small(*, num_classes: int = 1000, space: SliceSpace, **kw: Any) -> DSViT:
    return DSViT(space, num_classes, **kw)


@register_supernet(deit_small_tiny_space)
def ds_deit_small_tiny(*, num_classes: int = 10, space: SliceSpace, **kw: Any) -> DSViT:
    kw.setdefault("patch_size", 4)
    kw.setdefault("head_dim", 16)
    return DSViT(space, num_classes, **kw)
