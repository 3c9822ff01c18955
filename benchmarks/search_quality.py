"""Does the search earn its keep? Three questions, measured side by side on one Stage I
checkpoint (tiny DS-MobileNetV1, digits-hard, the demo's Stage I recipe) and one device table
(jetson, roofline-predicted). Selection is always on val; every hypervolume is computed on the
**test** top-1 of the val-selected front, with a fixed reference point.

(a) ``static``: static sub-net search with real evaluations (each a measured val and test top-1
    from the accuracy table) at budgets 25, 50 and 100, for Optuna's random, TPE and NSGA-II
    samplers and for the predictor-guided search (``dsnet_automl.accuracy.guided``: the smallest,
    the largest and random sub-nets up to 25% of the budget, then repeatedly fit the accuracy
    predictor and measure the predicted-front points that would add most hypervolume).
    Target: predictor-guided at 25 evaluations >= random's hypervolume at 100.
    Reference point: (test top-1 of the smallest sub-net, 1.05 x latency of the largest).
(b) ``dynamic``: the dynamic search with front-drawn routes vs fraction routes, equal trials,
    per seed (seed = study seed: data split, sampler, gate init). Target: front >= 1.05x
    fraction hypervolume, seed ranges apart. Reference point per seed: (test top-1 of the
    smallest sub-net, latency of the largest sub-net), the same for both routings.
(c) ``versus``: on the same front-routing studies, the dynamic front vs the static+attention
    front (static sub-nets with the gate's attention head trained alone, same Stage II budget)
    and vs the bare static front, on test top-1: at how many dynamic front points does dynamic
    win (more test top-1 than the best baseline point at equal or lower latency), by how much;
    with route shares and the test accuracy of the samples each route receives.

Run (about 50 minutes on 2 cores):
``python benchmarks/search_quality.py --parts static,dynamic --seeds 0,1,2,3,4 --dyn-seeds 0,1,2``
It writes ``benchmarks/results/search_quality.json`` (parts merge into it) and prints tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.console import Console
from rich.table import Table

from dsnet_automl.accuracy.front import pareto_mask
from dsnet_automl.accuracy.guided import guided_static_search
from dsnet_automl.accuracy.table import AccuracyTable
from dsnet_automl.search import StudyConfig, TrialContext, hypervolume, run_search
from dsnet_automl.search.study import ensure_supernet
from dsnet_automl.search.study_config import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
console = Console()
SAMPLERS = ("random", "tpe", "nsga2", "predictor")


def _base(args: argparse.Namespace, root: Path) -> StudyConfig:
    """The ground of ``--study`` (data, device, latency batch, gate stage, Stage I recipe) with
    this benchmark's budgets and a private run directory."""
    st = load_study(args.study, runs_dir=str(root / "runs"))
    upd: dict[str, Any] = {
        "name": "bench",
        "checkpoint": args.checkpoint,
        "trials": args.trials,
        "static_trials": 0,
        "population": args.population,
        "latency_db": f"sqlite:///{root / 'lat.db'}",
        "accuracy_db": f"sqlite:///{root / 'accuracy.db'}",
        "seed": 0,
        "search": st.search.model_copy(update={"gate_epochs": tuple(args.gate_epochs)}),
    }
    if args.data:
        upd["data"] = args.data
    if args.stage1_epochs:
        upd["stage1"] = {**st.stage1, "epochs": args.stage1_epochs}
    return st.model_copy(update=upd)


def _front_hv(rows: list[tuple[float, float, float]], ref: tuple[float, float]) -> float:
    """Hypervolume of the test top-1 of the front selected on val. rows: (val, test, ms)."""
    if not rows:
        return 0.0
    mask = pareto_mask([r[0] for r in rows], [r[2] for r in rows])
    return hypervolume([(r[1], r[2]) for r, m in zip(rows, mask, strict=True) if m], ref)


class Evaluator:
    """Measured (val, test) top-1 of a config from the accuracy table (cached) + latency."""

    def __init__(self, ctx: TrialContext, table: AccuracyTable) -> None:
        self.ctx, self.table = ctx, table

    def __call__(self, cfg) -> tuple[float, float, float]:
        acc = {
            split: self.table.evaluate(
                self.ctx.supernet,
                [cfg],
                ckpt_hash=self.ctx.ckpt_hash,
                data=self.ctx.data,
                split=split,
                seed=self.ctx.study.seed,
            )[cfg]
            for split in ("val", "test")
        }
        return acc["val"], acc["test"], self.ctx.latency(cfg)[0]


