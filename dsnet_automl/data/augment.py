"""Cheap label-preserving batch augmentation, used for training views and for multi-view
consistency (MvCo): a random sub-pixel translation per sample, light Gaussian noise, and a
horizontal flip only where it keeps the label (natural images; never digits, where a flip
turns a 2 into something else).

Everything runs on the batch's device from one ``torch.Generator``, so views are reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment", "make_views"]


def augment(
    x: Tensor,
    g: torch.Generator,
    *,
    max_shift: float = 0.1,
    noise_std: float = 0.1,
    flip: bool = False,
) -> Tensor:
    """One augmented view.

    Args:
        x: (B, C, H, W) normalised images.
        g: generator on ``x.device``'s type (CPU generators are used for CPU tensors).
        max_shift: largest translation as a fraction of the side (uniform per sample).
        noise_std: std of additive Gaussian noise (in normalised units).
        flip: also flip horizontally with probability 1/2.

    Returns:
        (B, C, H, W) view.
    """
    b = x.shape[0]
    dev = x.device
    shift = (torch.rand((b, 2), generator=g, device=g.device) * 2 - 1) * (2 * max_shift)
    theta = torch.zeros((b, 2, 3), device=g.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    if flip:
        sign = torch.where(torch.rand(b, generator=g, device=g.device) < 0.5, -1.0, 1.0)
        theta[:, 0, 0] = sign
    theta = theta.to(dev, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if noise_std > 0:
        out = (
            out + torch.randn(out.shape, generator=g, device=g.device).to(dev, x.dtype) * noise_std
        )
    return out


def make_views(
    x: Tensor, g: torch.Generator, n_views: int = 2, *, flip: bool = False, **kw: float
) -> list[Tensor]:
    """``n_views`` independent augmented views of the batch ``x`` (B, C, H, W)."""
    return [augment(x, g, flip=flip, **kw) for _ in range(n_views)]
