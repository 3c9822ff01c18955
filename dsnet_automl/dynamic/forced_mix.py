"""Force a dynamic net's gate to a chosen route mix (for speed measurements and tests).

The speed of a routed net does not depend on its trained weights, only on how many samples take
each route. :func:`force_route_mix` rewrites the gate's slimming head so that, on a given set of
calibration inputs, exactly ``round(p_k * N)`` samples take route ``k``, while the routing stays
a genuine per-sample decision computed from the prefix features (so batching, grouping and
scatter run as they would with a trained gate).

How: let ``s = pool(prefix features) . w`` with ``w`` the first principal direction of the pooled
calibration features, made orthogonal to their mean (so ``s`` carries no large offset that
float32 would blur). Hidden unit 0 of the head is set to ``s + c`` (``c`` keeps it positive
through the ReLU; every other hidden unit is zeroed) and route ``k``'s logit to
``k * (s + c) + b_k``. The upper envelope of these K lines splits the ``s`` axis into K
consecutive intervals, one per route, smallest route for the smallest ``s``; the biases ``b_k``
put the interval borders midway between the calibration samples at the cumulative shares.
The attention head is left untouched, so the features each route sees do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import SearchSpaceError
from .gate import pool_features
from .routing import DynamicNet

__all__ = ["force_route_mix", "route_counts"]


def route_counts(proportions: Sequence[float], n: int) -> list[int]:
    """Integer sample counts per route summing to ``n`` (largest-remainder rounding)."""
    p = [float(v) for v in proportions]
    if any(v < 0 for v in p) or sum(p) <= 0:
        raise SearchSpaceError(f"route mix {p} must be non-negative and not all zero")
    total = sum(p)
    raw = [v / total * n for v in p]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(p)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) == n:
            break
        counts[i] += 1
    return counts


@torch.no_grad()
def force_route_mix(dyn: DynamicNet, x_calib: Tensor, proportions: Sequence[float]) -> Tensor:
    """Rewrite ``dyn.gate``'s slimming head so ``x_calib`` routes in ``proportions``.

    Args:
        dyn: the dynamic net; its gate is modified in place (attention head untouched).
        x_calib: (N, *input_size) inputs; the mix is exact on these (N >= number of routes
            with a non-zero share is enough; use the inputs you will time on).
        proportions: K non-negative shares (normalised here), route 0 = smallest.

    Returns:
        the routes (N,) the rewritten gate picks on ``x_calib``.
    """
    k_routes = dyn.num_routes
    if len(proportions) != k_routes:
        raise SearchSpaceError(
            f"route mix has {len(proportions)} shares but the net has {k_routes} routes"
        )
    n = len(x_calib)
    counts = route_counts(proportions, n)
    was_training = dyn.training
    dyn.eval()
    pooled = pool_features(dyn.features(x_calib)).double()
    mean = pooled.mean(0)
    w = torch.zeros(pooled.shape[1], dtype=torch.float64)
    w[0] = 1.0
    if n > 1 and float((pooled - mean).abs().max()) > 0:
        w = torch.linalg.svd(pooled - mean, full_matrices=False).Vh[0]
        # orthogonal to the mean feature: s is then centred, with no large common offset to
        # cancel in float32 (which would blur the borders between routes)
        m = mean / mean.norm().clamp_min(1e-30)
        w_orth = w - (w @ m) * m
        if float(w_orth.norm()) > 1e-3:
            w = w_orth / w_orth.norm()
    s = pooled @ w
    spread = float(s.max() - s.min())
    if spread > 0:  # unit spread: logits of order K, borders well inside float32 precision
        w, s = w / spread, s / spread
    s_sorted = torch.sort(s).values
    spread = 1.0
    c = -float(s_sorted[0]) + spread  # hidden unit stays positive, also a bit beyond the range
    cum = 0
    borders = []  # border between route k-1 and k, on the shifted axis s + c
    for k in range(1, k_routes):
        cum += counts[k - 1]
        if cum <= 0:
            t = float(s_sorted[0]) - spread
        elif cum >= n:
            t = float(s_sorted[-1]) + spread
        else:
            t = 0.5 * float(s_sorted[cum - 1] + s_sorted[cum])
        borders.append(t + c)
    gate = dyn.gate
    dtype, device = gate.fc1.weight.dtype, gate.fc1.weight.device
    gate.fc1.weight.zero_()
    gate.fc1.bias.zero_()
    gate.fc1.weight[0] = w.to(dtype=dtype, device=device)
    gate.fc1.bias[0] = c
    gate.fc2.weight.zero_()
    gate.fc2.weight[:, 0] = torch.arange(k_routes, dtype=dtype, device=device)
    bias = [0.0]
    for t in borders:  # lines k-1 and k cross at t: (k-1) t + b_{k-1} = k t + b_k
        bias.append(bias[-1] - t)
    gate.fc2.bias.copy_(torch.tensor(bias, dtype=dtype, device=device))
    _, logits = gate(dyn.features(x_calib))
    routes = logits.argmax(1)
    dyn.train(was_training)
    got = torch.bincount(routes, minlength=k_routes).tolist()
    top2 = logits.topk(2, 1).values if k_routes > 1 else None
    # a sample whose two best routes are within float32 noise could route differently in
    # another backend (ONNX Runtime): demand a margin
    tight = top2 is not None and float((top2[:, 0] - top2[:, 1]).min()) < 1e-4
    if got != counts or tight:
        raise SearchSpaceError(
            f"could not force route mix {counts} on these inputs (got {got}"
            f"{', with near-ties' if tight else ''}); the calibration inputs' prefix features "
            "are too alike: use more varied inputs"
        )
    return routes
