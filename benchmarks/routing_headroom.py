"""Can routing pay here? Headroom, gate, cascade and static+attention, side by side, per seed.

Per seed (data split, Stage I, gate init all follow it; nothing is shared between seeds):

1. Stage I on the evaluation ground (the demo recipe: tiny DS-MobileNetV1, 4 epochs) and the
   study's route menu (the prefix-pinned predicted static front, 12 points, costed on the
   device at the study's latency batch).
2. **Headroom before training**: every menu sub-net's per-image correctness (no gate yet):
   route cost spread, sub-net accuracy spread, oracle front vs the static front.
3. **Baselines**: static+attention: each menu sub-net with the gate's attention head trained
   alone (Stage II recipe, same epochs as the gates). Cascade: confidence escalation on the
   shared prefix, with the attention head of the trial's gate (same extra parameters), and
   with each route's own static+attention head (``*_route_heads``: the static+attention nets
   of the K routes run as a cascade on the shared prefix).
4. **Gates** on K = 4 routes spread over the menu: SGS targets ``ends`` (the reference's) and
   ``cheapest`` (every route can be a target) at ``--epochs``, ``cheapest`` at ``--gate-epochs``
   (gap to the oracle against gate epochs), and one gate per lambda (``--lams``) against one
   gate + the budget knob. Each gate's *skill*: its test top-1 minus that of a random router
   sending the same shares to each route (the share-weighted route accuracies).
5. At budgets ``--budgets`` (fractions of the way from the cheapest to the dearest route), each
   policy's knob calibrated **on val** to the budget and scored on **test**; static+attention
   picks the best-val menu point within the budget. Hypervolume of each test front
   (reference: route 0's static test top-1, the largest route's latency).

Costs are the device's predicted latency of a whole route at the latency batch (prefix
included); an image's cost under routing is its route's (the cascade: prefix once plus every
suffix it ran). At batch > 1 this is linear in the route shares: it assumes each route group
costs its share of a full batch (measured on CPU at 224 px: efficiency >= 0.95 at b32, see
dynamic_speedup).

Run: ``python benchmarks/routing_headroom.py --seeds 0,1,2`` (about 10 min a seed on 2 cores);
writes ``benchmarks/results/routing_headroom.json`` and prints the verdict table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dsnet_automl.config import RouteSpace
from dsnet_automl.dynamic.routing import DynamicNet
from dsnet_automl.headroom import RouteOutcomes, best_at, collect_outcomes, spread_ratio
from dsnet_automl.search.objective import TrialContext, eval_loader
from dsnet_automl.search.pareto import hypervolume
from dsnet_automl.search.route_menu import learn, route_menu
from dsnet_automl.search.static_attention import train_static_attention
from dsnet_automl.search.study import ensure_supernet
from dsnet_automl.search.study_config import load_study
from dsnet_automl.training.gate import GateTrainConfig, train_gate


def _study(args, seed: int):
    st = load_study(args.study, runs_dir=str(args.root), seed=seed)
    return st.model_copy(
        update={
            "name": f"headroom-s{seed}",
            "latency_db": f"sqlite:///{args.root / 'lat.db'}",
            "accuracy_db": f"sqlite:///{args.root / 'accuracy.db'}",
            "stage1_dir": str(args.root / f"stage1-s{seed}"),
        }
    )


def _pt(p) -> dict[str, Any] | None:
    return None if p is None else p.as_dict()


def _front_hv(points, ref) -> float:
    return hypervolume([(p.accuracy, p.cost) for p in points], ref)


def _gate(ctx, routes, out: Path, seed: int, **kw) -> tuple[DynamicNet, float]:
    torch.manual_seed(seed)
    dyn = DynamicNet.build(ctx.supernet, routes, hidden=32, mode="fused")
    cfg = GateTrainConfig(seed=seed, progress=False, **kw)
    res = train_gate(dyn, cfg, out, data=ctx.data, resume=True)
    # training steps' seconds, kept in the checkpoint's history: the same on a resumed re-run
    return dyn, sum(float(h.get("seconds", 0.0)) for h in res.history)


def run_seed(args, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    st = _study(args, seed)
    ckpt = ensure_supernet(st, progress=False)
    ctx = TrialContext.create(st, ckpt)
    know = learn(st, ctx, ckpt)
    menu = route_menu(know, st.route_menu_size)
    lat = lambda c: ctx.latency(c)[0]  # noqa: E731
    pre = ctx.prefix_latency(menu[0])
    menu_routes = RouteSpace.by_cost(menu, lat, pre)
    val_l, test_l = eval_loader(ctx, "val"), eval_loader(ctx, "test")
    row: dict[str, Any] = {"seed": seed, "prefix_ms": pre}

    # 2. headroom with no gate: the whole menu
    bare = DynamicNet.build(ctx.supernet, menu_routes, hidden=32, mode="fused")
    menu_o = {
        s: collect_outcomes(bare, ld, prefix_cost=pre)
        for s, ld in (("val", val_l), ("test", test_l))
    }
    costs = list(menu_routes.costs)
    row["menu"] = {
        "latency_ms": costs,
        "val_top1": [p.accuracy for p in menu_o["val"].static_front()],
        "test_top1": [p.accuracy for p in menu_o["test"].static_front()],
        "cost_spread": spread_ratio(costs),
        "oracle_test": _pt(menu_o["test"].oracle()),
    }
    pos = sorted({round(i * (len(menu) - 1) / (args.routes - 1)) for i in range(args.routes)})
    routes = RouteSpace.by_cost([menu_routes[i] for i in pos], lat, pre)
    row["routes"] = {"menu_positions": pos, "latency_ms": list(routes.costs)}
    c0, ck = routes.costs[0], routes.costs[-1]
    budgets = [c0 + f * (ck - c0) for f in args.budgets]
    ref = (row["menu"]["test_top1"][pos[0]], ck)

    # 3. static+attention on every menu point (its bundle's outputs kept: the per-route-head
    # cascade below runs these nets on the shared prefix)
    sa, sa_out = [], {"val": [], "test": []}
    for i, cfg in enumerate(menu_routes):
        d = args.root / f"s{seed}" / f"static_att_{i}"
        r = train_static_attention(
            ctx.supernet, cfg, d, data=ctx.data, epochs=args.epochs, lr=args.lr, seed=seed,
            hidden=32,
        )  # fmt: skip
        sa.append({"latency_ms": costs[i], "val": r["val_accuracy"], "test": r["test_accuracy"]})
        one = DynamicNet.load(d, mode="fused")
        for split, ld in (("val", val_l), ("test", test_l)):
            sa_out[split].append(collect_outcomes(one, ld).route_logits[:, 0])
    row["static_attention"] = sa
    # the K routes' static+attention nets as one route set: cascade with per-route heads
    heads = {
        split: RouteOutcomes(
            torch.stack([sa_out[split][i] for i in pos], 1),
            menu_o[split].labels,
            torch.zeros(len(menu_o[split].labels), len(pos)),
            tuple(routes.costs),
            pre,
        )
        for split in ("val", "test")
    }

    # 4. gates
    gates: dict[str, Any] = {}
    e = args.epochs
    variants = {
        f"ends_e{e}": dict(sgs_target="ends", epochs=e),
        f"cheapest_e{e}": dict(sgs_target="cheapest", epochs=e),
        **{f"cheapest_e{n}": dict(sgs_target="cheapest", epochs=n) for n in args.gate_epochs},
        **{
            f"cheapest_e{e}_lam{lam:g}": dict(sgs_target="cheapest", epochs=e, lam=lam)
            for lam in args.lams
        },
    }
    outs: dict[str, dict[str, RouteOutcomes]] = {}
    for name, kw in variants.items():
        kw = {"lr": args.lr, "target_cost": ck} | kw
        dyn, secs = _gate(ctx, routes, args.root / f"s{seed}" / name, seed, **kw)
        o = {
            s: collect_outcomes(dyn, ld, prefix_cost=pre)
            for s, ld in (("val", val_l), ("test", test_l))
        }
        outs[name] = o
        t = o["test"]
        trained = t.gate(0.0)
        routes_acc = [p.accuracy for p in t.static_front()]
        same_shares = sum(s * a for s, a in zip(trained.shares, routes_acc, strict=True))
        gates[name] = {
            "seconds": secs,
            "trained": _pt(trained),
            # the gate's skill: its top-1 minus a random router with the same route shares
            "skill_pt": 100 * (trained.accuracy - same_shares),
            "gap_to_oracle_pt": 100
            * (best_at(t.oracle_front(), trained.cost).accuracy - trained.accuracy),
            "static_routes_test": [p.accuracy for p in o["test"].static_front()],
            "oracle_test": _pt(o["test"].oracle()),
            "hv_knob": _front_hv(o["test"].gate_front(81), ref),
        }
    row["gates"] = gates

    # 5. at the budgets: calibrated on val, scored on test
    main = f"cheapest_e{args.epochs}"
    chains = {"cascade_ends": (0, len(routes) - 1), "cascade_all": tuple(range(len(routes)))}
    at = []
    for f, b in zip(args.budgets, budgets, strict=True):
        fits = [p for p in sa if p["latency_ms"] <= b * (1 + 1e-9)]
        s_best = max(fits, key=lambda p: p["val"]) if fits else None
        cell: dict[str, Any] = {
            "fraction": f,
            "budget_ms": b,
            "static_attention_test": None if s_best is None else s_best["test"],
            "oracle_test": _pt(best_at(outs[main]["test"].oracle_front(), b)),
        }
        for name, o in outs.items():
            knob = o["val"].gate_at(b).knob
            cell[f"gate_{name}"] = _pt(o["test"].gate(knob))
        for cname, chain in chains.items():
            knob = outs[main]["val"].cascade_at(b, chain).knob
            cell[cname] = _pt(outs[main]["test"].cascade(knob, chain))
            knob = heads["val"].cascade_at(b, chain).knob
            cell[f"{cname}_route_heads"] = _pt(heads["test"].cascade(knob, chain))
        at.append(cell)
    row["at_budget"] = at
    row["hypervolume"] = {
        "static_attention": hypervolume([(p["test"], p["latency_ms"]) for p in sa], ref),
        "oracle_routes": _front_hv(outs[main]["test"].oracle_front(), ref),
        **{f"gate_{n}": g["hv_knob"] for n, g in gates.items()},
        **{c: _front_hv(outs[main]["test"].cascade_front(ch, 81), ref) for c, ch in chains.items()},
        **{
            f"{c}_route_heads": _front_hv(heads["test"].cascade_front(ch, 81), ref)
            for c, ch in chains.items()
        },
        "oracle_route_heads": _front_hv(heads["test"].oracle_front(), ref),
    }
    row["reference_point"] = {"test_top1": ref[0], "latency_ms": ref[1]}
    row["seconds"] = time.perf_counter() - t0
    return row


def _summary(rows: list[dict[str, Any]], args) -> dict[str, Any]:
    methods = [k for k in rows[0]["at_budget"][0] if k.startswith(("gate_", "cascade_"))]
    out: dict[str, Any] = {"margin_vs_static_attention_pt": {}, "target": {}}
    for m in methods:
        per = [
            [
                100 * (c[m]["accuracy"] - c["static_attention_test"])
                if c["static_attention_test"] is not None
                else None
                for c in r["at_budget"]
            ]
            for r in rows
        ]
        out["margin_vs_static_attention_pt"][m] = per
        flat = [v for p in per for v in p]
        out["target"][m] = all(v is not None and v >= 1.0 for v in flat)
    # one gate + the budget knob vs one gate per lambda (lambda 1 and the --lams gates)
    e = args.epochs
    kvl = []
    for r in rows:
        ref = (r["reference_point"]["test_top1"], r["reference_point"]["latency_ms"])
        lam = {n: g for n, g in r["gates"].items() if n == f"cheapest_e{e}" or
               n.startswith(f"cheapest_e{e}_lam")}  # fmt: skip
        pts = [(g["trained"]["accuracy"], g["trained"]["cost"]) for g in lam.values()]
        kvl.append(
            {
                "seed": r["seed"],
                "one_gate_knob_hv": r["gates"][f"cheapest_e{e}"]["hv_knob"],
                "per_lambda_hv": hypervolume(pts, ref),
                "per_lambda_points": len(pts),
                "one_gate_seconds": r["gates"][f"cheapest_e{e}"]["seconds"],
                "per_lambda_seconds": sum(g["seconds"] for g in lam.values()),
            }
        )
    out["knob_vs_per_lambda"] = kvl
    out["gate_epochs"] = {
        n: {
            "skill_pt": [r["gates"][n]["skill_pt"] for r in rows],
            "gap_to_oracle_pt": [r["gates"][n]["gap_to_oracle_pt"] for r in rows],
        }
        for n in rows[0]["gates"]
    }
    hv = {k: [r["hypervolume"][k] for r in rows] for k in rows[0]["hypervolume"]}
    out["hypervolume"] = {
        k: {"mean": statistics.mean(v), "min": min(v), "max": max(v)} for k, v in hv.items()
    }
    return out


def markdown(out: dict[str, Any]) -> str:
    """The README tables, generated from the results file (``--markdown``)."""
    rows = out["per_seed"]
    e = out["settings"]["epochs"]
    main = f"cheapest_e{e}"
    lines = [
        "| seed | route costs ms (spread) | menu sub-nets test top-1 | static+att test top-1 "
        "| oracle, 4 routes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["menu"]
        sa = [p["test"] for p in r["static_attention"]]
        orc = r["gates"][main]["oracle_test"]
        lines.append(
            f"| {r['seed']} | {m['latency_ms'][0]:.2f}-{m['latency_ms'][-1]:.2f} "
            f"({m['cost_spread']:.2f}x) | {100 * min(m['test_top1']):.1f}-"
            f"{100 * max(m['test_top1']):.1f} | {100 * min(sa):.1f}-{100 * max(sa):.1f} "
            f"| {100 * orc['accuracy']:.1f} @ {orc['cost']:.2f} ms |"
        )
    methods = [k for k in rows[0]["at_budget"][0] if k.startswith(("gate_", "cascade_"))]
    lines += ["", "| policy | " + " | ".join(
        f"s{r['seed']} @{100 * c['fraction']:.0f}%" for r in rows for c in r["at_budget"]
    ) + " |", "|---|" + "---|" * sum(len(r["at_budget"]) for r in rows)]  # fmt: skip
    lines.append(
        "| static+attention | "
        + " | ".join(
            f"{100 * c['static_attention_test']:.1f}" for r in rows for c in r["at_budget"]
        )
        + " |"
    )
    for m in methods:
        cells = []
        for r in rows:
            for c in r["at_budget"]:
                d = 100 * (c[m]["accuracy"] - c["static_attention_test"])
                cells.append(f"{100 * c[m]['accuracy']:.1f} ({d:+.1f}) @{c[m]['cost']:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append(
        "| oracle (4 routes) | "
        + " | ".join(
            f"{100 * c['oracle_test']['accuracy']:.1f}" for r in rows for c in r["at_budget"]
        )
        + " |"
    )
    hv = out["summary"]["hypervolume"]
    lines += ["", "| front | hypervolume mean [min, max] |", "|---|---|"]
    for k, v in sorted(hv.items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"| {k} | {v['mean']:.4f} [{v['min']:.4f}, {v['max']:.4f}] |")
    lines += ["", "| gate | skill pt (per seed) | gap to oracle pt (per seed) |", "|---|---|---|"]
    for n, g in out["summary"]["gate_epochs"].items():
        sk = " / ".join(f"{v:+.1f}" for v in g["skill_pt"])
        gp = " / ".join(f"{v:.1f}" for v in g["gap_to_oracle_pt"])
        lines.append(f"| {n} | {sk} | {gp} |")
    head = "| seed | one gate + knob HV | one gate per lambda HV | seconds: one / per lambda |"
    lines += ["", head, "|---|---|---|---|"]
    for k in out["summary"]["knob_vs_per_lambda"]:
        lines.append(
            f"| {k['seed']} | {k['one_gate_knob_hv']:.4f} | {k['per_lambda_hv']:.4f} "
            f"({k['per_lambda_points']} gates) | {k['one_gate_seconds']:.0f} / "
            f"{k['per_lambda_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/demo.yaml", help="the ground (data, hw, batch)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--routes", type=int, default=4, help="K routes spread over the menu")
    ap.add_argument("--epochs", type=int, default=6, help="Stage II epochs (gates, static+att)")
    ap.add_argument("--gate-epochs", default="2,15", help="more gates (cheapest): epoch sweep")
    ap.add_argument("--lams", default="0.1,3", help="one gate per lambda (default lam is 1)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--budgets", default="0.25,0.5", help="fractions of the route cost range")
    ap.add_argument("--root", type=Path, default=Path("benchmarks/.work/routing_headroom"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/routing_headroom.json"))
    ap.add_argument("--markdown", action="store_true", help="print the README tables and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.lams = [float(s) for s in args.lams.split(",") if s]
    args.gate_epochs = [int(s) for s in args.gate_epochs.split(",") if s]
    args.budgets = [float(s) for s in args.budgets.split(",") if s]
    torch.set_num_threads(args.threads)
    args.root.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {r["seed"]: r for r in old.get("per_seed", [])}
    rows = []
    for s in args.seeds:
        rows.append(done.get(s) or run_seed(args, s))
        out = {
            "study": args.study,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "per_seed": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"seed {s} done ({rows[-1]['seconds']:.0f} s)", flush=True)
    out["summary"] = _summary(rows, args)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
