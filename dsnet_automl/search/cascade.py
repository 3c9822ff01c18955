"""The confidence cascade with per-route heads: the best routing measured on the routing ground.

Each route of the cascade is a static+attention net (the route's sub-net with an attention head
trained alone on it, :func:`~.static_attention.train_static_attention`), and all routes share
the prefix: the prefix runs once, the cheapest route classifies every image, and images whose
top softmax probability is below the threshold run the next route on the same prefix features
through that route's own head. No gate is trained; the threshold is the budget knob, set on val
(``run --budget-ms``). Unlike the trained gate, it gives each route its own head instead of
one shared attention head that is a compromise over the routes (cascade vs gate vs
static+attention, measured: docs/results/routing.md).

The result is an ordinary :class:`~dsnet_automl.dynamic.routing.DynamicNet` bundle (``route_heads``,
policy ``cascade``, val knob curve), so ``run``, ``bench``, ``headroom`` and
``export-dynamic`` (and the ONNX Runtime runtime) take it as they take a gate's bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..config import RouteSpace, SubnetConfig
from ..dynamic.gate import Gate
from ..dynamic.routing import DynamicNet, gate_input_channels
from ..errors import CheckpointError
from ..headroom import collect_outcomes, knob_curves, policy_fronts
from ..policies import cascade_chain, pick_knob
from .objective import SPLITS, TrialContext, eval_loader
from .static_attention import train_static_attention

__all__ = ["build_cascade", "load_head"]


def load_head(bundle: str | Path) -> Gate:
    """The attention head (a one-route :class:`Gate`) of a static+attention bundle."""
    d = Path(bundle)
    try:
        meta = yaml.safe_load((d / "dynamic.yaml").read_text())
        gate = Gate(**meta["gate"])
        gate.load_state_dict(torch.load(d / "gate.pt", map_location="cpu", weights_only=True))
    except (OSError, KeyError, TypeError, RuntimeError, yaml.YAMLError) as e:
        raise CheckpointError(
            f"{str(d)!r}: not a static+attention bundle with a gate ({type(e).__name__})"
        ) from None
    return gate.eval()


def build_cascade(
    ctx: TrialContext,
    configs: Sequence[SubnetConfig],
    out_dir: str | Path,
    *,
    epochs: int,
    lr: float,
    chain: str | Sequence[int] = "all",
    hidden: int = 16,
) -> dict[str, Any]:
    """Train a head on each route (resumable; a finished one is reused), assemble the cascade,
    set its threshold for the middle of the route costs on val, save the bundle in ``out_dir``.

    Args:
        ctx: the study's trial context (supernet, device latency, data, seed).
        configs: the routes (must share the prefix before the gate stage).
        out_dir: bundle directory; the heads' trainings go to ``out_dir/heads/<k>``.
        epochs, lr: each head's Stage II budget (as static+attention's).
        chain: the routes the cascade tries (``"all"``, ``"ends"`` or indices).
        hidden: the heads' slimming-head width (untrained; kept as static+attention's).

    Returns:
        ``policy_fronts`` (val-set thresholds scored on test at budgets across the route
        costs), ``routes`` (the route space dict) and ``bundle``.
    """
    out = Path(out_dir)
    study = ctx.study
    net = ctx.supernet
    routes = ctx.with_prefix_cost(RouteSpace.by_cost(configs, lambda c: ctx.latency(c)[0]))
    heads = nn.ModuleList()
    for k, cfg in enumerate(routes):
        d = out / "heads" / str(k)
        train_static_attention(
            net, cfg, d, data=ctx.data, epochs=epochs, lr=lr, batch_size=study.gate_batch_size,
            seed=study.seed, device=study.device, hidden=hidden,
        )  # fmt: skip
        heads.append(load_head(d))
    c = gate_input_channels(net, routes[0], net.default_gate_stage)
    gate = Gate(c, len(routes), hidden=hidden, attention=False)  # routes by confidence only
    dyn = DynamicNet(net, gate, routes, route_heads=heads, mode="fused")
    dyn.set_policy("cascade", 1.0, cascade_chain(len(routes), chain))
    pre = routes.prefix_cost or 0.0
    val, test = (collect_outcomes(dyn, eval_loader(ctx, s), prefix_cost=pre) for s in SPLITS)
    curves = knob_curves(val, dyn.chain)
    curves.pop("gate")  # no trained slimming head
    costs = list(routes.costs or ())
    mid = pick_knob(curves["cascade"], 0.5 * (costs[0] + costs[-1]))
    dyn.set_policy("cascade", mid.knob, dyn.chain)
    fronts = policy_fronts(val, test, dyn.chain)
    fronts.pop("gate")
    point = test.cascade(mid.knob, dyn.chain)
    metrics = {
        "val_top1": val.cascade(mid.knob, dyn.chain).accuracy,
        "val_avg_cost": mid.expected_cost,
        "test_top1": point.accuracy,
        "test_avg_cost": point.cost,
    }
    train = {"kind": "cascade", "seed": study.seed, "epochs": epochs, "lr": lr}
    dyn.save(out, metrics=metrics, train_config=train, data=ctx.data, calibration=curves)
    return {"policy_fronts": fronts, "routes": routes.to_dict(), "bundle": str(out)} | metrics
