"""Stage I losses: label-smoothed CE (largest sub-net), soft CE against a teacher (the others).

Multi-view consistency (MvCo), our formulation: for two augmented views ``v1, v2`` of a batch
the teacher gives probabilities ``p1 = softmax(T(v1))``, ``p2 = softmax(T(v2))``. A non-largest
sub-net ``s`` is trained on each view towards the teacher on its own view *and* on the other:

    L_s = 1/2 * sum_i  1/2 * [ softCE(s(v_i), p_i) + softCE(s(v_i), p_j) ],   j != i

Soft CE is linear in the target, so this equals ``softCE(s(v_i), (p1 + p2) / 2)`` per view:
the cross-view term makes each sub-net's prediction invariant to the view, anchored on the
teacher. The largest sub-net learns from labels on both views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["label_smoothed_ce", "mvco_targets", "soft_ce"]


def label_smoothed_ce(logits: Tensor, target: Tensor, smoothing: float = 0.1) -> Tensor:
    """logits (B, K), target (B,) class indices -> scalar mean loss."""
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def soft_ce(logits: Tensor, target_probs: Tensor, temperature: float = 1.0) -> Tensor:
    """Cross-entropy against soft targets: logits (B, K), target_probs (B, K) -> scalar mean.

    ``target_probs`` must already be detached; with ``temperature`` T the student's logits are
    divided by T and the loss scaled by T^2 (Hinton), T=1 (the default) leaves it plain.
    """
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(target_probs.float() * logp).sum(-1).mean() * temperature**2


@torch.no_grad()
def mvco_targets(teacher_logits: Tensor, n_views: int = 2) -> Tensor:
    """Teacher logits of the stacked views (V*B, K) -> MvCo targets (V*B, K): every view's
    row gets the mean of the teacher's probabilities over all views of that sample."""
    p = teacher_logits.float().softmax(-1)
    vb, k = p.shape
    mean = p.view(n_views, vb // n_views, k).mean(0)
    return mean.repeat(n_views, 1)
