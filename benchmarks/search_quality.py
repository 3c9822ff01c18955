"""Search quality and throughput, measured side by side in one run.

1. Same trial budget, same supernet, same device table: NSGA-II and TPE (Optuna), NNI's TPE and
   naive-evolution tuners (``--sampler nni-*``: one scalarised reward, see
   ``dsnet_automl.integrations.nni.scalarize``) vs random; hypervolume of each front (val top-1
   up, expected jetson latency down) with a FIXED reference point: (accuracy 0, 1.05 x the
   largest sub-net's predicted latency). NNI samplers are skipped when NNI is not installed.
2. Ray Tune runner, 1 worker vs 2 workers, same number of trials: trials per minute (wall
   clock of the whole Ray run, Ray start included).

Run: ``flock /tmp/dsnet_cpu.lock python benchmarks/search_quality.py`` (prints a table, writes
``benchmarks/results/search_quality.json``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dsnet_automl.search import (
    StudyConfig,
    TrialContext,
    front_points,
    hypervolume,
    open_study,
    run_search,
)
from dsnet_automl.search.study import ensure_supernet

SAMPLERS = ("nsga2", "tpe", "nni-tpe", "nni-evolution", "random")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits-hard")
    ap.add_argument("--trials", type=int, default=12, help="budget per sampler")
    ap.add_argument("--ray-trials", type=int, default=4, help="trials per Ray run")
    ap.add_argument("--stage1-epochs", type=int, default=3)
    ap.add_argument("--checkpoint", default=None, help="reuse a Stage I checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="Stage I seed (and study seed)")
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma list of study seeds (each a replicate of every sampler on the same Stage I "
        "checkpoint; sampler and gate-training seeds); default: --seed",
    )
    ap.add_argument(
        "--samplers", default=",".join(SAMPLERS), help=f"comma list from {','.join(SAMPLERS)}"
    )
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray throughput runs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/search_quality.json"))
    args = ap.parse_args()
    samplers = [s for s in args.samplers.split(",") if s]
    if any(s.startswith("nni-") for s in samplers) and importlib.util.find_spec("nni") is None:
        print("NNI not installed (pip install -e '.[nni]'): skipping the nni-* samplers")
        samplers = [s for s in samplers if not s.startswith("nni-")]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = Path(tempfile.mkdtemp(prefix="search_quality_"))
    base = StudyConfig(
        name="bench",
        data=args.data,
        hw="jetson",
        checkpoint=args.checkpoint,
        stage1={"epochs": args.stage1_epochs},
        trials=args.trials,
        static_trials=0,
        population=4,
        runs_dir=str(root / "runs"),
        latency_db=f"sqlite:///{root / 'lat.db'}",
        seed=args.seed,
        search={"gate_epochs": [1, 1]},
    )
    t0 = time.perf_counter()
    ckpt = ensure_supernet(base, progress=False)
    stage1_s = time.perf_counter() - t0
    base = base.model_copy(update={"checkpoint": str(ckpt)})
    ctx = TrialContext.create(base, ckpt)
    lat_max = ctx.latency(ctx.supernet.space.largest())[0]
    ref = (0.0, 1.05 * lat_max)
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    runs: dict[str, list[dict]] = {k: [] for k in samplers}
    for seed in seeds:
        for sampler in samplers:
            cfg = base.model_copy(
                update={"name": f"bench-{sampler}-s{seed}", "sampler": sampler, "seed": seed}
            )
            t = time.perf_counter()
            res = run_search(cfg, progress=False)
            pts = front_points(res.study)
            runs[sampler].append(
                {
                    "seed": seed,
                    "trials": len(res.study.trials),
                    "front": len(pts),
                    "hypervolume": hypervolume(pts, ref),
                    "best_top1": max(p[0] for p in pts),
                    "seconds": time.perf_counter() - t,
                }
            )
    # per sampler: the mean over seeds (one seed: that run), and every run
    rows = {
        k: {
            m: sum(r[m] for r in rs) / len(rs)
            for m in ("trials", "front", "hypervolume", "best_top1", "seconds")
        }
        | {"hypervolume_per_seed": {r["seed"]: r["hypervolume"] for r in rs}}
        for k, rs in runs.items()
    }
    out = {
        "data": args.data,
        "device": "jetson (predicted latency table)",
        "stage1_seconds": stage1_s,
        "reference_point": {"accuracy": ref[0], "latency_ms": ref[1]},
        "seeds": seeds,
        "samplers": rows,
        "hv_ratio_over_random": {  # mean over seeds of the per-seed (paired) ratio
            k: sum(
                hv / max(1e-12, rows["random"]["hypervolume_per_seed"][sd])
                for sd, hv in rows[k]["hypervolume_per_seed"].items()
            )
            / len(seeds)
            for k in rows
            if "random" in rows
        },
        "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")  # kept if the Ray part fails
    ray_rows = {}
    for workers in () if args.no_ray else (1, 2):
        from dsnet_automl.search.ray_runner import run_ray

        cfg = base.model_copy(update={"name": f"bench-ray{workers}", "sampler": "random"})
        s = open_study(cfg)
        t = time.perf_counter()
        run_ray(cfg, ctx, s, args.ray_trials, workers=workers)
        dt = time.perf_counter() - t
        done = sum(tr.state.name == "COMPLETE" for tr in s.get_trials(deepcopy=False))
        ray_rows[workers] = {"trials": done, "seconds": dt, "trials_per_min": 60 * done / dt}
    if ray_rows:
        out["ray"] = ray_rows
        out["ray_speedup_2_vs_1"] = ray_rows[2]["trials_per_min"] / ray_rows[1]["trials_per_min"]
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    tab = Table(
        title=f"search quality ({args.trials} trials each, seeds {seeds}, {args.data}, "
        "jetson predicted; mean over seeds)"
    )
    for c in ("run", "trials", "front", "hypervolume", "best top-1", "seconds", "trials/min"):
        tab.add_column(c, justify="right")
    for k, r in rows.items():
        tab.add_row(
            k,
            f"{r['trials']:g}",
            f"{r['front']:.1f}",
            f"{r['hypervolume']:.4f}",
            f"{r['best_top1']:.3f}",
            f"{r['seconds']:.0f}",
            "",
        )
    for w, r in ray_rows.items():
        tab.add_row(
            f"ray {w} worker(s)",
            str(r["trials"]),
            "",
            "",
            "",
            f"{r['seconds']:.0f}",
            f"{r['trials_per_min']:.2f}",
        )
    Console().print(tab)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
