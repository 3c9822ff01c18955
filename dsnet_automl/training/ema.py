"""EMA teacher for in-place bootstrapping (IB).

``ema = d * ema + (1 - d) * model`` for every parameter and floating-point buffer (BN running
statistics included, as timm's ``ModelEmaV2`` and the DS-Net reference do, so the teacher's
statistics lag together with its weights); integer buffers (``num_batches_tracked``) are
copied. With ``warmup`` the decay at update ``n`` (0-based) is ``min(decay, (1+n)/(10+n))``
(TensorFlow's ``num_updates`` rule), so a short run's teacher is not stuck at initialisation.

``bn="batch"`` normalises the teacher's BatchNorm layers with the batch's own statistics (as the
student's largest sub-net does in training) instead of the averaged running statistics, whose
lag behind the averaged weights is doubled (a running average of a running average). The
running statistics are not touched by such a forward. Every other layer stays in eval mode.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..slicing.norm import SlicedBatchNorm2d

__all__ = ["EmaTeacher"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, SlicedBatchNorm2d)


class EmaTeacher(nn.Module):
    """An exponential moving average copy of a model, kept in eval mode, never trained.

    Args:
        model: the model to average (deep-copied).
        decay: EMA decay ``d``.
        warmup: ramp the decay up over the first updates (see module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.997,
        *,
        warmup: bool = True,
        bn: Literal["running", "batch"] = "running",
    ) -> None:
        super().__init__()
        if bn not in ("running", "batch"):
            raise ValueError(f"EmaTeacher bn={bn!r}: choose 'running' or 'batch'")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.bn = bn
        self._norms = [m for m in self.module.modules() if isinstance(m, _BATCH_NORMS)]
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model`` (same architecture)."""
        d = self.current_decay()
        ema_float, src_float = [], []
        for e, s in zip(
            self.module.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if e.dtype.is_floating_point:
                ema_float.append(e)
                src_float.append(s.detach().to(e.dtype))
            else:
                e.copy_(s)
        if ema_float:  # torch's own EMA update (a fused foreach lerp)
            get_ema_multi_avg_fn(d)(ema_float, src_float, None)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        if self.bn == "running" or not self._norms:
            return self.module(*args, **kwargs)
        saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in self._norms]
        for m in self._norms:
            m.training = True
        try:
            return self.module(*args, **kwargs)
        finally:
            for m, bufs in zip(self._norms, saved, strict=True):
                m.training = False
                for k, v in bufs.items():
                    getattr(m, k).copy_(v)

    def train(self, mode: bool = True) -> EmaTeacher:
        """The teacher always stays in eval mode."""
        super().train(False)
        return self
