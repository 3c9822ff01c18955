"""BatchNorm recalibration of the per-width running statistics.

During Stage I every width's statistics row is updated with momentum 0.1 by whichever
sub-nets happened to use it, so a row mixes inputs from many upstream widths and from
changing weights. :func:`calibrate_bn` recomputes the rows a list of configs uses (e.g. a
route space, or smallest/middle/largest) from ``batches`` forward passes per config in train
mode with *cumulative* averaging (``momentum=None`` semantics of ``nn.BatchNorm2d``: the
running value is the plain mean over every batch that reached the row). Rows no listed config
touches keep their values. A row shared by several listed configs gets their average.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..config import SubnetConfig
from ..slicing import SlicedBatchNorm2d

__all__ = ["calibrate_bn"]


@torch.no_grad()
def calibrate_bn(
    net: nn.Module,
    batches: Iterable[Tensor | Sequence[Tensor]],
    configs: Sequence[SubnetConfig | None],
    *,
    num_batches: int = 20,
    device: torch.device | str | None = None,
) -> int:
    """Recompute BN running statistics of ``configs`` in place.

    Args:
        net: a supernet (``net(x, cfg)``).
        batches: iterable of ``x`` (B, C, H, W) or ``(x, y, ...)`` tuples; its first
            ``num_batches`` are reused for every config.
        configs: the sub-nets whose statistics to recompute.
        num_batches: batches per config.
        device: where to run (default: the net's device).

    Returns:
        number of statistics rows recalibrated (0 for a net without sliced BN, e.g. a ViT).
    """
    bns = [m for m in net.modules() if isinstance(m, SlicedBatchNorm2d)]
    if not bns:
        return 0
    device = device or next(net.parameters()).device
    xs: list[Tensor] = []
    for b in batches:
        xs.append((b[0] if isinstance(b, list | tuple) else b).to(device))
        if len(xs) >= num_batches:
            break
    seen: dict[tuple[int, int], int] = {}
    old_momentum = {m: m.momentum for m in bns}
    was_training = net.training

    def pre_hook(m: SlicedBatchNorm2d, args: tuple, kwargs: dict) -> None:
        x = args[0]
        key = kwargs.get("key", args[1] if len(args) > 1 else None)
        r = m.row(x.shape[1] if key is None else key)
        n = seen.get((id(m), r), 0)
        if n == 0:  # first touch in this calibration: forget the old statistics of the row
            m.running_mean[r].zero_()
            m.running_var[r].fill_(1.0)
            m.num_batches_tracked[r] = 0
        seen[(id(m), r)] = n + 1
        m.momentum = 1.0 / (n + 1)

    handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for m in bns]
    try:
        net.eval()
        for m in bns:
            m.train()
        for cfg in configs:
            for x in xs:
                net(x, cfg)
    finally:
        for h in handles:
            h.remove()
        for m, mom in old_momentum.items():
            m.momentum = mom
        net.train(was_training)
    return len(seen)
