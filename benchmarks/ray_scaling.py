"""Stage I on Ray Tune: 1 vs 2 concurrent trials on the same cores, and Ray's start-up cost.

Measured side by side in one run, same trial configs (fixed hyperparameters, ASHA off, so each
trial does the same work):

1. ``in-process``: one trial's training with ``train_supernet`` in this process (all cores'
   threads) - the no-Ray baseline.
2. ``1 concurrent``: N trials one at a time, each with all cores as torch threads.
3. ``2 concurrent``: N trials two at a time, each with cores/2 threads.

Reported: trials per minute of 2 and 3 (wall clock of ``tune_supernet``, Ray start-up
included) and their ratio (target >= 1.6x on 2 cores); Ray start-up = ``ray.init`` time; per-
trial overhead = (1 concurrent wall / N) - in-process time.

Run: ``flock /tmp/dsnet_cpu.lock python benchmarks/ray_scaling.py`` (prints a table, writes
``benchmarks/results/ray_scaling.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from dsnet_automl.training import TrainConfig, train_supernet
from dsnet_automl.training.ray_stage1 import TuneOptions, TuneSpace, tune_supernet


def _sweep(base: TrainConfig, n: int, concurrent: int, cpus: int, tmp: str) -> float:
    t0 = time.perf_counter()
    tune_supernet(
        base,
        Path(tmp) / f"c{concurrent}",
        # every trial identical: the comparison is of throughput, not of search
        space=TuneSpace(lr=None, weight_decay=None, num_random=None, ema_decay=None, mvco=None),
        options=TuneOptions(
            samples=n,
            concurrent=concurrent,
            cpus_per_worker=cpus // concurrent,
            asha=False,
            max_failures=0,
        ),
    )
    return time.perf_counter() - t0


def _ray_init_seconds(cpus: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    dt = time.perf_counter() - t0
    ray.shutdown()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=640)
    ap.add_argument("--space", default="ds_mobilenet_v1_tiny")
    ap.add_argument("--out", default="benchmarks/results/ray_scaling.json")
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    base = TrainConfig(
        space=args.space,
        data="digits-hard",
        epochs=args.epochs,
        train_limit=args.train_limit,
        device="cpu",
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(cpus)
        t0 = time.perf_counter()
        train_supernet(base, Path(tmp) / "inproc")
        inproc = time.perf_counter() - t0
        ray_init = _ray_init_seconds(cpus)
        one = _sweep(base, args.trials, 1, cpus, tmp)
        two = _sweep(base, args.trials, 2, cpus, tmp)
    tpm1, tpm2 = 60 * args.trials / one, 60 * args.trials / two
    res = {
        "space": args.space,
        "cpus": cpus,
        "trials": args.trials,
        "epochs": args.epochs,
        "train_limit": args.train_limit,
        "in_process_trial_s": inproc,
        "ray_init_s": ray_init,
        "wall_1_concurrent_s": one,
        "wall_2_concurrent_s": two,
        "trials_per_min_1": tpm1,
        "trials_per_min_2": tpm2,
        "ratio_2_vs_1": tpm2 / tpm1,
        "per_trial_overhead_s": one / args.trials - inproc,
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    table = Table(title=f"Stage I Ray Tune scaling ({args.space}, {cpus} CPUs)")
    for col in ("measure", "value"):
        table.add_column(col)
    table.add_row("in-process trial", f"{inproc:.1f} s")
    table.add_row("ray.init", f"{ray_init:.1f} s")
    table.add_row(f"{args.trials} trials, 1 concurrent", f"{one:.1f} s ({tpm1:.2f} trials/min)")
    table.add_row(f"{args.trials} trials, 2 concurrent", f"{two:.1f} s ({tpm2:.2f} trials/min)")
    table.add_row("ratio 2 vs 1 (target >= 1.6)", f"{tpm2 / tpm1:.2f}x")
    table.add_row("Ray overhead per trial (1 concurrent)", f"{res['per_trial_overhead_s']:.1f} s")
    Console().print(table)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
