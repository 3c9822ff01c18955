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
    part: tuple[int, int] | None = None,
) -> Tensor:
    """One augmented view.

    Args:
        x: (B, C, H, W) normalised images.
        g: generator on ``x.device``'s type (CPU generators are used for CPU tensors).
        max_shift: largest translation as a fraction of the side (uniform per sample).
        noise_std: std of additive Gaussian noise (in normalised units).
        flip: also flip horizontally with probability 1/2.
        part: ``(offset, total)``: ``x`` is rows ``offset:offset+B`` of a batch of ``total``
            (data-parallel shard); the random numbers are drawn for the whole batch and these
            rows kept, so the shards of a batch get exactly the single-process augmentation.

    Returns:
        (B, C, H, W) view.
    """
    b = x.shape[0]
    dev = x.device
    offset, total = part or (0, b)
    rows = slice(offset, offset + b)
    shift = (torch.rand((total, 2), generator=g, device=g.device)[rows] * 2 - 1) * (2 * max_shift)
    theta = torch.zeros((b, 2, 3), device=g.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    if flip:
        draw = torch.rand(total, generator=g, device=g.device)[rows]
        sign = torch.where(draw < 0.5, -1.0, 1.0)
        theta[:, 0, 0] = sign
    theta = theta.to(dev, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if noise_std > 0:
        noise = torch.randn((total, *out.shape[1:]), generator=g, device=g.device)[rows]
        out = out + noise.to(dev, x.dtype) * noise_std
    return out


def make_views(
    x: Tensor,
    g: torch.Generator,
    n_views: int = 2,
    *,
    flip: bool = False,
    part: tuple[int, int] | None = None,
    **kw: float,
) -> list[Tensor]:
    """``n_views`` independent augmented views of the batch ``x`` (B, C, H, W); ``part`` as in
    :func:`augment`."""
    return [augment(x, g, flip=flip, part=part, **kw) for _ in range(n_views)]
