"""Routing policies on a trained dynamic net, and the one knob that moves each along its front.

Two ways to pick each image's route after the shared prefix:

- **gate** (DS-Net): the slimming head scores the K routes; the image takes the argmax of
  ``logits - bias * cost_k / cost_{K-1}``. ``bias`` is the deploy-time **budget knob**: 0 is the
  trained gate, a larger bias moves images to cheaper routes. For every image the chosen
  route's cost is non-increasing in ``bias`` (argmax of ``f_k - b c_k``: if ``b' > b`` chose a
  dearer route than ``b``, adding the two optimality inequalities gives ``(b' - b)(c' - c) <= 0``),
  so the expected cost is monotone in the knob and one trained gate traces a whole front.
- **cascade** (confidence escalation): every image runs the cheapest route of a ``chain`` of
  routes first; an image whose top softmax probability is below ``threshold`` runs the next
  route of the chain on the same prefix features, and so on. Its cost counts every suffix it
  really ran. A larger threshold never escalates fewer images (monotone knob).

Both knobs are set for a latency budget by :func:`calibrate`, on validation data: bisection on a
monotone step function, taking the knob whose expected cost is the largest not above the budget.

Pure tensor functions; :class:`~dsnet_automl.dynamic.DynamicNet` and the ONNX Runtime runtime
(:mod:`dsnet_automl.runtime.ort`, numpy) apply the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import SearchSpaceError

__all__ = [
    "DEFAULT_KNOBS",
    "POLICIES",
    "Calibration",
    "biased_routes",
    "calibrate",
    "pick_knob",
    "cascade_chain",
    "cascade_routes",
    "cascade_costs",
    "route_bias",
]

POLICIES = ("gate", "cascade")
# each policy's knob when none is asked for: the trained gate as it is; escalate below 50%
DEFAULT_KNOBS = {"gate": 0.0, "cascade": 0.5}


def route_bias(costs: Sequence[float] | Tensor, bias: float) -> Tensor:
    """The per-route offset subtracted from the gate's logits: ``bias * cost_k / max cost``. (K,)"""
    c = torch.as_tensor(costs, dtype=torch.float64)
    return (bias * c / c.max().clamp_min(1e-12)).float()


def biased_routes(gate_logits: Tensor, costs: Sequence[float] | Tensor, bias: float) -> Tensor:
    """Each image's route under the budget knob. gate_logits: (B, K) -> LongTensor (B,)."""
    if bias == 0:
        return gate_logits.argmax(1)
    return (gate_logits - route_bias(costs, bias).to(gate_logits)).argmax(1)


def cascade_chain(num_routes: int, chain: Sequence[int] | str | None = None) -> tuple[int, ...]:
    """The routes a cascade tries, in order: ``"all"`` (default: 0, 1, ..., K-1), ``"ends"``
    (0, K-1) or explicit increasing indices.

    Raises:
        SearchSpaceError: indices out of range or not increasing.
    """
    if chain is None or chain == "all":
        return tuple(range(num_routes))
    if chain == "ends":
        return (0, num_routes - 1) if num_routes > 1 else (0,)
    if isinstance(chain, str):
        raise SearchSpaceError(f"cascade chain {chain!r}; allowed: 'all', 'ends' or route indices")
    out = tuple(int(k) for k in chain)
    if not out or any(not 0 <= k < num_routes for k in out) or list(out) != sorted(set(out)):
        raise SearchSpaceError(
            f"cascade chain {list(out)} must be increasing route indices in 0..{num_routes - 1}"
        )
    return out


def confidence(logits: Tensor) -> Tensor:
    """Top softmax probability of each row. (B, C) -> (B,)"""
    return logits.float().softmax(-1).amax(-1)


