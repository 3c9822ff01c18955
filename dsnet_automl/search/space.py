"""The search space of one trial: routing space, SGS trade-off and gate hyperparameters.

The routing space is parametrised by ``K`` routes, the width fractions of the smallest and the
largest route (``min_frac``, ``max_frac``) and a ``spacing`` exponent: route ``k`` takes, in
every routed dimension, the grid choice at ``min + (max - min) * (k / (K-1)) ** spacing`` of
the dimension's range (spacing < 1 packs routes near the top, > 1 near the bottom). Dims of the
stages before the gate stay at their largest value (they are shared by every route). Routes are
sorted and costed by *latency on the target device*, so the SGS penalty is hardware-aware.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..config import RouteSpace, SubnetConfig
from ..errors import SearchSpaceError
from ..supernets.base import Supernet
from .study_config import Ranges

__all__ = ["TrialParams", "routing_space", "suggest"]


@dataclass(frozen=True)
class TrialParams:
    """The sampled parameters of one trial."""

    num_routes: int
    min_frac: float
    max_frac: float
    spacing: float
    lam: float
    target_frac: float
    gate_lr: float
    tau: float
    gate_epochs: int
    hidden: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _range(trial: Any, name: str, lo: float, hi: float, *, log: bool = False, step=None):
    if isinstance(lo, int) and isinstance(hi, int) and not log and step is None:
        return trial.suggest_int(name, lo, hi)
    return trial.suggest_float(name, float(lo), float(hi), log=log)


def suggest(trial: Any, r: Ranges) -> TrialParams:
    """Sample one trial's parameters (works with any Optuna-like ``trial``: define-by-run)."""
    return TrialParams(
        num_routes=trial.suggest_int("num_routes", *r.num_routes),
        min_frac=_range(trial, "min_frac", *map(float, r.min_frac)),
        max_frac=_range(trial, "max_frac", *map(float, r.max_frac)),
        spacing=_range(trial, "spacing", *map(float, r.spacing), log=True),
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
