"""How much can routing pay on a checkpoint, a route space and a device? Per-image outcomes.

:func:`collect_outcomes` runs every route of a :class:`~dsnet_automl.dynamic.DynamicNet` on
every image once (prefix once, the gate's attention head applied; an untrained gate's head is the
identity) and keeps each route's class logits and the gate's route logits. Everything else is
arithmetic on those tensors, so one pass prices every policy and knob value:

- **static**: every image on one route (route k alone, with the same attention head);
- **oracle**: each image on its cheapest route that classifies it correctly (the largest when
  none does), and the oracle *front*: the best accuracy any per-image assignment reaches at
  each expected cost (a greedy knapsack: hopeless images stay on the cheapest route, the
  others are upgraded to their cheapest correct route in order of extra cost). It is an upper
  bound for these routes, inflated by error diversity when there are many routes;
- **gate** at a budget-knob value and **cascade** at a threshold (:mod:`.policies`).

Costs are whole-route costs (prefix included) in the route space's unit (device latency when
the route space carries it), plus the prefix's own cost for the cascade.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .policies import biased_routes, calibrate, cascade_costs, cascade_routes

__all__ = [
    "Point",
    "RouteOutcomes",
    "best_at",
    "collect_outcomes",
    "knob_curves",
    "policy_fronts",
    "spread_ratio",
]


@dataclass(frozen=True)
class Point:
    """One operating point: accuracy, expected cost, the share of images per final route and
    the knob value that gives it (``None`` for static and oracle points)."""

    accuracy: float
    cost: float
    shares: tuple[float, ...]
    knob: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "cost": self.cost,
            "shares": [round(s, 4) for s in self.shares],
            "knob": self.knob,
        }


@dataclass
class RouteOutcomes:
    """Every route's output on every image of one split.

    Attributes:
        route_logits: (N, K, C) class logits of each route.
        labels: (N,) true classes.
        gate_logits: (N, K) the slimming head's route scores.
        costs: (K,) whole-route costs, non-decreasing.
        prefix_cost: cost of the shared prefix (the part a cascade pays once).
    """

    route_logits: Tensor
    labels: Tensor
    gate_logits: Tensor
    costs: tuple[float, ...]
    prefix_cost: float = 0.0

    @property
    def num_routes(self) -> int:
        return self.route_logits.shape[1]

    @functools.cached_property
    def correct(self) -> Tensor:
        """(N, K) bool: route k classifies image i correctly."""
        return self.route_logits.argmax(-1) == self.labels[:, None]

    @functools.cached_property
    def confidence(self) -> Tensor:
        """(N, K) top softmax probability of each route."""
        return self.route_logits.float().softmax(-1).amax(-1)

    def _point(self, routes: Tensor, cost: Tensor | None = None, knob=None) -> Point:
        n = len(routes)
        ok = self.correct.gather(1, routes[:, None]).squeeze(1)
        c = torch.as_tensor(self.costs, dtype=torch.float64)
        per = c[routes] if cost is None else cost
        shares = torch.bincount(routes, minlength=self.num_routes).double() / max(1, n)
        return Point(float(ok.double().mean()), float(per.mean()), tuple(shares.tolist()), knob)

    # -- static and oracle -----------------------------------------------------------------
    def static(self, k: int) -> Point:
        """Every image on route ``k``."""
        return self._point(torch.full((len(self.labels),), k, dtype=torch.long))

    def static_front(self) -> list[Point]:
        return [self.static(k) for k in range(self.num_routes)]

    def oracle(self) -> Point:
        """Each image on its cheapest correct route, the largest when none is correct."""
        corr = self.correct
        any_ok = corr.any(1)
        first = corr.double().argmax(1)  # first True (routes are sorted by cost)
        routes = torch.where(any_ok, first, self.num_routes - 1)
        return self._point(routes)

    def oracle_front(self) -> list[Point]:
        """Best accuracy at each expected cost over all per-image route assignments: start
        with every image on route 0, upgrade the fixable ones (wrong on route 0, right on a
        dearer route) to their cheapest correct route, cheapest upgrade first."""
        corr = self.correct
        n = len(self.labels)
        c = torch.as_tensor(self.costs, dtype=torch.float64)
        routes = torch.zeros(n, dtype=torch.long)
        fix = (~corr[:, 0]) & corr.any(1)
        target = corr.double().argmax(1)
        idx = fix.nonzero().squeeze(1)
        order = idx[torch.argsort(c[target[idx]], stable=True)]
        pts = [self._point(routes)]
        last_cost = None
        for i in order.tolist():
            routes[i] = target[i]
            if last_cost is not None and float(c[target[i]]) == last_cost:
                pts[-1] = self._point(routes.clone())
            else:
                pts.append(self._point(routes.clone()))
            last_cost = float(c[target[i]])
        return pts

    # -- gate with the budget knob ---------------------------------------------------------
    def gate_routes(self, bias: float = 0.0) -> Tensor:
        return biased_routes(self.gate_logits, self.costs, bias)

    def gate(self, bias: float = 0.0) -> Point:
        return self._point(self.gate_routes(bias), knob=bias)

    def bias_range(self) -> tuple[float, float]:
        """A knob range wide enough to send every image to the largest (lo) or smallest (hi)
        route: twice the largest spread of the gate's logits."""
        g = self.gate_logits
        span = float((g.amax(1) - g.amin(1)).max()) if len(g) else 1.0
        c = self.costs
        gaps = [(b - a) / max(c[-1], 1e-12) for a, b in zip(c, c[1:], strict=False) if b > a]
        b = 2.0 * max(span, 1.0) / max(min(gaps, default=1.0), 1e-6)
        return -b, b

    def gate_front(self, n: int = 41) -> list[Point]:
        lo, hi = self.bias_range()
        return [self.gate(float(b)) for b in torch.linspace(lo, hi, n).tolist()]

    def gate_at(self, budget: float) -> Point:
        """The gate with its knob calibrated on these outcomes to ``budget``."""
        lo, hi = self.bias_range()
        c = torch.as_tensor(self.costs, dtype=torch.float64)
        cal = calibrate(
            lambda b: float(c[self.gate_routes(b)].mean()), budget, lo, hi, increasing=False
        )
        return self.gate(cal.knob)

    # -- cascade ---------------------------------------------------------------------------
    def cascade(self, threshold: float, chain: Sequence[int]) -> Point:
        final, ran = cascade_routes(self.route_logits, threshold, chain, conf=self.confidence)
        cost = cascade_costs(ran, self.costs, self.prefix_cost)
        return self._point(final, cost, knob=threshold)

    def cascade_front(self, chain: Sequence[int], n: int = 41) -> list[Point]:
        """The cascade at ``n`` thresholds: 0, 1 and quantiles of the first route's
        confidence (where its escalation share changes)."""
        conf = self.confidence[:, chain[0]].double()
        qs = torch.quantile(conf, torch.linspace(0, 1, max(2, n - 2), dtype=torch.float64))
        ts = sorted({0.0, 1.0, *(float(q) + 1e-9 for q in qs)})
        return [self.cascade(min(1.0, t), chain) for t in ts]

    def cascade_at(self, budget: float, chain: Sequence[int]) -> Point:
        def cost(t: float) -> float:
            _, ran = cascade_routes(self.route_logits, t, chain, conf=self.confidence)
            return float(cascade_costs(ran, self.costs, self.prefix_cost).mean())

        cal = calibrate(cost, budget, 0.0, 1.0, increasing=True, iters=40)
        return self.cascade(cal.knob, chain)


