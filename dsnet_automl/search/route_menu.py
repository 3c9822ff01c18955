"""What a study learns about its supernet before the trials: measured sub-net accuracies, an
accuracy predictor fitted on them, the predicted static front and the route menu drawn from it.

- **Accuracy table**: ``accuracy_samples`` sub-nets (seeded sample, plus the smallest and the
  largest) measured on val with the supernet's own per-width BN statistics, stored in
  ``study.accuracy_url`` (SQLite, keyed by checkpoint hash, data and split) so a re-run or
  another device's study on the same checkpoint measures nothing twice.
- **Predictor**: fitted on the table; its Kendall tau and RMSE are on held-out sub-nets.
- **Predicted static front**: the Pareto front of (predicted accuracy, device latency) over the
  whole grid; the static baseline measures the points spread along it.
- **Route menu** (front routing): the predicted front with every dim of the stages before the
  gate at its largest value (*constrained*, not per prefix: every route must share the prefix
  the gate sees, and the widest prefix is what the fraction routing uses too), plus both ends
  of that pinned grid (its narrowest and widest sub-nets, so the menu spans the whole latency
  range), thinned to ``route_menu_size`` points spread by latency. It is pinned in the
  study's user attrs the first time, so a resumed study maps positions to the same configs.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..accuracy.front import FrontPoint, predicted_front, spread
from ..accuracy.predictor import fit_predictor
from ..accuracy.table import AccuracyTable, checkpoint_hash
from ..config import SubnetConfig
from ..supernets.base import Supernet
from .objective import TrialContext
from .study_config import StudyConfig

__all__ = ["Knowledge", "learn", "prefix_fixed", "sample_configs"]


@dataclass
class Knowledge:
    """The accuracy table's predictor and the fronts derived from it."""

    predictor: Any
    metrics: dict[str, float]
    front: list[FrontPoint]  # predicted static front, whole grid, by latency
    route_front: list[FrontPoint]  # the same with the prefix pinned (route menu source)
    ckpt_hash: str
    seconds: dict[str, float] = field(default_factory=dict)
    evaluated: int = 0  # sub-nets this call measured (0 when the table had them all)


def prefix_fixed(net: Supernet, gate_stage: str | None = None) -> dict[str, Any]:
    """Every dim of the stages before the gate at its largest value."""
    gate_stage = gate_stage or net.default_gate_stage
    stages = list(net.stages)
    before = set(stages[: stages.index(gate_stage)])
    return {d: net.space.capacity(d) for d in net.space.dim_names if d.split(".")[0] in before}


def _pinned_ends(net: Supernet, fixed: dict[str, Any]) -> list[SubnetConfig]:
    space = net.space
    return [
        space.config({d: fixed.get(d, c[0]) for d, c in space.dims}),
        space.config({d: fixed.get(d, c[-1]) for d, c in space.dims}),
    ]


def sample_configs(net: Supernet, n: int, seed: int) -> list[SubnetConfig]:
    """``n`` distinct configs (fewer on a small grid): smallest, largest, then a seeded sample."""
    space = net.space
    rng = random.Random(seed)
    out = dict.fromkeys([space.smallest(), space.largest()])
    n = min(n, space.size)
    tries = 0
    while len(out) < n and tries < 50 * n:
        out[space.sample(rng)] = None
        tries += 1
    return list(out)


def learn(
    study: StudyConfig, ctx: TrialContext, checkpoint: str | Path, *, progress: bool = False
) -> Knowledge:
    """Measure the accuracy table (reusing stored rows; a progress bar while measuring), fit the
    predictor, predict the fronts."""
    net = ctx.supernet
    t0 = time.perf_counter()
    ckpt_hash = ctx.ckpt_hash or checkpoint_hash(checkpoint)
    table = AccuracyTable(study.accuracy_url)
    cfgs = sample_configs(net, study.accuracy_samples, study.seed)
    accs = table.evaluate(
        net,
        cfgs,
        ckpt_hash=ckpt_hash,
        data=study.data,
        split="val",
        seed=study.seed,
        device=study.device,
        progress=progress,
    )
    t1 = time.perf_counter()
    predictor, metrics = fit_predictor(net.space, cfgs, [accs[c] for c in cfgs], seed=study.seed)
    t2 = time.perf_counter()
    latency = lambda c: ctx.latency(c)[0]  # noqa: E731
    front = predicted_front(net.space, predictor.predict, latency, seed=study.seed)
    fixed = prefix_fixed(net)
    route_front = predicted_front(
        net.space, predictor.predict, latency, fixed=fixed, seed=study.seed
    )
    # both ends of the prefix-pinned grid anchor the menu, so it has >= 2 routes and spans the
    # whole latency range even where the predictor is flat (e.g. an untrained supernet)
    have = {p.config for p in route_front}
    ends = [c for c in _pinned_ends(net, fixed) if c not in have]
    if ends:
        acc = predictor.predict(ends)
        route_front += [FrontPoint(c, float(a), latency(c)) for c, a in zip(ends, acc, strict=True)]
        route_front.sort(key=lambda p: p.latency_ms)
    t3 = time.perf_counter()
    keep = ("kendall_tau", "rmse", "n_train", "n_holdout", "model", "encoding")
    return Knowledge(
        predictor,
        {k: metrics[k] for k in keep if k in metrics},
        front,
        route_front,
        ckpt_hash,
        {"accuracy_table": t1 - t0, "predictor_fit": t2 - t1, "fronts": t3 - t2},
        table.last_evaluated,
    )


def route_menu(know: Knowledge, size: int) -> list[SubnetConfig]:
    """``size`` points of the prefix-pinned predicted front, spread by latency."""
    pts = know.route_front
    return [p.config for p in spread(pts, min(size, len(pts)))]
