"""scikit-learn's bundled 8x8 digits (no download): ``digits`` and ``digits-hard``.

``digits``: the 1797 images upsampled (bilinear) to the supernet's input size, grey repeated
over the channels, split train/val/test (70/10/20, stratified) by ``seed``.

``digits-hard``: every image of a split appears ``copies`` times, copy ``k`` with a difficulty
``d`` drawn uniformly from ``[k/copies, (k+1)/copies)``, so each image is seen from clean to
severe. A copy of difficulty ``d`` gets, with strengths scaled by ``d``:

- a random affine warp: rotation up to 45 d degrees, scale ``exp(+-0.3 d)``, shear up to 0.45 d,
  translation up to 0.15 d of the image side;
- lowered contrast (``x * (1 - 0.3 d)``) plus Gaussian noise with std ``0.22 d``;
- for ``d > 0.25``, an occluding rectangle of side up to ``0.35 d`` of the image, filled with a
  random grey level (it can look like an extra stroke).

Splits are made by *source image* before copying, so no digit leaks between train and test.
Difficulty is kept per sample (``dataset.difficulty``) for routing benchmarks. Everything is
computed once with batched tensor ops and cached in memory.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ArrayDataset, DataSplits

__all__ = ["corrupt", "load_digits_splits"]


def _split_indices(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=0.125, stratify=y[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _upsample(img8: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 8, 8) in [0, 1] -> (N, 1, H, W)."""
    return F.interpolate(img8[:, None], size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def corrupt(x: Tensor, d: Tensor, g: torch.Generator) -> Tensor:
    """Corrupt grey images with per-sample strength.

    Args:
        x: (N, 1, H, W) clean images in [0, 1] (background 0).
        d: (N,) difficulty in [0, 1]; 0 leaves an image unchanged.
        g: random generator (all randomness comes from it).

    Returns:
        (N, 1, H, W) corrupted images (not clamped: noise may leave [0, 1]).
    """
    n, _, h, w = x.shape

    def u() -> Tensor:  # (N,) uniform in [-1, 1)
        return torch.rand(n, generator=g) * 2 - 1

    ang = u() * math.radians(45) * d
    scale = torch.exp(u() * 0.3 * d)
    shear = u() * 0.45 * d
    tx, ty = u() * 0.3 * d, u() * 0.3 * d  # normalised coords span 2 -> 15% of the side
    cos, sin = torch.cos(ang), torch.sin(ang)
    # inverse map (output -> input coords) of rotation * shear * scale
    a = torch.stack([cos, -sin + shear * cos, tx, sin, cos + shear * sin, ty], 1).view(n, 2, 3)
    a[:, :, :2] /= scale[:, None, None]
    grid = F.affine_grid(a, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    out = out * (1 - 0.3 * d)[:, None, None, None]
    out = out + torch.randn(out.shape, generator=g) * (0.22 * d)[:, None, None, None]

    # occlusion: one rectangle per sample with d > 0.25
    side = (0.2 + 0.8 * torch.rand(n, generator=g)) * 0.35 * d
    bh, bw = (side * h).round().long(), (side * w).round().long()
    y0 = (torch.rand(n, generator=g) * (h - bh + 1).float()).long()
    x0 = (torch.rand(n, generator=g) * (w - bw + 1).float()).long()
    fill = torch.rand(n, generator=g)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    box = (
        (rows >= y0[:, None, None])
        & (rows < (y0 + bh)[:, None, None])
        & (cols >= x0[:, None, None])
        & (cols < (x0 + bw)[:, None, None])
        & (d > 0.25)[:, None, None]
    )
    return torch.where(box[:, None], fill[:, None, None, None], out)


def _make_split(
    img: Tensor,
    y: Tensor,
    copies: int,
    size: tuple[int, int],
    g: torch.Generator,
    severity: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    clean = _upsample(img, size)
    if copies == 0:
        return clean, y, torch.zeros(len(y))
    n = len(y)
    k = torch.arange(copies).repeat_interleave(n)
    d = (k + torch.rand(copies * n, generator=g)) / copies
    x = corrupt(clean.repeat(copies, 1, 1, 1), d * severity, g)
    return x, y.repeat(copies), d


@lru_cache(maxsize=8)
def load_digits_splits(
    hard: bool, input_size: tuple[int, int, int], seed: int, copies: int = 4, severity: float = 1.0
) -> DataSplits:
    """Digits splits; see the module docstring. ``copies`` and ``severity`` (a factor on every
    corruption strength: ``d * severity``) are used only when ``hard``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    img = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    c, h, w = input_size
    g = torch.Generator().manual_seed(seed)
    parts = []
    for idx in _split_indices(bunch.target, seed):
        t = torch.from_numpy(idx)
        parts.append(_make_split(img[t], y[t], copies if hard else 0, (h, w), g, severity))
    mean = parts[0][0].mean()
    std = parts[0][0].std()
    sets = []
    for x, yy, d in parts:
        x = ((x - mean) / std).expand(-1, c, -1, -1)
        sets.append(ArrayDataset(x.contiguous(), yy, d if hard else None))
    return DataSplits(
        name="digits-hard" if hard else "digits",
        train=sets[0],
        val=sets[1],
        test=sets[2],
        num_classes=10,
        input_size=(c, h, w),
        flip_ok=False,
        classes=[str(i) for i in range(10)],
    )