def best_at(points: Iterable[Point], budget: float) -> Point | None:
    """The most accurate point whose cost is at most ``budget`` (``None`` if none is)."""
    ok = [p for p in points if p.cost <= budget * (1 + 1e-9)]
    return max(ok, key=lambda p: (p.accuracy, -p.cost)) if ok else None


def spread_ratio(costs: Sequence[float]) -> float:
    """Largest over smallest route cost (how much routing could save at best)."""
    return float(max(costs) / min(costs)) if min(costs) > 0 else float("inf")


@torch.no_grad()
def collect_outcomes(dyn, loader, *, prefix_cost: float = 0.0, device=None) -> RouteOutcomes:
    """Run the prefix once, the gate, and every route on every image of ``loader``.

    Args:
        dyn: a :class:`~dsnet_automl.dynamic.DynamicNet` (its gate's attention head is applied;
            an untrained gate's is the identity).
        loader: yields ``(x, y, ...)`` batches.
        prefix_cost: cost of the shared prefix in the unit of the route costs.
    """
    was = dyn.training
    dyn.eval()
    device = device or next(dyn.parameters()).device
    outs, labels, gates = [], [], []
    for x, y, *_ in loader:
        h, g = dyn.gated(dyn.features(x.to(device)))
        outs.append(torch.stack([dyn.run_route(k, h) for k in range(dyn.num_routes)], 1).cpu())
        labels.append(y.cpu())
        gates.append(g.cpu())
    dyn.train(was)
    return RouteOutcomes(
        torch.cat(outs).float(),
        torch.cat(labels),
        torch.cat(gates).float(),
        tuple(float(c) for c in dyn.route_costs()),
        float(prefix_cost),
    )


def knob_curves(o: RouteOutcomes, chain: Sequence[int], n: int = 101) -> dict[str, Any]:
    """Both policies' knob curves on ``o`` (val): ``{"gate": [[bias, cost, top1], ...],
    "cascade": [[threshold, cost, top1], ...], "chain": [...], "n": images}``, one row per
    budget on ``n`` budgets spread over the route costs (each knob calibrated by bisection).
    Stored in a bundle, they let ``--budget-ms`` pick a knob without data
    (:func:`~.policies.pick_knob`)."""
    lo, hi = o.costs[0], o.costs[-1]
    budgets = torch.linspace(lo, hi, n, dtype=torch.float64).tolist()

    def rows(pts: list[Point]) -> list[list[float]]:
        uniq = {(round(p.knob, 9), p.cost): p for p in pts}
        return [[p.knob, p.cost, round(p.accuracy, 6)] for p in uniq.values()]

    return {
        "gate": rows([o.gate_at(b) for b in budgets]),
        "cascade": rows([o.cascade_at(b, chain) for b in budgets]),
        "chain": list(chain),
        "n": len(o.labels),
    }


def policy_fronts(
    val: RouteOutcomes, test: RouteOutcomes, chain: Sequence[int], n: int = 9
) -> dict[str, list[list[float]]]:
    """What one trained gate gives at ``n`` budgets spread over its route costs: each knob set
    on val, scored on test. ``{"gate": rows, "cascade": rows}``, a row being ``[budget,
    val top-1, val cost, test top-1, test cost]``: one trial yields a front, not a point."""
    budgets = torch.linspace(val.costs[0], val.costs[-1], n, dtype=torch.float64).tolist()
    out: dict[str, list[list[float]]] = {"gate": [], "cascade": []}
    for b in budgets:
        g = val.gate_at(b)
        t = test.gate(g.knob if g.knob is not None else 0.0)
        out["gate"].append([b, g.accuracy, g.cost, t.accuracy, t.cost])
        c = val.cascade_at(b, chain)
        t = test.cascade(c.knob if c.knob is not None else 1.0, chain)
        out["cascade"].append([b, c.accuracy, c.cost, t.accuracy, t.cost])
    return out
