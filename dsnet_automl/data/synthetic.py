"""``synthetic``: Gaussian images around one random template per class (for shape tests).

Learnable (each class has its own mean image) and instant to build. ``synthetic:N`` sets the
train size (default 512); val and test get ``N // 4`` each.
"""

from __future__ import annotations

import torch

from .base import ArrayDataset, DataSplits

__all__ = ["load_synthetic"]


def load_synthetic(
    n_train: int = 512,
    input_size: tuple[int, int, int] = (3, 32, 32),
    seed: int = 0,
    num_classes: int = 10,
) -> DataSplits:
    """Train/val/test of ``n_train``, ``n_train // 4``, ``n_train // 4`` samples."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn((num_classes, *input_size), generator=g)

    def make(n: int) -> ArrayDataset:
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = templates[y] + torch.randn((n, *input_size), generator=g) * 1.5
        return ArrayDataset(x, y)

    n_eval = max(1, n_train // 4)
    return DataSplits(
        name=f"synthetic:{n_train}",
        train=make(n_train),
        val=make(n_eval),
        test=make(n_eval),
        num_classes=num_classes,
        input_size=tuple(input_size),
        flip_ok=False,
        classes=[str(i) for i in range(num_classes)],
    )
