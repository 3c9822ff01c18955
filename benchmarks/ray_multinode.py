"""Multi-node Ray overhead: the same work on a 2-node cluster and on a 1-node cluster with the
same CPUs, side by side in one run (``ray.cluster_utils.Cluster`` on this machine).

- Stage I: ``--stage1-trials`` identical Stage I trials (1 CPU each, 2 at once): trials per
  minute on {head 0 CPU + 1 node x 2 CPUs} vs {head 0 CPU + 2 nodes x 1 CPU}.
- Search: ``--search-trials`` gate trials (``workers=2``) on both clusters: trials per minute of
  the Ray phase (the study's Stage I checkpoint is given; the accuracy table and the predictors
  run on the driver before it and are timed apart).

On one machine both clusters share the same two cores, so the ideal ratio is 1.0: this measures
what a second node costs (placement, object transfer between nodes, per-node workers), not
scaling; more machines are what scale. Shared storage is a local directory, as in Ray's tests.

  flock /tmp/dsnet_cpu.lock python benchmarks/ray_multinode.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from dsnet_automl.training import TrainConfig, train_supernet  # noqa: E402
from dsnet_automl.training.ray_stage1 import TuneOptions, TuneSpace, tune_supernet  # noqa: E402
from tests._ray_cluster import cluster  # noqa: E402

LAYOUTS = {"1 node x 2 CPUs": (2,), "2 nodes x 1 CPU": (1, 1)}
FIXED = TuneSpace(lr=None, weight_decay=None, num_random=[1], ema_decay=None, mvco=None)


def stage1(layout: tuple[int, ...], n: int, epochs: int, work: Path) -> dict:
    base = TrainConfig(space="ds_mobilenet_v1_tiny", data="digits", epochs=epochs,
                       batch_size=32, train_limit=512, device="cpu", progress=False)  # fmt: skip
    with cluster(0, *layout) as c:
        t0 = time.perf_counter()
        tune_supernet(base, work / "out", space=FIXED,
                      options=TuneOptions(samples=n, asha=False, concurrent=2,
                                          address=c.address,
                                          storage_path=str(work / "shared")))  # fmt: skip
        s = time.perf_counter() - t0
    return {"trials": n, "seconds": round(s, 1), "trials_per_min": round(60 * n / s, 2)}


def search(layout: tuple[int, ...], n: int, ckpt: Path, work: Path) -> dict:
    from dsnet_automl.search import load_study, run_search

    data = {"name": "bench", "data": "synthetic:64", "hw": "jetson", "checkpoint": str(ckpt),
            "trials": n, "static_trials": 0, "population": 2,
            "runs_dir": str(work / "runs"), "latency_db": f"sqlite:///{work / 'lat.db'}",
            "gate_batch_size": 32, "accuracy_samples": 24, "route_menu_size": 6,
            "cpus_per_trial": 1, "search": {"gate_epochs": [3, 3], "hidden": [16]}}  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    path = work / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    with cluster(0, *layout) as c:
        t0 = time.perf_counter()
        res = run_search(load_study(path), workers=2, ray_address=c.address, progress=False,
                         storage_path=str(work / "shared"))  # fmt: skip
        s = time.perf_counter() - t0
    done = [t for t in res.study.trials if t.state.name == "COMPLETE"]
    starts = [t.datetime_start for t in done]
    ends = [t.datetime_complete for t in done]
    ray_phase = (max(ends) - min(starts)).total_seconds()
    return {"trials": len(done), "seconds_total": round(s, 1),
            "seconds_ray_phase": round(ray_phase, 1),
            "trials_per_min": round(60 * len(done) / ray_phase, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1-trials", type=int, default=4)
    ap.add_argument("--stage1-epochs", type=int, default=2)
    ap.add_argument("--search-trials", type=int, default=6)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/ray_multinode.json")
    args = ap.parse_args()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dsnet-multinode-") as tmp:
        work = Path(tmp)
        cfg = TrainConfig(data="synthetic:64", epochs=1, batch_size=16, progress=False,
                          device="cpu")  # fmt: skip
        train_supernet(cfg, work / "stage1")
        for i, (name, layout) in enumerate(LAYOUTS.items()):
            st = stage1(layout, args.stage1_trials, args.stage1_epochs, work / f"s{i}")
            se = search(layout, args.search_trials, work / "stage1" / "checkpoint.pt",
                        work / f"q{i}")  # fmt: skip
            rows[name] = {"stage1": st, "search": se}
            print(f"{name}: Stage I {st['trials_per_min']} trials/min, search "
                  f"{se['trials_per_min']} trials/min", flush=True)  # fmt: skip
    one, two = rows["1 node x 2 CPUs"], rows["2 nodes x 1 CPU"]
    out = {
        "what": "same work, same 2 CPUs in all, 1 CPU per trial: 2-node vs 1-node Ray cluster "
        "on one machine (ray.cluster_utils.Cluster); ideal ratio 1.0",
        "layouts": rows,
        "ratio_2node_over_1node": {
            "stage1_trials_per_min": round(
                two["stage1"]["trials_per_min"] / one["stage1"]["trials_per_min"], 3
            ),
            "search_trials_per_min": round(
                two["search"]["trials_per_min"] / one["search"]["trials_per_min"], 3
            ),
        },  # fmt: skip
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["ratio_2node_over_1node"]), f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
