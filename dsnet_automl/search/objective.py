"""One search trial: build the routing space with device-latency costs, train the gate (Stage
II, SGS), and return validation accuracy and expected latency on the target device.

``expected latency = sum_k share_k * latency(route_k)`` where ``share_k`` is the fraction of
validation samples the trained gate sends to route ``k`` and ``latency(route_k)`` is the
end-to-end latency of route ``k``'s sub-net (prefix included) from the device's latency table
(``measured`` only when every block has evidence, else ``predicted``). The gate's own cost
(a tiny SE-style head) is not included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import SubnetConfig
from ..latency import LatencyPredictor, LatencyStore, load_profile
from ..supernets.base import Supernet
from .space import TrialParams, routing_space
from .study_config import StudyConfig

__all__ = ["TrialContext", "run_trial", "static_trial"]


@dataclass
class TrialContext:
    """What every trial of a study shares: the trained supernet and the latency predictor."""

    study: StudyConfig
    supernet: Supernet
    predictor: LatencyPredictor
    data: str

    @classmethod
    def create(cls, study: StudyConfig, checkpoint: str | Path) -> TrialContext:
        from ..latency import predict_table
        from ..training import load_supernet

        net = load_supernet(checkpoint)
        store = LatencyStore(study.latency_db)
        profile = load_profile(study.hw)
        pred = LatencyPredictor(store, profile, net)
        if not pred.table:  # no table yet: fill the predicted (roofline) one, labelled so
            predict_table(store, profile, net, batch_sizes=[1])
            pred.refresh()
        return cls(study, net, pred, study.data)

    def latency(self, cfg: SubnetConfig) -> tuple[float, str]:
        est = self.predictor.estimate(cfg)
        return est.latency_ms, est.source


def run_trial(
    ctx: TrialContext,
    params: TrialParams,
    trial_dir: str | Path,
    *,
    report: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Train one gate and measure it. ``report(epoch, val_top1, expected_ms)`` may raise to
    prune.

    Returns:
        ``accuracy`` (val top-1), ``latency_ms`` (expected), ``latency_source``, ``route_hist``,
        ``route_latency_ms``, ``routes`` (route space dict) and ``bundle`` (the DynamicNet dir).
    """
    from ..routing import DynamicNet
    from ..training.gate import GateTrainConfig, train_gate

    study = ctx.study
    net = copy.deepcopy(ctx.supernet)  # trials never share mutable state (BN, grads)
    lat = {c: ctx.latency(c) for c in _grid_routes(net, params, ctx)}
    routes = routing_space(net, params, lambda c: lat[c][0])
    sources = {lat[c][1] for c in routes}
    torch.manual_seed(study.seed)
    dyn = DynamicNet.build(net, routes, hidden=params.hidden, tau=params.tau)
    costs = list(routes.costs or ())
    cfg = GateTrainConfig(
        epochs=params.gate_epochs,
        batch_size=study.gate_batch_size,
        lr=params.gate_lr,
        tau=params.tau,
        lam=params.lam,
        target_cost=params.target_frac * costs[-1],
        seed=study.seed,
        device=study.device,
        progress=False,
    )
    cb = None
    if report is not None:

        def cb(row: dict[str, Any]) -> None:
            report(int(row["epoch"]), float(row["val_top1"]), float(row["val_avg_cost"]))

    res = train_gate(dyn, cfg, trial_dir, data=ctx.data, resume=True, report=cb)
    if res.interrupted or not res.history:
        raise KeyboardInterrupt  # Optuna records the trial FAIL; a re-run retries it
    last = res.history[-1]
    hist = list(last["route_hist"])
    n = max(1, sum(hist))
    return {
        "accuracy": float(last["val_top1"]),
        "latency_ms": float(sum(h / n * c for h, c in zip(hist, costs, strict=True))),
        "latency_source": "measured" if sources == {"measured"} else "predicted",
        "route_hist": hist,
        "route_latency_ms": costs,
        "routes": routes.to_dict(),
        "bundle": str(Path(trial_dir)),
    }


def _grid_routes(net: Supernet, params: TrialParams, ctx: TrialContext) -> list[SubnetConfig]:
    return list(routing_space(net, params, lambda c: 0.0).configs)


def static_trial(ctx: TrialContext, cfg: SubnetConfig, loader) -> dict[str, Any]:
    """Static baseline point: val top-1 of the supernet at ``cfg`` and its latency."""
    from ..training.evaluate import accuracy

    ms, src = ctx.latency(cfg)
    top1, _ = accuracy(ctx.supernet, loader, cfg, device=torch.device(ctx.study.device))
    return {"accuracy": float(top1), "latency_ms": ms, "latency_source": src}
