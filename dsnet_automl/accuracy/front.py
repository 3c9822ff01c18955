"""The static baseline's front from predictions: the Pareto set of (predicted accuracy up,
latency down) over the whole slice grid, and k points spread along it.

Small grids (the tiny supernets: 2,160 configs) are enumerated; latency is then one
``LatencyPredictor.estimate`` per config, cached per config. Larger grids are searched with
Optuna's ``NSGAIISampler`` over per-dim choice indices, in memory, asked and told a generation
at a time so the accuracy predictor runs batched; the front is the exact Pareto set of every
config it visited.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_path
from ..config import SliceSpace, SubnetConfig, Value
from ..errors import SearchSpaceError

__all__ = [
    "FrontPoint",
    "hypervolume",
    "pareto_mask",
    "predicted_front",
    "spread",
    "write_front_csv",
]

PredictFn = Callable[[Sequence[SubnetConfig]], Sequence[float] | np.ndarray]
LatencyFn = Callable[[SubnetConfig], float]


@dataclass(frozen=True)
class FrontPoint:
    """One point of a front: a sub-net, its predicted accuracy and latency (and, once
    measured, its measured accuracy)."""

    config: SubnetConfig
    predicted_accuracy: float
    latency_ms: float
    measured_accuracy: float | None = None


def pareto_mask(acc: Sequence[float], lat: Sequence[float]) -> np.ndarray:
    """(N,) bool: the points no other point dominates (accuracy up, latency down).

    Of several points with identical (accuracy, latency) only the first is kept.
    """
    acc, lat = np.asarray(acc, float), np.asarray(lat, float)
    order = np.lexsort((-acc, lat))  # latency ascending, then accuracy descending
    keep = np.zeros(len(acc), bool)
    best = -math.inf
    for i in order:
        if acc[i] > best:
            keep[i], best = True, acc[i]
    return keep


def _free_dims(
    space: SliceSpace, fixed: Mapping[str, Value] | None
) -> tuple[list[tuple[str, tuple[Value, ...]]], dict[str, Value]]:
    pinned = dict(fixed or {})
    for dim, v in pinned.items():
        if v not in space.choices(dim):  # choices() names the allowed dims
            raise SearchSpaceError(
                f"fixed {dim}={v!r} is not in the grid of {space.supernet!r}; "
                f"allowed: {list(space.choices(dim))}"
            )
    return [(d, c) for d, c in space.dims if d not in pinned], pinned


def _points(cfgs: list[SubnetConfig], acc: np.ndarray, lat: np.ndarray) -> list[FrontPoint]:
    keep = pareto_mask(acc, lat)
    pts = [
        FrontPoint(c, float(a), float(t))
        for c, a, t, k in zip(cfgs, acc, lat, keep, strict=True)
        if k
    ]
    return sorted(pts, key=lambda p: (p.latency_ms, -p.predicted_accuracy))


def predicted_front(
    space: SliceSpace,
    predict: PredictFn,
    latency: LatencyFn,
    *,
    fixed: Mapping[str, Value] | None = None,
    max_exhaustive: int = 100_000,
    seed: int = 0,
    nsga_trials: int = 2000,
    population: int = 50,
) -> list[FrontPoint]:
    """Pareto front of (predicted accuracy up, latency down) over ``space``, by latency.

    Args:
        space: the grid.
        predict: configs (N) -> (N,) predicted accuracies (e.g. ``AccuracyPredictor.predict``).
        latency: config -> latency in ms (e.g. ``LatencyPredictor.latency_ms``); called once
            per distinct config.
        fixed: dims pinned to one value each (e.g. the stages before the gate at their
            largest, so every point shares the gate's prefix).
        max_exhaustive: enumerate the (restricted) grid when it has at most this many configs.
        seed: NSGA-II seed (larger grids).
        nsga_trials: configs NSGA-II evaluates (larger grids).
        population: NSGA-II population size; also the batch the predictor sees at once.

    Returns:
        Non-dominated points, latency ascending (so accuracy ascending too).
    """
    free, pinned = _free_dims(space, fixed)
    size = math.prod(len(c) for _, c in free)
    lat_cache: dict[SubnetConfig, float] = {}

    def lat_of(c: SubnetConfig) -> float:
        t = lat_cache.get(c)
        if t is None:
            t = lat_cache[c] = float(latency(c))
        return t

    if size <= max_exhaustive:
        sub = space.restrict({d: [v] for d, v in pinned.items()})
        cfgs = list(sub)
        acc = np.asarray(predict(cfgs), float)
        lat = np.asarray([lat_of(c) for c in cfgs], float)
        return _points(cfgs, acc, lat)
    return _nsga_front(space, free, pinned, predict, lat_of, seed, nsga_trials, population)


def _nsga_front(
    space: SliceSpace,
    free: list[tuple[str, tuple[Value, ...]]],
    pinned: dict[str, Value],
    predict: PredictFn,
    lat_of: LatencyFn,
    seed: int,
    n_trials: int,
    population: int,
) -> list[FrontPoint]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    dists = {d: optuna.distributions.CategoricalDistribution(list(range(len(c)))) for d, c in free}
    seen: dict[SubnetConfig, float] = {}
    done = 0
    while done < n_trials:
        batch = [study.ask(dists) for _ in range(min(population, n_trials - done))]
        cfgs = [
            SubnetConfig.of(
                space.supernet,
                {**pinned, **{d: c[int(t.params[d])] for d, c in free}},
            )
            for t in batch
        ]
        new = [c for c in dict.fromkeys(cfgs) if c not in seen]
        if new:
            seen.update(zip(new, np.asarray(predict(new), float).tolist(), strict=True))
        for t, c in zip(batch, cfgs, strict=True):
            study.tell(t, [seen[c], lat_of(c)])
        done += len(batch)
    cfgs = list(seen)
    return _points(cfgs, np.asarray([seen[c] for c in cfgs]), np.asarray([lat_of(c) for c in cfgs]))


def spread(front: Sequence[FrontPoint], k: int) -> list[FrontPoint]:
    """``k`` distinct points spread evenly along ``front`` by latency, both ends included.

    The targets are ``k`` latencies evenly spaced between the front's ends; each interior
    target takes the nearest point not yet taken. With ``k >= len(front)`` the whole front is
    returned; ``k == 1`` gives the most accurate point.

    Returns:
        Points sorted by latency.
    """
    if k < 1:
        raise SearchSpaceError(f"spread: k={k} must be >= 1")
    pts = sorted(front, key=lambda p: p.latency_ms)
    if k >= len(pts):
        return pts
    if k == 1:
        return [max(pts, key=lambda p: p.predicted_accuracy)]
    lat = np.asarray([p.latency_ms for p in pts])
    taken = {0, len(pts) - 1}
    for target in np.linspace(lat[0], lat[-1], k)[1:-1]:
        free = [i for i in range(len(pts)) if i not in taken]
        taken.add(min(free, key=lambda i: (abs(lat[i] - target), i)))
    return [pts[i] for i in sorted(taken)]


def write_front_csv(points: Sequence[FrontPoint], path: str | Path) -> Path:
    """Write points as CSV (atomically): ``latency_ms, predicted_accuracy,
    measured_accuracy, config`` (JSON of the dims) and one column per dim."""
    rows = [
        {
            "latency_ms": p.latency_ms,
            "predicted_accuracy": p.predicted_accuracy,
            "measured_accuracy": p.measured_accuracy,
            "config": json.dumps(p.config.as_dict(), sort_keys=True),
            **p.config.as_dict(),
        }
        for p in points
    ]
    cols = ["latency_ms", "predicted_accuracy", "measured_accuracy", "config"]
    df = pd.DataFrame(rows, columns=None if rows else cols)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (max accuracy, min latency) and bounded by ``ref``
    ``(accuracy_floor, latency_ceiling)``. Points outside the reference box add nothing."""
    xs = sorted((lat, acc) for acc, lat in points if acc > ref[0] and lat < ref[1])
    # best accuracy reachable within latency L is a step function; integrate it up to the ceiling
    area, best = 0.0, ref[0]
    for i, (lat, acc) in enumerate(xs):
        best = max(best, acc)
        nxt = xs[i + 1][0] if i + 1 < len(xs) else ref[1]
        area += (nxt - lat) * (best - ref[0])
    return area
