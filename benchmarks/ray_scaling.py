"""Stage I on Ray Tune: 1 vs 2 concurrent trials, and Ray's start-up and per-trial overhead.

Measured side by side in one run, same trial configs (fixed hyperparameters, ASHA off, so each
trial does the same work):

1. ``in-process``: one trial's training with ``train_supernet`` in this process, with all cores'
   threads and with ``cores / 2`` threads - the no-Ray baselines.
2. ``1 concurrent, all cores``: N trials one at a time, each with all cores as torch threads.
3. ``1 concurrent, cores/2``: N trials one at a time, each with the per-trial resources of 4.
4. ``2 concurrent``: N trials two at a time, each with cores/2 CPUs (= threads).

Two ratios of trials per minute (wall clock of ``tune_supernet``, Ray start-up included;
target >= 1.6x on 2 cores):

- ``trial_scaling`` = 4 vs 3: the same trials (same CPUs each), twice as many at once - what a
  second node, or a machine twice as big, gives a sweep (Ray's trial-parallel efficiency);
- ``same_machine`` = 4 vs 2: this machine's cores split between two trials instead of one trial
  threading over all of them (bounded by how badly one tiny-net trial uses 2 threads).

Also: Ray start-up = ``ray.init`` time; per-trial overhead = (wall of 2 / N) - in-process time.

Run: ``python benchmarks/ray_scaling.py`` (prints a table, writes
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


def _sweep(base: TrainConfig, n: int, concurrent: int, cpus_per_trial: int, tmp: str) -> float:
    t0 = time.perf_counter()
    tune_supernet(
        base,
        Path(tmp) / f"c{concurrent}x{cpus_per_trial}",
        # every trial identical: the comparison is of throughput, not of search
        space=TuneSpace(lr=None, weight_decay=None, num_random=None, ema_decay=None, mvco=None),
        options=TuneOptions(
            samples=n,
            concurrent=concurrent,
            cpus_per_worker=cpus_per_trial,
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
    half = max(1, cpus // 2)
    with tempfile.TemporaryDirectory() as tmp:
        inproc = {}
        for threads in (cpus, half):
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            train_supernet(base, Path(tmp) / f"inproc{threads}")
            inproc[threads] = time.perf_counter() - t0
        torch.set_num_threads(cpus)
        ray_init = _ray_init_seconds(cpus)
        one_all = _sweep(base, args.trials, 1, cpus, tmp)
        one_half = _sweep(base, args.trials, 1, half, tmp)
        two = _sweep(base, args.trials, 2, half, tmp)
    tpm = {k: 60 * args.trials / v for k, v in (("1_all", one_all), ("1_half", one_half))}
    tpm["2"] = 60 * args.trials / two
    res = {
        "space": args.space,
        "cpus": cpus,
        "trials": args.trials,
        "epochs": args.epochs,
        "train_limit": args.train_limit,
        "in_process_trial_s": {f"{k}_threads": v for k, v in inproc.items()},
        "ray_init_s": ray_init,
        "wall_s": {"1_concurrent_all_cores": one_all, "1_concurrent_half": one_half, "2": two},
        "trials_per_min": tpm,
        "ratio_trial_scaling": tpm["2"] / tpm["1_half"],
        "ratio_same_machine": tpm["2"] / tpm["1_all"],
        # the same without the one-off ray.init (a long sweep amortises it)
        "ratio_trial_scaling_excl_ray_init": (one_half - ray_init) / (two - ray_init),
        "ratio_same_machine_excl_ray_init": (one_all - ray_init) / (two - ray_init),
        "per_trial_overhead_s": one_all / args.trials - inproc[cpus],
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    table = Table(title=f"Stage I Ray Tune scaling ({args.space}, {cpus} CPUs)")
    for col in ("measure", "value"):
        table.add_column(col)
    for k, v in inproc.items():
        table.add_row(f"in-process trial, {k} threads", f"{v:.1f} s")
    table.add_row("ray.init", f"{ray_init:.1f} s")
    for label, wall, key in (
        (f"1 concurrent, {cpus} CPUs each", one_all, "1_all"),
        (f"1 concurrent, {half} CPUs each", one_half, "1_half"),
        (f"2 concurrent, {half} CPUs each", two, "2"),
    ):
        table.add_row(f"{args.trials} trials, {label}", f"{wall:.1f} s ({tpm[key]:.2f} trials/min)")
    table.add_row(
        "trial scaling: 2 vs 1 concurrent, same CPUs per trial",
        f"{res['ratio_trial_scaling']:.2f}x",
    )
    table.add_row(
        "same machine: 2 concurrent vs 1 with all cores", f"{res['ratio_same_machine']:.2f}x"
    )
    table.add_row(
        "  without ray.init (scaling / same machine)",
        f"{res['ratio_trial_scaling_excl_ray_init']:.2f}x / "
        f"{res['ratio_same_machine_excl_ray_init']:.2f}x",
    )
    table.add_row(
        "Ray overhead per trial (1 concurrent, all cores)", f"{res['per_trial_overhead_s']:.1f} s"
    )
    Console().print(table)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
