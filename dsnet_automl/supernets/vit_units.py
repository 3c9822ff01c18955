"""ViT units: patch embedding, a transformer block with *idle embedding slicing*, token head.

Idle slicing (our formulation of DS-ViT++'s "dynamic idle slicing"): the residual stream
always keeps the full embedding width ``E``. A block at active width ``e < E`` reads the prefix
``x[..., :e]``, normalises it (LayerNorm over the ``e`` active channels, sliced affine), runs
attention (``heads`` heads) and the MLP (``hidden`` units) on it, and adds its ``e``-wide
update to that prefix only; channels ``e..E`` are carried unchanged by the residual ("idle")
instead of being discarded, so later, wider blocks and the head still see them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..slicing import SlicedAttention, SlicedLayerNorm, SlicedMlp
from .base import Shape, Unit

__all__ = ["PatchEmbed", "TokenHead", "ViTBlock", "idle_add"]


def idle_add(x: Tensor, delta: Tensor) -> Tensor:
    """Residual add of a prefix update: x: (B, N, E), delta: (B, N, e<=E) -> (B, N, E)."""
    pad = x.shape[-1] - delta.shape[-1]
    return x + (F.pad(delta, (0, pad)) if pad else delta)


class StaticPatchEmbed(nn.Module):
    def __init__(self, proj: nn.Conv2d, cls_token: Tensor, pos_embed: Tensor) -> None:
        super().__init__()
        self.proj = proj
        self.cls_token = nn.Parameter(cls_token)
        self.pos_embed = nn.Parameter(pos_embed)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed


class PatchEmbed(Unit):
    """Conv patchify -> tokens, prepend a class token, add learned position embeddings."""

    kind = "patch_embed"

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim = embed_dim
        self.num_tokens = (img_size // patch_size) ** 2 + 1
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed

    @torch.no_grad()
    def extract(self) -> nn.Module:
        proj = nn.Conv2d(self.in_chans, self.embed_dim, self.patch_size, self.patch_size)
        proj.load_state_dict(self.proj.state_dict())
        proj.to(self.pos_embed.device, self.pos_embed.dtype)
        return StaticPatchEmbed(proj, self.cls_token.clone(), self.pos_embed.clone())

    def macs(self, in_shape: Shape) -> tuple[int, Shape]:
        n = self.num_tokens - 1
        return n * self.embed_dim * self.in_chans * self.patch_size**2, (
            self.num_tokens,
            self.embed_dim,
        )

    def params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hparams(self) -> dict:
        return {"patch": self.patch_size, "embed": self.embed_dim}


class StaticViTBlock(nn.Module):
    """Plain pre-norm transformer block (timm Attention + Mlp) acting on ``x[..., :dim]``."""

    def __init__(self, norm1: nn.LayerNorm, attn: nn.Module, norm2: nn.LayerNorm, mlp: nn.Module):
        super().__init__()
        self.dim = norm1.normalized_shape[0]
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp

    def forward(self, x: Tensor) -> Tensor:
        x = idle_add(x, self.attn(self.norm1(x[..., : self.dim])))
        return idle_add(x, self.mlp(self.norm2(x[..., : self.dim])))


class ViTBlock(Unit):
    """Pre-norm transformer block. Active sizes: ``embed`` (idle slicing), ``heads``, ``hidden``."""

    kind = "vit_block"

    def __init__(
        self, embed_dim: int, max_embed: int, max_heads: int, head_dim: int, max_hidden: int
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim  # residual stream width E
        self.norm1 = SlicedLayerNorm(max_embed)
        self.attn = SlicedAttention(max_embed, max_heads, head_dim)
        self.norm2 = SlicedLayerNorm(max_embed)
        self.mlp = SlicedMlp(max_embed, max_hidden)

    def forward(self, x: Tensor, embed: int, heads: int, hidden: int) -> Tensor:
        x = idle_add(x, self.attn(self.norm1(x[..., :embed]), heads))
        return idle_add(x, self.mlp(self.norm2(x[..., :embed]), hidden))

    @torch.no_grad()
    def extract(self, embed: int, heads: int, hidden: int) -> nn.Module:
        return StaticViTBlock(
            self.norm1.dense_copy(embed),
            self.attn.dense_copy(embed, heads),
            self.norm2.dense_copy(embed),
            self.mlp.dense_copy(embed, hidden),
        )

    def macs(self, in_shape: Shape, embed: int, heads: int, hidden: int) -> tuple[int, Shape]:
        n = in_shape[0]
        return self.attn.macs(embed, heads, n) + self.mlp.macs(embed, hidden, n), in_shape

    def params(self, embed: int, heads: int, hidden: int) -> int:
        return (
            2 * SlicedLayerNorm.params(embed)
            + self.attn.params(embed, heads)
            + self.mlp.params(embed, hidden)
        )

    def hparams(self) -> dict:
        return {"E": self.embed_dim, "head_dim": self.attn.head_dim}


class StaticTokenHead(nn.Module):
    def __init__(self, norm: nn.LayerNorm, fc: nn.Linear) -> None:
        super().__init__()
        self.norm, self.fc = norm, fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(x)[:, 0])


class TokenHead(Unit):
    """Final LayerNorm -> class token -> linear classifier (full width, not sliced)."""

    kind = "token_head"

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(x)[:, 0])

    @torch.no_grad()
    def extract(self) -> nn.Module:
        norm = nn.LayerNorm(self.embed_dim, eps=1e-6)
        norm.load_state_dict(self.norm.state_dict())
        fc = nn.Linear(self.embed_dim, self.num_classes)
        fc.load_state_dict(self.fc.state_dict())
        p = self.fc.weight
        return StaticTokenHead(norm, fc).to(p.device, p.dtype)

    def macs(self, in_shape: Shape) -> tuple[int, Shape]:
        return self.embed_dim * self.num_classes, (self.num_classes,)

    def params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hparams(self) -> dict:
        return {"E": self.embed_dim, "classes": self.num_classes}
