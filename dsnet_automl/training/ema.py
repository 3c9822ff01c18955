"""EMA teacher for in-place bootstrapping (IB).

``ema = d * ema + (1 - d) * model`` for every parameter and floating-point buffer (BN running
statistics included, as timm's ``ModelEmaV2`` and the DS-Net reference do, so the teacher's
statistics lag together with its weights); integer buffers (``num_batches_tracked``) are
copied. With ``warmup`` the decay at update ``n`` (0-based) is ``min(decay, (1+n)/(10+n))``
(TensorFlow's ``num_updates`` rule), so a short run's teacher is not stuck at initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EmaTeacher"]


class EmaTeacher(nn.Module):
    """An exponential moving average copy of a model, kept in eval mode, never trained.

    Args:
        model: the model to average (deep-copied).
        decay: EMA decay ``d``.
        warmup: ramp the decay up over the first updates (see module docstring).
    """

    def __init__(self, model: nn.Module, decay: float = 0.997, *, warmup: bool = True) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
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
        torch._foreach_lerp_(ema_float, src_float, 1.0 - d)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> EmaTeacher:
        """The teacher always stays in eval mode."""
        super().train(False)
        return self
