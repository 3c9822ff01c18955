"""Slicify timm ``VisionTransformer`` (ViT, DeiT, DeiT-III, ...): heads, MLP ratio and depth.

The blocks are split into (up to) 3 consecutive groups; per group the dims are
``stage{i}.heads`` (the first ``h`` heads; head width fixed), ``stage{i}.mlp_ratio`` (hidden
units = ``round(ratio * embed_dim)``, capped at the timm width) and ``stage{i}.depth`` (the
first ``d`` blocks of the group). The embedding width is not sliced. Blocks reuse
:class:`~dsnet_automl.supernets.vit_units.ViTBlock` (qkv rows permuted to its head-major
layout); LayerScale / drop-path blocks use a subclass. The patch embedding and the head reuse
``PatchEmbed`` / ``TokenHead`` when the timm model matches them (class token, no register
tokens, token pooling) and otherwise run the timm modules as they are.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from timm.layers import Attention, LayerScale, Mlp
from timm.layers import PatchEmbed as TimmPatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer, global_pool_nlc
from torch import Tensor, nn

from ..config import SliceSpace, Value
from ..slicing import mlp_hidden, qkv_timm_to_head_major
from ..supernets.base import VIT_RECIPE, Unit
from ..supernets.vit_units import PatchEmbed, TokenHead, ViTBlock, idle_add
from ._common import FixedUnit, Limit, TimmSupernet, unsupported

__all__ = ["LayerScaleViTBlock", "TimmViTSupernet", "build", "derive_dims", "limits", "matches"]

FAMILY = "vit"
DESCRIPTION = "ViT/DeiT (timm VisionTransformer, e.g. deit_tiny_patch16_224, vit_small_patch16_224)"
N_GROUPS = 3
MLP_FRACTIONS = (0.5, 0.625, 0.75, 0.875, 1.0)


def matches(model: nn.Module) -> bool:
    return type(model) is VisionTransformer


class StaticLSViTBlock(nn.Module):
    """Plain pre-norm block with LayerScale / drop-path (what :class:`LayerScaleViTBlock`
    extracts to)."""

    def __init__(self, norm1, attn, ls1, dp1, norm2, mlp, ls2, dp2) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1, self.drop_path1 = norm1, attn, ls1, dp1
        self.norm2, self.mlp, self.ls2, self.drop_path2 = norm2, mlp, ls2, dp2

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class LayerScaleViTBlock(ViTBlock):
    """:class:`ViTBlock` with timm's LayerScale and drop-path on both residual branches.

    The embedding is not sliced here (``embed`` must be the full width).
    """

    kind = "vit_block_ls"

    def __init__(self, *args: Any, ls1: nn.Module, ls2: nn.Module, dp1: nn.Module, dp2: nn.Module):
        super().__init__(*args)
        self.ls1, self.ls2 = copy.deepcopy(ls1), copy.deepcopy(ls2)
        self.drop_path1, self.drop_path2 = copy.deepcopy(dp1), copy.deepcopy(dp2)

    def forward(self, x: Tensor, embed: int, heads: int, hidden: int) -> Tensor:
        """x: (B, N, E) -> (B, N, E)."""
        x = idle_add(x, self.drop_path1(self.ls1(self.attn(self.norm1(x[..., :embed]), heads))))
        return idle_add(x, self.drop_path2(self.ls2(self.mlp(self.norm2(x[..., :embed]), hidden))))

    @torch.no_grad()
    def extract(self, embed: int, heads: int, hidden: int) -> nn.Module:
        return StaticLSViTBlock(
            self.norm1.dense_copy(embed),
            self.attn.dense_copy(embed, heads),
            copy.deepcopy(self.ls1),
            copy.deepcopy(self.drop_path1),
            self.norm2.dense_copy(embed),
            self.mlp.dense_copy(embed, hidden),
            copy.deepcopy(self.ls2),
            copy.deepcopy(self.drop_path2),
        )

    def params(self, embed: int, heads: int, hidden: int) -> int:
        ls = sum(p.numel() for m in (self.ls1, self.ls2) for p in m.parameters())
        return super().params(embed, heads, hidden) + ls


def _check_block(b: nn.Module, where: str) -> None:
    if type(b) is not Block:
        raise unsupported(where, f"transformer block type {type(b).__name__}")
    a, m = b.attn, b.mlp
    if type(a) is not Attention or getattr(a, "gate", None) is not None:
        raise unsupported(where, f"attention type {type(a).__name__}")
    if not all(type(getattr(a, n)) is nn.Identity for n in ("q_norm", "k_norm", "norm")):
        raise unsupported(where, "attention with qk-norm / scale-norm")
    if a.proj.bias is None or a.qkv.in_features != a.proj.out_features:
        raise unsupported(where, "attention without projection bias")
    if type(m) is not Mlp or type(m.fc1) is not nn.Linear or type(m.norm) is not nn.Identity:
        raise unsupported(where, f"MLP type {type(m).__name__}")
    if type(m.act) is not nn.GELU or m.act.approximate != "none" or m.fc1.bias is None:
        raise unsupported(where, f"MLP activation {m.act!r}")
    for n in ("norm1", "norm2"):
        ln = getattr(b, n)
        if not isinstance(ln, nn.LayerNorm) or ln.weight is None or ln.bias is None:
            raise unsupported(where, f"normalisation {type(ln).__name__}")
    for n in ("ls1", "ls2"):
        if type(getattr(b, n)) not in (nn.Identity, LayerScale):
            raise unsupported(where, f"layer scale {type(getattr(b, n)).__name__}")


def _groups(model: VisionTransformer) -> list[list[int]]:
    depth = len(model.blocks)
    g = min(N_GROUPS, depth)
    sizes = [depth // g + (1 if i < depth % g else 0) for i in range(g)]
    starts = [sum(sizes[:i]) for i in range(g)]
    return [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)]


def _group_info(model: VisionTransformer) -> list[tuple[int, float, int]]:
    """Per group: (heads, MLP ratio, blocks); blocks of a group must share their shapes."""
    if model.attn_pool is not None or getattr(model, "dynamic_img_size", False):
        raise unsupported(type(model).__name__, "attention pooling / dynamic image size")
    out = []
    for gi, idx in enumerate(_groups(model), start=1):
        shapes = set()
        for i in idx:
            b = model.blocks[i]
            _check_block(b, f"blocks.{i}")
            shapes.add((b.attn.num_heads, b.attn.head_dim, b.mlp.fc1.out_features))
        if len(shapes) != 1:
            raise unsupported(f"block group {gi}", f"blocks of different shapes {sorted(shapes)}")
        heads, _, hidden = shapes.pop()
        out.append((heads, round(hidden / model.embed_dim, 4), len(idx)))
    return out


def derive_dims(model: VisionTransformer) -> list[tuple[str, tuple[Value, ...]]]:
    """Default grid per group: heads from half to all, MLP ratio 1/2..1 of the timm ratio,
    depth from ~half to all blocks. Dims with a single choice are left out."""
    dims: list[tuple[str, tuple[Value, ...]]] = []
    for gi, (heads, ratio, n) in enumerate(_group_info(model), start=1):
        dims.append((f"stage{gi}.heads", tuple(range(max(1, heads // 2), heads + 1))))
        dims.append((f"stage{gi}.mlp_ratio", tuple(round(ratio * f, 4) for f in MLP_FRACTIONS)))
        dims.append((f"stage{gi}.depth", tuple(range(max(1, n // 2), n + 1))))
    return [(d, c) for d, c in dims if len(c) > 1]


def limits(model: VisionTransformer) -> dict[str, Limit]:
    out = {}
    for gi, (heads, ratio, n) in enumerate(_group_info(model), start=1):
        out[f"stage{gi}.heads"] = Limit(1, heads, True, f"heads of block group {gi}")
        out[f"stage{gi}.mlp_ratio"] = Limit(0.0, ratio, False, f"MLP ratio of block group {gi}")
        out[f"stage{gi}.depth"] = Limit(1, n, True, f"blocks in block group {gi}")
    return out


class TimmViTSupernet(TimmSupernet):
    """Maps ``heads`` / ``mlp_ratio`` dims to the active sizes of (reused) ViT blocks."""

    default_mvco = True  # a vision transformer, as DSViT
    default_recipe = VIT_RECIPE

    def _active(self, unit: nn.Module, **params: Value) -> dict[str, Any]:
        if not isinstance(unit, ViTBlock):
            return super()._active(unit, **params)
        e, max_hidden = unit.embed_dim, unit.mlp.max_hidden
        hidden = max_hidden
        if "mlp_ratio" in params:
            hidden = min(max_hidden, mlp_hidden(e, float(params["mlp_ratio"])))
        return {
            "embed": e,
            "heads": int(params.get("heads", unit.attn.max_heads)),
            "hidden": hidden,
        }


@torch.no_grad()
def _vit_block(b: Block, e: int) -> ViTBlock:
    a, m = b.attn, b.mlp
    h, hd, hidden = a.num_heads, a.head_dim, m.fc1.out_features
    plain = all(
        type(getattr(b, n)) is nn.Identity for n in ("ls1", "ls2", "drop_path1", "drop_path2")
    )
    if plain:
        unit = ViTBlock(e, e, h, hd, hidden)
    else:
        extra = {"ls1": b.ls1, "ls2": b.ls2, "dp1": b.drop_path1, "dp2": b.drop_path2}
        unit = LayerScaleViTBlock(e, e, h, hd, hidden, **extra)
    for mine, theirs in ((unit.norm1, b.norm1), (unit.norm2, b.norm2)):
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)
        mine.eps = theirs.eps
    unit.attn.qkv_weight.copy_(qkv_timm_to_head_major(a.qkv.weight, h, hd))
    if a.qkv.bias is None:
        unit.attn.qkv_bias = None
    else:
        unit.attn.qkv_bias.copy_(qkv_timm_to_head_major(a.qkv.bias, h, hd))
    unit.attn.proj_weight.copy_(a.proj.weight)
    unit.attn.proj_bias.copy_(a.proj.bias)
    for mine, theirs in ((unit.mlp.fc1, m.fc1), (unit.mlp.fc2, m.fc2)):
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)
    return unit.to(a.qkv.weight.device, a.qkv.weight.dtype)


class TimmViTEmbed(nn.Module):
    """timm's patch embedding + prefix tokens + position embedding, as one module."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.patch_embed = model.patch_embed
        self.cls_token, self.reg_token, self.pos_embed = (
            model.cls_token,
            model.reg_token,
            model.pos_embed,
        )
        self.no_embed_class = model.no_embed_class
        self.pos_drop, self.patch_drop, self.norm_pre = (
            model.pos_drop,
            model.patch_drop,
            model.norm_pre,
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> tokens (B, N, E)."""
        x = self.patch_embed(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        prefix = [
            t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None
        ]
        if self.pos_embed is None:
            x = torch.cat([*prefix, x], dim=1)
        elif self.no_embed_class:
            x = torch.cat([*prefix, x + self.pos_embed], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        return self.norm_pre(self.patch_drop(self.pos_drop(x)))


class TimmViTHead(nn.Module):
    """timm's final norm, pooling, fc-norm and classifier, as one module."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.norm, self.fc_norm, self.head_drop, self.head = (
            model.norm,
            model.fc_norm,
            model.head_drop,
            model.head,
        )
        self.global_pool = model.global_pool
        self.num_prefix_tokens = model.num_prefix_tokens
        self.pool_include_prefix = bool(getattr(model, "pool_include_prefix", False))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, E) -> logits (B, num_classes)."""
        x = global_pool_nlc(
            self.norm(x), self.global_pool, self.num_prefix_tokens, self.pool_include_prefix
        )
        return self.head(self.head_drop(self.fc_norm(x)))


@torch.no_grad()
def _embed_unit(model: VisionTransformer) -> Unit:
    pe = model.patch_embed
    proj = pe.proj
    fits = (
        type(pe) is TimmPatchEmbed
        and type(pe.norm) is nn.Identity
        and pe.flatten
        and type(proj) is nn.Conv2d
        and proj.bias is not None
        and proj.kernel_size == proj.stride
        and proj.kernel_size[0] == proj.kernel_size[1]
        and proj.padding == (0, 0)
        and pe.img_size[0] == pe.img_size[1]
        and model.cls_token is not None
        and model.reg_token is None
        and not model.no_embed_class
        and model.pos_embed is not None
        and all(type(getattr(model, n)) is nn.Identity for n in ("patch_drop", "norm_pre"))
        and model.pos_drop.p == 0
    )
    if not fits:
        return FixedUnit(TimmViTEmbed(model), "timm_vit_embed")
    unit = PatchEmbed(pe.img_size[0], proj.kernel_size[0], proj.in_channels, proj.out_channels)
    unit.proj.load_state_dict(proj.state_dict())
    unit.cls_token.copy_(model.cls_token)
    unit.pos_embed.copy_(model.pos_embed)
    return unit.to(proj.weight.device, proj.weight.dtype)


@torch.no_grad()
def _head_unit(model: VisionTransformer) -> Unit:
    fits = (
        model.global_pool == "token"
        and type(model.fc_norm) is nn.Identity
        and isinstance(model.norm, nn.LayerNorm)
        and model.norm.eps == 1e-6
        and model.norm.bias is not None
        and type(model.head) is nn.Linear
        and model.head_drop.p == 0
    )
    if not fits:
        return FixedUnit(TimmViTHead(model), "timm_vit_head")
    unit = TokenHead(model.embed_dim, model.num_classes)
    unit.norm.load_state_dict(model.norm.state_dict())
    unit.fc.load_state_dict(model.head.state_dict())
    return unit.to(model.head.weight.device, model.head.weight.dtype)


def build(model: VisionTransformer, space: SliceSpace) -> TimmSupernet:
    """The supernet of a timm VisionTransformer for a validated ``space``."""
    net = TimmViTSupernet(space, model.num_classes, family=FAMILY)
    net.add_block(_embed_unit(model), "stem")
    for gi, idx in enumerate(_groups(model), start=1):
        for j, i in enumerate(idx):
            unit = _vit_block(model.blocks[i], model.embed_dim)
            params = {"heads": f"stage{gi}.heads", "mlp_ratio": f"stage{gi}.mlp_ratio"}
            net.add_block(unit, f"stage{gi}", index=j, params=params)
    net.add_block(_head_unit(model), "head")
    net.default_gate_stage = "stage2" if len(_groups(model)) > 1 else "stage1"  # as DSViT
    return net
