"""One search trial: build the routing space with device-latency costs, train the gate (Stage
II, SGS), and return validation accuracy and expected latency on the target device.

``expected latency = sum_k share_k * latency(route_k)`` where ``share_k`` is the fraction of
validation samples the trained gate sends to route ``k`` and ``latency(route_k)`` is the
end-to-end latency of route ``k``'s sub-net (prefix included) from the device's latency table
(``measured`` only when every block has evidence, ``predicted (calibrated)`` when every
predicted block used calibrated constants, else ``predicted``). The gate's own cost
(a tiny SE-style head) is not included.

Each trial also records its **test** top-1 (``test_accuracy``): trials are selected on val,
reported on test. A trial whose routes and gate/SGS hyperparameters equal a finished trial's
reuses that result (user attr ``reused``, same ``bundle``) instead of training again: NSGA-II
children often copy every gene of a parent, and integer route positions make equal draws exact.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text
from ..config import RouteSpace, SubnetConfig
from ..errors import StudyError
from ..latency import LatencyPredictor, LatencyStore
from ..latency.models import combined_source
from ..supernets.base import Supernet
from .space import GATE_KEYS, SGS_KEYS, TrialParams, trial_routes
from .study_config import StudyConfig

SPLITS = ("val", "test")

__all__ = ["TrialContext", "eval_loader", "result_key", "run_trial", "static_trial"]


@dataclass
class TrialContext:
    """What every trial of a study shares: the trained supernet and the latency predictor."""

    study: StudyConfig
    supernet: Supernet
    predictor: LatencyPredictor
    data: str
    ckpt_hash: str = ""  # of the Stage I checkpoint: keys the accuracy table
    route_menu: tuple[SubnetConfig, ...] | None = None  # front routing (set by the runner)

    @classmethod
    def create(cls, study: StudyConfig, checkpoint: str | Path) -> TrialContext:
        from ..latency import predict_table
        from ..training import load_supernet

        net = load_supernet(checkpoint)
        if study.gate_stage is not None:  # every route space, menu and gate of the study
            if study.gate_stage not in net.stages:
                raise StudyError(
                    f"study {study.name!r}: gate_stage {study.gate_stage!r} is not a stage of "
                    f"{net.name}; allowed: {', '.join(net.stages)}"
                )
            net.default_gate_stage = study.gate_stage
        store = LatencyStore(study.latency_db)
        profile = study.device_profile()
        bs = study.latency_batch
        pred = LatencyPredictor(store, profile, net, batch_size=bs, backend=study.backend)
        if not pred.table:  # no table yet: fill the predicted (roofline) one, labelled so
            predict_table(store, profile, net, batch_sizes=[bs], backend=pred.backend)
            pred.refresh()
        from ..accuracy.table import checkpoint_hash

        return cls(study, net, pred, study.data, checkpoint_hash(checkpoint))

    def latency(self, cfg: SubnetConfig) -> tuple[float, str]:
        est = self.predictor.estimate(cfg)
        return est.latency_ms, est.source

    def prefix_latency(self, cfg: SubnetConfig) -> float:
        """Device latency of the prefix the gate sees (block sum, no per-network overhead)."""
        net = self.supernet
        n = len(net.split_plan(cfg, net.default_gate_stage)[0])
        return self.predictor.prefix_ms(cfg, n)

    def with_prefix_cost(self, routes: RouteSpace) -> RouteSpace:
        """``routes`` with the device's prefix latency (what a cascade pays once)."""
        return dataclasses.replace(routes, prefix_cost=self.prefix_latency(routes[0]))


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
        ``accuracy`` (val top-1), ``test_accuracy``, ``latency_ms`` (expected),
        ``latency_source``, ``route_hist`` (val), ``test_route_hist``,
        ``route_latency_ms``, ``routes`` (route space dict) and ``bundle`` (the DynamicNet dir).
    """
    from ..training.gate import evaluate_dynamic, fit_gate

    study = ctx.study
    routes = ctx.with_prefix_cost(
        trial_routes(ctx.supernet, params, lambda c: ctx.latency(c)[0], ctx.route_menu)
    )
    key = result_key(routes, params, ctx)
    cache = Path(study.run_dir) / "trials" / "results" / f"{key}.json"
    if cache.is_file():  # same routes, same gate/SGS hyperparameters: same result
        return json.loads(cache.read_text()) | {"reused": True}
    sources = {ctx.latency(c)[1] for c in routes}
    net = copy.deepcopy(ctx.supernet)  # trials never share mutable state (BN, grads)
    torch.manual_seed(study.seed)
    costs = list(routes.costs or ())
    cb = None
    if report is not None:

        def cb(row: dict[str, Any]) -> None:
            report(int(row["epoch"]), float(row["val_top1"]), float(row["val_avg_cost"]))

    # fused once: the gate trains on it as it is, and the test evaluation reuses it
    dyn, res = fit_gate(
        net, routes, trial_dir, data=ctx.data, hidden=params.hidden, resume=True, report=cb,
        epochs=params.gate_epochs, batch_size=study.gate_batch_size, lr=params.gate_lr,
        tau=params.tau, lam=params.lam, target_cost=params.target_frac * costs[-1],
        seed=study.seed, device=study.device, progress=False,
    )  # fmt: skip
    last = res.history[-1]
    hist = list(last["route_hist"])
    n = max(1, sum(hist))
    test = evaluate_dynamic(dyn, eval_loader(ctx, "test"), torch.device(study.device))
    from ..headroom import collect_outcomes, policy_fronts

    # val outcomes come from train_gate's knob curves (same net, same val split, same prefix
    # cost); only the test split is run here
    o_val = res.val_outcomes
    o_test = collect_outcomes(dyn, eval_loader(ctx, "test"), prefix_cost=routes.prefix_cost or 0.0)
    out = {
        "accuracy": float(last["val_top1"]),
        "test_accuracy": float(test["top1"]),
        "latency_ms": float(sum(h / n * c for h, c in zip(hist, costs, strict=True))),
        "latency_source": combined_source(sources),
        "route_hist": hist,
        "test_route_hist": list(test["route_hist"]),
        "route_latency_ms": costs,
        "routes": routes.to_dict(),
        "bundle": str(Path(trial_dir)),
        "policy_fronts": policy_fronts(o_val, o_test, dyn.chain),
    }
    atomic_write_text(cache, json.dumps(out))
    return out


def result_key(routes, params: TrialParams, ctx: TrialContext) -> str:
    """Hash of everything a trial's result depends on: its routes (with their device costs),
    gate/SGS hyperparameters (floats to 9 significant digits), the checkpoint, data, seed, gate
    batch size and device."""
    hp = {k: float(f"{getattr(params, k):.9g}") for k in (*GATE_KEYS, *SGS_KEYS)}
    st = ctx.study
    text = json.dumps(
        {
            "routes": routes.to_dict(),
            "hp": hp,
            "run": [ctx.ckpt_hash, ctx.data, st.seed, st.gate_batch_size, st.device],
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def eval_loader(ctx: TrialContext, split: str, batch_size: int = 256):
    """The val/test loader of the study's data (built once per process)."""
    from ..data import eval_loaders

    sup = ctx.supernet
    val, test = eval_loaders(
        ctx.data, tuple(sup.input_size), ctx.study.seed, batch_size, sup.space.supernet
    )
    return {"val": val, "test": test}[split]


def static_trial(ctx: TrialContext, cfg: SubnetConfig) -> dict[str, Any]:
    """Static baseline point: val and test top-1 of the supernet at ``cfg`` (from the accuracy
    table: measured once per checkpoint, reused) and its latency."""
    from ..accuracy.table import AccuracyTable

    ms, src = ctx.latency(cfg)
    table = AccuracyTable(ctx.study.accuracy_url)
    acc = {
        split: table.evaluate(
            ctx.supernet,
            [cfg],
            ckpt_hash=ctx.ckpt_hash,
            data=ctx.data,
            split=split,
            seed=ctx.study.seed,
            device=ctx.study.device,
        )[cfg]
        for split in ("val", "test")
    }
    return {
        "accuracy": float(acc["val"]),
        "test_accuracy": float(acc["test"]),
        "latency_ms": ms,
        "latency_source": src,
    }
