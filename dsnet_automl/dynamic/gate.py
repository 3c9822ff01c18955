"""The double-headed DS-Net gate.

Placed after a fixed-width prefix of the supernet (all routes share it), it sees the prefix
features ``h`` and has two heads:

- **attention head** (SE-style): ``h * (1 + tanh(W2 relu(W1 pool(h))))`` per channel, with ``W2``
  zero-initialised so an untrained gate leaves the supernet's function unchanged (our choice:
  DS-Net trains its SE head inside the supernet; here Stage I needs no gate at all).
- **slimming head**: ``pool(h) -> linear -> ReLU -> linear -> K logits`` scoring the K routes of a
  :class:`~dsnet_automl.config.RouteSpace`.

Training routes with straight-through Gumbel-softmax (hard one-hot forward, soft gradient,
temperature ``tau``); inference routes with a deterministic argmax (the reference code keeps
Gumbel noise at test time, so its routing is random there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Gate", "pool_features"]


def pool_features(h: Tensor) -> Tensor:
    """Global average: (B, C, H, W) -> (B, C); tokens (B, N, C) -> (B, C)."""
    return h.mean((2, 3)) if h.dim() == 4 else h.mean(1)


class Gate(nn.Module):
    """Args:
    in_channels: width C of the prefix features (channels, or embedding for tokens).
    num_routes: K, the number of routes it chooses between.
    hidden: hidden width of the slimming head (default ``max(16, C // 2)``).
    attention: whether the SE attention head is used.
    attention_reduction: SE bottleneck ratio.
    tau: Gumbel-softmax temperature in training.
    """

    def __init__(
        self,
        in_channels: int,
        num_routes: int,
        *,
        hidden: int | None = None,
        attention: bool = True,
        attention_reduction: int = 4,
        tau: float = 1.0,
    ) -> None:
        super().__init__()
        if num_routes < 1:
            raise ValueError(f"num_routes={num_routes} must be >= 1")
        self.in_channels, self.num_routes, self.tau = in_channels, num_routes, tau
        self.hidden = hidden or max(16, in_channels // 2)
        self.init_kwargs = {
            "in_channels": in_channels,
            "num_routes": num_routes,
            "hidden": self.hidden,
            "attention": attention,
            "attention_reduction": attention_reduction,
            "tau": tau,
        }
        self.fc1 = nn.Linear(in_channels, self.hidden)
        self.fc2 = nn.Linear(self.hidden, num_routes)
        self.attention = attention
        if attention:
            r = max(4, in_channels // attention_reduction)
            self.att1 = nn.Linear(in_channels, r)
            self.att2 = nn.Linear(r, in_channels)
            nn.init.zeros_(self.att2.weight)
            nn.init.zeros_(self.att2.bias)

    def attend(self, h: Tensor, pooled: Tensor) -> Tensor:
        """Apply the attention head. h: (B, C, H, W) or (B, N, C) -> same shape."""
        if not self.attention:
            return h
        scale = 1.0 + torch.tanh(self.att2(F.relu(self.att1(pooled))))
        return h * (scale[:, :, None, None] if h.dim() == 4 else scale[:, None, :])

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h: prefix features -> (attended features, route logits (B, K))."""
        pooled = pool_features(h)
        logits = self.fc2(F.relu(self.fc1(pooled)))
        return self.attend(h, pooled), logits

    def select(self, logits: Tensor, *, hard_sample: bool | None = None) -> Tensor:
        """One-hot route choice (B, K). Training: straight-through Gumbel-softmax; eval: argmax."""
        sample = self.training if hard_sample is None else hard_sample
        if sample:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True)
        return F.one_hot(logits.argmax(1), self.num_routes).to(logits.dtype)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}, routes={self.num_routes}, hidden={self.hidden}, "
            f"attention={self.attention}, tau={self.tau}"
        )
