"""``dsnet-automl headroom BUNDLE``: can routing pay on this bundle? Oracle, gate, cascade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._io import atomic_write_text
from ..defaults import DEFAULT_DATA
from ._app import app, console, handle_errors


@app.command("headroom")
@handle_errors
def headroom_cmd(
    bundle: Annotated[Path, typer.Argument(help="A dynamic net (train-gate bundle or trial_*).")],
    data: Annotated[str | None, typer.Option(help="Dataset spec (default: the bundle's).")] = None,
    budgets: Annotated[
        str, typer.Option(help="Budgets as fractions of the route cost range, comma-separated.")
    ] = "0.25,0.5,0.75",
    out: Annotated[
        Path | None, typer.Option(help="Write headroom.json here (default: BUNDLE/eval).")
    ] = None,
) -> None:
    """Per-image headroom of a bundle's routes: each route alone (with the gate's attention
    head), the oracle (each test image on its cheapest correct route), the trained gate, and at
    each budget the gate's knob and the confidence cascade, both set on val and scored on test.

    Costs are the bundle's route costs (device latency when the study costed its routes so,
    else MACs). The oracle is an upper bound, not a target: many routes inflate it.
    """
    from ..data import eval_loaders
    from ..dynamic.routing import DynamicNet
    from ..headroom import best_at, collect_outcomes, spread_ratio

    dyn = DynamicNet.load(bundle, mode="fused")
    spec = data or (dyn.metadata.get("data") or DEFAULT_DATA)
    net = dyn.supernet
    seed = int((dyn.metadata.get("train_config") or {}).get("seed", 0))  # its data split
    val_l, test_l = eval_loaders(spec, tuple(net.input_size), seed, 256, net.space.supernet)
    pre = dyn.prefix_cost()
    val, test = (collect_outcomes(dyn, ld, prefix_cost=pre) for ld in (val_l, test_l))
    costs = list(test.costs)
    fracs = [float(f) for f in budgets.split(",") if f.strip()]
    table = Table(title=f"routing headroom: {net.name} on {spec} test ({len(test.labels)} images)")
    for col in ("policy", "top-1 %", "cost", "route shares"):
        table.add_column(col, justify="left" if col == "policy" else "right")

    def add(name: str, p) -> None:
        shares = " ".join(f"{100 * v:.0f}%" for v in p.shares)
        table.add_row(name, f"{100 * p.accuracy:.2f}", f"{p.cost:.4g}", shares)

    for k in range(len(costs)):
        add(f"route {k} alone", test.static(k))
    add("trained gate", test.gate(0.0))
    add("oracle (cheapest correct)", test.oracle())
    report: dict = {"data": spec, "costs": costs, "prefix_cost": pre, "budgets": []}
    for f in fracs:
        b = costs[0] + f * (costs[-1] - costs[0])
        gate = test.gate(val.gate_at(b).knob)
        casc = test.cascade(val.cascade_at(b, dyn.chain).knob, dyn.chain)
        orc = best_at(test.oracle_front(), b)
        add(f"gate @ {b:.4g} (knob on val)", gate)
        add(f"cascade @ {b:.4g} (threshold on val)", casc)
        if orc is not None:
            add(f"oracle @ {b:.4g}", orc)
        report["budgets"].append(
            {"budget": b, "gate": gate.as_dict(), "cascade": casc.as_dict(),
             "oracle": orc.as_dict() if orc else None}
        )  # fmt: skip
    console.print(table)
    console.print(
        f"route costs {costs[0]:.4g}-{costs[-1]:.4g} ({spread_ratio(costs):.2f}x apart); a "
        "cascade pays the prefix once and every suffix it runs"
    )
    out = out or bundle / "eval"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "headroom.json", json.dumps(report, indent=1, default=float) + "\n")
    console.print(f"headroom.json in {out}")