def _optuna_static(name: str, budget: int, seed: int, ev: Evaluator, space) -> list:
    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=10),
    }
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=samplers[name]())
    rows = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        vals = {d: c[trial.suggest_int(d, 0, len(c) - 1)] for d, c in space.dims}
        val, test, ms = ev(space.config(vals))
        rows.append((val, test, ms))
        return val, ms

    study.optimize(objective, n_trials=budget)
    return rows


def _predictor_static(budget: int, seed: int, ev: Evaluator, space) -> list:
    """Predictor-guided static search (:func:`guided_static_search`), rows (val, test, ms)."""
    rows: dict[Any, tuple[float, float, float]] = {}

    def evaluate(cfg) -> float:
        rows[cfg] = ev(cfg)
        return rows[cfg][0]

    guided_static_search(space, evaluate, lambda c: ev.ctx.latency(c)[0], budget, seed=seed)
    return list(rows.values())


def part_static(args, root: Path, ckpt: Path, out: dict) -> None:
    base = _base(args, root).model_copy(update={"checkpoint": str(ckpt)})
    ctx = TrialContext.create(base, ckpt)
    ev = Evaluator(ctx, AccuracyTable(base.accuracy_url))
    space = ctx.supernet.space
    small, large = ev(space.smallest()), ev(space.largest())
    ref = (small[1], 1.05 * large[2])
    budgets = args.budgets
    res: dict[str, dict[str, list[float]]] = {s: {str(b): [] for b in budgets} for s in SAMPLERS}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for s in SAMPLERS:
            if s == "predictor":
                for b in budgets:
                    res[s][str(b)].append(_front_hv(_predictor_static(b, seed, ev, space), ref))
            else:  # sequential samplers: the first b trials of a 100-trial run are a b-trial run
                rows = _optuna_static(s, max(budgets), seed, ev, space)
                for b in budgets:
                    res[s][str(b)].append(_front_hv(rows[:b], ref))
            console.print(
                f"static seed {seed} {s}: "
                + " ".join(f"{b}:{res[s][str(b)][-1]:.4f}" for b in budgets)
                + f" ({time.perf_counter() - t0:.0f} s)"
            )
    rnd100 = res["random"][str(max(budgets))]
    pred25 = res["predictor"][str(min(budgets))]
    out["static"] = {
        "reference_point": {"test_top1": ref[0], "latency_ms": ref[1]},
        "seeds": args.seeds,
        "budgets": budgets,
        "hypervolume": res,
        "summary": {s: {b: _stats(v) for b, v in r.items()} for s, r in res.items()},
        "target_predictor25_vs_random100": {
            "per_seed_ratio": [_ratio(p, r) for p, r in zip(pred25, rnd100, strict=True)],
            "mean_ratio": _ratio(statistics.mean(pred25), statistics.mean(rnd100)),
            "met_on_mean": statistics.mean(pred25) >= statistics.mean(rnd100),
            "met_every_seed": all(p >= r for p, r in zip(pred25, rnd100, strict=True)),
        },
        "distinct_configs_measured": len(ev.table.to_frame(ckpt_hash=ctx.ckpt_hash, split="val")),
        "seconds": time.perf_counter() - t0,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _stats(v: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(v), "min": min(v), "max": max(v)}


def _study_rows(s: optuna.Study) -> list[tuple[float, float, float]]:
    done = s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [(t.values[0], t.user_attrs["test_accuracy"], t.values[1]) for t in done]


def _front(s: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    mask = pareto_mask([t.values[0] for t in done], [t.values[1] for t in done])
    return sorted((t for t, m in zip(done, mask, strict=True) if m), key=lambda t: t.values[1])


@torch.no_grad()
def _per_route(bundle: str, ctx: TrialContext) -> dict[str, list]:
    """Test accuracy of the samples each route receives, and their share."""
    from dsnet_automl.dynamic.routing import DynamicNet
    from dsnet_automl.search.objective import eval_loader

    dyn = DynamicNet.load(bundle).eval()
    right = torch.zeros(dyn.num_routes)
    count = torch.zeros(dyn.num_routes)
    for x, y, *_ in eval_loader(ctx, "test"):
        logits, routes = dyn(x)
        ok = (logits.argmax(1) == y).float()
        count += torch.bincount(routes, minlength=dyn.num_routes)
        right += torch.bincount(routes, weights=ok, minlength=dyn.num_routes)
    n = float(count.sum())
    return {
        "share": [round(float(c) / n, 4) for c in count],
        "test_top1": [
            round(float(r / c), 4) if c else None for r, c in zip(right, count, strict=True)
        ],
    }


def _versus(dyn: optuna.Study, base: optuna.Study, ctx: TrialContext) -> dict[str, Any]:
    """Each dynamic front point vs the best baseline point at <= its latency (test top-1)."""
    bpts = [(t.values[1], t.user_attrs["test_accuracy"]) for t in _front(base)]
    rows = []
    for t in _front(dyn):
        lat, acc = t.values[1], t.user_attrs["test_accuracy"]
        ok = [a for ms, a in bpts if ms <= lat]
        best = max(ok) if ok else None
        rows.append(
            {
                "trial": t.number,
                "latency_ms": lat,
                "test_top1": acc,
                "baseline_test_top1": best,
                "margin_pt": None if best is None else 100 * (acc - best),
                "route_share": t.user_attrs.get("test_route_hist"),
            }
        )
    comparable = [r for r in rows if r["margin_pt"] is not None]
    wins = [r for r in comparable if r["margin_pt"] > 0]
    return {
        "points": rows,
        "comparable": len(comparable),
        "wins": len(wins),
        "mean_margin_pt": statistics.mean(r["margin_pt"] for r in comparable)
        if comparable
        else None,
    }


def _pick(cands: list[tuple[float, float, float, float]], budget: float) -> dict | None:
    """Best val top-1 among candidates (val, val cost, test, test cost) within ``budget``
    (on val), reported on test."""
    ok = [c for c in cands if c[1] <= budget * (1 + 1e-9)]
    if not ok:
        return None
    v, vc, t, tc = max(ok, key=lambda c: (c[0], -c[1]))
    return {"val": v, "val_cost": vc, "test": t, "test_cost": tc}


def _at_budgets(
    dyn: optuna.Study, att: optuna.Study, fracs: list[float], heads: dict | None
) -> list[dict]:
    """At budgets spread over the static+attention front's latency range: the best
    static+attention point, the best gate point (each trial's trained gate and its budget-knob
    settings), the best cascade point (each trial's cascade with its gate's attention head) and
    the search's per-route-head cascade (``heads``: the menu's ends, each with its own head), all
    selected on val and reported on test; with the margins over static+attention in points."""
    done = dyn.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    gate, casc = [], []
    rh = [tuple(r[1:]) for r in ((heads or {}).get("policy_fronts") or {}).get("cascade", [])]
    for t in done:
        gate.append((t.values[0], t.values[1], t.user_attrs["test_accuracy"], t.values[1]))
        fr = t.user_attrs.get("policy_fronts") or {}
        gate += [tuple(r[1:]) for r in fr.get("gate", [])]
        casc += [tuple(r[1:]) for r in fr.get("cascade", [])]
    sa = [
        (t.values[0], t.values[1], t.user_attrs["test_accuracy"], t.values[1])
        for t in att.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]
    lats = sorted(c[1] for c in sa)
    rows = []
    for f in fracs:
        b = lats[0] + f * (lats[-1] - lats[0])
        cell = {"fraction": f, "budget_ms": b, "static_attention": _pick(sa, b),
                "gate": _pick(gate, b), "cascade": _pick(casc, b),
                "cascade_route_heads": _pick(rh, b)}  # fmt: skip
        base = cell["static_attention"]
        for k in ("gate", "cascade", "cascade_route_heads"):
            cell[f"{k}_margin_pt"] = (
                None if base is None or cell[k] is None else 100 * (cell[k]["test"] - base["test"])
            )
        rows.append(cell)
    return rows


def _test_hv(cands, ref) -> float:
    """Hypervolume of the test points of the val-selected front of (val, cost, test, cost)."""
    return _front_hv([(c[0], c[2], c[1]) for c in cands], ref)


def part_dynamic(args, root: Path, ckpt: Path, out: dict) -> None:
    base = _base(args, root)
    per_seed = []
    t0 = time.perf_counter()
    for seed in args.dyn_seeds:
        # each seed its own data split *and* Stage I (a checkpoint trained on seed 0's split has
        # seen other seeds' test images), unless --checkpoint pins one
        if args.checkpoint is None:
            ckpt = ensure_supernet(
                base.model_copy(update={"seed": seed, "stage1_dir": str(root / f"stage1-s{seed}")}),
                progress=False,
            )
        base = base.model_copy(update={"checkpoint": str(ckpt)})
        runs = {}
        for routing in ("front", "fraction") if args.fraction else ("front",):
            cfg = base.model_copy(
                update={
                    "name": f"dyn-{routing}-s{seed}",
                    "routing": routing,
                    "seed": seed,
                    "static_trials": args.static_trials if routing == "front" else 0,
                }
            )
            t = time.perf_counter()
            runs[routing] = (cfg, run_search(cfg, progress=False), time.perf_counter() - t)
        cfg, res, _ = runs["front"]
        ctx = TrialContext.create(cfg, ckpt)
        ev = Evaluator(ctx, AccuracyTable(cfg.accuracy_url))
        small, large = ev(ctx.supernet.space.smallest()), ev(ctx.supernet.space.largest())
        ref = (small[1], large[2])
        row = {
            "seed": seed,
            "reference_point": {"test_top1": ref[0], "latency_ms": ref[1]},
            "largest": {"val": large[0], "test": large[1], "latency_ms": large[2]},
            "predictor": res.knowledge.metrics if res.knowledge else None,
            "route_menu_size": len(res.study.user_attrs.get("route_menu", [])),
        }
        for routing, (_, r, secs) in runs.items():
            done = _study_rows(r.study)
            row[routing] = {
                "hypervolume": _front_hv(done, ref),
                "trials": len(done),
                "reused": sum(bool(t.user_attrs.get("reused")) for t in r.study.trials),
                "seconds": secs,
                "front": [
                    {
                        "trial": t.number,
                        "val": t.values[0],
                        "test": t.user_attrs["test_accuracy"],
                        "latency_ms": t.values[1],
                        "test_route_hist": t.user_attrs.get("test_route_hist"),
                    }
                    for t in _front(r.study)
                ],
            }
        row["static"] = {"hypervolume": _front_hv(_study_rows(res.static), ref)}
        row["static_attention"] = {"hypervolume": _front_hv(_study_rows(res.static_att), ref)}
        row["versus_static_attention"] = _versus(res.study, res.static_att, ctx)
        row["at_budgets"] = _at_budgets(res.study, res.static_att, args.budget_fracs, res.cascade)
        heads = ((res.cascade or {}).get("policy_fronts") or {}).get("cascade", [])
        row["cascade_route_heads"] = {
            "hypervolume": _test_hv([tuple(r[1:]) for r in heads], ref),
            "routes": (res.cascade or {}).get("routes"),
        }
        fronts = [t.user_attrs.get("policy_fronts") or {} for t in _front(res.study)]
        row["cascade"] = {
            "hypervolume": _test_hv(
                [tuple(r[1:]) for f in fronts for r in f.get("cascade", [])], ref
            )
        }
        row["gate_knob"] = {
            "hypervolume": _test_hv([tuple(r[1:]) for f in fronts for r in f.get("gate", [])], ref)
        }
        row["versus_static"] = _versus(res.study, res.static, ctx)
        front = _front(res.study)
        row["per_route"] = {
            str(t.number): _per_route(t.user_attrs["bundle"], ctx) for t in front[-3:]
        }
        per_seed.append(row)
        frac = row.get("fraction", {}).get("hypervolume", float("nan"))
        console.print(
            f"dynamic seed {seed}: HV front {row['front']['hypervolume']:.4f} fraction "
            f"{frac:.4f} cascade {row['cascade']['hypervolume']:.4f} static+att "
            f"{row['static_attention']['hypervolume']:.4f} "
            f"static {row['static']['hypervolume']:.4f}; "
            f"wins vs static+att {row['versus_static_attention']['wins']}/"
            f"{row['versus_static_attention']['comparable']} ({time.perf_counter() - t0:.0f} s)"
        )
    f_hv = [r["front"]["hypervolume"] for r in per_seed]
    out["dynamic"] = {
        "trials": args.trials,
        "seeds": args.dyn_seeds,
        "study": args.study,
        "per_seed": per_seed,
    }
    if not args.fraction:
        out["dynamic"]["seconds"] = time.perf_counter() - t0
        return
    ratio = [_ratio(r["front"]["hypervolume"], r["fraction"]["hypervolume"]) for r in per_seed]
    q_hv = [r["fraction"]["hypervolume"] for r in per_seed]
    out["dynamic"] |= {
        "front_vs_fraction": {
            "per_seed_ratio": ratio,
            "mean_ratio": _ratio(statistics.mean(f_hv), statistics.mean(q_hv)),
            "front": _stats(f_hv),
            "fraction": _stats(q_hv),
            "target_met": (_ratio(statistics.mean(f_hv), statistics.mean(q_hv)) or 0) >= 1.05
            and min(f_hv) > max(q_hv),
        },
        "seconds": time.perf_counter() - t0,
    }


def part_ray(args, root: Path, ckpt: Path, out: dict) -> None:
    """Ray Tune search runner, 1 worker vs 2 workers, same trials: trials per minute."""
    import os

    from dsnet_automl.search import open_study
    from dsnet_automl.search.ray_runner import run_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    base = _base(args, root).model_copy(update={"checkpoint": str(ckpt), "routing": "fraction"})
    rows = {}
    for workers in (1, 2):
        cfg = base.model_copy(update={"name": f"ray{workers}", "sampler": "random"})
        ctx = TrialContext.create(cfg, ckpt)  # its own run dir: no result reused across runs
        s = open_study(cfg)
        t = time.perf_counter()
        run_ray(cfg, ctx, s, args.ray_trials, workers=workers)
        dt = time.perf_counter() - t
        done = sum(tr.state.name == "COMPLETE" for tr in s.get_trials(deepcopy=False))
        rows[str(workers)] = {"trials": done, "seconds": dt, "trials_per_min": 60 * done / dt}
    out["ray"] = rows | {
        "speedup_2_vs_1": rows["2"]["trials_per_min"] / rows["1"]["trials_per_min"]
    }


def _print(out: dict) -> None:
    if "static" in out:
        st = out["static"]
        tab = Table(
            title="(a) static search, hypervolume on test top-1, mean [min, max] over "
            f"seeds {st['seeds']}"
        )
        tab.add_column("sampler")
        for b in st["budgets"]:
            tab.add_column(f"{b} evals", justify="right")
        for s, r in st["summary"].items():
            tab.add_row(
                s,
                *(
                    f"{r[str(b)]['mean']:.4f} [{r[str(b)]['min']:.4f}, {r[str(b)]['max']:.4f}]"
                    for b in st["budgets"]
                ),
            )
        console.print(tab)
        console.print(f"predictor@25 / random@100: {st['target_predictor25_vs_random100']}")
    if "dynamic" in out:
        d = out["dynamic"]
        tab = Table(title=f"(b, c) dynamic search, {d['trials']} trials, hypervolume on test top-1")
        cols = ["seed", "front", "fraction", "cascade", "cascade heads", "static+att", "static",
                "wins vs static+att", "margin pt"]  # fmt: skip
        for c in cols:
            tab.add_column(c, justify="right")
        for r in d["per_seed"]:
            va = r["versus_static_attention"]
            tab.add_row(
                str(r["seed"]),
                f"{r['front']['hypervolume']:.4f}",
                f"{r['fraction']['hypervolume']:.4f}" if "fraction" in r else "-",
                f"{r['cascade']['hypervolume']:.4f}" if "cascade" in r else "-",
                f"{r['cascade_route_heads']['hypervolume']:.4f}"
                if "cascade_route_heads" in r
                else "-",
                f"{r['static_attention']['hypervolume']:.4f}",
                f"{r['static']['hypervolume']:.4f}",
                f"{va['wins']}/{va['comparable']}",
                "-" if va["mean_margin_pt"] is None else f"{va['mean_margin_pt']:+.2f}",
            )
        console.print(tab)
        if "front_vs_fraction" in d:
            console.print(f"front vs fraction: {d['front_vs_fraction']}")
        tab = Table(
            title="(c) at budgets: test top-1 % of the val-selected point within the budget"
        )
        for c in ("seed", "budget ms", "static+att", "gate", "cascade", "cascade heads",
                  "gate - s+a", "casc - s+a", "heads - s+a"):  # fmt: skip
            tab.add_column(c, justify="right")
        f = lambda p: "-" if p is None else f"{100 * p['test']:.2f}"  # noqa: E731
        m = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
        for r in d["per_seed"]:
            for c in r.get("at_budgets", []):
                tab.add_row(
                    str(r["seed"]), f"{c['budget_ms']:.3f}", f(c["static_attention"]),
                    f(c["gate"]), f(c["cascade"]), f(c.get("cascade_route_heads")),
                    m(c["gate_margin_pt"]), m(c["cascade_margin_pt"]),
                    m(c.get("cascade_route_heads_margin_pt")),
                )  # fmt: skip
        console.print(tab)
    if "ray" in out:
        console.print(f"Ray search runner: {out['ray']}")


def markdown_c(out: dict) -> str:
    """Part (c) as README tables, from the results file (``--markdown``)."""
    rows = out["dynamic"]["per_seed"]
    lines = [
        "| seed | HV gate trials | HV cascade (gate head) | HV cascade (route heads) | "
        "HV static+attention | HV static |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['front']['hypervolume']:.4f} | {r['cascade']['hypervolume']:.4f} "
            f"| {r['cascade_route_heads']['hypervolume']:.4f} "
            f"| {r['static_attention']['hypervolume']:.4f} | {r['static']['hypervolume']:.4f} |"
        )
    lines += [
        "",
        "| seed | budget ms | static+attention | gate | cascade (gate head) | "
        "cascade (route heads) |",
        "|---|---|---|---|---|---|",
    ]

    def cell(c: dict, k: str) -> str:
        p = c.get(k)
        if p is None:
            return "-"
        m = c.get(f"{k}_margin_pt")
        return f"{100 * p['test']:.1f}" + ("" if m is None else f" ({m:+.1f})")

    for r in rows:
        for c in r["at_budgets"]:
            lines.append(
                f"| {r['seed']} | {c['budget_ms']:.3f} | {cell(c, 'static_attention')} | "
                f"{cell(c, 'gate')} | {cell(c, 'cascade')} | {cell(c, 'cascade_route_heads')} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="static,dynamic", help="static,dynamic,ray")
    ap.add_argument("--budgets", default="25,50,100", help="(a) real evaluations")
    ap.add_argument("--ray-trials", type=int, default=4, help="trials per Ray run")
    ap.add_argument("--study", default="studies/demo.yaml", help="the ground (data, hw, batch)")
    ap.add_argument("--data", default=None, help="override the study's data")
    ap.add_argument(
        "--no-fraction",
        dest="fraction",
        action="store_false",
        help="(b) skip the fraction-routing studies (part c only needs front)",
    )
    ap.add_argument("--gate-epochs", default="1,2", help="(b, c) the trials' gate epoch range")
    ap.add_argument(
        "--budget-fracs",
        default="0.25,0.5",
        help="(c) budgets, as fractions of the static+attention latency range",
    )
    ap.add_argument("--seeds", default="0,1,2,3,4", help="(a) sampler seeds")
    ap.add_argument("--dyn-seeds", default="0,1,2", help="(b, c) study seeds")
    ap.add_argument("--trials", type=int, default=30, help="(b) dynamic trials per study")
    ap.add_argument("--static-trials", type=int, default=12, help="(c) static trials per seed")
    ap.add_argument("--population", type=int, default=6, help="(b) NSGA-II population")
    ap.add_argument("--stage1-epochs", type=int, default=None, help="default: the study's")
    ap.add_argument("--checkpoint", default=None, help="reuse a Stage I checkpoint")
    ap.add_argument("--root", type=Path, default=None, help="work dir (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/search_quality.json"))
    ap.add_argument("--markdown", action="store_true", help="print part (c) tables and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown_c(json.loads(args.out.read_text())))
        return
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.budgets = [int(s) for s in args.budgets.split(",") if s]
    args.dyn_seeds = [int(s) for s in args.dyn_seeds.split(",") if s]
    args.gate_epochs = [int(s) for s in args.gate_epochs.split(",") if s]
    args.budget_fracs = [float(s) for s in args.budget_fracs.split(",") if s]
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root or Path(tempfile.mkdtemp(prefix="search_quality_"))
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ckpt = ensure_supernet(_base(args, root), progress=False)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    out = old if old.get("version") == 2 else {"version": 2}
    base = _base(args, root)
    out |= {
        "data": base.data,
        "device": f"{base.hw} (predicted table), latency batch {base.latency_batch}",
        "gate_stage": base.gate_stage,
        "checkpoint_epochs": base.stage1.get("epochs"),
        "torch_threads": torch.get_num_threads(),
        "stage1_seconds": time.perf_counter() - t,
    }
    parts = {"static": part_static, "dynamic": part_dynamic, "ray": part_ray}
    for p in args.parts.split(","):
        parts[p](args, root, ckpt, out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")
    _print(out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
