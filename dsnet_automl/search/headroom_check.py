"""The one-line headroom summary a search prints before its trials: can routing pay here?

On the study's route menu (every route the trials can draw, costed on the target device at the
study's latency batch) and the val split, with no gate yet:

- **cost spread**: dearest over cheapest route. Below :data:`MIN_SPREAD` the routes are
  overhead-bound on that device and batch, and a warning says how much routing can save at most.
- **oracle gain**: at the middle of the menu's latency range, the best val top-1 any per-image
  route assignment reaches (:meth:`~dsnet_automl.headroom.RouteOutcomes.oracle_front`) minus the
  best single menu sub-net within that latency. An upper bound (many routes inflate it through
  error diversity), not a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import RouteSpace, SubnetConfig
from ..headroom import best_at, collect_outcomes, spread_ratio
from .objective import TrialContext, eval_loader

__all__ = ["MIN_SPREAD", "Headroom", "headroom_lines", "menu_headroom"]

MIN_SPREAD = 1.5  # route cost ratio under which routing is called overhead-bound


@dataclass(frozen=True)
class Headroom:
    spread: float
    cheapest_ms: float
    dearest_ms: float
    budget_ms: float
    static_top1: float
    oracle_top1: float

    @property
    def max_saving(self) -> float:
        """The largest latency saving any routing can give: 1 - cheapest / dearest."""
        return 1.0 - self.cheapest_ms / self.dearest_ms


def menu_headroom(ctx: TrialContext, menu: Sequence[SubnetConfig]) -> Headroom:
    """Headroom of ``menu`` on ``ctx``'s device table and val split (no gate trained)."""
    from ..dynamic.routing import DynamicNet

    routes = ctx.with_prefix_cost(RouteSpace.by_cost(menu, lambda c: ctx.latency(c)[0]))
    dyn = DynamicNet.build(ctx.supernet, routes, mode="fused")
    o = collect_outcomes(dyn, eval_loader(ctx, "val"), prefix_cost=routes.prefix_cost or 0.0)
    costs = list(routes.costs or ())
    mid = 0.5 * (costs[0] + costs[-1])
    static = best_at(o.static_front(), mid)
    oracle = best_at(o.oracle_front(), mid)
    return Headroom(
        spread_ratio(costs),
        costs[0],
        costs[-1],
        mid,
        static.accuracy if static else 0.0,
        oracle.accuracy if oracle else 0.0,
    )


def headroom_lines(h: Headroom, hw: str, batch: int) -> list[str]:
    """The summary line, and a warning line when the routes are overhead-bound."""
    lines = [
        f"routing headroom on {hw} at batch {batch}: route costs {h.cheapest_ms:.3g}-"
        f"{h.dearest_ms:.3g} ms ({h.spread:.2f}x); at {h.budget_ms:.3g} ms the best static "
        f"sub-net has val top-1 {100 * h.static_top1:.1f}%, per-image oracle "
        f"{100 * h.oracle_top1:.1f}% (+{100 * (h.oracle_top1 - h.static_top1):.1f} pt, upper "
        "bound)"
    ]
    if h.spread < MIN_SPREAD:
        lines.append(
            f"[yellow]warning: routing can save at most {100 * h.max_saving:.0f}% here: routes "
            f"are overhead-bound on {hw} at batch {batch} (costs {h.spread:.2f}x apart); try "
            "'latency_batch: 32', an earlier 'gate_stage' or a larger input[/yellow]"
        )
    return lines
