"""Predictor-guided static search: few real evaluations, most of them on the predicted front.

Start with the smallest and the largest sub-net (the two ends of every front) and random ones
up to ``n0 = init_frac x budget``. Then repeat until the budget is spent: fit the accuracy
predictor (:func:`.accuracy_predictor.fit_predictor`) on everything measured, predict the
static front over the whole grid (:func:`.static_front.predicted_front`, latency from the
device table: free), and measure the ``batch`` unmeasured front points that would add most
hypervolume to the measured front if their predicted accuracy were right (greedy, each pick
updating the front; reference point: the smallest sub-net's accuracy and 1.05 x the largest
sub-net's latency). Once-for-All searches its predictor alone; here every proposal is measured
and the predictor is refitted on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..config import SliceSpace, SubnetConfig
from .front import hypervolume, predicted_front
from .predictor import fit_predictor

__all__ = ["guided_static_search"]


def guided_static_search(
    space: SliceSpace,
    evaluate: Callable[[SubnetConfig], float],
    latency: Callable[[SubnetConfig], float],
    budget: int,
    *,
    seed: int = 0,
    init_frac: float = 0.25,
    batch: int = 5,
) -> dict[SubnetConfig, float]:
    """Measure ``budget`` sub-nets chosen as above. -> ``{config: measured accuracy}`` in
    evaluation order. ``evaluate`` is the only costly call (one real evaluation each)."""
    rng = random.Random(seed)
    n0 = min(budget, max(8, round(init_frac * budget)))
    seen: dict[SubnetConfig, float] = {}
    for cfg in (space.smallest(), space.largest()):
        seen[cfg] = evaluate(cfg)
    tries = 0
    while len(seen) < n0 and tries < 100 * n0:
        cfg = space.sample(rng)
        tries += 1
        if cfg not in seen:
            seen[cfg] = evaluate(cfg)
    ref = (seen[space.smallest()], 1.05 * latency(space.largest()))
    while len(seen) < min(budget, space.size):
        cfgs = list(seen)
        pred, _ = fit_predictor(space, cfgs, [seen[c] for c in cfgs], seed=seed)
        cands = [p for p in predicted_front(space, pred.predict, latency) if p.config not in seen]
        front = [(a, latency(c)) for c, a in seen.items()]
        picks: list[SubnetConfig] = []
        for _ in range(min(batch, budget - len(seen), len(cands))):
            base = hypervolume(front, ref)
            gain, best = max(
                (
                    (hypervolume([*front, (p.predicted_accuracy, p.latency_ms)], ref) - base, p)
                    for p in cands
                ),
                key=lambda t: t[0],
            )
            if gain <= 0:
                break
            picks.append(best.config)
            front.append((best.predicted_accuracy, best.latency_ms))
            cands.remove(best)
        if not picks:  # nothing is predicted to improve the front: explore
            picks = [space.sample(rng)]
        for cfg in picks:
            if cfg not in seen and len(seen) < budget:
                seen[cfg] = evaluate(cfg)
    return seen
