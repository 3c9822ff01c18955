"""The search space of one trial: routing space, SGS trade-off and gate hyperparameters.

Two routing parametrisations (``routing:`` in the study YAML):

- ``front`` (default): the K routes are positions on the **route menu**, the predicted static
  Pareto front of the grid with every dim before the gate at its largest value (so all routes
  share the prefix), thinned to at most ``route_menu_size`` points sorted by latency (see
  :mod:`.route_menu`). A trial draws ``num_routes[1]`` integer positions ``front_0..``; the
  routes are the distinct positions, so different position sets are different routes (no
  rounding), and equal sets with equal gate hyperparameters reuse a finished trial's result.
- ``fraction``: ``K`` routes, the width fractions of the smallest and the largest route
  (``min_frac``, ``max_frac``) and a ``spacing`` exponent: route ``k`` takes, in every routed
  dimension, the grid choice at ``min + (max - min) * (k / (K-1)) ** spacing`` of the
  dimension's range (spacing < 1 packs routes near the top, > 1 near the bottom).

Either way, dims of the stages before the gate stay at their largest value (they are shared by
every route), and routes are sorted and costed by *latency on the target device*, so the SGS
penalty is hardware-aware.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..config import RouteSpace, SubnetConfig
from ..errors import SearchSpaceError
from ..supernets.base import Supernet
from .study_config import Ranges

__all__ = [
    "FRONT_PREFIX",
    "ROUTING_KEYS",
    "GATE_KEYS",
    "SGS_KEYS",
    "TrialParams",
    "front_routes",
    "routing_space",
    "suggest",
    "trial_routes",
]

FRONT_PREFIX = "front_"  # Optuna parameter names of the front positions: front_0, front_1, ...
ROUTING_KEYS = ("num_routes", "min_frac", "max_frac", "spacing")  # fraction routing
GATE_KEYS = ("hidden", "tau", "gate_lr", "gate_epochs")
SGS_KEYS = ("lam", "target_frac")


@dataclass(frozen=True)
class TrialParams:
    """The sampled parameters of one trial. Fraction routing sets ``num_routes..spacing``;
    front routing sets ``front`` (sorted distinct menu positions) and ``num_routes``."""

    num_routes: int | None
    min_frac: float | None
    max_frac: float | None
    spacing: float | None
    lam: float
    target_frac: float
    gate_lr: float
    tau: float
    gate_epochs: int
    hidden: int
    front: tuple[int, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def routing(self) -> str:
        return "front" if self.front is not None else "fraction"

    def routing_params(self) -> dict[str, Any]:
        """The routing part, as stored in export bundles."""
        if self.front is not None:
            return {"routing": "front", "front_positions": list(self.front)}
        return {"routing": "fraction"} | {k: getattr(self, k) for k in ROUTING_KEYS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialParams:
        """From Optuna ``trial.params`` (either parametrisation) or :meth:`as_dict`."""
        d = dict(d)
        pos = sorted(int(v) for k, v in d.items() if k.startswith(FRONT_PREFIX))
        if pos:
            d["front"] = tuple(sorted(set(pos)))
            d["num_routes"] = len(d["front"])
        elif d.get("front") is not None:
            d["front"] = tuple(d["front"])
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def _range(trial: Any, name: str, lo: float, hi: float, *, log: bool = False) -> float:
    return trial.suggest_float(name, float(lo), float(hi), log=log)


def suggest(trial: Any, r: Ranges, *, menu_size: int | None = None) -> TrialParams:
    """Sample one trial's parameters (works with any Optuna-like ``trial``: define-by-run).

    ``menu_size`` (the number of route-menu points) selects front routing; ``None`` fraction.
    """
    if menu_size is not None:
        if menu_size < 2:
            raise SearchSpaceError(f"route menu has {menu_size} point(s); front routing needs >= 2")
        pos = [
            trial.suggest_int(f"{FRONT_PREFIX}{i}", 0, menu_size - 1)
            for i in range(r.num_routes[1])
        ]
        front = tuple(sorted(set(pos)))
        routing = dict(num_routes=len(front), min_frac=None, max_frac=None, spacing=None)
    else:
        front = None
        routing = dict(
            num_routes=trial.suggest_int("num_routes", *r.num_routes),
            min_frac=_range(trial, "min_frac", *map(float, r.min_frac)),
            max_frac=_range(trial, "max_frac", *map(float, r.max_frac)),
            spacing=_range(trial, "spacing", *map(float, r.spacing), log=True),
        )
    return TrialParams(
        **routing,
        front=front,
        lam=_range(trial, "lam", *map(float, r.lam), log=True),
        target_frac=_range(trial, "target_frac", *map(float, r.target_frac)),
        gate_lr=_range(trial, "gate_lr", *map(float, r.gate_lr), log=True),
        tau=_range(trial, "tau", *map(float, r.tau)),
        gate_epochs=trial.suggest_int("gate_epochs", *r.gate_epochs),
        hidden=trial.suggest_categorical("hidden", list(r.hidden)),
    )


def routing_space(
    net: Supernet,
    p: TrialParams,
    cost: Callable[[SubnetConfig], float],
    *,
    gate_stage: str | None = None,
) -> RouteSpace:
    """The K routes of ``p`` on ``net``'s grid, sorted and costed by ``cost`` (latency, ms).

    Routes that coincide on the grid are merged, so the result may have fewer than K routes
    (at least 2: the smallest and the largest fractions always differ unless the grid is flat).
    """
    gate_stage = gate_stage or net.default_gate_stage
    stages = list(net.stages)
    if gate_stage not in stages:
        raise SearchSpaceError(f"gate stage {gate_stage!r} not in {stages}")
    before = set(stages[: stages.index(gate_stage)])
    space = net.space
    k_max = max(1, p.num_routes - 1)
    configs = []
    for k in range(p.num_routes):
        frac = p.min_frac + (p.max_frac - p.min_frac) * (k / k_max) ** p.spacing
        frac = min(1.0, max(0.0, frac))
        vals = {}
        for dim, choices in space.dims:
            i = (
                len(choices) - 1
                if dim.split(".")[0] in before
                else round(frac * (len(choices) - 1))
            )
            vals[dim] = choices[i]
        configs.append(space.config(vals))
    configs = list(dict.fromkeys(configs))
    if len(configs) < 2:
        raise SearchSpaceError(
            f"routing space with min_frac={p.min_frac:.3f} max_frac={p.max_frac:.3f} collapses to "
            "one route on this grid; widen the min_frac/max_frac ranges"
        )
    return RouteSpace.by_cost(configs, cost)


def front_routes(
    menu: Sequence[SubnetConfig], positions: Sequence[int], cost: Callable[[SubnetConfig], float]
) -> RouteSpace:
    """The routes at ``positions`` of the route menu (distinct, sorted by ``cost``). A draw
    whose positions all coincide gets the menu's last point (or, if that is the point, the first)
    as its second route: a dynamic net needs two.

    Raises:
        SearchSpaceError: a position outside the menu, or a menu of fewer than 2 points.
    """
    pos = sorted(set(int(p) for p in positions))
    bad = [p for p in pos if not 0 <= p < len(menu)]
    if bad:
        raise SearchSpaceError(
            f"front positions {bad} outside the route menu of {len(menu)} points "
            f"(0..{len(menu) - 1})"
        )
    if len(menu) < 2:
        raise SearchSpaceError(f"route menu has {len(menu)} point(s); front routing needs >= 2")
    if len(pos) == 1:  # all draws on one point: pair it with the menu's widest (or narrowest)
        pos = sorted({pos[0], len(menu) - 1 if pos[0] != len(menu) - 1 else 0})
    return RouteSpace.by_cost([menu[p] for p in pos], cost)


def trial_routes(
    net: Supernet,
    p: TrialParams,
    cost: Callable[[SubnetConfig], float],
    menu: Sequence[SubnetConfig] | None = None,
) -> RouteSpace:
    """The route space of a trial under either parametrisation."""
    if p.front is not None:
        if not menu:
            raise SearchSpaceError(
                "front routing needs the study's route menu; it is built by 'dsnet-automl search'"
            )
        return front_routes(menu, p.front, cost)
    return routing_space(net, p, cost)