@torch.no_grad()
def cascade_routes(
    route_logits: Tensor, threshold: float, chain: Sequence[int], conf: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cascade decisions from every route's output (evaluation form).

    Args:
        route_logits: (N, K, C) each image's class logits on every route.
        threshold: escalate while the current route's top softmax probability is below it.
        chain: the routes tried, in order (:func:`cascade_chain`).
        conf: (N, K) precomputed top softmax probabilities (default: from ``route_logits``).

    Returns:
        ``(final, ran)``: the route whose output each image keeps (N,) and which routes it ran
        (N, K) bool.
    """
    n, k, _ = route_logits.shape
    if conf is None:
        conf = route_logits.float().softmax(-1).amax(-1)
    ran = torch.zeros(n, k, dtype=torch.bool)
    final = torch.full((n,), chain[0], dtype=torch.long)
    active = torch.ones(n, dtype=torch.bool)
    for i, r in enumerate(chain):
        ran[active, r] = True
        final[active] = r
        if i + 1 == len(chain):
            break
        active = active & (conf[:, r] < threshold)
    return final, ran


def cascade_costs(ran: Tensor, costs: Sequence[float], prefix_cost: float) -> Tensor:
    """Each image's cost under a cascade: the prefix once plus every suffix it ran. (N,)

    ``costs`` are whole-route costs (prefix included); a suffix costs ``cost_k - prefix_cost``.
    """
    c = torch.as_tensor(costs, dtype=torch.float64)
    return prefix_cost + ran.double() @ (c - prefix_cost)


@dataclass(frozen=True)
class Calibration:
    """A knob value set for a budget, and what it gives on the calibration data."""

    knob: float
    expected_cost: float
    budget: float
    reachable: bool  # False: even the cheapest setting costs more than the budget


def calibrate(
    expected_cost: Callable[[float], float],
    budget: float,
    lo: float,
    hi: float,
    *,
    increasing: bool,
    iters: int = 60,
) -> Calibration:
    """The knob in ``[lo, hi]`` whose expected cost is the largest not above ``budget``, in the
    middle of the knob interval that gives that cost (away from where an image changes route).

    ``expected_cost`` must be monotone in the knob (``increasing`` says which way). When no
    knob meets the budget, the cheapest end is returned with ``reachable=False``.
    """
    cheap, dear = (lo, hi) if increasing else (hi, lo)
    c_cheap = expected_cost(cheap)
    if c_cheap > budget:
        return Calibration(cheap, c_cheap, budget, False)
    c_dear = expected_cost(dear)
    if c_dear <= budget:
        return Calibration(dear, c_dear, budget, True)
    ok, bad = cheap, dear  # invariant: cost(ok) <= budget < cost(bad)
    c_ok = c_cheap
    for _ in range(iters):
        mid = 0.5 * (ok + bad)
        c = expected_cost(mid)
        if c <= budget:
            ok, c_ok = mid, c
        else:
            bad = mid
    # ``ok`` sits at the edge of its plateau (next to where an image changes route): move to
    # the plateau's middle, so float differences between backends (torch vs numpy softmax)
    # cannot flip the images at that edge
    edge, inner = cheap, ok  # invariant: cost(inner) == c_ok; cost(edge) != c_ok unless equal
    if c_cheap != c_ok:
        for _ in range(iters):
            mid = 0.5 * (edge + inner)
            if expected_cost(mid) == c_ok:
                inner = mid
            else:
                edge = mid
    else:
        inner = cheap
    knob = 0.5 * (inner + ok)
    return Calibration(knob, expected_cost(knob), budget, True)


def pick_knob(curve: Sequence[Sequence[float]], budget: float) -> Calibration:
    """From a knob curve ``[(knob, expected cost, accuracy), ...]`` measured on val, the entry
    with the largest expected cost not above ``budget`` (the most accurate among equals); the
    cheapest entry with ``reachable=False`` when none fits.

    Raises:
        SearchSpaceError: an empty curve.
    """
    if not curve:
        raise SearchSpaceError("no knob curve: the bundle was trained before budget knobs existed")
    fit = [row for row in curve if row[1] <= budget * (1 + 1e-9)]
    if not fit:
        cheap = min(curve, key=lambda r: (r[1], -r[2]))
        return Calibration(float(cheap[0]), float(cheap[1]), budget, False)
    best = max(fit, key=lambda r: (r[1], r[2]))
    return Calibration(float(best[0]), float(best[1]), budget, True)
